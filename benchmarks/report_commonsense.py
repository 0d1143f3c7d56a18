"""Report stage of ``reproduce_commonsense.py``: finished runs -> ``docs/RESULTS.md`` + PNG plots.

Reads ``OUT/train-{arm}-s{seed}`` (train_summary.json or, for a run cut short, loss_curve.json) and the eval run
folders under ``OUT/eval``; conditions that did not finish are listed as missing, never invented. MAS − causal is
reported per seed (paired bootstrap CI, McNemar) with the spread between seeds, the headline protocol (choice)
first; then the label protocols, the base model under each mask (and the repeat baseline), the option-order
diagnostic, and the pick distribution of the headline conditions (what the models actually answer).

    python benchmarks/reproduce_commonsense.py --stage report [--out runs/reproduce] [--notes my_reading.md]
"""

from __future__ import annotations

import json
from pathlib import Path

from segmask.eval import compare_runs, format_picks, load_run

TITLES = {"choice": "choice (option texts, headline)", "loglik": "log-likelihood of labels",
          "generate": "generative (paper protocol, greedy)"}


def pairs(conds: dict, seeds: list[int], protocols: list[str]) -> list[tuple[str, str, str, bool]]:
    """(title, A, B, plotted) for every comparison B − A whose two conditions are planned."""
    out = []
    for protocol in protocols:
        for seed in seeds:
            out.append((f"Fine-tuned, {TITLES[protocol]}, seed {seed}: MAS-LoRA vs causal-LoRA",
                        f"causal-s{seed}-{protocol}", f"mas-s{seed}-{protocol}", protocol == "choice"))
    out += [("Base model, choice: MAS prefill vs causal prefill", "base-causal-choice", "base-mas-choice", True),
            ("Base model, choice: MAS prefill vs the repeat baseline (question twice, causal)",
             "base-causal-repeat-choice", "base-mas-choice", False),
            ("Base model, choice, lm-eval's qa prompt: MAS vs causal", "base-causal-choice-qa", "base-mas-choice-qa",
             False),
            ("Base model, choice, qa prompt: MAS vs the repeat baseline", "base-causal-repeat-choice-qa",
             "base-mas-choice-qa", False),
            ("Base model, choice, options before the question: MAS vs causal", "base-causal-choice-before",
             "base-mas-choice-before", False),
            ("Base model, log-likelihood of labels: MAS prefill vs causal prefill", "base-causal-loglik",
             "base-mas-loglik", False)]
    for arm, label in (("causal", "causal"), ("mas", "MAS")):
        out.append((f"Option order, base model under {label} prefill: options before vs after the question",
                    f"base-{arm}-choice", f"base-{arm}-choice-before", False))
        for seed in seeds:
            out.append((f"Option order, {label}-LoRA seed {seed}: options before vs after the question",
                        f"{arm}-s{seed}-choice", f"{arm}-s{seed}-choice-before", False))
    return [p for p in out if p[1] in conds and p[2] in conds]


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _train_info(out: Path, arm: str, seed: int, checkpoint: int | None) -> dict:
    """Loss curve (up to ``checkpoint`` when one is evaluated) and the run summary or, if cut short, the recipe."""
    folder = out / f"train-{arm}-s{seed}"
    curve = json.loads((folder / "loss_curve.json").read_text()) if (folder / "loss_curve.json").exists() else []
    info = {"curve": [r for r in curve if checkpoint is None or r["step"] <= checkpoint]}
    if checkpoint is None and (folder / "train_summary.json").exists():
        info.update(json.loads((folder / "train_summary.json").read_text()))
    elif checkpoint is not None and (folder / f"checkpoint-{checkpoint}" / "segmask.json").exists():
        info["recipe"] = json.loads((folder / f"checkpoint-{checkpoint}" / "segmask.json").read_text())["recipe"]
    return info


def _comparison_table(cmp: dict) -> list[str]:
    lines = ["| task | n | A acc % | B acc % | B−A (pp) | 95% CI (paired bootstrap) | A only | B only | McNemar p |",
             "|---|---:|---:|---:|---:|---|---:|---:|---:|"]
    for name, t in [*cmp["tasks"].items(), ("**mean of tasks**", cmp["mean"])]:
        lines.append(f"| {name} | {t['n']} | {_pct(t['acc_a'])} | {_pct(t['acc_b'])} | {100 * t['diff']:+.1f} | "
                     f"[{100 * t['ci_low']:+.1f}, {100 * t['ci_high']:+.1f}] | {t['a_only']} | {t['b_only']} | "
                     f"{t['p_mcnemar']:.3f} |")
    return lines


def _summary_table(runs: dict[str, dict]) -> list[str]:
    if not runs:
        return ["(no evaluation finished)"]
    tasks = list(next(iter(runs.values()))["tasks"])
    lines = ["| condition | protocol | " + " | ".join(tasks) + " | mean | s |",
             "|---|---|" + "---:|" * (len(tasks) + 2)]
    for name, s in runs.items():
        cells = [f"{_pct(s['tasks'][t]['acc'])} [{_pct(s['tasks'][t]['ci_low'])}, {_pct(s['tasks'][t]['ci_high'])}]"
                 for t in tasks]
        lines.append(f"| {name} | {s['protocol']} | " + " | ".join(cells) + f" | {_pct(s['mean']['acc'])} | "
                     f"{s['seconds']:.0f} |")
    return lines


def _seed_table(comparisons: dict, seeds: list[int], protocols: list[str]) -> list[str]:
    """MAS − causal mean difference per seed and protocol, and the spread between seeds."""
    lines = ["| protocol | " + " | ".join(f"seed {s}" for s in seeds) + " | mean over seeds | spread (max − min) |",
             "|---|" + "---|" * (len(seeds) + 2)]
    for protocol in protocols:
        diffs = []
        cells = []
        for seed in seeds:
            title = f"Fine-tuned, {TITLES[protocol]}, seed {seed}: MAS-LoRA vs causal-LoRA"
            m = comparisons.get(title, {}).get("mean")
            ci = f"[{100 * m['ci_low']:+.1f}, {100 * m['ci_high']:+.1f}]" if m else ""
            cells.append(f"{100 * m['diff']:+.1f} {ci}" if m else "–")
            if m:
                diffs.append(100 * m["diff"])
        spread = f"{max(diffs) - min(diffs):.1f}" if len(diffs) > 1 else "–"
        mean = f"{sum(diffs) / len(diffs):+.1f}" if diffs else "–"
        lines.append(f"| {protocol} | " + " | ".join(cells) + f" | {mean} | {spread} |")
    return lines


def _plots(docs: Path, prefix: str, comparisons: dict, plotted: set, arms: dict) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    shown = {t: c for t, c in comparisons.items() if t in plotted}
    if shown:
        fig, ax = plt.subplots(figsize=(9, 4.2))
        width = 0.8 / len(shown)
        for k, (title, cmp) in enumerate(shown.items()):
            names = [*cmp["tasks"], "mean"]
            rows = [*cmp["tasks"].values(), cmp["mean"]]
            xs = [i + (k - (len(shown) - 1) / 2) * width for i in range(len(names))]
            diffs = [100 * r["diff"] for r in rows]
            err = [[d - 100 * r["ci_low"] for d, r in zip(diffs, rows)],
                   [100 * r["ci_high"] - d for d, r in zip(diffs, rows)]]
            ax.bar(xs, diffs, width, yerr=err, capsize=3, label=title.split(":")[0])
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xticks(range(len(names)), names, rotation=20)
        ax.set_ylabel("MAS − causal accuracy (pp), 95% CI")
        ax.set_title("Per-task difference, MAS minus causal, choice protocol (same examples)")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(docs / f"{prefix}_differences.png", dpi=120)
        plt.close(fig)
        written.append(f"{prefix}_differences.png")
    if any(a["curve"] for a in arms.values()):
        fig, ax = plt.subplots(figsize=(7, 3.8))
        for name, info in arms.items():
            if info["curve"]:
                ax.plot([r["step"] for r in info["curve"]], [r["loss"] for r in info["curve"]], lw=1, label=name)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("training loss (answer tokens)")
        ax.set_title("LoRA training loss, SmolLM2-135M-Instruct")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(docs / f"{prefix}_loss.png", dpi=120)
        plt.close(fig)
        written.append(f"{prefix}_loss.png")
    return written


def _reading(comparisons: dict, arms: dict) -> list[str]:
    lines = []
    for title, cmp in comparisons.items():
        m = cmp["mean"]
        verdict = "excludes zero" if m["ci_low"] > 0 or m["ci_high"] < 0 else "includes zero"
        lines.append(f"- **{title}**: mean difference {100 * m['diff']:+.1f} pp [{100 * m['ci_low']:+.1f}, "
                     f"{100 * m['ci_high']:+.1f}] over {m['n']} paired examples (the 95% CI {verdict}); pooled "
                     f"McNemar p = {m['p_mcnemar']:.3f} ({m['a_only']} right only in A, {m['b_only']} only in B).")
    final = {name: info["curve"][-1]["loss"] for name, info in arms.items() if info["curve"]}
    if final:
        lines.append("- Last logged training loss: " + ", ".join(f"{k} {v:.3f}" for k, v in final.items()) + ".")
    return lines


def _recipe_lines(recipe: dict, arms: dict, checkpoint: int | None, timing: dict) -> list[str]:
    lora = recipe["lora"]
    lines = [f"- Model: `{recipe['model']}` (float32, sdpa), prompt form `{recipe['prompt_form']}`, answer form "
             f"`{recipe.get('answer_form', 'label')}`, cutoff {recipe['cutoff']} tokens.",
             f"- Data: {recipe['max_examples']} rows drawn by a seeded shuffle of the mixed train sets "
             f"{', '.join(Path(d).parent.name for d in recipe['data'])}, one pass.",
             f"- LoRA r={lora['r']}, alpha={lora['alpha']}, dropout {lora['dropout']}, "
             f"targets {'+'.join(lora['target_modules'])}; AdamW lr {recipe['lr']}, linear decay, "
             f"{recipe['warmup_steps']} warmup steps; micro batch {recipe['batch_size']} × "
             f"{recipe['grad_accum']} accumulation; loss on answer tokens only; length-grouped batches.",
             "- Each seed's two arms share data, order, seed and LoRA init; the only difference is `--mask`."]
    for name, info in arms.items():
        if "steps" in info:
            lines.append(f"- {name}: {info['steps']} steps, {info['tokens_seen']} tokens, "
                         f"{info['wall_s'] / 60:.1f} min wall-clock ({info['tokens_per_s']} tokens/s), "
                         f"final mean train loss {info['train_loss']:.3f}; data: {info['data']['kept']} kept, "
                         f"{info['data']['dropped']} dropped over the cutoff, {info['data']['truncated']} truncated.")
        elif info["curve"]:
            last = info["curve"][-1]
            lines.append(f"- {name}: evaluated at checkpoint step {checkpoint} (run cut short): "
                         f"{last['tokens_seen']} tokens by step {last['step']}, {last['elapsed_s'] / 60:.1f} min "
                         f"wall-clock ({last['tokens_per_s']} tokens/s), last logged loss {last['loss']:.3f}.")
    if timing:
        lines.append("- Wall-clock per job (min, summed over sittings): "
                     + ", ".join(f"{k} {v / 60:.1f}" for k, v in timing.items()) + ".")
    return lines


def write_report(args, conds: dict) -> Path:
    """Write ``docs/RESULTS.md`` and the PNGs from the finished parts of the run in ``args.out``."""
    out, docs = Path(args.out), Path(args.docs)
    docs.mkdir(parents=True, exist_ok=True)
    checkpoint = getattr(args, "checkpoint", None)
    arms = {f"{arm}-s{seed}": _train_info(out, arm, seed, checkpoint)
            for seed in args.seeds for arm in ("causal", "mas")}
    runs = {n: load_run(out / "eval" / n)[0] for n in conds if (out / "eval" / n / "summary.json").exists()}
    comparisons, missing, plotted = {}, [], set()
    for title, a, b, plot in pairs(conds, args.seeds, args.protocols):
        if a in runs and b in runs:
            comparisons[title] = compare_runs(out / "eval" / a, out / "eval" / b)
            plotted |= {title} if plot else set()
        else:
            missing.append(title)
    timing = json.loads((out / "timing.json").read_text()) if (out / "timing.json").exists() else {}
    plots = _plots(docs, Path(args.report).stem.lower(), comparisons, plotted, arms)
    recipe = next((a["recipe"] for a in arms.values() if "recipe" in a), None)
    command = (f"python benchmarks/reproduce_commonsense.py --seeds {','.join(map(str, args.seeds))} --protocols "
               f"{','.join(args.protocols)} --answer-form {args.answer_form} --train-examples {args.train_examples} "
               f"--batch-size {args.batch_size} --grad-accum {args.grad_accum} --lr {args.lr} --warmup-steps "
               f"{args.warmup_steps} --eval-limit {args.eval_limit} --seed {args.seed}"
               + (" --no-diagnostics" if args.no_diagnostics else ""))
    lines = ["# Reproduction: MAS vs causal LoRA fine-tuning on commonsense reasoning (SmolLM2-135M-Instruct, CPU)",
             "", f"Produced by `{command}` (report only: add `--stage report`). "
             "Every number below was measured in this run; conditions that did not finish are listed as missing.",
             "", "## Recipe and budget", "", *(_recipe_lines(recipe, arms, checkpoint, timing) if recipe else []),
             "", "## MAS − causal per seed (mean of tasks, pp, paired 95% CI)", "",
             *_seed_table(comparisons, args.seeds, args.protocols),
             "", "## Accuracy per condition (%, Wilson 95% CI)", "", *_summary_table(runs), ""]
    for title, cmp in comparisons.items():
        lines += [f"## {title}", "", f"A = `{Path(cmp['a']).name}`, B = `{Path(cmp['b']).name}`.", "",
                  *_comparison_table(cmp), ""]
    headline = [n for n in runs if n.endswith("-choice") and runs[n]["protocol"] == "choice"]
    if headline:
        lines += ["## What the models pick (choice protocol)", ""]
        for name in headline:
            lines += [f"`{name}`:", "", "```", format_picks(runs[name]), "```", ""]
    if missing:
        lines += ["## Missing", "", *[f"- {t}: not run to completion in this budget." for t in missing], ""]
    if plots:
        lines += ["## Plots", "", *[f"![{p}]({p})" for p in plots], ""]
    lines += ["## Reading", "", *_reading(comparisons, arms)]
    notes = getattr(args, "notes", None)
    if notes and Path(notes).exists():
        lines += ["", Path(notes).read_text().strip()]
    path = docs / args.report
    path.write_text("\n".join(lines) + "\n")
    print(f"wrote {path} and {plots}")
    return path
