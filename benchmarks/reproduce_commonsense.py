"""Reproduction: MAS vs causal LoRA fine-tuning of SmolLM2-135M-Instruct on commonsense reasoning (CPU-sized).

Trains a causal and a MAS adapter with the identical recipe and budget (same mixed examples, order, seed, LoRA
init; ``--mask`` is the only difference), evaluates the base model under both masks and each adapter under its own
mask on a fixed random subset of every test set, and writes ``docs/RESULTS.md`` with plots.

    python benchmarks/reproduce_commonsense.py                       # everything: train + eval + report
    python benchmarks/reproduce_commonsense.py --stage report         # rewrite the report from finished runs

Stages (``--stage``): ``train`` (both arms, plus the base-model evaluations alongside), ``eval`` (the adapters),
``report`` (docs/RESULTS.md + PNGs), ``all``. Every job is a subprocess with one torch thread (on a shared 2-core
CPU one thread per process is ~4x faster than two), logging into ``OUT/logs``; finished jobs are skipped on rerun.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "commonsense"
TASKS = ["boolq", "piqa", "social_i_qa", "winogrande", "ARC-Easy", "ARC-Challenge", "openbookqa"]
ARMS = ("causal", "mas")


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stage", default="all", choices=["train", "eval", "report", "all", "job"])
    p.add_argument("--out", default=str(ROOT / "runs" / "reproduce"))
    p.add_argument("--data-dir", default=str(DATA))
    p.add_argument("--train-examples", type=int, default=4000, help="mixed training rows per arm (one epoch)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--grad-accum", type=int, default=2)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--warmup-steps", type=int, default=50)
    p.add_argument("--eval-limit", type=int, default=100, help="examples per test set (fixed seeded subset; 0: all)")
    p.add_argument("--eval-batch-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--docs", default=str(ROOT / "docs"))
    p.add_argument("--demo-adapter", default=str(ROOT / "adapters" / "smollm2-135m-mas-commonsense"),
                   help="where the MAS adapter is copied in float16 for `make demo` (empty: skip)")
    p.add_argument("--report", default="RESULTS.md", help="report file name in --docs (plots take its stem)")
    p.add_argument("--notes", default=None, help="markdown file appended to the report's reading")
    p.add_argument("--checkpoint", type=int, default=None,
                   help="evaluate OUT/train-ARM/checkpoint-N instead of the final adapter (a run cut short)")
    p.add_argument("--job", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


# name -> (adapter arm or None, mask, protocol)
EVALS = {
    "base-causal-loglik": (None, "causal", "loglik"),
    "base-mas-loglik": (None, "mas", "loglik"),
    "causal-lora-generate": ("causal", "causal", "generate"),
    "mas-lora-generate": ("mas", "mas", "generate"),
    "causal-lora-loglik": ("causal", "causal", "loglik"),
    "mas-lora-loglik": ("mas", "mas", "loglik"),
}


def train_command(args, arm: str) -> list[str]:
    files = [str(p) for p in sorted(Path(args.data_dir).glob("*/train.json"))]
    return [sys.executable, "-m", "segmask", "train", *files, "--out", f"{args.out}/train-{arm}", "--mask", arm,
            "--max-examples", str(args.train_examples), "--batch-size", str(args.batch_size),
            "--grad-accum", str(args.grad_accum), "--lr", str(args.lr), "--warmup-steps", str(args.warmup_steps),
            "--seed", str(args.seed), "--logging-steps", "2", "--save-steps", "20", "--threads", "1", "--quiet"]


def eval_job(args) -> None:
    """Run one evaluation (``--job NAME``) in this process."""
    import torch

    torch.set_num_threads(1)
    from segmask.eval import evaluate
    from segmask.models import load_model

    arm, mask, protocol = EVALS[args.job]
    adapter = adapter_path(args, arm) if arm else None
    model, tok = load_model(adapter=adapter)
    evaluate(model, tok, TASKS, args.data_dir, protocol=protocol, mask=mask, limit=args.eval_limit or None,
             seed=args.seed,
             batch_size=args.eval_batch_size, num_beams=1, max_new_tokens=16, out_dir=f"{args.out}/eval/{args.job}",
             progress=False, meta={"adapter": adapter, "condition": args.job})


def adapter_path(args, arm: str) -> str:
    """The adapter folder of ``arm``: the final one, or ``checkpoint-N`` with ``--checkpoint N``."""
    leaf = f"checkpoint-{args.checkpoint}" if args.checkpoint else "adapter"
    return f"{args.out}/train-{arm}/{leaf}"


def eval_command(args, name: str) -> list[str]:
    cmd = [sys.executable, __file__, "--stage", "job", "--job", name, "--out", args.out, "--data-dir", args.data_dir,
           "--eval-limit", str(args.eval_limit), "--eval-batch-size", str(args.eval_batch_size),
           "--seed", str(args.seed)]
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
            log = open(logs / f"{name}.log", "w")
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
    timing.write_text(json.dumps({**old, **walls}, indent=1) + "\n")
    return walls


def stage_train(args) -> None:
    jobs = {f"train-{arm}": (train_command(args, arm), Path(args.out) / f"train-{arm}" / "train_summary.json")
            for arm in ARMS}
    for name in ("base-causal-loglik", "base-mas-loglik"):
        jobs[name] = (eval_command(args, name), Path(args.out) / "eval" / name / "summary.json")
    run_jobs(args, jobs, parallel=4)


def stage_eval(args) -> None:
    names = [n for n, (arm, _, _) in EVALS.items() if arm]
    run_jobs(args, {n: (eval_command(args, n), Path(args.out) / "eval" / n / "summary.json") for n in names},
             parallel=2)
    if args.demo_adapter and Path(adapter_path(args, "mas")).exists():
        export_demo_adapter(Path(adapter_path(args, "mas")), Path(args.demo_adapter))


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


def main(argv=None) -> int:
    args = parse(argv)
    if args.stage == "job":
        eval_job(args)
        return 0
    start = time.time()
    if args.stage in ("train", "all"):
        stage_train(args)
    if args.stage in ("eval", "all"):
        stage_eval(args)
    if args.stage in ("report", "all"):
        from report_commonsense import write_report

        write_report(args)
    print(f"done in {time.time() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
