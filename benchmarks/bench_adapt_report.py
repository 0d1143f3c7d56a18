"""The measured section of docs/ADAPT.md from ``bench_adapt.py``'s result (tables, cost, example answers)."""

from __future__ import annotations

from pathlib import Path

from segmask.bench import write_section

SECTION = "bench_adapt"
"""The marked section of docs/ADAPT.md this report rewrites."""


def _row(name: str, b: dict) -> str:
    nll, deg, agree = b["nll_median"], b["degenerate"], b["agree16"]
    return (f"| {name} | {b['n']} | {b['kl_before']:.3f} → {b['kl_after']:.3f} ({b['kl_before'] / b['kl_after']:.1f}×)"
            f" | {b['kl_before_first8']:.3f} → {b['kl_after_first8']:.3f} | {nll['causal']:.2f} | {nll['untuned']:.2f}"
            f" | {nll['adapted']:.2f} | {deg['untuned']:.0%} → {deg['adapted']:.0%} (causal {deg['causal']:.0%})"
            f" | {agree['untuned']:.0%} → {agree['adapted']:.0%} |")


def _commonsense(cs: dict) -> list[str]:
    if not cs:
        return ["(commonsense accuracy not measured in this run: no --data-dir or --eval-limit 0)"]
    lines = ["| protocol / prompt form | base, causal prefill | adapted, MAS prefill | adapted − base [95% CI] | "
             "McNemar p | n |", "|---|---|---|---|---|---|"]
    for key, r in cs.items():
        m = r["paired"]["mean"]
        lines.append(f"| {key} | {m['acc_a']:.1%} | {m['acc_b']:.1%} | {m['diff'] * 100:+.1f} pp "
                     f"[{m['ci_low'] * 100:+.1f}, {m['ci_high'] * 100:+.1f}] | {m['p_mcnemar']:.3f} | {m['n']} |")
    lines.append("")
    lines.append("What each model picks (per task: gold counts, then the picks), so a total made of one repeated "
                 "label shows itself:")
    for key, r in cs.items():
        for name in ("causal", "adapted"):
            lines += ["", f"*{key}, {'base causal' if name == 'causal' else 'adapted MAS'}*", "", "```",
                      r[name]["picks"].strip(), "```"]
    return lines


def _examples(result: dict, k: int = 8) -> list[str]:
    """The first k held-out prompts (a fixed, seeded sample across categories), answered three ways."""
    lines, seen = [], set()
    for ex in result["examples"]:
        cat = ex["category"]
        if cat in seen:
            continue
        seen.add(cat)
        user = ex["messages"][-1]["content"].replace("\n", " ")
        system = next((m["content"] for m in ex["messages"] if m["role"] == "system"), None)
        lines += [f"**{cat}**" + (f" (system: *{system}*)" if system else "") + f" — {user[:160]}", ""]
        for name in ("causal", "untuned", "adapted"):
            label = {"causal": "causal", "untuned": "MAS, untuned", "adapted": "MAS, adapted"}[name]
            text = ex[name].replace("\n", " ")
            lines.append(f"- {label}: {text[:220]}")
        lines.append("")
        if len(seen) == k:
            break
    return lines


def render(result: dict) -> str:
    a = result["all"]
    lines = [f"Measured by `{result['command']}` ({result['seconds']} s, one torch thread).", "",
             f"**{result['n']} held-out prompts.** KL is per answer token along the causal model's greedy answers "
             "(teacher forcing); NLL is per token of each model's own greedy answer scored by the causal base "
             "(lower = more fluent to the original model); degenerate = NLL > 4; agreement = first 16 greedy "
             "tokens equal the causal answer's.", "",
             "| prompts | n | KL before → after | KL, first 8 tokens | NLL causal | NLL MAS untuned | NLL MAS adapted "
             "| degenerate untuned → adapted | agreement untuned → adapted |",
             "|---|---|---|---|---|---|---|---|---|", _row("all", a), _row("with a system message",
                                                                            result["with_system"]),
             _row("without", result["without_system"])]
    lines += [_row(k, v) for k, v in result["by_category"].items()]
    c = result.get("cost") or {}
    if c:
        lines += ["", f"**Cost** (this CPU, one torch thread): {c['prompts']} prompts with teacher answers "
                      f"({c['teacher_s']:.0f} s to generate), {c['steps']} steps, {c['tokens_seen']:,} tokens in "
                      f"{c['wall_s'] / 60:.1f} min of training ({c['tokens_per_s']:.0f} tokens/s); total "
                      f"{(c['teacher_s'] + c['wall_s']) / 60:.0f} min."]
    lines += ["", "**Commonsense accuracy** (a seeded subset of every task's test set, the same examples for both; "
                  "`segmask eval` protocols, see docs/eval.md):", ""] + _commonsense(result.get("commonsense", {}))
    lines += ["", f"**Answers** (greedy, {result.get('max_new_tokens', 48)} tokens max; the first held-out prompt of "
                  "each category):", ""]
    lines += _examples(result)
    return "\n".join(lines)


def write_doc(result: dict, doc: Path) -> None:
    """Replace the marked section of ``doc`` (appended when missing) with the rendered result."""
    write_section(doc, SECTION, render(result), append=True)
