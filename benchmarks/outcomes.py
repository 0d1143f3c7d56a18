"""Keep a study evaluation's per-example outcomes in the repository, and rebuild its run folder from them.

The study's run folders (``runs/reproduce/eval/NAME``) live on the machine that made them; a new machine has none,
and the report cannot be regenerated without re-running every evaluation. ``export`` keeps what a run decided and
nothing the data already holds: per example its task, index, picks and option log-probabilities, plus the run's
summary, gzipped to ``docs/outcomes/NAME.jsonl.gz`` (~0.1 MB per 6,189 examples). ``restore`` joins them with the
data folder's test sets (gold answers, labels, option texts) and writes the run folder back, identical to the one
the evaluation wrote, so ``reproduce_commonsense.py --stage report`` reads it as if the job had run here::

    python benchmarks/outcomes.py export causal-s42-choice mas-ready-s42-choice
    python benchmarks/outcomes.py restore                      # every file in docs/outcomes
    python benchmarks/outcomes.py check causal-s42-choice      # restore in memory, compare with the run folder
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

from segmask.core.questions import parse_question
from segmask.eval import get_task, load_records
from segmask.eval.run import load_run, write_run

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "commonsense"
DERIVED = ("answer", "correct", "correct_norm", "choices", "options", "picked")
"""Row fields rebuilt from the data on restore (everything else is stored)."""


def compact(summary: dict, rows: list[dict]) -> list[dict]:
    """The lines of an outcomes file: the summary first, then each row without its data-derived fields."""
    return [{"summary": summary}] + [{k: v for k, v in r.items() if k not in DERIVED} for r in rows]


def expand(lines: list[dict], data_dir: str | Path) -> tuple[dict, list[dict]]:
    """(summary, rows) of an outcomes file, the rows completed from the test sets in ``data_dir``."""
    summary, stored = lines[0]["summary"], lines[1:]
    protocol = summary["protocol"]
    records: dict[str, dict[int, dict]] = {}
    rows = []
    for r in stored:
        task = get_task(r["task"])
        if task.name not in records:
            records[task.name] = {rec["index"]: rec for rec in load_records(task, data_dir)}
        record = records[task.name].get(r["index"])
        if record is None:
            raise ValueError(f"{task.name} index {r['index']}: not in the test set under {data_dir} (other data?)")
        row = {"task": r["task"], "index": r["index"], "answer": record["answer"], **r}
        row["correct"] = int(r["prediction"] == record["answer"])
        if "prediction_norm" in r:
            row["correct_norm"] = int(r["prediction_norm"] == record["answer"])
        if protocol == "choice":
            question = parse_question(record)
            row["choices"], row["options"] = list(question.labels), list(question.options)
            row["picked"] = question.options[question.labels.index(r["prediction"])]
        elif protocol == "loglik":
            row["choices"] = list(task.choices(record))
        rows.append(row)
    return summary, rows


def read(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def export(run: Path, dest: Path) -> Path:
    summary, rows = load_run(run)
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / f"{run.name}.jsonl.gz"
    with gzip.GzipFile(path, "wb", mtime=0) as raw:  # mtime 0: the same outcomes give the same bytes
        raw.write("".join(json.dumps(line, ensure_ascii=False) + "\n"
                          for line in compact(summary, rows)).encode("utf-8"))
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=["export", "restore", "check"])
    p.add_argument("names", nargs="*", help="evaluation names (default: all there are)")
    p.add_argument("--out", default=str(ROOT / "runs" / "reproduce"), help="the study's output folder")
    p.add_argument("--outcomes", default=str(ROOT / "docs" / "outcomes"))
    p.add_argument("--data-dir", default=str(DATA))
    args = p.parse_args(argv)
    evals, store = Path(args.out) / "eval", Path(args.outcomes)
    if args.action == "export":
        names = args.names or sorted(d.name for d in evals.iterdir() if (d / "summary.json").exists())
        for name in names:
            path = export(evals / name, store)
            print(f"{path} ({path.stat().st_size / 1e3:.0f} kB)")
        return 0
    names = args.names or sorted(f.name.removesuffix(".jsonl.gz") for f in store.glob("*.jsonl.gz"))
    status = 0
    for name in names:
        summary, rows = expand(read(store / f"{name}.jsonl.gz"), args.data_dir)
        if args.action == "restore":
            if (evals / name / "summary.json").exists():
                print(f"{name}: a finished run is already there, left as it is")
                continue
            write_run(evals / name, summary, rows)
            print(f"{evals / name}: {len(rows)} examples")
        else:
            same = load_run(evals / name) == (summary, rows)
            print(f"{name}: {'identical' if same else 'DIFFERENT'} to {evals / name}")
            status |= not same
    return status


if __name__ == "__main__":
    sys.exit(main())
