"""Benchmark MAS prefill routes against causal prefill on a SmolLM2-135M-shaped model (random init) on CPU.

    python benchmarks/bench_prefill.py                       # print the table
    python benchmarks/bench_prefill.py --write --chart       # also rewrite docs/PERFORMANCE.md and the PNG chart

Prompts are chat-shaped (system segment = a quarter, user segment, a short causal tail), batch 1, and every route
returns the next-token logits and a filled KV cache, as ``generate`` needs. Routes:

- causal:  the stock model, no segment ids (the baseline of every ratio)
- dense:   one forward through the ``segmask.enable`` hook (sdpa gets a dense bool mask)
- segment: ``segmask.hf.prefill.segment_prefill`` (one call per segment, all-True masks, causal tail)
- flex:    one forward with attn_implementation="flex_attention" (BlockMask; compiled on first use per shape)
- generate: time to first token through ``model.generate(..., segment_ids=..., max_new_tokens=1)`` (its own route
  choice, ``prefill_route="auto"``) divided by the same ``generate`` call without segment ids

Also measured: mask construction as a share of causal prefill, the FLOP floor per shape, and decode steps after a
MAS prefill against decode steps after a causal prefill.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from segmask.bench import chat_segments, interleaved, machine, mmm, smollm2_shaped, write_section
from segmask.bench.docs import DOCS as DOCS_DIR
from segmask.core.cost import attention_flops, causal_pairs, linear_flops, mas_pairs

DOCS = DOCS_DIR / "PERFORMANCE.md"

CHART = DOCS.parent / "prefill_ratio.png"


def route_pairs(route: str, length: int, segs: torch.Tensor) -> int:
    """Query-key pairs the route's kernels compute for one prompt."""
    from segmask.hf.plan import chunk_bounds

    if route == "dense":
        return length * length
    if route == "segment":
        bounds = chunk_bounds(segs, 0, length)
        return sum((b - a) * b for a, b in zip(bounds, bounds[1:]))
    return causal_pairs(length)


def bench_length(models: dict, length: int, reps: int, tail: int, flex: bool, user_segments: int) -> dict:
    from segmask.hf.attention import build_mas_masks
    from segmask.hf.plan import chunk_bounds, plan_prefill
    from segmask.hf.prefill import chunk_mask, mas_prefill

    model = models["sdpa"]
    config = model.config
    seg_lengths, segs = chat_segments(length, tail, user_segments)
    ids = torch.randint(0, config.vocab_size, (1, length))
    first_token = dict(max_new_tokens=1, do_sample=False, pad_token_id=0)
    fns = {
        "causal": lambda: model(input_ids=ids, use_cache=True, logits_to_keep=1),
        "dense": lambda: mas_prefill(model, ids, segs, route="dense"),
        "segment": lambda: mas_prefill(model, ids, segs, route="segment"),
        "generate": lambda: model.generate(input_ids=ids, segment_ids=segs, **first_token),
        "causal_generate": lambda: model.generate(input_ids=ids, **first_token),
    }
    compile_s = None
    if flex:
        flex_model = models["flex"]
        fns["flex"] = lambda: mas_prefill(flex_model, ids, segs, route="dense")
    with torch.inference_mode():
        ref = fns["dense"]().logits[:, -1]
        errors = {}
        for name in fns:
            start = time.perf_counter()
            got = fns[name]()  # also the warm-up (and flex's compile)
            if name == "flex":
                compile_s = time.perf_counter() - start
            if name.endswith("generate"):
                continue
            got = got.logits[:, -1]
            if name != "causal":
                errors[name] = float((got - ref).abs().max())
        times = interleaved(fns, reps, base="causal")
        gen_base = times.pop("causal_generate")
        for kind in ("cpu", "wall"):
            times["generate"][f"{kind}_ratio"] = [t / b for t, b in zip(times["generate"][kind], gen_base[kind])]

        def dense_mask():
            return build_mas_masks(config, segs, batch_size=1, query_length=length, dtype=torch.float32,
                                   device=ids.device)

        bounds = chunk_bounds(segs, 0, length)

        def chunk_masks():
            return [chunk_mask(segs, None, a, b) for a, b in zip(bounds, bounds[1:])]

        mask_cpu = {}
        for name, fn in (("dense", dense_mask), ("segment", chunk_masks)):
            fn()
            c = time.process_time()
            for _ in range(5):
                fn()
            mask_cpu[name] = (time.process_time() - c) / 5
    causal_cpu = statistics.median(times["causal"]["cpu"])
    base_flops = linear_flops(config, length, 1) + attention_flops(config, causal_pairs(length))
    floor = (linear_flops(config, length, 1) + attention_flops(config, mas_pairs(length, seg_lengths))) / base_flops
    flops = {r: (linear_flops(config, length, 1) + attention_flops(config, route_pairs(r, length, segs))) / base_flops
             for r in ("dense", "segment")}
    return dict(length=length, segments=seg_lengths, tail=tail, times=times, errors=errors, floor=floor,
                flops=flops, causal_cpu=causal_cpu, mask_share={k: v / causal_cpu for k, v in mask_cpu.items()},
                compile_s=compile_s, auto=plan_prefill(config, segs, batch_size=1, query_length=length).route)


def bench_decode(model, length: int, steps: int, reps: int) -> dict:
    """Per-step decode time after a MAS prefill (segment ids passed on) vs after a causal prefill."""
    from segmask.hf.prefill import mas_prefill

    _, segs = chat_segments(length, 16)
    ids = torch.randint(0, model.config.vocab_size, (1, length))
    nxt = torch.randint(0, model.config.vocab_size, (1, 1))

    def decode(mas: bool):
        out = mas_prefill(model, ids, segs, route="dense") if mas else model(input_ids=ids, use_cache=True,
                                                                            logits_to_keep=1)
        cache = out.past_key_values
        extra = {"segment_ids": segs} if mas else {}
        start = time.process_time()
        for _ in range(steps):
            model(input_ids=nxt, past_key_values=cache, use_cache=True, **extra)
        return (time.process_time() - start) / steps

    with torch.inference_mode():
        pairs = [(decode(False), decode(True)) for _ in range(reps)]
    return dict(length=length, steps=steps, causal=[p[0] for p in pairs], mas=[p[1] for p in pairs],
                ratio=[m / c for c, m in pairs])


def report(results: list[dict], decode: dict, args) -> str:
    routes = [r for r in ("dense", "segment", "flex", "generate") if any(r in res["times"] for res in results)]
    flex = f" --flex --flex-max {args.flex_max}" if args.flex else ""
    lines = [
        f"Machine: {machine()}; model: SmolLM2-135M-shaped Llama ({args.layers} layers, random init, float32, "
        f"sdpa); batch 1; {args.reps} interleaved repetitions per length.",
        "",
        f"Command: `python benchmarks/bench_prefill.py --reps {args.reps} --layers {args.layers} --lengths "
        f"{' '.join(map(str, args.lengths))}{flex} --user-segments {args.user_segments}"
        f"{f' --section {args.section}' if args.section else ''} --write"
        f"{' --chart' if args.user_segments == 1 and not args.section else ''}`",
        "",
        "Ratios are route / causal prefill of the same repetition, CPU time, min / median / max (wall-time median "
        "in brackets). FLOP ratios: (projections + attention pairs the route computes) / causal; the floor counts "
        "only the pairs MAS allows (causal + sum L_i^2/2). generate: time to the first token of "
        "`model.generate(..., segment_ids=..., max_new_tokens=1)` (route chosen by `prefill_route=\"auto\"`) / the "
        "same call without segment ids.",
        "",
        "| tokens | segments + tail | causal CPU s | " + " | ".join(f"{r} ratio" for r in routes)
        + " | floor | dense FLOPs | segment FLOPs | auto |",
        "|---|---|---|" + "---|" * len(routes) + "---|---|---|---|",
    ]
    for res in results:
        cells = [f"{mmm(res['times'][r]['cpu_ratio'])} ({statistics.median(res['times'][r]['wall_ratio']):.2f})"
                 if r in res["times"] else "not run" for r in routes]
        sizes = res["segments"]
        segs = " + ".join(map(str, sizes)) if len(sizes) <= 3 else f"{sizes[0]} + {len(sizes) - 1} × ~{sizes[1]}"
        segs += f" + {res['tail']}"
        lines.append(f"| {res['length']} | {segs} | {res['causal_cpu']:.2f} | " + " | ".join(cells)
                     + f" | {res['floor']:.3f} | {res['flops']['dense']:.3f} | {res['flops']['segment']:.3f} | "
                     f"{res['auto']} |")
    lines += ["", "Mask construction, share of causal prefill CPU time (dense: the hook's `build_mas_masks`, "
              "tensor ops via `segment_mask_rows` for sdpa; segment: all `chunk_mask` calls of one prompt):", ""]
    for res in results:
        share = ", ".join(f"{k} {100 * v:.2f}%" for k, v in res["mask_share"].items())
        comp = f"; flex compile + first call {res['compile_s']:.0f} s" if res["compile_s"] else ""
        err = ", ".join(f"{k} {v:.1e}" for k, v in res["errors"].items())
        lines.append(f"- {res['length']} tokens: {share}{comp}; max |logit - dense| {err}")
    lines += ["", f"Decode after prefill ({decode['length']} tokens, {decode['steps']} steps, {len(decode['ratio'])} "
              f"reps): MAS / causal per-step CPU time {mmm(decode['ratio'])} (causal "
              f"{1e3 * statistics.median(decode['causal']):.1f} ms/step)."]
    return "\n".join(lines)


def chart(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [r["length"] for r in results]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for route, color in (("dense", "tab:red"), ("segment", "tab:blue"), ("flex", "tab:green")):
        done = [r for r in results if route in r["times"]]
        if not done:
            continue
        ratios = [r["times"][route]["cpu_ratio"] for r in done]
        med = [statistics.median(v) for v in ratios]
        err = [[m - min(v) for m, v in zip(med, ratios)], [max(v) - m for m, v in zip(med, ratios)]]
        ax.errorbar([r["length"] for r in done], med, yerr=err, marker="o", capsize=3, color=color, label=route)
    ax.plot(xs, [r["floor"] for r in results], "k--", label="FLOP floor (MAS pairs)")
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.set_xlabel("prompt tokens (chat-shaped: system 1/4, user, causal tail)")
    ax.set_ylabel("MAS prefill / causal prefill (CPU time)")
    ax.set_title("MAS prefill cost, SmolLM2-135M-shaped, sdpa, CPU")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[256, 1024, 2048, 4096])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--layers", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--flex", action="store_true", help="also time flex_attention (compiles per shape)")
    parser.add_argument("--flex-max", type=int, default=1 << 30, help="time flex only up to this many tokens")
    parser.add_argument("--user-segments", type=int, default=1, help="split the user part into this many segments")
    parser.add_argument("--write", action="store_true", help=f"rewrite the bench_prefill section of {DOCS}")
    parser.add_argument("--section", default=None,
                        help="marker name of the section --write rewrites (default: bench_prefill, or "
                             "bench_prefill_multi with --user-segments > 1)")
    parser.add_argument("--chart", action="store_true", help=f"draw {CHART}")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one repetition, nothing written "
                       "(checks that the script runs; the slow test tier runs it)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.lengths, args.reps, args.layers, args.write, args.chart = [48], 1, 1, False, False
    import segmask

    torch.set_num_threads(args.threads)
    models = {"sdpa": segmask.enable(smollm2_shaped(args.layers))}
    if args.flex:
        flex = smollm2_shaped(args.layers, attn="flex_attention")
        flex.load_state_dict(models["sdpa"].state_dict())
        models["flex"] = segmask.enable(flex)
    results = []
    for length in args.lengths:
        results.append(bench_length(models, length, args.reps, tail=min(32, length // 8),
                                    flex=args.flex and length <= args.flex_max, user_segments=args.user_segments))
        res = results[-1]
        print(f"{length} tokens: " + ", ".join(f"{r} {statistics.median(t['cpu_ratio']):.3f}"
                                              for r, t in res["times"].items()) + f", floor {res['floor']:.3f}",
              flush=True)
    decode = bench_decode(models["sdpa"], 256, steps=16, reps=args.reps)
    text = report(results, decode, args)
    print(text)
    if args.write:
        section = args.section or ("bench_prefill" if args.user_segments == 1 else "bench_prefill_multi")
        write_section(DOCS, section, text)
    if args.chart and args.user_segments == 1:
        chart(results, CHART)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
