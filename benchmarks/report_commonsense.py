"""Report stage of ``reproduce_commonsense.py``: finished runs -> ``docs/RESULTS.md`` + PNG plots.

Reads ``OUT/train-{causal,mas}`` (train_summary.json or, for a run cut short, loss_curve.json) and the eval run
folders under ``OUT/eval``; conditions that did not finish are listed as missing, never invented.

    python benchmarks/reproduce_commonsense.py --stage report [--out runs/reproduce] [--notes my_reading.md]
"""

from __future__ import annotations

import json
from pathlib import Path

from segmask.eval import compare_runs, load_run

PAIRS = [  # (title, A, B): B - A
    ("Fine-tuned, generative (paper protocol, greedy): MAS-LoRA vs causal-LoRA",
     "causal-lora-generate", "mas-lora-generate"),
    ("Fine-tuned, log-likelihood: MAS-LoRA vs causal-LoRA", "causal-lora-loglik", "mas-lora-loglik"),
    ("Base model (no tuning), log-likelihood: MAS prefill vs causal prefill", "base-causal-loglik", "base-mas-loglik"),
]


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _train_info(out: Path, arm: str, checkpoint: int | None) -> dict:
    """Loss curve (up to ``checkpoint`` when one is evaluated) and the run summary or, if cut short, the recipe."""
    folder = out / f"train-{arm}"
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


def _summary_table(out: Path, names: list[str]) -> list[str]:
    runs = {n: load_run(out / "eval" / n)[0] for n in names if (out / "eval" / n / "summary.json").exists()}
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


def _plots(out: Path, docs: Path, prefix: str, comparisons: dict, arms: dict) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    if comparisons:
        fig, ax = plt.subplots(figsize=(9, 4.2))
        width = 0.8 / len(comparisons)
        for k, (title, cmp) in enumerate(comparisons.items()):
            names = [*cmp["tasks"], "mean"]
            rows = [*cmp["tasks"].values(), cmp["mean"]]
            xs = [i + (k - (len(comparisons) - 1) / 2) * width for i in range(len(names))]
            diffs = [100 * r["diff"] for r in rows]
            err = [[d - 100 * r["ci_low"] for d, r in zip(diffs, rows)],
                   [100 * r["ci_high"] - d for d, r in zip(diffs, rows)]]
            ax.bar(xs, diffs, width, yerr=err, capsize=3, label=title.split(":")[0])
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xticks(range(len(names)), names, rotation=20)
        ax.set_ylabel("MAS − causal accuracy (pp), 95% CI")
        ax.set_title("Per-task difference, MAS minus causal (same examples)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(docs / f"{prefix}_differences.png", dpi=120)
        plt.close(fig)
        written.append(f"{prefix}_differences.png")
    if any(a["curve"] for a in arms.values()):
        fig, ax = plt.subplots(figsize=(7, 3.8))
        for arm, info in arms.items():
            if info["curve"]:
                ax.plot([r["step"] for r in info["curve"]], [r["loss"] for r in info["curve"]], marker=".",
                        label=f"{arm} mask")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("training loss (answer tokens)")
        ax.set_title("LoRA training loss, SmolLM2-135M-Instruct")
        ax.legend()
        fig.tight_layout()
        fig.savefig(docs / f"{prefix}_loss.png", dpi=120)
        plt.close(fig)
        written.append(f"{prefix}_loss.png")
    return written


def _reading(comparisons: dict, arms: dict) -> list[str]:
    lines = []
    for title, cmp in comparisons.items():
        m = cmp["mean"]
        sig = [n for n, t in cmp["tasks"].items() if t["ci_low"] > 0 or t["ci_high"] < 0]
        verdict = ("the 95% CI of the mean difference excludes zero" if m["ci_low"] > 0 or m["ci_high"] < 0
                   else "the 95% CI of the mean difference includes zero")
        lines.append(f"- **{title}**: mean difference {100 * m['diff']:+.1f} pp "
                     f"[{100 * m['ci_low']:+.1f}, {100 * m['ci_high']:+.1f}] over {m['n']} paired examples; "
                     f"{verdict}; pooled McNemar p = {m['p_mcnemar']:.3f} ({m['a_only']} examples right only "
                     f"under causal, {m['b_only']} only under MAS). Tasks whose own CI excludes zero: "
                     f"{', '.join(sig) if sig else 'none'}.")
    final = {arm: info["curve"][-1]["loss"] for arm, info in arms.items() if info["curve"]}
    if len(final) == 2:
        lines.append(f"- Last logged training loss: causal {final['causal']:.3f}, MAS {final['mas']:.3f}.")
    return lines


def write_report(args) -> Path:
    """Write ``docs/RESULTS.md`` and the PNGs from the finished parts of the run in ``args.out``."""
    out, docs = Path(args.out), Path(args.docs)
    docs.mkdir(parents=True, exist_ok=True)
    checkpoint = getattr(args, "checkpoint", None)
    arms = {arm: _train_info(out, arm, checkpoint) for arm in ("causal", "mas")}
    comparisons, missing = {}, []
    for title, a, b in PAIRS:
        if (out / "eval" / a / "summary.json").exists() and (out / "eval" / b / "summary.json").exists():
            comparisons[title] = compare_runs(out / "eval" / a, out / "eval" / b)
        else:
            missing.append(title)
    timing = json.loads((out / "timing.json").read_text()) if (out / "timing.json").exists() else {}
    report = getattr(args, "report", "RESULTS.md")
    plots = _plots(out, docs, Path(report).stem.lower(), comparisons, arms)
    recipe = next((a["recipe"] for a in arms.values() if "recipe" in a), None)
    command = "python benchmarks/reproduce_commonsense.py"
    if recipe:
        command += (f" --train-examples {recipe['max_examples']} --batch-size {recipe['batch_size']} --grad-accum "
                    f"{recipe['grad_accum']} --lr {recipe['lr']} --warmup-steps {recipe['warmup_steps']}")
    command += f" --eval-limit {getattr(args, 'eval_limit', 40)} --seed {getattr(args, 'seed', 42)}"
    lines = ["# Reproduction: MAS vs causal LoRA fine-tuning on commonsense reasoning (SmolLM2-135M-Instruct, CPU)",
             "", f"Produced by `{command}` (report only: add `--stage report`). "
             "Every number below was measured in this run; conditions that did not finish are listed as missing.",
             "", "## Recipe and budget", ""]
    if recipe:
        lora = recipe["lora"]
        lines += [f"- Model: `{recipe['model']}` (float32, sdpa), prompt form `{recipe['prompt_form']}`, "
                  f"cutoff {recipe['cutoff']} tokens, seed {recipe['seed']}.",
                  f"- Data: {recipe['max_examples']} rows drawn by a seeded shuffle of the mixed train sets "
                  f"{', '.join(Path(d).parent.name for d in recipe['data'])}, one pass.",
                  f"- LoRA r={lora['r']}, alpha={lora['alpha']}, dropout {lora['dropout']}, "
                  f"targets {'+'.join(lora['target_modules'])}; AdamW lr {recipe['lr']}, linear decay, "
                  f"{recipe['warmup_steps']} warmup steps; micro batch {recipe['batch_size']} × "
                  f"{recipe['grad_accum']} accumulation; loss on answer tokens only; length-grouped batches.",
                  "- The two arms share data, order, seed and LoRA init; the only difference is `--mask`."]
    for arm, info in arms.items():
        if "steps" in info:
            lines.append(f"- {arm} arm: {info['steps']} steps, {info['tokens_seen']} tokens, "
                         f"{info['wall_s'] / 60:.1f} min wall-clock ({info['tokens_per_s']} tokens/s), "
                         f"final mean train loss {info['train_loss']:.3f}; data: {info['data']['kept']} kept, "
                         f"{info['data']['dropped']} dropped over the cutoff, {info['data']['truncated']} truncated.")
        elif info["curve"]:
            last = info["curve"][-1]
            lines.append(f"- {arm} arm: evaluated at checkpoint step {checkpoint} (run cut short for time): "
                         f"{last['tokens_seen']} tokens by step {last['step']}, {last['elapsed_s'] / 60:.1f} min "
                         f"wall-clock ({last['tokens_per_s']} tokens/s), last logged loss {last['loss']:.3f}.")
    if timing:
        lines.append("- Wall-clock per job (min): " + ", ".join(f"{k} {v / 60:.1f}" for k, v in timing.items()) + ".")
    lines += ["", "## Accuracy per condition (%, Wilson 95% CI)", "", *_summary_table(out, _eval_names(out)), ""]
    for title, cmp in comparisons.items():
        lines += [f"## {title}", "", f"A = `{Path(cmp['a']).name}`, B = `{Path(cmp['b']).name}`.", "",
                  *_comparison_table(cmp), ""]
    if missing:
        lines += ["## Missing", "", *[f"- {t}: not run to completion in this budget." for t in missing], ""]
    if plots:
        lines += ["## Plots", "", *[f"![{p}]({p})" for p in plots], ""]
    lines += ["## Reading", "", *_reading(comparisons, arms)]
    notes = getattr(args, "notes", None)
    if notes and Path(notes).exists():
        lines += ["", Path(notes).read_text().strip()]
    path = docs / report
    path.write_text("\n".join(lines) + "\n")
    print(f"wrote {path} and {plots}")
    return path


def _eval_names(out: Path) -> list[str]:
    order = ["base-causal-loglik", "base-mas-loglik", "causal-lora-loglik", "mas-lora-loglik",
             "causal-lora-generate", "mas-lora-generate"]
    return [n for n in order if (out / "eval" / n).exists()]
