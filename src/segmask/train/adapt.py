"""``adapt``: turn a causally trained chat model into a MAS model that behaves like the original, with no labels.

Self-distillation. The teacher is the frozen base model with causal prefill; the student is the same model plus a
LoRA adapter, prefilled under MAS. The loss is KL(teacher || student) over answer tokens only, weighted towards
the first answer tokens (where MAS prefill hurts an untuned model most):

    loss = sum_t w_t KL(p_teacher(. | prompt, a_<t) || p_student(. | prompt, a_<t)) / sum_t w_t,
    w_t = 1 + early_weight * exp(-t / early_tokens)          (t = 0 for the first answer token)

Answers come from the teacher: greedy continuations of a shipped prompt pool (``prompt_pool``), generated once and
cached in ``output_dir/teacher.pt`` together with the teacher's top-``top_k`` log-probabilities at every answer
token (read off the generation's own logits, so off-policy steps need no teacher forward). KL is computed over the
top-k tokens plus one bucket for the rest of the vocabulary. A share ``on_policy`` of the steps instead samples the
answers from the student (MAS prefill) and scores them with a full-vocabulary teacher forward.

The prompt mix: the pool's categories (facts, how-to, explanations, creative writing, advice, rewriting a passage,
math, and commonsense instructions when a data folder is given), questions the teacher writes itself
(self-instruct, ``self_instruct`` of them), multi-turn conversations (a follow-up after the teacher's first answer,
``multi_turn`` share), with and without a system message.

    >>> summary = adapt(AdaptConfig(output_dir="runs/adapt", prompts=1600))   # adapter in runs/adapt/adapter

``segmask adapt`` is the command line. Training runs through ``train.run_trainer`` (HF Trainer: checkpoints,
``resume``, progress, seeds); the adapter's ``segmask.json`` says ``mask: mas`` and records this config.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..core.chat import conversation
from ..core.recipe import BASE_MODEL
from ..hf.backend import eos_token_ids
from .distill import DistillCollator, DistillDataset, cut_after_eos, distill_trainer
from .lora import save_adapter, segmask_config
from .state import check_run_folder
from .trainer import LoopConfig, run_trainer, start_model

TEACHER_FILE = "teacher.pt"
SELF_INSTRUCT_REQUEST = "Write one short question that a curious person might ask about {topic}. Reply with the " \
                        "question only."


@dataclass(kw_only=True)
class AdaptConfig(LoopConfig):
    """One adaptation run (the loop settings of ``LoopConfig`` plus the distillation settings)."""

    output_dir: str = field(metadata={"help": "teacher cache, checkpoints, loss curve and output_dir/adapter"})
    model: str = field(default=BASE_MODEL, metadata={"help": "the causal chat model: embedded name, HF id or path"})
    data_dir: str | None = field(default=None, metadata={
        "help": "optional folder with prompts/ and/or commonsense/ (e.g. ~/.cache/segmask/data after `segmask "
                "data`) for more prompts"})
    prompts: int = field(default=1600, metadata={"help": "prompts drawn from the shipped pool"})
    self_instruct: int = field(default=64, metadata={"help": "extra prompts written by the teacher itself"})
    multi_turn: float = field(default=0.15, metadata={"help": "share of prompts continued as a second turn"})
    system_share: float = field(default=0.5, metadata={"help": "share of prompts with a system message"})
    answer_tokens: int = field(default=48, metadata={"help": "teacher answers are cut at this many tokens"})
    gen_batch_size: int = field(default=32, metadata={"help": "prompts per teacher generation batch"})
    top_k: int = field(default=64, metadata={"help": "teacher log-probs kept per answer token (+ a rest bucket)"})
    on_policy: float = field(default=0.2, metadata={"help": "share of steps whose answers the student samples"})
    early_weight: float = field(default=3.0, metadata={"help": "extra loss weight on the first answer tokens"})
    early_tokens: float = field(default=8.0, metadata={"help": "decay length of that extra weight, in tokens"})
    budget: str | None = field(default=None, metadata={
        "help": "stop after this much of this invocation: '60m' (minutes) or '300k' / '2M' (tokens seen)"})
    batch_size: int = 8
    grad_accum: int = 1
    warmup_steps: int = 10
    seed: int = 0
    save_steps: int = 50
    save_dtype: str | None = "float16"
    group_by_length: bool = False

    def __post_init__(self):
        self.check_loop()
        for name in ("prompts", "answer_tokens", "gen_batch_size", "top_k"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        for name in ("multi_turn", "system_share", "on_policy"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)!r}")
        if self.self_instruct < 0 or self.early_weight < 0 or self.early_tokens <= 0:
            raise ValueError("self_instruct and early_weight must be >= 0 and early_tokens > 0")
        parse_budget(self.budget)


def parse_budget(budget: str | None) -> tuple[str, float] | None:
    """``"90m"`` -> ("seconds", 5400); ``"300k"`` / ``"2M"`` / ``"5000"`` -> ("tokens", n); None -> None."""
    if budget is None or budget == "":
        return None
    text = str(budget).strip()
    units = {"m": ("seconds", 60), "min": ("seconds", 60), "h": ("seconds", 3600), "s": ("seconds", 1),
             "k": ("tokens", 1e3), "M": ("tokens", 1e6), "": ("tokens", 1)}
    for suffix in sorted(units, key=len, reverse=True):
        if text.endswith(suffix):
            number = text[: len(text) - len(suffix)] if suffix else text
            try:
                value = float(number)
            except ValueError:
                continue
            if value <= 0:
                break
            kind, scale = units[suffix]
            return kind, value * scale
    raise ValueError(f"budget must look like '60m', '1.5h', '300k' or '2M' (tokens), got {budget!r}")


def teacher_answers(model: Any, tokenizer: Any, conversations: Sequence[list[dict]], *, max_new_tokens: int,
                    top_k: int, batch_size: int = 32, progress: bool = False) -> list[dict[str, Any]]:
    """Greedy causal answers of ``model`` to ``conversations`` with its top-k log-probs at every answer token.

    Returns per conversation ``{"answer_ids": [N], "topk_ids": LongTensor [N, k], "topk_logp": HalfTensor [N, k]}``;
    the answer stops after the first end-of-turn token or at ``max_new_tokens``.
    """
    from ..core.chat import encode_chat
    from ..generation.batch import generate

    model.eval()
    eos = eos_token_ids(model, tokenizer)
    order = sorted(range(len(conversations)), key=lambda i: len(json.dumps(conversations[i])))
    out: list[dict[str, Any] | None] = [None] * len(conversations)
    for start in range(0, len(order), batch_size):
        idx = order[start: start + batch_size]
        batch = encode_chat(tokenizer, [conversations[i] for i in idx])
        gen = generate(model, {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]},
                       tokenizer=tokenizer, max_new_tokens=max_new_tokens, do_sample=False, output_logits=True)
        new = gen.sequences
        logp = torch.stack(gen.logits, 1).float().log_softmax(-1)            # [B, N, V]
        top = logp.topk(top_k, dim=-1)
        for row, i in enumerate(idx):
            ids = cut_after_eos(new[row].tolist(), eos)
            n = len(ids)
            out[i] = {"answer_ids": ids, "topk_ids": top.indices[row, :n].clone(),
                      "topk_logp": top.values[row, :n].half().clone()}
        if progress:
            print(f"teacher: {min(start + batch_size, len(order))}/{len(order)} answers", flush=True)
    return out  # type: ignore[return-value]


def _self_instruct(model, tokenizer, cfg: AdaptConfig, rng: random.Random) -> list[dict[str, Any]]:
    """Questions the teacher writes itself about seed topics (kept when they look like one question)."""
    from .prompt_pool import SYSTEMS, TOPICS, heldout

    topics = [t for t in TOPICS if not heldout(t)]
    asks = [[{"role": "user", "content": SELF_INSTRUCT_REQUEST.format(topic=rng.choice(topics))}]
            for _ in range(cfg.self_instruct)]
    written = teacher_answers(model, tokenizer, asks, max_new_tokens=40, top_k=1, batch_size=cfg.gen_batch_size)
    items = []
    for w in written:
        text = tokenizer.decode(w["answer_ids"], skip_special_tokens=True).strip().split("\n")[0].strip()
        if text.endswith("?") and 3 <= len(text.split()) <= 40:
            system = rng.choice(SYSTEMS) if rng.random() < cfg.system_share else None
            items.append({"category": "self_instruct", "messages": conversation(system, text)})
    return items


def read_teacher_cache(path: Path) -> list[dict[str, Any]]:
    """The teacher records a run saved in ``path``, read as data (``weights_only``: a pickled payload cannot run).

    Raises ``ValueError`` naming the file when it cannot be read that way or does not hold teacher records.
    """
    try:
        records = torch.load(path, weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable or foreign file is the same user-facing problem
        raise ValueError(f"{path}: not a teacher cache written by segmask adapt ({type(err).__name__}); "
                         "delete it or run without --resume") from None
    keys = {"category", "messages", "answer_ids", "topk_ids", "topk_logp"}
    if not isinstance(records, list) or not all(isinstance(r, dict) and keys <= r.keys() for r in records):
        raise ValueError(f"{path}: not a teacher cache written by segmask adapt (expected a list of records with "
                         f"{sorted(keys)}); delete it or run without --resume")
    return records


def build_teacher_cache(model: Any, tokenizer: Any, cfg: AdaptConfig) -> list[dict[str, Any]]:
    """The prompt mix with teacher answers (``output_dir/teacher.pt``, written each run; read back only under
    ``cfg.resume``, as data, see ``read_teacher_cache``)."""
    from .prompt_pool import follow_up, prompt_pool

    path = Path(cfg.output_dir) / TEACHER_FILE
    if cfg.resume and path.exists():
        return read_teacher_cache(path)
    rng = random.Random(cfg.seed)
    items = prompt_pool(cfg.prompts, seed=cfg.seed, data_dir=cfg.data_dir, system_share=cfg.system_share)
    if cfg.self_instruct:
        items += _self_instruct(model, tokenizer, cfg, rng)
    answers = teacher_answers(model, tokenizer, [it["messages"] for it in items], max_new_tokens=cfg.answer_tokens,
                              top_k=cfg.top_k, batch_size=cfg.gen_batch_size, progress=cfg.progress)
    records = [{**it, **ans} for it, ans in zip(items, answers)]
    chosen = [r for r in records if r["category"] != "math" and rng.random() < cfg.multi_turn]
    second = [{"category": f"multi_turn/{r['category']}",
               "messages": follow_up(r["messages"], tokenizer.decode(r["answer_ids"], skip_special_tokens=True)
                                     .strip(), rng)} for r in chosen]
    if second:
        answers = teacher_answers(model, tokenizer, [s["messages"] for s in second], max_new_tokens=cfg.answer_tokens,
                                  top_k=cfg.top_k, batch_size=cfg.gen_batch_size, progress=cfg.progress)
        records += [{**s, **a} for s, a in zip(second, answers)]
    records = [r for r in records if r["answer_ids"]]
    rng.shuffle(records)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(records, path)
    return records


def _budget_callback(budget: tuple[str, float] | None):
    from transformers import TrainerCallback

    class Budget(TrainerCallback):
        """Stops training (with a checkpoint) once this invocation spent its time or the run its tokens."""

        def on_train_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if budget is None:
                return
            kind, limit = budget
            spent = time.perf_counter() - self.start if kind == "seconds" else state.num_input_tokens_seen
            if spent >= limit:
                control.should_training_stop = True
                control.should_save = True

    return Budget()


def adapt(cfg: AdaptConfig, *, model: Any = None, tokenizer: Any = None) -> dict[str, Any]:
    """Run the adaptation; returns a summary (prompts by category, steps, KL, wall-clock, tokens/s, adapter folder).

    ``model``/``tokenizer`` may be given (a tiny test model); otherwise ``cfg.model`` is loaded (and
    ``cfg.init_adapter`` merged in). Raises ``ValueError`` for a tokenizer without a chat template or an attention
    backend that cannot take a mask.
    """
    from transformers import set_seed

    from ..hf.backend import check_backend
    from ..hf.hook import enable
    from .lora import add_lora

    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    check_run_folder(out, cfg.resume)
    set_seed(cfg.seed)
    model, tokenizer = start_model(cfg, model, tokenizer)
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"{cfg.model}: the tokenizer has no chat template; adapt distils chat answers and needs one")
    check_backend(model.config)
    start = time.perf_counter()
    records = build_teacher_cache(model, tokenizer, cfg)
    teacher_s = time.perf_counter() - start
    if not records:
        raise ValueError("the prompt pool gave no prompt with a teacher answer")
    categories: dict[str, int] = {}
    for r in records:
        categories[r["category"]] = categories.get(r["category"], 0) + 1
    if cfg.progress:
        print(f"teacher: {len(records)} answers ({teacher_s:.0f} s): {categories}", flush=True)
    set_seed(cfg.seed)
    model = enable(add_lora(model, cfg.lora))
    model.train()
    meta = segmask_config(mask="mas", prompt_form="chat", base_model=cfg.model, made_by="segmask adapt",
                          recipe=cfg.recipe())
    collator = DistillCollator(tokenizer.pad_token_id, cfg.early_weight, cfg.early_tokens)
    trainer, result, wall = run_trainer(model, cfg, DistillDataset(tokenizer, records), collator, meta,
                                        trainer_cls=distill_trainer(cfg, tokenizer, collator),
                                        callbacks=[_budget_callback(parse_budget(cfg.budget))])
    adapter = save_adapter(model, out / "adapter", mask="mas", prompt_form="chat", base_model=cfg.model,
                           dtype=cfg.save_dtype, made_by="segmask adapt", recipe=cfg.recipe())
    tokens = trainer.state.num_input_tokens_seen
    summary = {"prompts": len(records), "categories": categories, "teacher_s": round(teacher_s, 1),
               "steps": trainer.state.global_step, "train_loss": result.training_loss, "wall_s": round(wall, 1),
               "tokens_seen": tokens, "tokens_per_s": round(tokens / wall, 1) if wall > 0 else None,
               "adapter": str(adapter), "recipe": cfg.recipe()}
    (out / "adapt_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
