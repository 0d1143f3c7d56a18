"""docs/RESULTS.md from the order study's kept outcomes (``docs/outcomes/order``), regenerable on any machine.

Per regime: accuracy of every condition on every layout (chance 25%), the order gap (the worst hard layout minus the
easy one), the paired comparisons MAS-ready − causal and MAS-ready − repeat per layout (per seed and over both
seeds: per example the mean outcome over seeds, paired bootstrap 95% CI over examples, McNemar over (seed, example)
pairs), the minimum detectable effect, what each condition picks (a collapse onto one label is flagged), the prefill
cost (prompt tokens and a side-by-side timing of MAS, causal and repeated prefill), and the goal's verdict.

    python benchmarks/order_study.py --stage report
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from segmask.eval.stats import mcnemar_exact, paired_bootstrap

OUTCOMES = Path(__file__).resolve().parents[1] / "docs" / "outcomes" / "order"
COST = OUTCOMES / "prefill-cost.json"
"""The prefill-cost measurement per layout (``measure_cost``), kept so the report regenerates without timing."""
CHANCE = 0.25
GOAL = {"diff": 0.05, "above_chance": 0.15, "gap_ratio": 1 / 3, "cost_ratio": 0.55}


def regime_spec(a, regime: str) -> tuple[str, int]:
    """(layouts trained on, training rows) of a regime: ``mix``, ``easy``, or ``easyN`` (the easy layout, N rows)."""
    if regime == "mix":
        return a.mix, a.train_n
    if regime == "easy" or (regime.startswith("easy") and regime[4:].isdigit()):
        return a.easy, int(regime[4:] or a.easy_n)
    raise SystemExit(f"unknown regime {regime!r}: mix, easy or easyN (the easy layout with N training rows)")


def load(name: str) -> dict | None:
    path = OUTCOMES / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def last_loss(log: dict, k: int = 3) -> float:
    """Mean loss of the last ``k`` logged steps of a training log (``curve``: [step, loss] pairs)."""
    tail = [loss for _, loss in log["curve"][-k:]]
    return sum(tail) / len(tail)


def flags(run: dict) -> dict[int, int]:
    return {r["index"]: int(r["correct"]) for r in run["rows"]}


def pooled(a_runs: list[dict], b_runs: list[dict]) -> dict | None:
    """B − A over the seeds both sides have: per example the mean over seeds; McNemar over (seed, example) pairs."""
    pairs = [(flags(a), flags(b)) for a, b in zip(a_runs, b_runs) if a and b]
    if not pairs:
        return None
    keys = sorted(set.intersection(*(set(a) & set(b) for a, b in pairs)))
    mean_a = [sum(a[k] for a, _ in pairs) / len(pairs) for k in keys]
    mean_b = [sum(b[k] for _, b in pairs) / len(pairs) for k in keys]
    low, high = paired_bootstrap(mean_a, mean_b, n_boot=10_000, seed=0)
    a_only = sum(a[k] and not b[k] for a, b in pairs for k in keys)
    b_only = sum(b[k] and not a[k] for a, b in pairs for k in keys)
    acc_a, acc_b = sum(mean_a) / len(keys), sum(mean_b) / len(keys)
    half = (high - low) / 2
    return {"n": len(keys), "seeds": len(pairs), "acc_a": acc_a, "acc_b": acc_b, "diff": acc_b - acc_a,
            "low": low, "high": high, "p": mcnemar_exact(a_only, b_only), "mde": 2.8 / 1.96 * half}


def pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def signed(x: float) -> str:
    return f"{100 * x:+.1f}"


def acc(run: dict | None) -> float | None:
    if not run:
        return None
    return sum(r["correct"] for r in run["rows"]) / len(run["rows"])


def picks(run: dict) -> str:
    count = Counter(r["prediction"] for r in run["rows"])
    top, n = count.most_common(1)[0]
    mark = " **collapsed**" if n >= 0.95 * len(run["rows"]) else ""
    return " ".join(f"{k} {v}" for k, v in sorted(count.items())) + mark


def measure_cost(task: str, data_dir: Path, layouts: list[str], n: int = 48, reps: int = 3) -> dict:
    """Mean prompt tokens per mask and the prefill time of MAS, causal and repeat measured side by side (interleaved,
    best of ``reps``) on ``n`` test prompts of each layout, batch 8, one model; kept in ``COST`` (merged with the
    layouts measured before) so the report regenerates without timing anything."""
    import torch

    from segmask.bench import interleaved, machine
    from segmask.core.segments import collate
    from segmask.eval.prompts import prompt_example
    from segmask.eval.tasks import get_task, load_records
    from segmask.hf.hook import enable
    from segmask.hf.models import load_model

    model, tok = load_model("smollm2-135m-instruct")
    enable(model)
    records = load_records(get_task(task), data_dir, limit=n, seed=0)
    kept = json.loads(COST.read_text()) if COST.exists() else {}
    for layout in layouts:
        examples = {m: [prompt_example(tok, r, mask=m, layout=layout) for r in records]
                    for m in ("mas", "causal", "causal-repeat")}

        def prefill(exs: list, mask: str) -> None:
            with torch.inference_mode():
                for i in range(0, len(exs), 8):
                    batch = collate(exs[i:i + 8], pad_token_id=tok.pad_token_id or 0, padding_side="left")
                    kw = {"segment_ids": batch["segment_ids"]} if mask == "mas" else {}
                    model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False, **kw)

        times = interleaved({m: (lambda e=e, m=m: prefill(e, m)) for m, e in examples.items()}, reps, base="causal")
        kept[layout] = {"tokens": {m: sum(len(e) for e in exs) / len(exs) for m, exs in examples.items()},
                        "seconds": {m: min(t["wall"]) for m, t in times.items()}, "prompts": n, "reps": reps,
                        "machine": machine()}
    COST.parent.mkdir(parents=True, exist_ok=True)
    COST.write_text(json.dumps(kept, indent=1) + "\n")
    return kept


def cost_table(cost: dict, layouts: list[str]) -> tuple[list[str], dict[str, tuple[float, float]]]:
    """The prefill-cost table's lines and per layout (MAS / repeat tokens, MAS / repeat time)."""
    lines = ["| layout | MAS tokens | causal tokens | repeat tokens | MAS s | causal s | repeat s "
             "| MAS / repeat time |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    ratios = {}
    for layout in (x for x in layouts if x in cost):
        tokens, best = cost[layout]["tokens"], cost[layout]["seconds"]
        lines.append(f"| {layout} | {tokens['mas']:.0f} | {tokens['causal']:.0f} | {tokens['causal-repeat']:.0f} | "
                     f"{best['mas']:.2f} | {best['causal']:.2f} | {best['causal-repeat']:.2f} | "
                     f"{best['mas'] / best['causal-repeat']:.2f} |")
        ratios[layout] = (tokens["mas"] / tokens["causal-repeat"], best["mas"] / best["causal-repeat"])
    return lines, ratios


def write_report(a) -> None:
    seeds, layouts, arms = a.seeds.split(","), a.layouts.split(","), a.arms.split(",")
    easy, hard = a.easy, [x for x in a.layouts.split(",") if x != a.easy]
    t = f"{a.task}-{a.answer_form}"
    scoring = ("the `choice` protocol (each option's text scored as the answer; chance 25%)"
               if a.answer_form == "text" else "the `loglik` protocol (labels answer1..answer4 scored; chance 25%)")
    out = [f"# Where MAS matters: prompt order ({a.task}, answers by {a.answer_form})", "",
           "Generated by `python benchmarks/order_study.py --stage report` from `docs/outcomes/order` (per-example "
           "picks of every evaluation); the study's setup is in the script's docstring. "
           f"Task `{a.task}` (`segmask synth {a.task} --n {a.data_n} --test-n {a.test_n} --seed {a.data_seed}`; "
           "LoRA r=32/alpha=64 on q/v, lr " f"{a.lr}, batch 8, one epoch; the rows per arm are in each regime's "
           "heading), every one of the "
           f"{a.test_n} test records evaluated in every layout with {scoring}. Easy layout: `{easy}`; hard: "
           + ", ".join(f"`{h}`" for h in hard) + " (c context, q question, o options).", ""]
    notes = Path(__file__).resolve().parent / f"order_reading_{t}.md"  # the reading, written by hand, leads
    if notes.exists():
        out += ["## In short", "", notes.read_text().strip(), ""]
    verdict_rows, repeat_rows = [], []
    for regime in a.regimes.split(","):
        trained_on, rows = regime_spec(a, regime)
        out += [f"## Regime `{regime}`: trained on layouts {trained_on}, {rows} rows per arm ({rows // 8} steps)", "",
                "| condition | " + " | ".join(layouts) + " | order gap (worst hard − easy) |",
                "|---|" + "---:|" * (len(layouts) + 1)]
        runs: dict[str, list[dict | None]] = {}
        for arm in arms:
            runs[arm] = [None] * len(seeds)
            for i, seed in enumerate(seeds):
                row = {lay: load(f"{t}-{regime}-{arm}-s{seed}-{lay}") for lay in layouts}
                runs[arm][i] = row
                if any(row.values()):
                    accs = {lay: acc(r) for lay, r in row.items()}
                    gap = (min(accs[h] for h in hard) - accs[easy]) if all(v is not None for v in accs.values()) \
                        else None
                    out.append(f"| {arm} s{seed} | " + " | ".join(pct(accs[lay]) for lay in layouts)
                               + f" | {'–' if gap is None else signed(gap)} |")
        if regime == a.regimes.split(",")[0]:
            for base in ("base-causal", "base-mas-ready", "base-repeat"):
                row = {lay: load(f"{t}-{base}-{lay}") for lay in layouts}
                if any(row.values()):
                    out.append(f"| {base} (untrained) | " + " | ".join(pct(acc(row[lay])) for lay in layouts) + " | |")
        trained = [(f"{arm} s{seed}", load(f"train-{t}-{regime}-{arm}-s{seed}")) for arm in arms for seed in seeds]
        if any(log for _, log in trained):
            out += ["", "Training loss on the answer tokens (mean over the run; mean of the last 3 logged steps) "
                    "and wall time, where the run's log was kept: " + "; ".join(
                        f"{name} {log['train_loss']:.3f} / {last_loss(log):.3f}, {log['wall_s']:.0f} s"
                        for name, log in trained if log) + "."]
        out += ["", "Paired comparisons over the seeds that finished (B − A, pp; 95% CI; McNemar p; MDE at 80% "
                "power):", "", "| comparison | layout | seeds | A | B | B − A | 95% CI | p | MDE |",
                "|---|---|---:|---:|---:|---:|---|---:|---:|"]
        for a_arm, b_arm in (("causal", "mas-ready"), ("repeat", "mas-ready"), ("causal", "repeat")):
            if a_arm not in runs or b_arm not in runs:
                continue
            for lay in layouts:
                res = pooled([r[lay] if r else None for r in runs[a_arm]], [r[lay] if r else None for r in runs[b_arm]])
                if res:
                    out.append(f"| {b_arm} − {a_arm} | {lay} | {res['seeds']} | {pct(res['acc_a'])} | "
                               f"{pct(res['acc_b'])} | {signed(res['diff'])} | [{signed(res['low'])}, "
                               f"{signed(res['high'])}] | {res['p']:.2g} | {100 * res['mde']:.1f} |")
                    if (a_arm, b_arm) == ("causal", "mas-ready") and lay in hard:
                        verdict_rows.append((regime, lay, res, runs))
                    if (a_arm, b_arm) == ("repeat", "mas-ready") and lay in hard:
                        repeat_rows.append((regime, lay, res))
        out += ["", "What each condition picks (seed by seed; gold answers are uniform over the four labels):", ""]
        for arm in arms:
            for i, seed in enumerate(seeds):
                for lay in layouts:
                    run = runs[arm][i][lay] if runs[arm][i] else None
                    if run:
                        out.append(f"- {arm} s{seed} {lay}: {picks(run)}")
        out.append("")
    cost_lines, ratios = [], {}
    if getattr(a, "cost", True):
        cost = json.loads(COST.read_text()) if COST.exists() else {}
        again = getattr(a, "measure_cost", None)
        timed = hard if again == "all" else [x for x in (again or "").split(",") if x]
        if timed:
            cost = measure_cost(a.task, Path(a.out) / "data", timed)
        cost_lines, ratios = cost_table(cost, hard)
    out += verdict(a, verdict_rows, easy, seeds, repeat_rows, ratios)
    if cost_lines:
        out += ["## Prefill cost", "",
                "Mean prompt tokens and the prefill time of 48 test prompts (batch 8, best of 3, interleaved, one "
                "process, SmolLM2-135M, sdpa, this CPU); repetition sends the user message twice.", ""]
        out += cost_lines + [""]
    out += ["## Earlier studies", "",
            "- [RESULTS-commonsense.md](RESULTS-commonsense.md): the paper's comparison on the commonsense tasks "
            "(LoRA under MAS vs causal, SmolLM2-135M, 6,189 test examples, 2 seeds): MAS − causal +0.6 pp, within "
            "noise; both arms near chance at 135M.",
            "- [RESULTS-mas-ready.md](RESULTS-mas-ready.md): the same study's arm started from the MAS-ready model.",
            "- [RESULTS-gemma.md](RESULTS-gemma.md): Gemma-3-270M base under MAS and causal prefill.",
            "- [ADAPT.md](ADAPT.md): how the MAS-ready default model is made (self-distillation, no labels).",
            "- Earlier, smaller runs: [RESULTS-label-4000.md](RESULTS-label-4000.md), "
            "[RESULTS-960.md](RESULTS-960.md), [RESULTS-320.md](RESULTS-320.md).", ""]
    Path(a.doc).write_text("\n".join(out) + "\n")
    print(f"wrote {a.doc}")


def verdict(a, rows, easy: str, seeds: list[str], repeat_rows=(), ratios=None) -> list[str]:
    """The goal, checked on every hard layout and regime that finished: the accuracy part against causal, then the
    part against prompt repetition (MAS-ready's accuracy matches or beats it, i.e. the CI of MAS − repeat reaches 0
    or above, at ≤ 55% of its prefill cost, judged by prompt tokens and measured time)."""
    lines = ["## The goal", "",
             f"On a hard layout: MAS-ready beats causal by ≥ {100 * GOAL['diff']:.0f} pp with a 95% CI above 0, both "
             f"≥ {100 * GOAL['above_chance']:.0f} pp above chance, and MAS's order gap ≤ 1/3 of causal's.", ""]
    met = False
    for regime, lay, res, runs in rows:
        def mean_acc(arm, layout, runs=runs, lay=lay):  # over the seeds evaluated on both this layout and the easy one
            vals = [acc(r[layout]) for r in runs[arm] if r and r.get(lay) and r.get(easy)]
            return sum(vals) / len(vals) if vals else None
        gaps = {arm: (mean_acc(arm, lay) - mean_acc(arm, easy))
                if mean_acc(arm, lay) is not None and mean_acc(arm, easy) is not None else None
                for arm in ("causal", "mas-ready")}
        ok_diff = res["diff"] >= GOAL["diff"] and res["low"] > 0
        ok_chance = min(res["acc_a"], res["acc_b"]) >= CHANCE + GOAL["above_chance"]
        ok_gap = gaps["causal"] is not None and gaps["mas-ready"] is not None and gaps["causal"] < 0 and \
            abs(min(gaps["mas-ready"], 0)) <= GOAL["gap_ratio"] * abs(gaps["causal"])
        met |= ok_diff and ok_chance and ok_gap
        lines.append(f"- `{regime}`, layout `{lay}` ({res['seeds']} seed(s)): MAS-ready − causal "
                     f"{signed(res['diff'])} pp [{signed(res['low'])}, {signed(res['high'])}] "
                     f"({'yes' if ok_diff else 'no'}); both above "
                     f"chance + 15 pp: {'yes' if ok_chance else 'no'}; order gap MAS-ready "
                     f"{'–' if gaps['mas-ready'] is None else signed(gaps['mas-ready'])} vs causal "
                     f"{'–' if gaps['causal'] is None else signed(gaps['causal'])} ({'yes' if ok_gap else 'no'})")
    lines += ["", f"**Accuracy part of the goal {'met' if met else 'not met'}** on the runs above"
              + ("" if len(seeds) and all(r[2]['seeds'] == len(seeds) for r in rows) else
                 " (some regimes ran fewer seeds than listed)") + ".", ""]
    if not repeat_rows:
        return lines
    ratios = ratios or {}
    lines += [f"Against prompt repetition: MAS-ready's accuracy matches or beats repetition's (95% CI of MAS − "
              f"repeat reaching 0 or above) at ≤ {100 * GOAL['cost_ratio']:.0f}% of its prefill cost.", ""]
    met_repeat = False
    for regime, lay, res in repeat_rows:
        ok_acc = res["high"] >= 0
        tok, sec = ratios.get(lay, (None, None))
        ok_cost = tok is not None and max(tok, sec) <= GOAL["cost_ratio"]
        cost = "not measured (--measure-cost)" if tok is None else f"tokens {tok:.2f}, time {sec:.2f} of repetition's"
        met_repeat |= ok_acc and ok_cost
        lines.append(f"- `{regime}`, layout `{lay}` ({res['seeds']} seed(s)): MAS-ready − repeat "
                     f"{signed(res['diff'])} pp [{signed(res['low'])}, {signed(res['high'])}] "
                     f"({'yes' if ok_acc else 'no'}); MAS prefill cost {cost} "
                     f"({'yes' if ok_cost else 'no' if tok is not None else '–'})")
    lines += ["", f"**Repetition part of the goal {'met' if met_repeat else 'not met'}** on the runs above.", ""]
    return lines
