"""LoRA fine-tuning under MAS or the causal mask, with Hugging Face ``Trainer`` underneath.

``--mask`` is the only difference between the two arms: the MAS arm enables the segmask hook and its batches carry
``segment_ids``; the causal arm's batches do not, so the model runs its stock causal mask. Everything else (data
order, LoRA init, dropout, optimiser) is fixed by ``seed`` and identical. Loss is on answer tokens only.

    >>> from segmask.eval.tasks import default_data_dir    # the folder `segmask data` fills
    >>> data = str(default_data_dir())                      # every train.json below it: the commonsense_170k mixture
    >>> cfg = TrainConfig(data=[data], output_dir="runs/mas", mask="mas", max_examples=2000)
    >>> summary = train(cfg)       # adapter + segmask.json in runs/mas/adapter, loss curve in runs/mas/loss_curve.json

``packing=True`` packs the examples into rows of at most ``cutoff`` tokens (``segmask.core.packing``): no padding, each
example attends only to itself, MAS inside it, the same loss per example as unpacked batches.

Multi-GPU / FSDP: run the ``segmask train`` command under ``accelerate launch``; Trainer picks the setup up.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..core.packing import PackedCollator, PackedDataset, pack
from ..core.questions import ANSWER_FORMS, LAYOUT_HELP, layout_mix
from ..core.recipe import BASE_MODEL, EVAL_MASKS, MAS_MODEL, PROMPT_FORMS, check_choice
from ..core.records import load_records
from ..hf.backend import MASKED_BACKENDS
from .data import ExampleDataset, SegmentCollator, mix, prepare
from .lora import LoraSettings, save_adapter, settings_dict
from .state import LOSS_CURVE, check_run_folder, read_loss_curve

EXTRA_LOGS = ("kl",)  # logged values a Trainer subclass may add (adapt: mean KL per answer token)


@dataclass(kw_only=True)
class LoopConfig:
    """The optimisation loop shared by ``train`` and ``adapt``: steps, batches, optimiser, LoRA, checkpoints."""

    epochs: float = field(default=1.0, metadata={"help": "passes over the data"})
    max_steps: int = field(default=-1, metadata={"help": "optimizer steps; overrides epochs when > 0"})
    batch_size: int = field(default=4, metadata={"help": "micro batch per device"})
    grad_accum: int = field(default=4, metadata={"help": "micro batches per optimizer step"})
    lr: float = field(default=2e-4, metadata={"help": "peak learning rate (linear decay)"})
    warmup_steps: int = field(default=0, metadata={"help": "linear warmup steps"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    seed: int = field(default=42, metadata={"help": "seed of data order, LoRA init and dropout"})
    lora: LoraSettings = field(default_factory=LoraSettings)
    dtype: str = field(default="float32", metadata={"help": "parameter dtype: float32, bfloat16 or float16"})
    attn: str = field(default="sdpa", metadata={"help": "attention backend", "choices": MASKED_BACKENDS})
    logging_steps: int = field(default=5, metadata={"help": "log the loss every this many steps"})
    save_steps: int = field(default=100, metadata={"help": "checkpoint every this many steps"})
    save_total_limit: int = field(default=2, metadata={"help": "checkpoints kept"})
    init_adapter: str | None = field(default=None, metadata={
        "help": "start from this LoRA adapter merged into the base (e.g. the MAS-ready chat adapter)"})
    resume: bool | str = field(default=False, metadata={
        "help": "continue from the last checkpoint in the output folder (or from the given checkpoint folder)"})
    save_dtype: str | None = field(default=None, metadata={
        "help": "store the final adapter in this dtype, e.g. float16"})
    group_by_length: bool = field(default=True, metadata={"help": "batch similar lengths (less padding)"})
    progress: bool = field(default=True, metadata={"help": "progress bar and data summary"})

    def check_loop(self) -> None:
        """Validate the shared fields (called by each config's ``__post_init__``)."""
        for name in ("batch_size", "grad_accum", "logging_steps", "save_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr!r}")
        if isinstance(self.lora, dict):
            self.lora = LoraSettings(**self.lora)

    def recipe(self) -> dict[str, Any]:
        """The config as a JSON-ready dict (recorded in ``segmask.json`` and the run summary)."""
        d = asdict(self)
        d["lora"] = settings_dict(self.lora)
        return d


@dataclass(kw_only=True)
class TrainConfig(LoopConfig):
    """One training run. Defaults follow the paper (lr 2e-4, cutoff 256, LoRA r=32/alpha=64 on q_proj+v_proj)."""

    data: list[str] = field(metadata={
        "help": "LLM-Adapters .json files/folders or chat .jsonl files (mixed, shuffled)"})
    output_dir: str = field(metadata={"help": "checkpoints, loss curve and the final adapter (output_dir/adapter)"})
    mask: str = field(default="mas", metadata={"choices": EVAL_MASKS, "help":
        "the only difference between arms; causal-repeat: causal, the question part read twice (a baseline)"})
    model: str = field(default=BASE_MODEL, metadata={
        "help": f"embedded name, HF id or local path ({MAS_MODEL}: start from the MAS-ready model)"})
    prompt_form: str = field(default="commonsense", metadata={"help": "how records become prompts",
                                                              "choices": PROMPT_FORMS})
    system: str | None = field(default=None, metadata={"help": "system message for the chat form"})
    answer_form: str = field(default="label", metadata={"choices": ANSWER_FORMS,
        "help": "label (the data's 'the correct answer is answer3') or text (the option's text, as eval's choice "
                "protocol scores it)"})
    layout: str = field(default="data", metadata={
        "help": LAYOUT_HELP + "; a comma-separated list mixes layouts over the rows"})
    cutoff: int = field(default=256, metadata={"help": "max tokens per example (segments are never cut)"})
    max_examples: int | None = field(default=None, metadata={"help": "keep this many mixed rows (None: all)"})
    packing: bool = field(default=False, metadata={
        "help": "pack examples into rows of at most --cutoff tokens (no padding; each example attends only to "
                "itself, MAS inside it); --batch-size then counts rows"})

    def __post_init__(self):
        if isinstance(self.data, (str, Path)):
            self.data = [str(self.data)]
        if not self.data:
            raise ValueError("no training data given")
        check_choice("mask", self.mask, EVAL_MASKS)
        check_choice("prompt_form", self.prompt_form, PROMPT_FORMS)
        check_choice("answer_form", self.answer_form, ANSWER_FORMS)
        self.layout = ",".join(layout_mix(self.layout))
        self.check_loop()


def _trainer_callback():
    from transformers import TrainerCallback

    class LossCurve(TrainerCallback):
        """Writes every logged loss (with lr, tokens seen and tokens/s) to ``output_dir/loss_curve.json``."""

        def __init__(self, path: Path, extra_on_save: dict):
            self.path, self.extra_on_save = path, extra_on_save
            self.rows = read_loss_curve(path)
            self.start, self.tokens0 = None, 0

        def on_train_begin(self, args, state, control, **kwargs):
            self.start, self.tokens0 = time.perf_counter(), state.num_input_tokens_seen
            self.rows = [r for r in self.rows if r["step"] <= state.global_step]  # after --resume

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or "loss" not in logs or not state.is_world_process_zero:
                return
            elapsed = time.perf_counter() - self.start
            tokens = state.num_input_tokens_seen
            rate = (tokens - self.tokens0) / elapsed if elapsed > 0 else 0.0
            logs["tokens/s"] = round(rate, 1)
            self.rows.append({"step": state.global_step, "epoch": state.epoch, "loss": logs["loss"],
                              "lr": logs.get("learning_rate"), "tokens_seen": tokens,
                              "tokens_per_s": round(rate, 1), "elapsed_s": round(elapsed, 1),
                              **{k: logs[k] for k in EXTRA_LOGS if k in logs}})
            self.path.write_text(json.dumps(self.rows, indent=1) + "\n")

        def on_save(self, args, state, control, **kwargs):
            from .lora import write_segmask_config

            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if state.is_world_process_zero and folder.is_dir():
                write_segmask_config(folder, self.extra_on_save)

    return LossCurve


def run_trainer(model: Any, cfg: LoopConfig, dataset: Any, collator: Any, meta: dict, *,
                trainer_cls: Any = None, callbacks: Sequence[Any] = ()) -> tuple[Any, Any, float]:
    """Run HF ``Trainer`` (or ``trainer_cls``) over ``dataset`` with ``cfg``'s loop settings.

    Writes checkpoints (each with ``segmask.json`` = ``meta``) and ``loss_curve.json`` under ``cfg.output_dir``;
    resumes from ``cfg.resume``. Returns ``(trainer, train_output, wall_seconds)``.
    """
    import torch
    from transformers import Trainer, TrainingArguments

    out = Path(cfg.output_dir)
    args = TrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.lr,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        warmup_steps=cfg.warmup_steps,
        weight_decay=cfg.weight_decay,
        lr_scheduler_type="linear",
        seed=cfg.seed,
        data_seed=cfg.seed,
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        remove_unused_columns=False,  # keep segment_ids
        # packed batches have no attention_mask; their padding is a short tail. Trainer runs the model with
        # use_cache=False (TrainingArguments.use_cache), which the causal arm's packed-row mask needs
        include_num_input_tokens_seen="all" if getattr(cfg, "packing", False) else "non_padding",
        report_to=[],
        disable_tqdm=not cfg.progress,
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
        train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
    )
    trainer = (trainer_cls or Trainer)(model=model, args=args, train_dataset=dataset, data_collator=collator,
                                       callbacks=[_trainer_callback()(out / LOSS_CURVE, meta), *callbacks])
    start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=cfg.resume or None)
    return trainer, result, time.perf_counter() - start


def start_model(cfg: LoopConfig, model: Any = None, tokenizer: Any = None) -> tuple[Any, Any]:
    """The model a run starts from: ``cfg.model`` (or the given one) with ``cfg.init_adapter`` merged in."""
    from ..hf.models import load_model

    if model is None:
        model, tokenizer = load_model(cfg.model, dtype=cfg.dtype, attn_implementation=cfg.attn)
    if cfg.init_adapter:
        from ..hf.models import merge_adapter

        cfg.init_adapter = str(Path(cfg.init_adapter).resolve())  # recorded in segmask.json; loaders merge it first
        model = merge_adapter(model, cfg.init_adapter)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def build_data(cfg: TrainConfig, tokenizer: Any):
    """Mixed, shuffled, encoded training examples and the ``PrepareStats``."""
    rows = mix([load_records(p) for p in cfg.data], seed=cfg.seed, limit=cfg.max_examples)
    return prepare(tokenizer, rows, form=cfg.prompt_form, cutoff=cfg.cutoff, system=cfg.system,
                   answer_form=cfg.answer_form, layout=cfg.layout, mask=cfg.mask)


def batches(cfg: TrainConfig, examples: Sequence[Any], pad_token_id: int) -> tuple[Any, Any]:
    """(dataset, collator) for the Trainer: packed rows (``cfg.packing``) or right-padded examples; the causal arm's
    batches carry no ``segment_ids``."""
    with_segments = cfg.mask == "mas"
    if not cfg.packing:
        return (ExampleDataset(examples),
                SegmentCollator(pad_token_id, with_segments=with_segments, max_length=cfg.cutoff))
    rows = pack(examples, cfg.cutoff)
    if cfg.progress:
        print(f"packing: {len(examples)} examples in {len(rows)} rows of <= {cfg.cutoff} tokens", flush=True)
    return PackedDataset(rows), PackedCollator(pad_token_id, with_segments=with_segments)


def train(cfg: TrainConfig, *, model: Any = None, tokenizer: Any = None) -> dict[str, Any]:
    """Run one arm; returns a summary (steps, final loss, wall-clock, tokens/s, data counts, adapter folder).

    ``model``/``tokenizer`` may be given (e.g. a tiny test model); otherwise ``cfg.model`` is loaded. Under a
    multi-process launch every process returns the summary; only the main one writes the adapter, the loss curve and
    ``train_summary.json``.
    """
    from transformers import set_seed

    from ..hf.hook import enable
    from .lora import add_lora, segmask_config

    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    check_run_folder(out, cfg.resume)
    set_seed(cfg.seed)
    model, tokenizer = start_model(cfg, model, tokenizer)
    examples, stats = build_data(cfg, tokenizer)
    if cfg.progress:
        print(f"data: {stats.summary()}", flush=True)
    set_seed(cfg.seed)  # LoRA init independent of how much data was read
    model = add_lora(model, cfg.lora)
    if cfg.mask == "mas":
        enable(model)
    model.train()
    meta = segmask_config(mask=cfg.mask, prompt_form=cfg.prompt_form, base_model=cfg.model, recipe=cfg.recipe())
    dataset, collator = batches(cfg, examples, tokenizer.pad_token_id)
    trainer, result, wall = run_trainer(model, cfg, dataset, collator, meta)
    main = trainer.is_world_process_zero()  # under accelerate/torchrun only the main process writes files
    adapter = out / "adapter"
    if main:
        save_adapter(model, adapter, mask=cfg.mask, prompt_form=cfg.prompt_form, base_model=cfg.model,
                     dtype=cfg.save_dtype, recipe=cfg.recipe())
    tokens = trainer.state.num_input_tokens_seen
    summary = {
        "mask": cfg.mask,
        "steps": trainer.state.global_step,
        "train_loss": result.training_loss,
        "wall_s": round(wall, 1),
        "tokens_seen": tokens,
        "tokens_per_s": round(tokens / wall, 1) if wall > 0 else None,
        "data": asdict(stats),
        "packed_rows": len(dataset) if cfg.packing else None,
        "adapter": str(adapter),
        "recipe": cfg.recipe(),
    }
    if main:
        (out / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
