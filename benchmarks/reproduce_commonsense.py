"""The MAS vs causal study: LoRA fine-tuning of SmolLM2-135M-Instruct on commonsense reasoning (CPU-sized).

Arms (``--arms``): ``causal`` and ``mas`` start from the published model; ``mas-ready`` is the MAS arm started from
the MAS-ready model (``smollm2-135m-mas``, made by ``segmask adapt``). Every arm of a seed uses the identical recipe
and budget (same mixed rows, order, seed, LoRA init): the mask (and, for mas-ready, the starting weights) is the
only difference. Each adapter is evaluated on every example of the 7 test sets (6,189) with the ``choice``
protocol (each option's text scored, the headline; docs/eval.md); the label protocols (``loglik``, ``generate``),
the base model under each mask, the repeat baseline (question twice, causal), lm-eval's ``qa`` prompt and the
layout diagnostic (options before the question) are further jobs; the label protocols run on a fixed subset
(``--label-limit`` per task), the rest on every example. Accuracy against training steps comes from
adapter snapshots (``--curve-steps``) evaluated on a fixed subset (``--curve-limit`` per task).

    python benchmarks/reproduce_commonsense.py                 # run every job not yet done, in priority order
    python benchmarks/reproduce_commonsense.py --list          # the jobs, in order, with their state
    python benchmarks/reproduce_commonsense.py --only 'causal-s42-choice,mas-s42-choice'
    python benchmarks/reproduce_commonsense.py --stage report  # rewrite docs/RESULTS-commonsense.md from what finished

The jobs form one queue in priority order (the headline pair first: seed 1's causal and MAS training, then their
choice evaluations, then the base model, the accuracy curve, the mas-ready arm, the other seeds, diagnostics and
label protocols); ``--parallel`` jobs run at a time, each a subprocess with one torch thread (on a shared 2-core
CPU one thread per process is ~4x faster than two), logging into ``OUT/logs``. A job starts once the training it
needs has finished. Everything resumes: finished jobs (marker file) are skipped, a training cut short continues
from its last checkpoint (``segmask train --resume``), an evaluation keeps every finished task (``OUT/eval/NAME/
parts``). So a study that needs more CPU hours than one sitting is the same command rerun. ``OUT/timing.json``
holds the wall seconds per job, summed over sittings. Finished adapters are copied in float16 to ``adapters/
commonsense-ARM-sSEED`` with data paths relative to the data folder.

``OUT`` lives on the machine that ran the jobs. ``benchmarks/outcomes.py export`` keeps each finished evaluation's
per-example picks in ``docs/outcomes`` and ``restore`` rebuilds the run folders from them on a new machine, so the
report can be regenerated there; with the committed adapters linked as ``OUT/train-ARM-sSEED/adapter``, the queue
then continues where it was.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "commonsense"
TASKS = ["boolq", "piqa", "social_i_qa", "winogrande", "ARC-Easy", "ARC-Challenge", "openbookqa"]
EVAL_ORDER = ["openbookqa", "winogrande", "ARC-Challenge", "piqa", "social_i_qa", "ARC-Easy", "boolq"]
"""Cheapest first, so an evaluation cut short has finished as many tasks as it could (boolq's passages are long)."""
ARMS = {"causal": ("causal", None), "mas": ("mas", None), "mas-ready": ("mas", "smollm2-135m-mas")}
"""arm -> (training mask, starting model; None: ``segmask train``'s default, the published base model)."""
PROTOCOLS = ("choice", "loglik", "generate")
BASE, READY = "smollm2-135m-instruct", "smollm2-135m-mas"
"""The published model (the base conditions) and the MAS-ready one (the mas-ready arm's start)."""


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stage", default="run", choices=["run", "report", "all", "job"],
                   help="run: the job queue; report: docs/RESULTS-commonsense.md from what finished; all: both")
    p.add_argument("--list", action="store_true", help="print the jobs in priority order with their state, and exit")
    p.add_argument("--only", default=None, help="comma-separated job names or globs to run (their needs must be done)")
    p.add_argument("--out", default=str(ROOT / "runs" / "reproduce"))
    p.add_argument("--data-dir", default=str(DATA))
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
    p.add_argument("--protocols", default=",".join(PROTOCOLS), help="comma-separated; choice is the headline")
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
    p.add_argument("--report", default="RESULTS-commonsense.md", help="report file name in --docs (plots take its stem)")
    p.add_argument("--notes", default=None, help="markdown file appended to the report's reading")
    p.add_argument("--job", default=None, help=argparse.SUPPRESS)
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


@dataclass
class Job:
    name: str
    cmd: list[str]
    marker: Path
    needs: list[Path] = field(default_factory=list)

    def done(self) -> bool:
        return self.marker.exists()

    def ready(self) -> bool:
        return all(p.exists() for p in self.needs)


def selected(args, name: str) -> bool:
    """Whether job or condition ``name`` matches ``--only`` (every name does without it)."""
    return not args.only or any(fnmatch.fnmatch(name, p) for p in args.only.split(","))


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
    return cmd + (["--resume"] if any(out.glob("checkpoint-*")) else [])


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
    return [sys.executable, __file__, "--stage", "job", "--job", name, "--out", args.out, "--data-dir",
            args.data_dir, "--eval-limit", str(args.eval_limit), "--eval-batch-size", str(args.eval_batch_size),
            "--seed", str(args.seed), "--seeds", ",".join(map(str, args.seeds)), "--arms", ",".join(args.arms),
            "--protocols", ",".join(args.protocols), "--curve-steps", ",".join(map(str, args.curve_steps)),
            "--curve-limit", str(args.curve_limit), "--curve-seeds", ",".join(map(str, args.curve_seeds)),
            "--label-limit", str(args.label_limit), "--save-steps", str(args.save_steps)]


def jobs(args) -> list[Job]:
    """The queue in priority order: each training just before the first evaluation that needs it."""
    out = Path(args.out)
    # a training is done once its adapter is (segmask.json is written last), as it is for a committed adapter linked in
    trains = {(arm, seed): Job(f"train-{arm}-s{seed}", train_command(args, arm, seed),
                               train_dir(args, arm, seed) / "adapter" / "segmask.json")
              for seed in args.seeds for arm in args.arms}
    queue: list[Job] = []
    for name, c in conditions(args).items():
        needs = []
        if c.arm is not None:
            train = trains[(c.arm, c.seed)]
            if train not in queue:
                queue.append(train)
            needs = [train.marker]
        queue.append(Job(name, eval_command(args, name), out / "eval" / name / "summary.json", needs))
    return queue + [t for t in trains.values() if t not in queue]


def eval_job(args) -> None:
    """Run one evaluation (``--job NAME``) in this process, one task at a time, keeping finished tasks."""
    import torch

    torch.set_num_threads(1)
    from segmask.eval import evaluate
    from segmask.eval.run import summarize, write_run
    from segmask.hf.models import load_model

    c = conditions(args)[args.job]
    adapter = adapter_path(args, c)
    limit = c.limit or args.eval_limit or None
    model, tok = load_model(adapter=str(adapter)) if adapter else load_model(c.model)
    folder = Path(args.out) / "eval" / args.job
    for task in EVAL_ORDER:
        part = folder / "parts" / task
        if not (part / "summary.json").exists():
            evaluate(model, tok, [task], args.data_dir, protocol=c.protocol, mask=c.mask, limit=limit,
                     seed=args.seed, batch_size=args.eval_batch_size, num_beams=1, max_new_tokens=16,
                     prompt_form=c.prompt_form, layout=c.layout, out_dir=part, progress=False)
    rows, seconds, _ = merge_parts(folder)
    summary = summarize(rows, TASKS, c.protocol)
    summary.update(seconds=seconds, examples_per_s=len(rows) / seconds,
                   settings={"protocol": c.protocol, "mask": c.mask, "limit": limit, "seed": args.seed,
                             "batch_size": args.eval_batch_size, "prompt_form": c.prompt_form,
                             "layout": c.layout, "adapter": str(adapter) if adapter else None,
                             "condition": args.job, "train_seed": c.seed, "step": c.step,
                             "model": None if adapter else c.model})
    write_run(folder, summary, rows)


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


def keep_snapshots(args) -> None:
    """Copy the adapter of every curve-step checkpoint (the trainer keeps only the last two) to ``snapshots/``."""
    for seed in args.curve_seeds:
        for arm in args.arms:
            for step in args.curve_steps:
                ckpt = train_dir(args, arm, seed) / f"checkpoint-{step}"
                snap = train_dir(args, arm, seed) / "snapshots" / f"step-{step}"
                if ckpt.is_dir() and not (snap / "adapter_model.safetensors").exists():
                    snap.mkdir(parents=True, exist_ok=True)
                    for f in ("adapter_config.json", "segmask.json", "trainer_state.json",
                              "adapter_model.safetensors"):  # the weights last: their presence marks a full copy
                        if (ckpt / f).exists():
                            shutil.copy(ckpt / f, snap / f)


def run_jobs(args, queue: list[Job]) -> dict[str, float]:
    """Run the queue ``--parallel`` at a time, each job once its needs are done; name -> wall seconds."""
    logs = Path(args.out) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    for job in queue:  # trainings finished in an earlier sitting (or by hand) whose float16 copy is missing
        run = job.name.removeprefix("train-")
        if job.name.startswith("train-") and job.done() and args.adapters \
                and not (Path(args.adapters) / f"commonsense-{run}" / "segmask.json").exists():
            export_adapter(args, run)
    pending = [j for j in queue if not j.done()]
    running: dict[str, tuple[Job, subprocess.Popen, float]] = {}
    walls: dict[str, float] = {}
    while pending or running:
        for job in [j for j in pending if j.ready()][: max(0, args.parallel - len(running))]:
            pending.remove(job)
            print(f"{time.strftime('%H:%M:%S')} start {job.name}", flush=True)
            log = open(logs / f"{job.name}.log", "a")
            running[job.name] = (job, subprocess.Popen(job.cmd, cwd=ROOT, env=env, stdout=log,
                                                       stderr=subprocess.STDOUT), time.time())
        if not running and pending:
            raise SystemExit(f"blocked: {[j.name for j in pending]} need jobs that did not finish")
        time.sleep(10)
        keep_snapshots(args)
        for name, (_job, proc, start) in list(running.items()):
            if proc.poll() is not None:
                walls[name] = time.time() - start
                del running[name]
                print(f"{time.strftime('%H:%M:%S')} {name} exit {proc.returncode} after {walls[name]:.0f} s",
                      flush=True)
                _record_timing(args, name, walls[name])
                if proc.returncode == 0 and name.startswith("train-") and args.adapters:
                    export_adapter(args, name.removeprefix("train-"))
    return walls


def _record_timing(args, name: str, wall: float) -> None:
    timing = Path(args.out) / "timing.json"
    old = json.loads(timing.read_text()) if timing.exists() else {}
    old[name] = old.get(name, 0.0) + wall  # a job that ran in several sittings (cut short, resumed) sums them
    timing.write_text(json.dumps(old, indent=1) + "\n")


def export_adapter(args, run: str) -> Path:
    """Copy ``OUT/train-RUN/adapter`` to ``adapters/commonsense-RUN`` in float16, data paths relative to the data
    folder (``segmask.json``'s ``data_dir`` says which folder; the recorded command uses the same relative paths)."""
    import torch
    from safetensors.torch import load_file, save_file

    src = Path(args.out) / f"train-{run}" / "adapter"
    dst = Path(args.adapters) / f"commonsense-{run}"
    dst.mkdir(parents=True, exist_ok=True)
    peft_cfg = json.loads((src / "adapter_config.json").read_text())
    peft_cfg["base_model_name_or_path"] = json.loads((src / "segmask.json").read_text())["base_model"]  # not a path
    (dst / "adapter_config.json").write_text(json.dumps(peft_cfg, indent=2) + "\n")
    weights = {k: v.to(torch.float16).contiguous() for k, v in load_file(src / "adapter_model.safetensors").items()}
    save_file(weights, dst / "adapter_model.safetensors", metadata={"format": "pt"})
    cfg = json.loads((src / "segmask.json").read_text())
    data_dir, out = str(Path(args.data_dir).resolve()) + "/", str(Path(args.out).resolve()) + "/"
    rel = lambda s: s.replace(data_dir, "$DATA/").replace(out, "$OUT/")  # noqa: E731
    arm, seed = run.rsplit("-s", 1)
    cmd = [a for a in train_command(args, arm, int(seed))[3:] if a != "--resume"]
    cfg.update(saved_dtype="float16",
               data_dir="$DATA: the LLM-Adapters commonsense folder (../shared/data/commonsense)",
               out_dir="$OUT: the study's --out folder (runs/reproduce)", command="segmask " + " ".join(map(rel, cmd)))
    cfg["recipe"].update(data=[rel(d) for d in cfg["recipe"]["data"]],
                         output_dir=rel(str(Path(cfg["recipe"]["output_dir"]).resolve())))
    (dst / "segmask.json").write_text(json.dumps(cfg, indent=2) + "\n")
    return dst


def print_plan(args, queue: list[Job]) -> None:
    for job in queue:
        state = "done" if job.done() else ("ready" if job.ready() else "waits")
        print(f"{state:5s} {job.name}: {' '.join(job.cmd[1:]) if job.name.startswith('train-') else ''}")
    print(f"{sum(j.done() for j in queue)}/{len(queue)} done")


def main(argv=None) -> int:
    args = parse(argv)
    if args.stage == "job":
        eval_job(args)
        return 0
    queue = jobs(args)
    queue = [j for j in queue if selected(args, j.name)]
    if args.list:
        print_plan(args, queue)
        return 0
    start = time.time()
    if args.stage in ("run", "all"):
        run_jobs(args, queue)
    if args.stage in ("report", "all"):
        from report_commonsense import write_report

        write_report(args, {n: c for n, c in conditions(args).items() if selected(args, n)})
    print(f"done in {time.time() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
