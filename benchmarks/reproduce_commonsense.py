"""Reproduction: MAS vs causal LoRA fine-tuning of SmolLM2-135M-Instruct on commonsense reasoning (CPU-sized).

Trains a causal and a MAS adapter for every seed with the identical recipe and budget (same mixed examples, order,
seed, LoRA init; ``--mask`` is the only difference), evaluates the base model and every adapter on the test sets,
and writes ``docs/RESULTS.md`` with plots.

The headline protocol is ``choice`` (each option's text scored, see docs/eval.md); the adapters are trained with
``--answer-form text`` by default, so they learn exactly the continuation that choice scores. The label protocols
(``loglik``, ``generate``) are run too. Diagnostics (``--no-diagnostics`` skips them): the no-training repeat
baseline (base model, question twice, causal), lm-eval's ``qa`` prompt for the base model, and the option-order
diagnostic (options listed before the question) for the base model and every adapter.

    python benchmarks/reproduce_commonsense.py                       # everything: train + eval + report
    python benchmarks/reproduce_commonsense.py --list                 # the jobs it would run, and exit
    python benchmarks/reproduce_commonsense.py --seeds 42 --protocols choice --eval-limit 100 --no-diagnostics
    python benchmarks/reproduce_commonsense.py --stage report         # rewrite the report from finished runs

Stages (``--stage``): ``train`` (every arm x seed, plus the base-model evaluations alongside), ``eval`` (the
adapters), ``report`` (docs/RESULTS.md + PNGs), ``all``. Every job is a subprocess with one torch thread (on a
shared 2-core CPU one thread per process is ~4x faster than two), logging into ``OUT/logs``. Finished jobs (their
marker file exists) are skipped on rerun and a training job cut short continues from its last checkpoint
(``segmask train --resume``), so a long study spans several sittings by rerunning the same command. Layout:
``OUT/train-{arm}-s{seed}``, ``OUT/eval/{condition}``, ``OUT/timing.json`` (wall seconds per job, summed over
sittings).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "commonsense"
TASKS = ["boolq", "piqa", "social_i_qa", "winogrande", "ARC-Easy", "ARC-Challenge", "openbookqa"]
ARMS = ("causal", "mas")
PROTOCOLS = ("choice", "loglik", "generate")


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stage", default="all", choices=["train", "eval", "report", "all", "job"])
    p.add_argument("--list", action="store_true", help="print the training runs and evaluation conditions, and exit")
    p.add_argument("--out", default=str(ROOT / "runs" / "reproduce"))
    p.add_argument("--data-dir", default=str(DATA))
    p.add_argument("--seeds", default="42,43", help="training seeds, comma-separated: one causal + one MAS run each")
    p.add_argument("--answer-form", default="text", choices=["label", "text"],
                   help="training target: the option's text (what choice scores) or the data's label")
    p.add_argument("--train-examples", type=int, default=4000, help="mixed training rows per arm (one epoch)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--grad-accum", type=int, default=2)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--warmup-steps", type=int, default=50)
    p.add_argument("--save-steps", type=int, default=20, help="checkpoint every N steps (what --resume restarts from)")
    p.add_argument("--protocols", default=",".join(PROTOCOLS), help="comma-separated; choice is the headline")
    p.add_argument("--no-diagnostics", action="store_true", help="skip the repeat, qa and option-order conditions")
    p.add_argument("--eval-limit", type=int, default=0, help="examples per test set (fixed seeded subset; 0: all)")
    p.add_argument("--eval-batch-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=42, help="seed of the --eval-limit subset")
    p.add_argument("--parallel", type=int, default=2, help="jobs at a time")
    p.add_argument("--docs", default=str(ROOT / "docs"))
    p.add_argument("--demo-adapter", default=str(ROOT / "adapters" / "smollm2-135m-mas-commonsense"),
                   help="where the first seed's MAS adapter is copied in float16 for `make demo` (empty: skip)")
    p.add_argument("--report", default="RESULTS.md", help="report file name in --docs (plots take its stem)")
    p.add_argument("--notes", default=None, help="markdown file appended to the report's reading")
    p.add_argument("--checkpoint", type=int, default=None,
                   help="evaluate OUT/train-ARM-sSEED/checkpoint-N instead of the final adapter (a run cut short)")
    p.add_argument("--job", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.seeds = [int(s) for s in str(args.seeds).split(",") if s.strip()]
    args.protocols = [x.strip() for x in str(args.protocols).split(",") if x.strip()]
    unknown = [x for x in args.protocols if x not in PROTOCOLS]
    if unknown or not args.seeds:
        p.error(f"--protocols takes {PROTOCOLS} (got {unknown}) and --seeds at least one seed")
    return args


@dataclass(frozen=True)
class Condition:
    """One evaluation: the base model (``arm`` None) or an arm's adapter of one seed, under one setting."""

    arm: str | None
    seed: int | None
    mask: str
    protocol: str
    option_order: str = "after"
    prompt_form: str = "commonsense"
    diagnostic: bool = False


def conditions(args) -> dict[str, Condition]:
    """Every evaluation condition, by name (the eval folder's name)."""
    out: dict[str, Condition] = {}
    for protocol in args.protocols:
        if protocol != "generate":  # an untuned model rarely writes a label (docs/eval.md)
            for mask in ARMS:
                out[f"base-{mask}-{protocol}"] = Condition(None, None, mask, protocol)
    if "choice" in args.protocols:
        out["base-causal-repeat-choice"] = Condition(None, None, "causal-repeat", "choice", diagnostic=True)
        out["base-causal-repeat-choice-qa"] = Condition(None, None, "causal-repeat", "choice", prompt_form="qa",
                                                        diagnostic=True)
        for mask in ARMS:
            out[f"base-{mask}-choice-qa"] = Condition(None, None, mask, "choice", prompt_form="qa", diagnostic=True)
            out[f"base-{mask}-choice-before"] = Condition(None, None, mask, "choice", "before", diagnostic=True)
    for seed in args.seeds:
        for arm in ARMS:
            for protocol in args.protocols:
                out[f"{arm}-s{seed}-{protocol}"] = Condition(arm, seed, arm, protocol)
            if "choice" in args.protocols:
                out[f"{arm}-s{seed}-choice-before"] = Condition(arm, seed, arm, "choice", "before", diagnostic=True)
    return {name: c for name, c in out.items() if not (c.diagnostic and args.no_diagnostics)}


def train_dir(args, arm: str, seed: int) -> Path:
    return Path(args.out) / f"train-{arm}-s{seed}"


def train_command(args, arm: str, seed: int) -> list[str]:
    """``segmask train`` for one arm and seed; ``--resume`` when an earlier sitting left a checkpoint."""
    files = [str(p) for p in sorted(Path(args.data_dir).glob("*/train.json"))]
    out = train_dir(args, arm, seed)
    cmd = [sys.executable, "-m", "segmask", "train", *files, "--out", str(out), "--mask", arm,
           "--answer-form", args.answer_form, "--max-examples", str(args.train_examples),
           "--batch-size", str(args.batch_size), "--grad-accum", str(args.grad_accum), "--lr", str(args.lr),
           "--warmup-steps", str(args.warmup_steps), "--seed", str(seed), "--logging-steps", "2",
           "--save-steps", str(args.save_steps), "--threads", "1", "--quiet"]
    return cmd + (["--resume"] if any(out.glob("checkpoint-*")) else [])


def adapter_path(args, arm: str, seed: int) -> str:
    """The adapter folder of ``arm`` and ``seed``: the final one, or ``checkpoint-N`` with ``--checkpoint N``."""
    leaf = f"checkpoint-{args.checkpoint}" if args.checkpoint else "adapter"
    return str(train_dir(args, arm, seed) / leaf)


def eval_job(args) -> None:
    """Run one evaluation (``--job NAME``) in this process."""
    import torch

    torch.set_num_threads(1)
    from segmask.eval import evaluate
    from segmask.models import load_model

    c = conditions(args)[args.job]
    adapter = adapter_path(args, c.arm, c.seed) if c.arm else None
    model, tok = load_model(adapter=adapter)
    evaluate(model, tok, TASKS, args.data_dir, protocol=c.protocol, mask=c.mask, limit=args.eval_limit or None,
             seed=args.seed, batch_size=args.eval_batch_size, num_beams=1, max_new_tokens=16,
             prompt_form=c.prompt_form, option_order=c.option_order, out_dir=f"{args.out}/eval/{args.job}",
             progress=False, meta={"adapter": adapter, "condition": args.job, "train_seed": c.seed})


def eval_command(args, name: str) -> list[str]:
    cmd = [sys.executable, __file__, "--stage", "job", "--job", name, "--out", args.out, "--data-dir", args.data_dir,
           "--eval-limit", str(args.eval_limit), "--eval-batch-size", str(args.eval_batch_size),
           "--seed", str(args.seed), "--seeds", ",".join(map(str, args.seeds)),
           "--protocols", ",".join(args.protocols)]
    return cmd + (["--checkpoint", str(args.checkpoint)] if args.checkpoint else [])


def run_jobs(args, jobs: dict[str, tuple[list[str], Path]], parallel: int) -> dict[str, float]:
    """Run commands ``parallel`` at a time (skipping those whose marker file exists); name -> wall seconds."""
    logs = Path(args.out) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    pending = [(n, c) for n, (c, done) in jobs.items() if not done.exists()]
    running: dict[str, tuple[subprocess.Popen, float]] = {}
    walls: dict[str, float] = {}
    while pending or running:
        while pending and len(running) < parallel:
            name, cmd = pending.pop(0)
            print(f"{time.strftime('%H:%M:%S')} start {name}", flush=True)
            log = open(logs / f"{name}.log", "a")
            running[name] = (subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT),
                             time.time())
        time.sleep(5)
        for name, (proc, start) in list(running.items()):
            if proc.poll() is not None:
                walls[name] = time.time() - start
                del running[name]
                print(f"{time.strftime('%H:%M:%S')} {name} exit {proc.returncode} after {walls[name]:.0f} s",
                      flush=True)
    timing = Path(args.out) / "timing.json"
    old = json.loads(timing.read_text()) if timing.exists() else {}
    for name, wall in walls.items():  # a job that ran in several sittings (cut short, resumed) sums them
        old[name] = old.get(name, 0.0) + wall
    timing.write_text(json.dumps(old, indent=1) + "\n")
    return walls


def eval_jobs(args, base: bool) -> dict[str, tuple[list[str], Path]]:
    return {n: (eval_command(args, n), Path(args.out) / "eval" / n / "summary.json")
            for n, c in conditions(args).items() if (c.arm is None) == base}


def stage_train(args) -> None:
    jobs = {f"train-{arm}-s{seed}": (train_command(args, arm, seed), train_dir(args, arm, seed) / "train_summary.json")
            for seed in args.seeds for arm in ARMS}
    run_jobs(args, {**jobs, **eval_jobs(args, base=True)}, parallel=args.parallel)


def stage_eval(args) -> None:
    run_jobs(args, eval_jobs(args, base=False), parallel=args.parallel)
    mas = Path(adapter_path(args, "mas", args.seeds[0]))
    if args.demo_adapter and mas.exists():
        export_demo_adapter(mas, Path(args.demo_adapter))


def export_demo_adapter(src: Path, dst: Path) -> None:
    """Copy the MAS adapter with float16 weights (half the size) for ``make demo``."""
    import torch
    from safetensors.torch import load_file, save_file

    dst.mkdir(parents=True, exist_ok=True)
    for f in ("adapter_config.json", "segmask.json"):
        shutil.copy(src / f, dst / f)
    weights = {k: v.to(torch.float16).contiguous() for k, v in load_file(src / "adapter_model.safetensors").items()}
    save_file(weights, dst / "adapter_model.safetensors", metadata={"format": "pt"})
    cfg = json.loads((dst / "segmask.json").read_text())
    cfg["saved_dtype"] = "float16"
    (dst / "segmask.json").write_text(json.dumps(cfg, indent=2) + "\n")


def print_plan(args) -> None:
    for seed in args.seeds:
        for arm in ARMS:
            print(f"train-{arm}-s{seed}: {' '.join(train_command(args, arm, seed)[1:])}")
    for name, c in conditions(args).items():
        print(f"eval {name}: {c}")


def main(argv=None) -> int:
    args = parse(argv)
    if args.stage == "job":
        eval_job(args)
        return 0
    if args.list:
        print_plan(args)
        return 0
    start = time.time()
    if args.stage in ("train", "all"):
        stage_train(args)
    if args.stage in ("eval", "all"):
        stage_eval(args)
    if args.stage in ("report", "all"):
        from report_commonsense import write_report

        write_report(args, conditions(args))
    print(f"done in {time.time() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
