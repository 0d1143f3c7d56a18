"""Report of ``reproduce_commonsense.py``: whatever has finished -> ``docs/RESULTS-commonsense.md`` + PNG plots.

Reads ``OUT/train-{arm}-s{seed}`` (train_summary.json, loss_curve.json) and the evaluations under ``OUT/eval``. An
evaluation cut short contributes the tasks it finished (``parts/``), marked partial; pairs are compared on the
examples both sides have. Nothing is invented: what did not run is listed as missing. The headline is MAS − causal
(and mas-ready − causal) per seed on the choice protocol: paired bootstrap 95% CI of the mean over tasks, exact
McNemar over the pooled examples, and the minimum detectable effect at that n (80% power, two-sided 5%: 2.8/1.96
times the CI's half-width), and, once every seed of both arms has finished, the same over the seeds (per example the
mean outcome over seeds; McNemar over the (seed, example) pairs). Then accuracy per condition, accuracy against
training steps, the layout diagnostic, the repeat baseline, the label protocols, and what each model picks.

    python benchmarks/reproduce_commonsense.py --stage report [--out runs/reproduce] [--notes my_reading.md]
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from commonsense_plan import ARM_LABEL, TASKS, diagnostic_pairs, jobs, merge_parts, recipe_lines, selected

from segmask.eval import compare_rows, format_picks, load_run, mcnemar_exact, paired_bootstrap
from segmask.eval.run import summarize

MDE_FACTOR = (1.96 + 0.8416) / 1.96
"""Minimum detectable effect (80% power, alpha 0.05 two-sided) = this times the 95% CI half-width."""
COLLAPSE = 0.95
"""A task is marked collapsed (‡) for a model that gives one answer to at least this share of its questions: its
accuracy there is that answer's share of the gold answers, not a reading of the questions."""


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def load_condition(out: Path, name: str) -> dict | None:
    """{summary, rows, tasks, partial} of an evaluation: the finished run, or the tasks finished so far."""
    folder = out / "eval" / name
    if (folder / "summary.json").exists():
        summary, rows = load_run(folder)
        return {"summary": summary, "rows": rows, "tasks": list(summary["tasks"]), "partial": False}
    rows, seconds, done = merge_parts(folder)
    if not done:
        return None
    protocol = load_run(folder / "parts" / done[0])[0]["protocol"]
    summary = {**summarize(rows, done, protocol), "seconds": seconds}
    return {"summary": summary, "rows": rows, "tasks": done, "partial": True}


def collapsed(rows: list[dict]) -> list[str]:
    """The tasks of prediction ``rows`` where one answer is given to >= COLLAPSE of the questions."""
    picks: dict[str, Counter] = {}
    for r in rows:
        picks.setdefault(r["task"], Counter())[r["prediction"]] += 1
    return [task for task, c in picks.items() if max(c.values()) >= COLLAPSE * sum(c.values())]


def paired(runs: dict, a: str, b: str, skip: tuple[str, ...] = ()) -> dict | None:
    """compare_rows of B − A on the examples both have (all of them once both evaluations have finished), leaving
    out the tasks in ``skip``."""
    if a not in runs or b not in runs:
        return None
    key = lambda r: (r["task"], r["index"])  # noqa: E731
    common = {key(r) for r in runs[a]["rows"] if r["task"] not in skip} & {key(r) for r in runs[b]["rows"]}
    if not common:
        return None
    cmp = compare_rows(*[[r for r in runs[n]["rows"] if key(r) in common] for n in (a, b)], names=(a, b))
    cmp["partial"] = runs[a]["partial"] or runs[b]["partial"]
    return cmp


def _mde(m: dict) -> float:
    return MDE_FACTOR * (m["ci_high"] - m["ci_low"]) / 2


def _headline(runs: dict, args) -> tuple[list[str], dict]:
    lines = ["| seed | comparison (B − A) | n | A acc % | B acc % | B − A (pp) | 95% CI | McNemar p | MDE (pp) |"
             " tasks |", "|---|---|---:|---:|---:|---:|---|---:|---:|---|"]
    diffs: dict[str, list[float]] = {}
    for seed in args.seeds:
        for a, b in (("causal", "mas"), ("causal", "mas-ready"), ("mas", "mas-ready")):
            cmp = paired(runs, f"{a}-s{seed}-choice", f"{b}-s{seed}-choice")
            if cmp is None:
                continue
            m = cmp["mean"]
            diffs.setdefault(f"{ARM_LABEL[b]} − {ARM_LABEL[a]}", []).append(100 * m["diff"])
            lines.append(f"| {seed} | {ARM_LABEL[b]} − {ARM_LABEL[a]} | {m['n']} | {_pct(m['acc_a'])} | "
                         f"{_pct(m['acc_b'])} | {100 * m['diff']:+.1f} | [{100 * m['ci_low']:+.1f}, "
                         f"{100 * m['ci_high']:+.1f}] | {m['p_mcnemar']:.3g} | {100 * _mde(m):.1f} | "
                         f"{len(cmp['tasks'])}/7{' (partial)' if cmp['partial'] else ''} |")
    if len(lines) == 2:
        return ["(no fine-tuned pair evaluated yet)"], {}
    precision = []
    for a, b in (("causal", "mas"), ("causal", "mas-ready")):
        row, note = _pooled(runs, args, a, b)
        lines += row
        precision += note
    spread = [f"- {k}: mean over seeds {sum(v) / len(v):+.1f} pp"
              + (f", spread between seeds (max − min) {max(v) - min(v):.1f} pp over {len(v)} seeds" if len(v) > 1
                 else " (one seed so far)") for k, v in diffs.items()]
    return lines + [""] + spread + precision, diffs


def _pooled(runs: dict, args, a: str, b: str) -> tuple[list[str], list[str]]:
    """The headline row over all seeds, once every seed of both arms finished: per example the mean outcome over
    seeds (0, 1/k, ..., 1), the paired bootstrap over examples (within tasks) of the mean over tasks, and McNemar
    over the (seed, example) pairs; and a note on the precision more seeds would give (``seed_precision``)."""
    names = [(f"{a}-s{seed}-choice", f"{b}-s{seed}-choice") for seed in args.seeds]
    if len(names) < 2 or any(n not in runs or runs[n]["partial"] for pair in names for n in pair):
        return [], []
    key = lambda r: (r["task"], r["index"])  # noqa: E731
    by = {n: {key(r): r["correct"] for r in runs[n]["rows"]} for pair in names for n in pair}
    keys = sorted(by[names[0][0]])
    avg = {side: {k: sum(by[pair[side]][k] for pair in names) / len(names) for k in keys} for side in (0, 1)}
    tasks = list(dict.fromkeys(k[0] for k in keys))
    groups = [[[avg[side][k] for k in keys if k[0] == t] for t in tasks] for side in (0, 1)]
    acc = [sum(sum(g) / len(g) for g in groups[side]) / len(tasks) for side in (0, 1)]
    low, high = paired_bootstrap(*groups)
    a_only = sum(by[pa][k] and not by[pb][k] for pa, pb in names for k in keys)
    b_only = sum(by[pb][k] and not by[pa][k] for pa, pb in names for k in keys)
    mde = MDE_FACTOR * (high - low) / 2
    row = [f"| {'+'.join(str(s) for s in args.seeds)} | {ARM_LABEL[b]} − {ARM_LABEL[a]}, mean over seeds | "
           f"{len(keys)} × {len(names)} | {_pct(acc[0])} | {_pct(acc[1])} | {100 * (acc[1] - acc[0]):+.1f} | "
           f"[{100 * low:+.1f}, {100 * high:+.1f}] | {mcnemar_exact(a_only, b_only):.3g} | {100 * mde:.1f} | "
           f"{len(tasks)}/7 |"]
    diffs = {t: [[by[pb][k] - by[pa][k] for pa, pb in names] for k in keys if k[0] == t] for t in tasks}
    hw = seed_precision(diffs, (1, len(names), 4, 8, 0))
    note = [f"- {ARM_LABEL[b]} − {ARM_LABEL[a]}, precision against the number of seeds (normal approximation from "
            f"the {len(names)} seeds' per-example differences, `seed_precision`): 95% CI half-width "
            + ", ".join(f"{k} seed{'s' if k > 1 else ''} ±{100 * v:.2f} pp" for k, v in hw.items() if k)
            + f", any number of seeds ±{100 * hw[0]:.2f} pp (MDE {100 * MDE_FACTOR * hw[0]:.1f} pp): the floor "
            "these 6,189 examples set, whatever the seeds"]
    return row, note


def seed_precision(diffs: dict[str, list[list[float]]], seeds: tuple[int, ...]) -> dict[int, float]:
    """The 95% CI half-width of the mean over tasks of B − A if it were averaged over k seeds (normal
    approximation), from ``diffs``: task -> per example the list of its per-seed differences (K >= 2 seeds).

    Within a task the variance over examples of the K-seed mean difference is V + W/K: V what the seeds share (the
    per-example difference a recipe makes whatever its seed) and W the variance between seeds of one example's
    difference, estimated by the mean within-example sample variance. k seeds give V + W/k; ``0`` in ``seeds``
    stands for any number (W/k -> 0), the precision no number of seeds can beat on these examples."""
    parts = []
    for rows in diffs.values():
        n, big_k = len(rows), len(rows[0])
        means = [sum(d) / big_k for d in rows]
        grand = sum(means) / n
        total = sum((m - grand) ** 2 for m in means) / (n - 1)
        within = sum(sum((x - m) ** 2 for x in d) / (big_k - 1) for d, m in zip(rows, means)) / n
        parts.append((max(total - within / big_k, 0.0), within, n))
    return {k: 1.96 * sum((v + (w / k if k else 0.0)) / n for v, w, n in parts) ** 0.5 / len(parts) for k in seeds}


def _condition_table(runs: dict, tasks: list[str]) -> list[str]:
    lines = ["| condition | protocol | " + " | ".join(tasks) + " | mean | n | minutes |",
             "|---|---|" + "---:|" * (len(tasks) + 3)]
    for name, run in runs.items():
        s = run["summary"]
        flat = collapsed(run["rows"])
        cells = [_pct(s["tasks"][t]["acc"]) + ("‡" if t in flat else "") if t in s["tasks"] else "–" for t in tasks]
        mean = _pct(s["mean"]["acc"]) + ("*" if run["partial"] else "")
        lines.append(f"| {name} | {s['protocol']} | " + " | ".join(cells) + f" | {mean} | {s['n_examples']} | "
                     f"{s['seconds'] / 60:.0f} |")
    return lines + ["", "`*` partial: the mean of the tasks finished so far (`–`: not yet run). `‡` collapsed: one "
                         f"answer to at least {COLLAPSE:.0%} of the task's questions (see the picks below)."]


def _curve(runs: dict, args) -> dict[str, list[tuple[int, float, int, list[str]]]]:
    """arm-seed -> [(step, mean accuracy over tasks, n, collapsed tasks)] on the curve's subset: the start model,
    the snapshots and the final adapter (its full run restricted to the subset's examples)."""
    out: dict[str, list[tuple[int, float, int, list[str]]]] = {}
    last = (args.train_examples // (args.batch_size * args.grad_accum))
    for seed in args.curve_seeds:
        for arm in args.arms:
            names = [(s, f"{arm}-s{seed}-step{s}-choice") for s in args.curve_steps]
            subset = next(({(r["task"], r["index"]) for r in runs[n]["rows"]} for _, n in names if n in runs), None)
            if subset is None:
                continue
            start = "ready-mas-choice" if arm == "mas-ready" else f"base-{arm}-choice"
            points = [(0, start), *names, (last, f"{arm}-s{seed}-choice")]
            curve = []
            for step, name in points:
                rows = [r for r in runs.get(name, {}).get("rows", []) if (r["task"], r["index"]) in subset]
                tasks = sorted({r["task"] for r in rows})
                if len(tasks) == 7:
                    accs = [sum(r["correct"] for r in rows if r["task"] == t) / sum(r["task"] == t for r in rows)
                            for t in tasks]
                    curve.append((step, sum(accs) / len(accs), len(rows), collapsed(rows)))
            out[f"{arm}-s{seed}"] = curve
    return out


def _plots(docs: Path, prefix: str, args, curves: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    losses = {f"{arm}-s{seed}": json.loads((out / f"train-{arm}-s{seed}" / "loss_curve.json").read_text())
              for seed in args.seeds for arm in args.arms
              if (out / f"train-{arm}-s{seed}" / "loss_curve.json").exists()}
    if losses:
        fig, ax = plt.subplots(figsize=(7.5, 3.8))
        for name, curve in losses.items():
            steps, loss = [r["step"] for r in curve], [r["loss"] for r in curve]
            smooth = [sum(loss[max(0, i - 9):i + 1]) / len(loss[max(0, i - 9):i + 1]) for i in range(len(loss))]
            ax.plot(steps, smooth, lw=1.2, label=name)
        ax.set(xlabel="optimizer step", ylabel="training loss (answer tokens, 10-log mean)", yscale="log",
               title="LoRA training loss, SmolLM2-135M-Instruct")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(docs / f"{prefix}_loss.png", dpi=120)
        plt.close(fig)
        written.append(f"{prefix}_loss.png")
    if any(len(c) > 1 for c in curves.values()):
        fig, ax = plt.subplots(figsize=(7.5, 3.8))
        for name, curve in curves.items():
            ax.plot([p[0] for p in curve], [100 * p[1] for p in curve], marker="o", lw=1.2, label=name)
        ax.set(xlabel="optimizer step (0: the starting model)", ylabel="choice accuracy %, mean of 7 tasks",
               title=f"Accuracy against training steps ({args.curve_limit} examples per task)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(docs / f"{prefix}_curve.png", dpi=120)
        plt.close(fig)
        written.append(f"{prefix}_curve.png")
    return written


def _pair_rows(runs: dict, pairs: list[tuple[str, str, str]]) -> list[str]:
    lines = ["| comparison (B − A) | A | B | n | A % | B % | B − A (pp) | 95% CI | McNemar p |",
             "|---|---|---|---:|---:|---:|---:|---|---:|"]
    for title, a, b in pairs:
        cmp = paired(runs, a, b)
        if not cmp:
            continue
        flat = sorted({*collapsed(runs[a]["rows"]), *collapsed(runs[b]["rows"])} & set(cmp["tasks"]))
        rows = [(title, cmp)]
        if flat and (rest := paired(runs, a, b, skip=tuple(flat))):
            rows.append((f"↳ the same without the collapsed {', '.join(flat)}", rest))
        for label, c in rows:
            m = c["mean"]
            lines.append(f"| {label} | `{a}` | `{b}` | {m['n']}{'*' if c['partial'] else ''} | {_pct(m['acc_a'])} | "
                         f"{_pct(m['acc_b'])} | {100 * m['diff']:+.1f} | [{100 * m['ci_low']:+.1f}, "
                         f"{100 * m['ci_high']:+.1f}] | {m['p_mcnemar']:.3g} |")
    return lines if len(lines) > 2 else ["(not evaluated yet)"]


def write_report(args, conds: dict) -> Path:
    """Write ``docs/RESULTS-commonsense.md`` and its PNGs from what has finished in ``args.out``."""
    out, docs = Path(args.out), Path(args.docs)
    docs.mkdir(parents=True, exist_ok=True)
    runs = {n: r for n in conds if (r := load_condition(out, n))}
    headline, _ = _headline(runs, args)
    curves = _curve(runs, args)
    timing = json.loads((out / "timing.json").read_text()) if (out / "timing.json").exists() else {}
    prefix = Path(args.report).stem.lower()
    plots = _plots(docs, prefix, args, curves, out)
    queue = [j for j in jobs(args) if selected(args, j.name)]  # with --only, a page about part of the study
    done = [j.name for j in queue if j.done()]
    lines = ["# The MAS vs causal study: LoRA on commonsense reasoning (SmolLM2-135M-Instruct, CPU)", "",
             "Produced by `python benchmarks/reproduce_commonsense.py` (this page: `--stage report`), which runs "
             "one queue of jobs in priority order and resumes where it stopped. Every number below was measured; "
             f"{len(done)} of {len(queue)} jobs have finished, and what has not is listed at the end.", "",
             "## Headline: choice protocol, every example of the 7 test sets (6,189), MAS − causal", "",
             *headline, "", "## Recipe and budget", "", *recipe_lines(out, args, timing), "",
             "## Accuracy per condition (choice unless named; %)", "", *_condition_table(runs, TASKS), ""]
    if args.curve_steps:
        lines += ["## Accuracy against training steps", "",
                  f"Fixed subset of {args.curve_limit} examples per test set (seeded); step 0 is the starting model "
                  "(base model under the arm's mask; the MAS-ready model for mas-ready), the last step the final "
                  "adapter restricted to the same examples.", ""]
    for name, curve in curves.items():
        lines.append(f"- {name}: " + ", ".join(f"step {s} {_pct(a)}%" + (f" (‡ {', '.join(flat)})" if flat else "")
                                               for s, a, _, flat in curve))
    if curves:
        lines += ["", "`‡`: collapsed tasks at that step (one answer to at least "
                  f"{COLLAPSE:.0%} of the subset's questions), which carry the mean there."]
    lines += ["", "## Diagnostics: base model, repeat baseline, option order, label protocols", "",
              *_pair_rows(runs, diagnostic_pairs(args)), "", "`*` on examples both sides have so far.", "",
              "## What the models pick (choice: the position of the option picked; gold in parentheses)", ""]
    for name in [n for n in runs if n.endswith("-choice") and "step" not in n]:
        lines += [f"`{name}`{' (partial)' if runs[name]['partial'] else ''}:", "", "```",
                  format_picks(runs[name]["summary"]), "```", ""]
    missing = [j.name for j in queue if j.name not in done]
    if missing:
        lines += ["## Not finished yet", "", ", ".join(f"`{m}`" for m in missing), ""]
    if plots:
        lines += ["## Plots", "", *[f"![{p}]({p})" for p in plots], ""]
    notes = getattr(args, "notes", None)
    if notes and Path(notes).exists():
        lines += ["## Reading", "", Path(notes).read_text().strip(), ""]
    path = docs / args.report
    path.write_text("\n".join(lines))
    print(f"wrote {path} and {plots}")
    return path
