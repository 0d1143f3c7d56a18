"""The prompt-order study: where MAS beats causal prefill, on a synthetic task whose hard part comes late.

Data: ``segmask synth TASK --n N --test-n M --seed DATA_SEED`` (drawn into ``OUT/data`` when missing). Arms, each a
LoRA run of ``segmask train`` with the identical recipe and budget (same rows, row order, layout of each row, seed,
LoRA init, steps); only the mask and the starting weights differ:

    causal     causal mask, from the published SmolLM2-135M-Instruct
    mas-ready  MAS, from the MAS-ready model (smollm2-135m-mas, made by ``segmask adapt``)
    repeat     causal, the question part read twice (``--mask causal-repeat``: prompt repetition)
    mas        MAS, from the published model

Regimes: ``mix`` trains on a mix of layouts (``--mix``, default cqo,qoc,coq), ``easy`` on the easy layout only
(cqo: context, question, options), to see whether an arm carries over to layouts it never saw; ``easy1600`` the
same with 1,600 rows (``easyN``: N rows). Every adapter is
evaluated on every layout of ``--layouts`` with the ``loglik`` protocol (each label answer1..answer4 scored; chance
25%) on all test records, under the mask it was trained with; so are the untrained models (``base-causal``: the
published model, causal; ``base-mas-ready``: the MAS-ready model under MAS; ``base-repeat``).

    python benchmarks/order_study.py                      # run every job not done yet (resumable), then the report
    python benchmarks/order_study.py --list               # the jobs in priority order with their state
    python benchmarks/order_study.py --only 'train-reading-mix-*-s42'
    python benchmarks/order_study.py --stage report       # docs/RESULTS.md from what finished

Jobs run ``--parallel`` at a time, one torch thread each, logging to ``OUT/logs``. A training cut short resumes from
its last checkpoint; a finished job (its adapter's segmask.json, its eval summary.json) is skipped. Finished
adapters are copied (fp16) to ``adapters/order-...`` with the task, layout mix and mask in their segmask.json, and
every evaluation's per-example picks to ``docs/outcomes/order`` (what the report reads, so it regenerates on any
machine).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from order_report import regime_spec, write_report

from segmask.bench import Job, export_adapter, print_plan, run_queue, select

ROOT = Path(__file__).resolve().parents[1]
OUTCOMES = ROOT / "docs" / "outcomes" / "order"
ARMS = {"causal": ("causal", "smollm2-135m-instruct"), "mas-ready": ("mas", "smollm2-135m-mas"),
        "repeat": ("causal-repeat", "smollm2-135m-instruct"), "mas": ("mas", "smollm2-135m-instruct")}
"""arm -> (training and evaluation mask, starting model)."""
BASES = {"base-causal": ("causal", "smollm2-135m-instruct"), "base-mas-ready": ("mas", "smollm2-135m-mas"),
         "base-repeat": ("causal-repeat", "smollm2-135m-instruct")}
"""Untrained conditions: name -> (mask, model)."""


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stage", default="all", choices=["run", "report", "all"])
    p.add_argument("--list", action="store_true", help="print the jobs with their state and exit")
    p.add_argument("--only", default=None, help="comma-separated job names or globs")
    p.add_argument("--out", default=str(ROOT / "runs" / "order"))
    p.add_argument("--task", default="lookup")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the synthetic draw")
    p.add_argument("--length", type=int, default=None, help="facts / list items (default: the task's)")
    p.add_argument("--data-n", type=int, default=2000, help="training records drawn (segmask synth --n)")
    p.add_argument("--train-n", type=int, default=1500,
                   help="training rows per arm in the mix regime (one epoch; --max-examples)")
    p.add_argument("--easy-n", type=int, default=800,
                   help="training rows per arm in the easy regime (one layout needs fewer rows to learn)")
    p.add_argument("--test-n", type=int, default=600, help="test records, every one evaluated in every layout")
    p.add_argument("--seeds", default="42,43")
    p.add_argument("--arms", default="causal,mas-ready,repeat")
    p.add_argument("--regimes", default="mix,easy,easy1600",
                   help="mix (--mix layouts, --train-n rows), easy (--easy layout, --easy-n rows), easyN (N rows)")
    p.add_argument("--mix", default="cqo,qoc,coq", help="layouts of the mix regime (row i: layout i mod n)")
    p.add_argument("--easy", default="cqo", help="the easy layout (the easy regime trains on it only)")
    p.add_argument("--layouts", default="cqo,qoc,coq,qco,oqc,ocq", help="layouts every model is evaluated on")
    p.add_argument("--lr", default="1e-3", help="LoRA learning rate (every arm)")
    p.add_argument("--answer-form", default="text", choices=["text", "label"],
                   help="text: the option's text is the answer, scored by the choice protocol; label: answer1..4, "
                        "scored by the loglik protocol")
    p.add_argument("--parallel", type=int, default=2)
    p.add_argument("--doc", default=str(ROOT / "docs" / "RESULTS.md"))
    p.add_argument("--no-cost", dest="cost", action="store_false",
                   help="leave the prefill cost out of the report")
    p.add_argument("--measure-cost", default=None, metavar="LAYOUTS",
                   help="time the prefill cost of these layouts (comma-separated, or 'all' hard ones) anew, about a "
                        "minute each on an idle 2-core CPU, and keep it in docs/outcomes/order/prefill-cost.json; "
                        "without it the report shows what that file holds")
    return p.parse_args(argv)


def segmask(*args: str) -> tuple[str, ...]:
    return (sys.executable, "-m", "segmask", *args)


def plan(a: argparse.Namespace) -> list[Job]:
    """Every job in priority order: per seed and regime the trainings then their evaluations, the untrained models
    last (a job whose training is not done waits; the queue takes ready jobs in this order)."""
    out, data = Path(a.out), Path(a.out) / "data"
    layouts = a.layouts.split(",")
    protocol = "choice" if a.answer_form == "text" else "loglik"
    task = f"{a.task}-{a.answer_form}"  # job and file names
    jobs: list[Job] = []

    def evals(tag: str, mask: str, model: str, adapter: Path | None, needs: tuple[Path, ...]):
        for layout in layouts:
            folder = out / "eval" / f"{tag}-{layout}"
            argv = segmask("eval", "--data-dir", str(data), "--tasks", a.task, "--protocol", protocol, "--mask", mask,
                           "--layout", layout, "--model", model, "--out", str(folder), "--no-progress",
                           *(("--adapter", str(adapter)) if adapter else ()))
            jobs.append(Job(f"eval-{tag}-{layout}", argv, folder / "summary.json", needs))

    seeds = a.seeds.split(",")
    for seed in seeds:
        for regime in a.regimes.split(","):
            layout_arg, rows = regime_spec(a, regime)
            for arm in a.arms.split(","):
                mask, model = ARMS[arm]
                tag = f"{task}-{regime}-{arm}-s{seed}"
                run = out / f"train-{tag}"
                argv = segmask("train", str(data / a.task), "--out", str(run), "--mask", mask, "--model", model,
                               "--layout", layout_arg, "--answer-form", a.answer_form, "--max-examples",
                               str(rows),
                               "--batch-size", "4", "--grad-accum", "2", "--warmup-steps", "20", "--save-steps", "25",
                               "--lr", a.lr,
                               "--cutoff", "512", "--save-dtype", "float16", "--seed", seed, "--threads", "1",
                               "--quiet")
                jobs.append(Job(f"train-{tag}", argv, run / "adapter" / "segmask.json", resume=run))
            for arm in a.arms.split(","):
                tag = f"{task}-{regime}-{arm}-s{seed}"
                mask, model = ARMS[arm]
                adapter = out / f"train-{tag}" / "adapter"
                evals(tag, mask, model, adapter, (adapter / "segmask.json",))
    for name, (mask, model) in BASES.items():
        evals(f"{task}-{name}", mask, model, None, ())
    return jobs


def ensure_data(a: argparse.Namespace) -> None:
    folder = Path(a.out) / "data"
    if not (folder / a.task / "test.json").exists():
        subprocess.run(segmask("synth", a.task, "--n", str(a.data_n), "--test-n", str(a.test_n), "--seed",
                               str(a.data_seed), "--out", str(folder),
                               *(("--length", str(a.length)) if a.length else ())), check=True)


def export(a: argparse.Namespace, job: Job) -> None:
    """Keep what outlives the machine: a finished adapter (fp16, task/layout/mask recorded) or an eval's picks."""
    if not job.done():
        return
    if job.name.startswith("train-"):
        draw = f"segmask synth {a.task} --n {a.data_n} --test-n {a.test_n} --seed {a.data_seed}" + \
            (f" --length {a.length}" if a.length else "") + f" --out {os.path.relpath(Path(a.out) / 'data', ROOT)}"
        adapter = job.marker.parent
        config = json.loads(job.marker.read_text())
        study = {"task": a.task, "layout": config.get("recipe", {}).get("layout"), "mask": config.get("mask"),
                 "answer_form": a.answer_form, "data": draw, "made_by": "benchmarks/order_study.py"}
        export_adapter(adapter, ROOT / "adapters" / f"order-{job.name.removeprefix('train-')}",
                       paths={str(ROOT): ""}, extra={"study": study})  # repo-relative paths, no home dirs
        run = adapter.parent
        if (run / "train_summary.json").exists():  # the loss curve and wall time, small, for the report
            summary = json.loads((run / "train_summary.json").read_text())
            curve = json.loads((run / "loss_curve.json").read_text())
            OUTCOMES.mkdir(parents=True, exist_ok=True)
            (OUTCOMES / f"{job.name}.json").write_text(json.dumps(
                {"wall_s": summary.get("wall_s"), "train_loss": summary.get("train_loss"),
                 "steps": summary.get("steps"), "curve": [[p["step"], p["loss"]] for p in curve if "loss" in p]})
                + "\n")
        return
    OUTCOMES.mkdir(parents=True, exist_ok=True)
    summary = json.loads(job.marker.read_text())
    rows = [json.loads(line) for line in (job.marker.parent / "predictions.jsonl").read_text().splitlines()]
    keep = [{"index": r["index"], "answer": r["answer"], "prediction": r["prediction"], "correct": r["correct"],
             "logprobs": r.get("logprobs")}
            for r in rows]
    (OUTCOMES / f"{job.name.removeprefix('eval-')}.json").write_text(json.dumps(
        {"settings": summary.get("settings"), "seconds": summary.get("seconds"), "rows": keep}) + "\n")


def main(argv=None) -> int:
    a = parse(argv)
    jobs = select(plan(a), a.only)
    if a.list:
        print_plan(jobs)
        return 0
    if a.stage in ("run", "all"):
        ensure_data(a)
        for j in jobs:  # export anything finished in an earlier sitting
            export(a, j)
        run_queue(jobs, Path(a.out) / "logs", parallel=a.parallel, cwd=ROOT,
                  env={"SEGMASK_ADAPTERS": str(ROOT / "adapters")}, on_exit=lambda job, _rc: export(a, job))
    if a.stage in ("report", "all"):
        write_report(a)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
