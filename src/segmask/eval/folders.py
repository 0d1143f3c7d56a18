"""Evaluation run folders: ``predictions.jsonl`` (one row per example) and ``summary.json`` (settings, accuracy,
timing), and the per-task parts an interrupted ``evaluate(..., out_dir=..., resume=True)`` continues from."""

from __future__ import annotations

import json
from pathlib import Path

from ..core.files import read_json, read_jsonl

PART_SETTINGS = ("protocol", "mask", "limit", "seed", "batch_size", "prompt_form", "system", "layout", "num_beams",
                 "max_new_tokens", "model", "adapter")
"""The settings a task finished by an earlier call must share to be kept by ``evaluate(..., resume=True)``."""


def write_run(out_dir: str | Path, summary: dict, rows: list[dict]) -> None:
    """Write ``predictions.jsonl`` and ``summary.json`` (without the rows) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "predictions.jsonl", "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    body = {k: v for k, v in summary.items() if k != "predictions"}
    (out / "summary.json").write_text(json.dumps(body, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def load_run(run_dir: str | Path) -> tuple[dict, list[dict]]:
    """(summary, prediction rows) of a run folder written by ``evaluate``."""
    run = Path(run_dir)
    if not (run / "summary.json").exists() or not (run / "predictions.jsonl").exists():
        raise ValueError(f"{run} is not an eval run folder (needs summary.json and predictions.jsonl)")
    summary = read_json(run / "summary.json", expect=dict)
    rows = read_jsonl(run / "predictions.jsonl")
    for n, row in enumerate(rows, 1):
        missing = [k for k in ("task", "index") if k not in row]
        if missing:
            raise ValueError(f"{run / 'predictions.jsonl'}: row {n} has no {', '.join(missing)}")
    return summary, rows


def finished_part(folder: Path, settings: dict) -> tuple[list[dict], float] | None:
    """(rows, seconds) of a task an earlier call finished in the run folder ``folder``; None when there is none.

    Raises:
        ValueError: it was evaluated with other ``PART_SETTINGS`` (named, with both values).
    """
    if not (folder / "summary.json").exists():
        return None
    summary, rows = load_run(folder)
    old = summary.get("settings", {})
    differ = [f"{k} {old.get(k)!r} there, {settings.get(k)!r} now" for k in PART_SETTINGS
              if old.get(k) != settings.get(k)]
    if differ:
        raise ValueError(f"{folder} was evaluated with other settings ({'; '.join(differ)}): resume with the same "
                         "settings or use another output folder")
    return rows, summary["seconds"]


def write_part(folder: Path, summary: dict, rows: list[dict], seconds: float, settings: dict) -> None:
    """Keep one finished task (its ``summary`` from ``summarize``) as a run folder of its own."""
    write_run(folder, {**summary, "settings": settings, "seconds": seconds}, rows)
