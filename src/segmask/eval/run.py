"""Run benchmarks end to end and compare runs: ``evaluate`` writes predictions and a summary, ``compare_runs`` pairs
two runs example by example.

    >>> data_dir = default_data_dir()     # segmask.eval.tasks: the folder `segmask data` fills
    >>> summary = evaluate(model, tok, ["boolq", "piqa"], data_dir, protocol="loglik",
    ...                    mask="mas", limit=100, out_dir="runs/base-mas")
    >>> print(format_summary(summary))
    >>> print(format_comparison(compare_runs("runs/base-causal", "runs/base-mas")))

An output folder holds ``predictions.jsonl`` (one JSON object per example: task, index, answer, prediction,
correct, and the generated text or the choices' log-probabilities, see ``protocols.py``) and ``summary.json``
(settings, per-task accuracy with Wilson 95% CIs and pick histograms, the unweighted mean over tasks, timing).
With ``limit`` each task is a fixed random subset seeded by ``(seed, task)``, so runs of different models, masks
and protocols see the same examples.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..core.questions import normalize_layout
from ..core.recipe import EVAL_MASKS, check_choice
from .folders import finished_part, load_run, write_part, write_run
from .protocols import PROTOCOLS, RUNNERS
from .stats import accuracy, mcnemar_exact, paired_bootstrap, paired_comparison
from .tasks import get_task, load_records, resolve_tasks

METRICS = {"acc": "correct", "acc_norm": "correct_norm"}
"""Summary metric -> per-example field holding its 0/1 outcome."""


def evaluate(
    model: Any,
    tokenizer: Any,
    tasks: str | Sequence[str] | None,
    data_dir: str | Path,
    *,
    protocol: str = "generate",
    mask: str = "mas",
    limit: int | None = None,
    seed: int = 0,
    batch_size: int = 8,
    num_beams: int = 4,
    max_new_tokens: int = 32,
    prompt_form: str = "commonsense",
    system: str | None = None,
    layout: str = "data",
    out_dir: str | Path | None = None,
    progress: bool = True,
    meta: dict | None = None,
    resume: bool = False,
) -> dict:
    """Evaluate ``model`` on ``tasks`` (names, comma-separated string, or None/"all" for every task with data).

    Args:
        protocol: ``"generate"`` (beam search, first label extracted; ``num_beams=1`` is greedy), ``"loglik"``
            (score each label) or ``"choice"`` (score each option's text; see ``choice.py``).
        mask: ``"mas"`` (prompt segments bidirectional in prefill; enables MAS on the model for the call),
            ``"causal"``, or ``"causal-repeat"`` (the question part twice, causal: a no-training baseline).
        limit: examples per task (a fixed seeded subset); None for all.
        prompt_form: ``"commonsense"`` (the paper's) or ``"chat"`` (with an optional ``system`` message); use the
            form the adapter was trained with. The choice protocol also takes ``"qa"`` (lm-eval's
            ``"Question: ...\\nAnswer:"``, no options listed).
        layout: ``"data"`` (the instruction as written) or an order of context, question and options
            (``questions.LAYOUTS``, e.g. ``"oq"``: options before the question; ``"qoc"``: context last).
        out_dir: when given, write ``predictions.jsonl`` and ``summary.json`` there, and each task's rows as it
            finishes to ``out_dir/parts/TASK`` (a run folder of its own).
        meta: extra settings to record in the summary (e.g. model and adapter names).
        resume: with ``out_dir``, keep the tasks an earlier call finished there (``parts/``) instead of running them
            again; they must have been run with the same settings (``PART_SETTINGS``), else a ValueError names the
            difference. A run cut short is the same call again.

    Returns:
        The summary dict: ``tasks`` {name: {acc, ci_low, ci_high, n, correct, picks, answers, (acc_norm ...)}},
        ``mean``, ``settings``, ``seconds``, ``examples_per_s``, and ``predictions`` (the per-example rows).
    """
    check_choice("protocol", protocol, PROTOCOLS)
    check_choice("mask", mask, EVAL_MASKS)
    layout = normalize_layout(layout)
    if prompt_form == "qa" and protocol != "choice":
        raise ValueError(f"prompt form 'qa' lists no labels: use it with protocol 'choice', not {protocol!r}")
    task_list = resolve_tasks(tasks, data_dir)
    records = {t.name: load_records(t, data_dir, limit=limit, seed=seed) for t in task_list}
    settings = {"protocol": protocol, "mask": mask, "limit": limit, "seed": seed, "batch_size": batch_size,
                "prompt_form": prompt_form, "system": system, "layout": layout, **(meta or {})}
    runner_kwargs = {"mask": mask, "prompt_form": prompt_form, "system": system, "layout": layout,
                     "batch_size": batch_size}
    if protocol == "generate":
        settings.update(num_beams=num_beams, max_new_tokens=max_new_tokens)
        runner_kwargs.update(num_beams=num_beams, max_new_tokens=max_new_tokens)
    parts = Path(out_dir) / "parts" if out_dir is not None else None
    done = {t.name: part for t in task_list if resume and parts and (part := finished_part(parts / t.name, settings))}

    def keep(name: str, task_rows: list[dict], secs: float) -> None:
        write_part(parts / name, summarize(task_rows, [name], protocol), task_rows, secs, settings)

    start = time.perf_counter()
    rows = _predict(model, tokenizer, task_list, records, protocol, runner_kwargs, progress, done,
                    on_task=keep if parts else None)
    seconds = time.perf_counter() - start + sum(part[1] for part in done.values())
    summary = summarize(rows, [t.name for t in task_list], protocol)
    summary.update(settings=settings, seconds=seconds, examples_per_s=len(rows) / seconds if seconds else math.nan)
    if out_dir is not None:
        write_run(out_dir, summary, rows)
    summary["predictions"] = rows
    return summary


def _predict(model: Any, tokenizer: Any, task_list: Sequence[Any], records: dict[str, list[dict]], protocol: str,
             kwargs: dict, progress: bool, done: dict | None = None, on_task=None) -> list[dict]:
    """The prediction rows of every task by ``protocol``'s runner (called with ``kwargs``), the rows of ``done``
    ({task: (rows, seconds)}) kept as they are; ``on_task(name, rows, seconds)`` as each task finishes. MAS is
    enabled on ``model`` for the call when ``kwargs["mask"]`` needs it."""
    from ..hf.backend import is_enabled
    from ..hf.hook import disable, enable

    mask = kwargs["mask"]
    was_enabled = is_enabled(model)
    if mask == "mas" and not was_enabled:
        enable(model)
    done = done or {}
    bar = _progress(sum(len(records[t.name]) for t in task_list if t.name not in done), progress)
    rows: list[dict] = []
    try:
        for task in task_list:
            if task.name in done:
                rows += done[task.name][0]
                continue
            bar.set_description(task.name)
            start = time.perf_counter()
            task_rows = RUNNERS[protocol](model, tokenizer, task, records[task.name], on_batch=bar.update, **kwargs)
            rows += task_rows
            if on_task:
                on_task(task.name, task_rows, time.perf_counter() - start)
    finally:
        bar.close()
        if mask == "mas" and not was_enabled:
            disable(model)
    return rows


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="ex", disable=not enabled, dynamic_ncols=True)


def summarize(rows: list[dict], task_names: Sequence[str], protocol: str) -> dict:
    """Per-task accuracy (and acc_norm for loglik and choice) with Wilson 95% CIs, the unweighted mean over tasks,
    and per task the histograms ``answers`` (gold labels), ``picks`` (labels predicted; ``"none"`` for a
    generation naming none) and ``picks_norm`` (acc_norm's picks), in label order."""
    metrics = ["acc"] if protocol == "generate" else ["acc", "acc_norm"]
    tasks: dict[str, dict] = {}
    for name in task_names:
        task_rows = [r for r in rows if r["task"] == name]
        entry: dict[str, Any] = {}
        for metric in metrics:
            stats = accuracy([r[METRICS[metric]] for r in task_rows])
            if metric == "acc":
                entry.update(stats)
            else:
                entry.update({f"{metric}": stats["acc"], f"{metric}_ci_low": stats["ci_low"],
                              f"{metric}_ci_high": stats["ci_high"]})
        if protocol == "generate":
            entry["no_answer"] = sum(r["prediction"] is None for r in task_rows)
        entry["answers"] = _histogram(name, [r["answer"] for r in task_rows])
        entry["picks"] = _histogram(name, [r["prediction"] for r in task_rows])
        if "acc_norm" in metrics:
            entry["picks_norm"] = _histogram(name, [r["prediction_norm"] for r in task_rows])
        tasks[name] = entry
    mean = {m: sum(tasks[n][m] for n in task_names) / len(task_names) for m in metrics} if task_names else {}
    return {"protocol": protocol, "tasks": tasks, "mean": mean, "n_examples": len(rows)}


def _histogram(task: str, labels: Sequence[str | None]) -> dict[str, int]:
    """Counts of each label: the task's labels in their order, then any other value, then ``"none"`` (None)."""
    known = [label for label in get_task(task).labels if label in labels]
    other = [x for x in dict.fromkeys(labels) if x is not None and x not in known]
    counts = {label: labels.count(label) for label in [*known, *other]}
    return {**counts, **({"none": labels.count(None)} if None in labels else {})}


def compare_runs(run_a: str | Path, run_b: str | Path, *, metric: str = "acc", n_boot: int = 10_000,
                 seed: int = 0) -> dict:
    """Paired comparison B - A of two run folders on the same examples, per task and for the task mean.

    Returns ``{"metric", "a", "b", "tasks": {name: paired_comparison(...)}, "mean": {...}}``; the mean row has the
    unweighted mean accuracies, a bootstrap CI resampling within each task, and McNemar over all pooled examples.
    """
    (_, rows_a), (_, rows_b) = load_run(run_a), load_run(run_b)
    return compare_rows(rows_a, rows_b, names=(str(run_a), str(run_b)), metric=metric, n_boot=n_boot, seed=seed)


def compare_rows(rows_a: list[dict], rows_b: list[dict], *, names: tuple[str, str] = ("A", "B"),
                 metric: str = "acc", n_boot: int = 10_000, seed: int = 0) -> dict:
    """``compare_runs`` on prediction rows already in memory; ``names`` label the two sides."""
    check_choice("metric", metric, tuple(METRICS))
    field = METRICS[metric]
    run_a, run_b = names
    by_a = {(r["task"], r["index"]): r for r in rows_a}
    by_b = {(r["task"], r["index"]): r for r in rows_b}
    if set(by_a) != set(by_b):
        raise ValueError(f"runs cover different examples: {len(set(by_a) - set(by_b))} only in {run_a}, "
                         f"{len(set(by_b) - set(by_a))} only in {run_b} (use the same tasks, limit and seed)")
    if any(field not in r or not isinstance(r[field], (bool, int)) for r in rows_a + rows_b):
        raise ValueError(f"metric {metric!r} needs {field!r} in both runs' predictions (acc_norm: loglik only)")
    tasks: dict[str, dict] = {}
    flags_a, flags_b = [], []
    for name in dict.fromkeys(r["task"] for r in rows_a):
        keys = sorted(k for k in by_a if k[0] == name)
        a, b = [by_a[k][field] for k in keys], [by_b[k][field] for k in keys]
        tasks[name] = paired_comparison(a, b, n_boot=n_boot, seed=seed)
        flags_a.append(a)
        flags_b.append(b)
    low, high = paired_bootstrap(flags_a, flags_b, n_boot=n_boot, seed=seed)
    a_only = sum(t["a_only"] for t in tasks.values())
    b_only = sum(t["b_only"] for t in tasks.values())
    mean_a = sum(t["acc_a"] for t in tasks.values()) / len(tasks)
    mean_b = sum(t["acc_b"] for t in tasks.values()) / len(tasks)
    mean = {"n": sum(t["n"] for t in tasks.values()), "acc_a": mean_a, "acc_b": mean_b, "diff": mean_b - mean_a,
            "ci_low": low, "ci_high": high, "a_only": a_only, "b_only": b_only,
            "p_mcnemar": mcnemar_exact(a_only, b_only)}
    return {"metric": metric, "a": str(run_a), "b": str(run_b), "tasks": tasks, "mean": mean}


def format_summary(summary: dict) -> str:
    """Plain-text table of a summary: one row per task plus the mean."""
    loglik = summary["protocol"] != "generate"
    head = f"{'task':<15}{'n':>6}{'acc':>8}  {'95% CI':<15}" + (f"{'acc_norm':>9}" if loglik else f"{'no-ans':>8}")
    lines = [head, "-" * len(head)]
    for name, t in summary["tasks"].items():
        ci = f"[{t['ci_low']:.3f}, {t['ci_high']:.3f}]"
        extra = f"{t['acc_norm']:>9.3f}" if loglik else f"{t['no_answer']:>8d}"
        lines.append(f"{name:<15}{t['n']:>6d}{t['acc']:>8.3f}  {ci:<15}{extra}")
    mean = summary["mean"]
    lines.append(f"{'mean':<15}{summary['n_examples']:>6d}{mean['acc']:>8.3f}  {'':<15}"
                 + (f"{mean['acc_norm']:>9.3f}" if loglik else ""))
    return "\n".join(lines)


def format_picks(summary: dict, metric: str = "acc") -> str:
    """Plain-text pick distribution per task: each label's count among the predictions and, in parentheses, among
    the gold answers. A model that always picks one label shows it here, whatever its accuracy."""
    key = "picks" if metric == "acc" else "picks_norm"
    lines = [f"picks ({metric}) per task, gold answers in parentheses"]
    for name, t in summary["tasks"].items():
        if key not in t:
            raise ValueError(f"summary has no {key!r} for task {name!r} (acc_norm: loglik and choice only)")
        labels = [*t["answers"], *(x for x in t[key] if x not in t["answers"])]
        order = {label: i for i, label in enumerate((*get_task(name).labels, "none"))}
        labels.sort(key=lambda x: order.get(x, len(order) - 1))
        cells = [f"{label} {t[key].get(label, 0)} ({t['answers'].get(label, 0)})" for label in labels]
        lines.append(f"{name:<15}" + "  ".join(cells))
    return "\n".join(lines)


def format_comparison(comparison: dict) -> str:
    """Plain-text paired table: accuracies of A and B, B - A with its bootstrap CI, discordant counts, McNemar p."""
    head = (f"{'task':<15}{'n':>6}{'A':>8}{'B':>8}{'B-A':>8}  {'95% CI (bootstrap)':<19}"
            f"{'A only':>7}{'B only':>7}{'McNemar p':>11}")
    lines = [f"metric {comparison['metric']}: A = {comparison['a']}, B = {comparison['b']}", head, "-" * len(head)]
    for name, t in [*comparison["tasks"].items(), ("mean", comparison["mean"])]:
        ci = f"[{t['ci_low']:+.3f}, {t['ci_high']:+.3f}]"
        lines.append(f"{name:<15}{t['n']:>6d}{t['acc_a']:>8.3f}{t['acc_b']:>8.3f}{t['diff']:>+8.3f}  {ci:<19}"
                     f"{t['a_only']:>7d}{t['b_only']:>7d}{t['p_mcnemar']:>11.4f}")
    return "\n".join(lines)
