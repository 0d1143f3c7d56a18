"""The commonsense study's plan: its settings, conditions (what each evaluation measures) and job queue.

Shared by ``reproduce_commonsense.py`` (runs the queue) and ``report_commonsense.py`` (reads what finished); see the
former for the study itself.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from segmask.bench import Job, matches
from segmask.core.recipe import BASE_MODEL, MAS_MODEL
from segmask.eval.protocols import PROTOCOLS
from segmask.eval.tasks import SHARED_DATA

ROOT = Path(__file__).resolve().parents[1]
TASKS = ["boolq", "piqa", "social_i_qa", "winogrande", "ARC-Easy", "ARC-Challenge", "openbookqa"]
"""The study's tasks: the commonsense mixture without hellaswag (its 10,042 test examples cost more CPU than the
seven others together)."""
EVAL_ORDER = ["openbookqa", "winogrande", "ARC-Challenge", "piqa", "social_i_qa", "ARC-Easy", "boolq"]
"""Cheapest first, so an evaluation cut short has finished as many tasks as it could (boolq's passages are long)."""
ARMS = {"causal": ("causal", None), "mas": ("mas", None), "mas-ready": ("mas", MAS_MODEL)}
"""arm -> (training mask, starting model; None: ``segmask train``'s default, the published base model)."""
BASE, READY = BASE_MODEL, MAS_MODEL
"""The published model (the base conditions) and the MAS-ready one (the mas-ready arm's start)."""

ARM_LABEL = {"causal": "causal-LoRA", "mas": "MAS-LoRA", "mas-ready": "MAS-LoRA from MAS-ready"}


def selected(args, name: str) -> bool:
    """Whether job or condition ``name`` matches ``--only`` (every name does without it)."""
    return matches(name, args.only)


def parse(argv=None, description: str | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stage", default="run", choices=["run", "report", "all"],
                   help="run: the job queue; report: docs/RESULTS-commonsense.md from what finished; all: both")
    p.add_argument("--list", action="store_true", help="print the jobs in priority order with their state, and exit")
    p.add_argument("--only", default=None, help="comma-separated job names or globs to run (their needs must be done)")
    p.add_argument("--out", default=str(ROOT / "runs" / "reproduce"))
    p.add_argument("--data-dir", default=str(SHARED_DATA))
    p.add_argument("--seeds", default="42,43", help="training seeds, comma-separated")
    p.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated, of {tuple(ARMS)}")
    p.add_argument("--answer-form", default="text", choices=["label", "text"],
                   help="training target: the option's text (what choice scores) or the data's label")
    p.add_argument("--train-examples", type=int, default=4000, help="mixed training rows per arm (one epoch)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--grad-accum", type=int, default=2)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--warmup-steps", type=int, default=50)
    p.add_argument("--save-steps", type=int, default=20, help="checkpoint every N steps (what --resume restarts from)")
    p.add_argument("--curve-steps", default="20,60,100,200,300,400",
                   help="optimizer steps whose adapters are kept and evaluated for the accuracy curve (multiples of "
                        "--save-steps; the final adapter and the base model are the curve's ends)")
    p.add_argument("--curve-limit", type=int, default=100, help="examples per test set for the curve's evaluations")
    p.add_argument("--curve-seeds", default=None, help="seeds whose runs get the curve (default: the first seed)")
    p.add_argument("--protocols", default="choice,loglik,generate",
                   help="comma-separated, in priority order; choice is the headline")
    p.add_argument("--no-diagnostics", action="store_true", help="skip the repeat, qa and layout conditions")
    p.add_argument("--eval-limit", type=int, default=0, help="examples per test set (fixed seeded subset; 0: all)")
    p.add_argument("--label-limit", type=int, default=100,
                   help="examples per test set for the label protocols (loglik, generate; 0: all): at 135M they "
                        "measure label preference, not the tasks (docs/eval.md), so a subset shows what they pick")
    p.add_argument("--eval-batch-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=42, help="seed of the --eval-limit / --curve-limit subsets")
    p.add_argument("--parallel", type=int, default=2, help="jobs at a time")
    p.add_argument("--docs", default=str(ROOT / "docs"))
    p.add_argument("--adapters", default=str(ROOT / "adapters"),
                   help="where finished adapters are copied in float16 as commonsense-ARM-sSEED (empty: skip)")
    p.add_argument("--report", default="RESULTS-commonsense.md",
                   help="report file name in --docs (plots take its stem)")
    p.add_argument("--notes", default=None, help="markdown file appended to the report's reading")
    args = p.parse_args(argv)
    args.seeds = [int(s) for s in str(args.seeds).split(",") if s.strip()]
    args.arms = [a.strip() for a in str(args.arms).split(",") if a.strip()]
    args.curve_steps = [int(s) for s in str(args.curve_steps).split(",") if s.strip()]
    args.curve_seeds = ([int(s) for s in args.curve_seeds.split(",") if s.strip()] if args.curve_seeds
                        else args.seeds[:1])
    args.protocols = [x.strip() for x in str(args.protocols).split(",") if x.strip()]
    unknown = [x for x in args.protocols if x not in PROTOCOLS] + [a for a in args.arms if a not in ARMS]
    if unknown or not args.seeds or "causal" not in args.arms:
        p.error(f"--protocols takes {PROTOCOLS}, --arms {tuple(ARMS)} with causal among them (got {unknown}), "
                "--seeds at least one seed")
    if any(s % args.save_steps for s in args.curve_steps):
        p.error(f"--curve-steps {args.curve_steps} must be multiples of --save-steps {args.save_steps}")
    return args


@dataclass(frozen=True)
class Condition:
    """One evaluation: the base model (``arm`` None) or an arm's adapter of one seed (at ``step``; None: final)."""

    arm: str | None
    seed: int | None
    mask: str
    protocol: str
    layout: str = "after"
    prompt_form: str = "commonsense"
    diagnostic: bool = False
    step: int | None = None
    limit: int | None = None
    model: str = BASE


def train_dir(args, arm: str, seed: int) -> Path:
    return Path(args.out) / f"train-{arm}-s{seed}"


def adapter_path(args, c: Condition) -> Path | None:
    """The adapter a condition evaluates: final, a curve snapshot, or None for the base model."""
    if c.arm is None:
        return None
    folder = train_dir(args, c.arm, c.seed)
    return folder / "snapshots" / f"step-{c.step}" if c.step else folder / "adapter"


def train_command(args, arm: str, seed: int) -> list[str]:
    """``segmask train`` for one arm and seed; ``--resume`` when an earlier sitting left a checkpoint."""
    files = [str(p) for p in sorted(Path(args.data_dir).glob("*/train.json"))]
    out = train_dir(args, arm, seed)
    mask, model = ARMS[arm]
    cmd = [sys.executable, "-m", "segmask", "train", *files, "--out", str(out), "--mask", mask,
           *(["--model", model] if model else []),
           "--answer-form", args.answer_form, "--max-examples", str(args.train_examples),
           "--batch-size", str(args.batch_size), "--grad-accum", str(args.grad_accum), "--lr", str(args.lr),
           "--warmup-steps", str(args.warmup_steps), "--seed", str(seed), "--logging-steps", "2",
           "--save-steps", str(args.save_steps), "--threads", "1", "--quiet"]
    return cmd  # the queue adds --resume when an earlier sitting left a checkpoint


def conditions(args) -> dict[str, Condition]:
    """Every evaluation condition by name (its folder under OUT/eval), in priority order."""
    out: dict[str, Condition] = {}
    first = args.seeds[0]
    pair = [a for a in ("causal", "mas") if a in args.arms]
    if "choice" in args.protocols:
        out.update({f"{arm}-s{first}-choice": Condition(arm, first, ARMS[arm][0], "choice") for arm in pair})
        out.update({f"base-{mask}-choice": Condition(None, None, mask, "choice") for mask in ("causal", "mas")})
        if "mas-ready" in args.arms:  # the mas-ready arm's step 0, on the curve's subset
            out["ready-mas-choice"] = Condition(None, None, "mas", "choice", diagnostic=True, limit=args.curve_limit,
                                                model=READY)
        for seed in args.curve_seeds:
            for step in args.curve_steps:
                out.update({f"{arm}-s{seed}-step{step}-choice": Condition(
                    arm, seed, ARMS[arm][0], "choice", step=step, limit=args.curve_limit, diagnostic=True)
                    for arm in args.arms})
        out.update({f"{arm}-s{seed}-choice": Condition(arm, seed, ARMS[arm][0], "choice")
                    for seed in args.seeds for arm in args.arms})
        out["base-causal-repeat-choice"] = Condition(None, None, "causal-repeat", "choice", diagnostic=True)
        for mask in ("causal", "mas"):
            out[f"base-{mask}-choice-before"] = Condition(None, None, mask, "choice", "before", diagnostic=True)
        out.update({f"{arm}-s{seed}-choice-before": Condition(arm, seed, ARMS[arm][0], "choice", "before",
                                                              diagnostic=True)
                    for seed in args.seeds for arm in args.arms})
        for mask in ("causal", "mas", "causal-repeat"):
            out[f"base-{mask}-choice-qa"] = Condition(None, None, mask, "choice", prompt_form="qa", diagnostic=True)
    for protocol in [p for p in args.protocols if p != "choice"]:
        limit = args.label_limit or None
        if protocol == "loglik":  # an untuned model rarely writes a label, so no base generate (docs/eval.md)
            out.update({f"base-{mask}-loglik": Condition(None, None, mask, "loglik", limit=limit)
                        for mask in ("causal", "mas")})
        out.update({f"{arm}-s{seed}-{protocol}": Condition(arm, seed, ARMS[arm][0], protocol, limit=limit)
                    for seed in args.seeds for arm in args.arms})
    if "mas-ready" in args.arms:  # its final choice evaluation right after its training, before the other seeds
        names = list(out)
        key = f"mas-ready-s{first}-choice"
        if key in out:
            names.remove(key)
            names.insert(names.index("base-mas-choice") + 1, key)
        out = {n: out[n] for n in names}
    return {n: c for n, c in out.items() if not (c.diagnostic and args.no_diagnostics and c.step is None)}


def eval_command(args, name: str) -> list[str]:
    """``segmask eval`` of condition ``name`` into ``OUT/eval/NAME``, cheapest task first; ``--resume`` keeps the
    tasks an earlier sitting finished (``OUT/eval/NAME/parts``)."""
    c = conditions(args)[name]
    adapter = adapter_path(args, c)
    limit = c.limit or args.eval_limit or None
    return [sys.executable, "-m", "segmask", "eval", "--data-dir", str(args.data_dir), "--tasks", ",".join(EVAL_ORDER),
            "--protocol", c.protocol, "--mask", c.mask, "--prompt-form", c.prompt_form, "--layout", c.layout,
            *(["--limit", str(limit)] if limit else []), "--seed", str(args.seed),
            "--batch-size", str(args.eval_batch_size), "--num-beams", "1", "--max-new-tokens", "16",
            *(["--adapter", str(adapter)] if adapter else ["--model", c.model]),
            "--out", str(Path(args.out) / "eval" / name), "--resume", "--no-progress"]


def jobs(args) -> list[Job]:
    """The queue in priority order: each training just before the first evaluation that needs it."""
    out = Path(args.out)
    # a training is done once its adapter is (segmask.json is written last), as it is for a committed adapter linked in
    trains = {(arm, seed): Job(f"train-{arm}-s{seed}", tuple(train_command(args, arm, seed)),
                               train_dir(args, arm, seed) / "adapter" / "segmask.json",
                               resume=train_dir(args, arm, seed))
              for seed in args.seeds for arm in args.arms}
    queue: list[Job] = []
    for name, c in conditions(args).items():
        needs: tuple[Path, ...] = ()
        if c.arm is not None:
            train = trains[(c.arm, c.seed)]
            if train not in queue:
                queue.append(train)
            needs = (train.marker,)
        queue.append(Job(name, tuple(eval_command(args, name)), out / "eval" / name / "summary.json", needs))
    return queue + [t for t in trains.values() if t not in queue]


def merge_parts(folder: Path) -> tuple[list[dict], float, list[str]]:
    """(prediction rows, seconds, tasks) of the tasks an evaluation has finished so far (``folder/parts``)."""
    from segmask.eval import load_run

    rows, seconds, done = [], 0.0, []
    for task in TASKS:
        if (folder / "parts" / task / "summary.json").exists():
            summary, part_rows = load_run(folder / "parts" / task)
            rows += part_rows
            seconds += summary["seconds"]
            done.append(task)
    return rows, seconds, done


def diagnostic_pairs(args) -> list[tuple[str, str, str]]:
    """The (title, A, B) comparisons of the report's diagnostic table."""
    pairs = [("base: MAS prefill vs causal", "base-causal-choice", "base-mas-choice"),
             ("base: repeat baseline vs causal", "base-causal-choice", "base-causal-repeat-choice"),
             ("base: MAS vs repeat baseline", "base-causal-repeat-choice", "base-mas-choice"),
             ("base, qa prompt: MAS vs causal", "base-causal-choice-qa", "base-mas-choice-qa"),
             ("base, qa prompt: MAS vs repeat", "base-causal-repeat-choice-qa", "base-mas-choice-qa"),
             ("MAS-ready model (no study training) vs base causal", "base-causal-choice", "ready-mas-choice"),
             ("base, options before the question: MAS vs causal", "base-causal-choice-before",
              "base-mas-choice-before"),
             ("base causal: options before vs after", "base-causal-choice", "base-causal-choice-before"),
             ("base MAS: options before vs after", "base-mas-choice", "base-mas-choice-before")]
    for seed in args.seeds:  # what the study's training adds to the model each arm starts from
        pairs.append((f"causal-LoRA s{seed} vs its start (base model, causal)", "base-causal-choice",
                      f"causal-s{seed}-choice"))
        if "mas-ready" in args.arms:
            pairs.append((f"{ARM_LABEL['mas-ready']} s{seed} vs its start (MAS-ready model)", "ready-mas-choice",
                          f"mas-ready-s{seed}-choice"))
    for seed in args.seeds:
        for arm in args.arms:
            pairs.append((f"{ARM_LABEL[arm]} s{seed}: options before vs after", f"{arm}-s{seed}-choice",
                          f"{arm}-s{seed}-choice-before"))
        pairs.append((f"s{seed}, options before the question: MAS-LoRA vs causal-LoRA", f"causal-s{seed}-choice-before",
                      f"mas-s{seed}-choice-before"))
    for protocol in ("loglik", "generate"):
        for seed in args.seeds:
            pairs.append((f"s{seed}, {protocol} (labels): MAS-LoRA vs causal-LoRA", f"causal-s{seed}-{protocol}",
                          f"mas-s{seed}-{protocol}"))
    pairs.append(("base, loglik (labels): MAS vs causal", "base-causal-loglik", "base-mas-loglik"))
    return pairs


def recipe_lines(out: Path, args, timing: dict) -> list[str]:
    """The report's recipe section: the shared recipe and each finished training's steps, time and loss."""
    lines, recipe, kept = [], None, []
    for seed in args.seeds:
        for arm in args.arms:
            folder = out / f"train-{arm}-s{seed}"
            if (folder / "train_summary.json").exists():
                t = json.loads((folder / "train_summary.json").read_text())
                lines.append(f"- `train-{arm}-s{seed}`: {t['steps']} steps, {t['tokens_seen']:,} tokens, "
                             f"{t['wall_s'] / 60:.0f} min of training ({t['tokens_per_s']} tokens/s, one thread), "
                             f"mean train loss {t['train_loss']:.3f}; rows kept {t['data']['kept']}, dropped over "
                             f"the cutoff {t['data']['dropped']}.")
                recipe = t["recipe"]
            elif (folder / "adapter" / "segmask.json").exists():  # an adapter kept without its training's output
                kept.append(folder.name)
                recipe = recipe or json.loads((folder / "adapter" / "segmask.json").read_text())["recipe"]
    if kept:
        lines.append("- " + ", ".join(f"`{k}`" for k in kept) + ": evaluated from the adapter alone (its training "
                     "summary and loss curve are not in this output folder); recipe from its `segmask.json`.")
    if lines:
        lora = recipe["lora"]
        lines[:0] = [f"- Recipe (every arm and seed): {recipe['max_examples']} rows drawn by a seeded shuffle of the "
                     "mixed train sets " + ", ".join(Path(d).parent.name for d in recipe["data"]) + ", one pass; "
                     f"prompt form `{recipe['prompt_form']}`, answer form `{recipe['answer_form']}` (the target is "
                     f"\"the correct answer is <{'option text' if recipe['answer_form'] == 'text' else 'label'}>\"), "
                     f"cutoff {recipe['cutoff']}; LoRA r={lora['r']}, "
                     f"alpha={lora['alpha']}, dropout {lora['dropout']}, {'+'.join(lora['target_modules'])}; AdamW "
                     f"lr {recipe['lr']}, {recipe['warmup_steps']} warmup steps, linear decay; micro batch "
                     f"{recipe['batch_size']} × {recipe['grad_accum']}; loss on answer tokens only; float32, sdpa.",
                     "- Within a seed the arms share rows, order, seed and LoRA init: `--mask` (and, for mas-ready, "
                     "the starting weights `smollm2-135m-mas`) is the only difference."]
    if timing:
        lines.append("- Wall-clock per job (minutes, summed over sittings; one thread each, two jobs at a time on "
                     "the 2-core CPU): " + ", ".join(f"{k} {v / 60:.0f}" for k, v in timing.items()) + ".")
    return lines or ["(no training finished yet)"]
