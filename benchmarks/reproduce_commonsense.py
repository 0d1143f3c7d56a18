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
from its last checkpoint (``segmask train --resume``), an evaluation keeps every finished task (``segmask eval
--resume``: ``OUT/eval/NAME/parts``). So a study that needs more CPU hours than one sitting is the same command
rerun. ``OUT/timing.json`` holds the wall seconds per job, summed over sittings. Finished adapters are copied in
float16 to ``adapters/commonsense-ARM-sSEED`` with data paths relative to the data folder.

``OUT`` lives on the machine that ran the jobs. ``benchmarks/outcomes.py export`` keeps each finished evaluation's
per-example picks in ``docs/outcomes`` and ``restore`` rebuilds the run folders from them on a new machine, so the
report can be regenerated there; with the committed adapters linked as ``OUT/train-ARM-sSEED/adapter``, the queue
then continues where it was.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from commonsense_plan import (
    conditions,
    jobs,
    parse,
    selected,
    train_command,
    train_dir,
)
from report_commonsense import write_report

from segmask.bench import export_adapter, print_plan, run_queue

ROOT = Path(__file__).resolve().parents[1]


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


def export(args, run: str) -> Path:
    """Copy ``OUT/train-RUN/adapter`` to ``adapters/commonsense-RUN`` in float16, data paths relative to the data
    folder (``segmask.json``'s ``data_dir`` says which folder; the recorded command uses the same relative paths)."""
    data_dir, out = str(Path(args.data_dir).resolve()), str(Path(args.out).resolve())
    arm, seed = run.rsplit("-s", 1)
    cmd = " ".join(train_command(args, arm, int(seed))[3:]).replace(data_dir + "/", "$DATA/").replace(out, "$OUT")
    return export_adapter(Path(args.out) / f"train-{run}" / "adapter", Path(args.adapters) / f"commonsense-{run}",
                          paths={data_dir: "$DATA/", out: "$OUT/"},
                          extra={"data_dir": "$DATA: the LLM-Adapters commonsense folder (../shared/data/commonsense)",
                                 "out_dir": "$OUT: the study's --out folder (runs/reproduce)",
                                 "command": "segmask " + cmd})


def run(args, queue) -> None:
    """Run the queue; export each finished training (and any finished in an earlier sitting without its copy)."""
    for job in queue:
        name = job.name.removeprefix("train-")
        if job.name.startswith("train-") and job.done() and args.adapters \
                and not (Path(args.adapters) / f"commonsense-{name}" / "segmask.json").exists():
            export(args, name)

    def on_exit(job, code: int) -> None:
        if code == 0 and job.name.startswith("train-") and args.adapters:
            export(args, job.name.removeprefix("train-"))

    run_queue(queue, Path(args.out) / "logs", parallel=args.parallel, cwd=ROOT, on_exit=on_exit,
              on_tick=lambda: keep_snapshots(args), poll=10)


def main(argv=None) -> int:
    args = parse(argv, __doc__)
    queue = [j for j in jobs(args) if selected(args, j.name)]
    if args.list:
        print_plan(queue)
        return 0
    start = time.time()
    if args.stage in ("run", "all"):
        run(args, queue)
    if args.stage in ("report", "all"):
        write_report(args, {n: c for n, c in conditions(args).items() if selected(args, n)})
    print(f"done in {time.time() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
