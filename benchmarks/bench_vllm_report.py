"""Render ``bench_vllm.py``'s results (runs/bench_vllm/*.json) as the markdown table in docs/SERVING.md."""

from __future__ import annotations


def render(results: dict) -> str:
    """Markdown for whichever parts have results: ``results`` maps part name -> its JSON."""
    lines = ["| measure | result | load average (1/5/15 min) before -> after |", "| --- | --- | --- |"]
    eq = results.get("equality")
    if eq:
        load = f"{eq['load_before']} -> {eq['load_after']}"
        for row in eq["rows"]:
            lines.append(f"| greedy tokens equal to the reference: {row['group']} | {row['equal']}/{row['prompts']} "
                         f"(prompts of {min(row['prompt_tokens'])}-{max(row['prompt_tokens'])} tokens) | {load} |")
        lines.append(f"| **greedy tokens equal, all** | **{eq['equal']}/{eq['prompts']}** | {load} |")
        cached, total = sum(eq["cached_tokens"]), sum(eq["prompt_tokens_rest"])
        system = eq["system_segment_tokens"]
        lines.append(f"| prefix cache, 7 requests after one with the same system prompt | {cached}/{total} prompt "
                     f"tokens from cache ({cached / total:.0%}); {min(eq['cached_tokens'])} of the "
                     f"{system}-token system segment per request (whole 32-token blocks inside it) | {load} |")
    tp = results.get("throughput")
    if tp:
        load = f"{tp['load_before']} -> {tp['load_after']}"
        mas, causal = tp["rates"]["mas"], tp["rates"]["causal"]
        lines.append(f"| vLLM MAS / causal generated tokens/s (16 prompts x 64 tokens, bf16, 3 rounds) | "
                     f"**{tp['ratio_median']:.2f}** (median; rounds {', '.join(f'{r:.2f}' for r in tp['ratios'])}; "
                     f"MAS {_span(mas)}, causal {_span(causal)} tok/s) | {load} |")
    burst = results.get("burst")
    if burst:
        load = f"{burst['load_before']} -> {burst['load_after']}"
        for key, label in (("vllm", "vLLM OpenAI server + plugin, MAS"), ("segmask", "`segmask serve`, MAS")):
            rounds = burst["results"][key]
            lines.append(f"| burst of {burst['clients']} streaming clients x {burst['max_tokens']} tokens, {label} | "
                         f"{_span([r['tok_s'] for r in rounds])} tok/s; TTFT p50 "
                         f"{_span([r['ttft_p50'] for r in rounds], 's')}, p95 "
                         f"{_span([r['ttft_p95'] for r in rounds], 's')} | {load} |")
        same = ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in burst["answer_equals_reference"].items())
        lines.append(f"| greedy answer over the OpenAI API equal to the reference's MAS answer | {same} | {load} |")
        lines.append(f"| **burst throughput, vLLM / segmask serve** | **{min(burst['speedups']):.2f}-"
                     f"{max(burst['speedups']):.2f}x** (per round) | {load} |")
    when = sorted({r["when"] for r in results.values()})
    lines.append("")
    lines.append(f"Measured {', '.join(when)} on the 2-core CPU **while a training run kept both cores busy** (load "
                 "averages above): absolute numbers are distorted and each comparison was run side by side, "
                 "alternating, in one process or one burst round; re-measure on an idle CPU. Equality is unaffected "
                 "by load.")
    return "\n".join(lines)


def _span(values: list[float], unit: str = "") -> str:
    lo, hi = min(values), max(values)
    fmt = "{:.2f}" if unit == "s" else "{:.1f}"
    return (fmt.format(lo) if abs(hi - lo) < 1e-9 else f"{fmt.format(lo)}-{fmt.format(hi)}") + unit


