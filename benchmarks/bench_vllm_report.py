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


LOAD_SERVERS = {"vllm-mas": "vLLM + plugin, MAS", "vllm-causal": "vLLM + plugin, causal",
                "segmask-mas": "`segmask serve`, MAS",
                "segmask-mas-static": "`segmask serve`, MAS, static batching"}
LOAD_WORKLOADS = {"prefill": "a shared system prompt + the request's own user message",
                  "decode": "a short user message asking for a long story"}


def merge(earlier: dict, later: dict, servers: list[str]) -> dict:
    """``earlier`` with the cells and capacities of ``servers`` replaced by ``later``'s; ``later`` (when, load,
    duration, servers) is listed in ``later_runs``, so the docs say which cells are from when."""
    caps = {w: {**earlier["capacity_rps"].get(w, {}), **later["capacity_rps"].get(w, {})}
            for w in {*earlier["capacity_rps"], *later["capacity_rps"]}}
    merged = {**earlier, "capacity_rps": caps,
              "cells": [c for c in earlier["cells"] if c["server"] not in servers] + later["cells"]}
    merged["later_runs"] = [*earlier.get("later_runs", []), {
        "servers": servers, **{k: later[k] for k in ("when", "duration_s", "load_before", "load_after")}}]
    return merged


def render_load(result: dict) -> str:
    """Markdown for ``bench_vllm_load.py``'s result (runs/bench_vllm/load.json): one table per workload."""
    lines = [("**Smoke run: sizes too small to mean anything.** " if result["smoke"] else "") +
             f"`python benchmarks/bench_vllm_load.py`, {result['when']} ({result['duration_s'] / 60:.0f} min), "
             f"{result['cpus']} CPUs, load average {result['load_before']} -> {result['load_after']}; "
             f"{result['versions']}. Every server fp32, eager, `OMP_NUM_THREADS={result['threads']}`, at most "
             f"{result['concurrency']} requests decoded together (vLLM `--max-num-seqs`, segmask `--max-batch-size`); "
             f"greedy; {result['requests']} requests per rate, arriving as a seeded Poisson process (the same "
             "arrival times and prompts for every server). TTFT counts from a request's arrival; tok/s per request "
             "is (output tokens - 1) / (last token - first token), its p90 and p99 from the slow side (90% and 99% "
             "of the requests were at least that fast); output tok/s is every output token over the time from the "
             "first arrival to the last answer." + (f" With {result['requests']} requests, p99 is the slowest one."
                                                   if result["requests"] < 100 else "")]
    for run in result.get("later_runs", []):
        lines[0] += (f" Re-measured into the same tables on {run['when']} ({run['duration_s'] / 60:.0f} min, load "
                     f"average {run['load_before']} -> {run['load_after']}), at the first run's rates and arrival "
                     "times: " + ", ".join(LOAD_SERVERS[k] for k in run["servers"]) + ".")
    for workload, what in LOAD_WORKLOADS.items():
        cells = [c for c in result["cells"] if c["workload"] == workload]
        if not cells:
            continue
        prompts = [n for c in cells for n in c["prompt_tokens"]]
        caps = result["capacity_rps"].get(workload)
        rates = (f"Burst capacity ({result['concurrency']} requests at once): "
                 + "; ".join(f"{LOAD_SERVERS[k]} {v:.2f}" for k, v in caps.items()) + " req/s; offered rates "
                 + " / ".join(f"{m:g}" for m in result["multipliers"])
                 + f" x {result['rates'][workload][0] / result['multipliers'][0]:.2f} req/s, the slowest capacity of "
                 "the first run." if caps
                 else "Offered rates set by `--rates`.")
        span = f"{min(prompts)}" if min(prompts) == max(prompts) else f"{min(prompts)}-{max(prompts)}"
        lines += ["", f"**`{workload}`**: {what}, {span} prompt tokens, at most "
                  f"{result['max_tokens'][workload]} output tokens. {rates}", "",
                  "| server | offered req/s | achieved req/s | output tok/s | TTFT p50 / p90 / p99 (s) "
                  "| tok/s per request p50 / p90 / p99 | output tokens (mean) | errors |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        order = list(LOAD_SERVERS)
        for c in sorted(cells, key=lambda c: (c["offered_rps"], order.index(c["server"]))):
            ttft = " / ".join(f"{c['ttft_s'][q]:.2f}" for q in ("50", "90", "99"))
            speed = " / ".join(f"{c['tok_s'][q]:.1f}" for q in ("50", "90", "99"))
            lines.append(f"| {LOAD_SERVERS[c['server']]} | {c['offered_rps']:.2f} | {c['achieved_rps']:.2f} | "
                         f"{c['output_tok_s']:.1f} | {ttft} | {speed} | {c['mean_output_tokens']:.1f} | "
                         f"{c['errors']}/{c['requests']} |")
        lines += [f"- {LOAD_SERVERS[c['server']]} at {c['offered_rps']:.2f} req/s: {e}"
                  for c in cells for e in c["error_samples"]]
    return "\n".join(lines)
