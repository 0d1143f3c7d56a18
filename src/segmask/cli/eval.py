"""``segmask eval``: commonsense benchmarks under MAS, causal or causal-repeat prefill, three protocols.

    segmask data                                                           # once: get the benchmark data
    segmask eval --tasks boolq,piqa --limit 100 --protocol loglik --out runs/a    # reads it (or --data-dir D)
    segmask eval --adapter out/mas/adapter --limit 200 --out runs/mas      # mask and prompt form from segmask.json
    segmask eval --protocol generate --num-beams 1 --mask causal ...      # greedy, causal prefill
    segmask eval --protocol choice --mask causal-repeat --layout oq ...   # option texts scored

Prints the per-task table (accuracy, Wilson 95% CI) and the pick distribution, and writes ``predictions.jsonl`` and
``summary.json`` under ``--out``. Compare two runs on the same examples with ``segmask compare``.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from ..core.recipe import BASE_MODEL, CHOICE_PROMPT_FORMS, DEFAULT_MODEL, EVAL_MASKS, Recipe, resolve_adapter
from ..eval.protocols import PROTOCOLS
from . import add_model_args
from .config_args import add_config_args


@dataclass
class EvalOptions:
    """What ``segmask eval`` runs, besides the model (``ModelOptions``): one flag per field."""

    data_dir: str | None = field(default=None, metadata={"help": (
        "folder of task folders holding test.json (LLM-Adapters format; default: $SEGMASK_DATA, else where "
        "`segmask data` writes, ~/.cache/segmask/data/commonsense)")})
    tasks: str = field(default="all", metadata={"help": "comma-separated task names, or 'all' tasks present in "
                                                        "--data-dir"})
    limit: int | None = field(default=None, metadata={"help": "examples per task: a fixed random subset (see --seed)"})
    seed: int = field(default=0, metadata={"help": "seed of the --limit subset"})
    protocol: str = field(default="generate", metadata={"choices": PROTOCOLS, "help": (
        "generate: beam search + first answer label (the paper); loglik: score each label; choice: score each "
        "option's text (lm-eval style)")})
    mask: str | None = field(default=None, metadata={"choices": EVAL_MASKS, "help": (
        "prefill mask (default: the adapter's segmask.json, else mas); causal-repeat: the question part twice, "
        "causal (a no-training baseline)")})
    prompt_form: str | None = field(default=None, metadata={"choices": CHOICE_PROMPT_FORMS, "help": (
        "prompt form (default: the adapter's segmask.json, else commonsense); qa: lm-eval's "
        "'Question: ...\\nAnswer:', protocol choice only")})
    layout: str | None = field(default=None, metadata={"help": (
        "prompt layout: data (the instruction as written) or the order of context c, question q and options o, "
        "e.g. oq (options first), qoc (context last) (default: the adapter's training layout when it trained on "
        "one, else data)")})
    system: str | None = field(default=None, metadata={"help": "system message for the chat prompt form"})
    batch_size: int = field(default=8, metadata={"help": "examples per forward pass"})
    num_beams: int = field(default=4, metadata={"help": "beams for --protocol generate (1 = greedy)"})
    max_new_tokens: int = field(default=32, metadata={"help": "answer tokens for --protocol generate"})
    out: str | None = field(default=None, metadata={"help": "folder for predictions.jsonl and summary.json"})
    resume: bool = field(default=False, metadata={"help": (
        "with --out: keep the tasks an earlier run with the same settings finished there (OUT/parts/TASK, written "
        "as each task ends) and run the rest")})
    progress: bool = field(default=True, metadata={"help": "show a progress bar",
                                                   "off_help": "hide the progress bar"})


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="benchmark accuracy (generate, loglik or choice) under MAS or causal prefill")
    add_model_args(p)
    add_config_args(p, EvalOptions)
    p.set_defaults(run=run)


def settings(args: argparse.Namespace, adapter: Recipe | None = None) -> dict:
    """Resolve mask, prompt form, layout, system message and base model from the flags and the adapter's
    segmask.json (``adapter``: ``resolve_adapter(args.adapter)`` when already read)."""
    from ..core.questions import normalize_layout

    if args.causal and args.mask not in (None, "causal"):
        raise ValueError(f"--causal contradicts --mask {args.mask}")
    recipe = (adapter or resolve_adapter(args.adapter)).choose("causal" if args.causal else args.mask,
                                                               args.prompt_form)
    mask, prompt_form = recipe.mask, recipe.prompt_form
    system = args.system if args.system is not None else recipe.training.get("system")
    trained = recipe.training.get("layout") or recipe.training.get("option_order")
    layout = normalize_layout(args.layout or (trained if trained and "," not in trained else "data"))
    # the MAS-ready default under MAS, the causally trained original under the causal masks
    model = args.model or recipe.base_model or (DEFAULT_MODEL if mask == "mas" else BASE_MODEL)
    return {"mask": mask, "prompt_form": prompt_form, "layout": layout, "system": system, "model": model}


def run(args: argparse.Namespace) -> int:
    from ..eval.run import evaluate, format_picks, format_summary
    from ..eval.tasks import default_data_dir, load_records, resolve_tasks
    from ..hf.models import load_model

    if args.resume and not args.out:
        raise ValueError("--resume continues the run in --out: give --out")
    adapter = resolve_adapter(args.adapter)  # its segmask.json, read once for the settings and the load
    chosen = settings(args, adapter)
    args.data_dir = args.data_dir or str(default_data_dir())
    for task in resolve_tasks(args.tasks, args.data_dir):  # a bad data file fails before the model loads
        load_records(task, args.data_dir, limit=args.limit, seed=args.seed)
    model, tokenizer = load_model(chosen["model"], dtype=args.dtype, attn_implementation=args.attn,
                                  device=args.device, adapter=args.adapter, recipe=adapter)
    summary = evaluate(
        model, tokenizer, args.tasks, args.data_dir, protocol=args.protocol, mask=chosen["mask"], limit=args.limit,
        seed=args.seed, batch_size=args.batch_size, num_beams=args.num_beams, max_new_tokens=args.max_new_tokens,
        prompt_form=chosen["prompt_form"], system=chosen["system"], layout=chosen["layout"],
        out_dir=args.out, progress=args.progress, resume=args.resume,
        meta={"model": chosen["model"], "adapter": args.adapter},
    )
    print(f"model {chosen['model']}" + (f" + adapter {args.adapter}" if args.adapter else "")
          + f"   protocol {args.protocol}   mask {chosen['mask']}   prompt {chosen['prompt_form']}"
          + f"   layout {chosen['layout']}")
    print(format_summary(summary))
    print(format_picks(summary))
    print(f"{summary['n_examples']} examples in {summary['seconds']:.1f} s ({summary['examples_per_s']:.2f} ex/s)"
          + (f"; wrote {args.out}/summary.json and predictions.jsonl" if args.out else ""))
    return 0
