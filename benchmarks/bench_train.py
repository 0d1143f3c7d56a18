"""Benchmark a MAS LoRA training step against a causal one on a SmolLM2-135M-shaped model (random init) on CPU.

    python benchmarks/bench_train.py                          # print the table
    python benchmarks/bench_train.py --write                  # also rewrite the bench_train section of docs

One step = forward with labels, backward, AdamW step, with LoRA (the project's recipe: r=32, alpha=64, q_proj and
v_proj) so gradients flow back through every attention layer. Rows are chat-shaped at the cutoff length (system
segment = a quarter, user segment = a half, the answer = the last quarter, causal and labelled), no padding. MAS
uses the ``segmask.enable`` hook (one forward with a dense sdpa bool mask: training has no KV cache to chunk over,
so segment-wise prefill does not apply); causal passes no ``segment_ids``.

    python benchmarks/bench_train.py --packing --write      # packed vs padded training (bench_packing.py)

``--packing`` compares packed rows (``segmask.pack``) with padded batches on real data instead; see
``bench_packing.py``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from segmask.bench import interleaved, machine, mmm, smollm2_shaped, write_section
from segmask.bench.docs import DOCS as DOCS_DIR
from segmask.core.cost import attention_flops, causal_pairs, linear_flops, mas_pairs

DOCS = DOCS_DIR / "PERFORMANCE.md"


def train_batch(batch: int, length: int, vocab: int) -> tuple[list[int], dict[str, torch.Tensor]]:
    """(segment lengths, batch) of chat-shaped training rows [batch, length]."""
    system, user = length // 4, length // 2
    answer = length - system - user
    segment_ids = torch.tensor([[0] * system + [1] * user + [-1] * answer] * batch)
    input_ids = torch.randint(0, vocab, (batch, length))
    labels = input_ids.masked_fill(segment_ids >= 0, -100)
    return [system, user], dict(input_ids=input_ids, labels=labels, segment_ids=segment_ids)


def bench_length(model, optimizer, length: int, batch: int, reps: int) -> dict:
    from segmask.hf.attention import build_mas_masks

    config = model.get_base_model().config
    seg_lengths, data = train_batch(batch, length, config.vocab_size)

    def step(mas: bool):
        kwargs = dict(input_ids=data["input_ids"], labels=data["labels"])
        if mas:
            kwargs["segment_ids"] = data["segment_ids"]
        optimizer.zero_grad(set_to_none=True)
        loss = model(**kwargs).loss
        loss.backward()
        optimizer.step()
        return loss

    fns = {"causal": lambda: step(False), "mas": lambda: step(True)}
    for fn in fns.values():
        fn()  # warm-up
    times = interleaved(fns, reps, base="causal")
    build = lambda: build_mas_masks(config, data["segment_ids"], batch_size=batch, query_length=length,  # noqa: E731
                                    dtype=torch.float32, device=torch.device("cpu"))
    build()
    c = time.process_time()
    for _ in range(5):
        build()
    mask_cpu = (time.process_time() - c) / 5
    lin = linear_flops(config, length, length)
    floor = (lin + attention_flops(config, mas_pairs(length, seg_lengths))) / (
        lin + attention_flops(config, causal_pairs(length)))
    dense = (lin + attention_flops(config, length * length)) / (lin + attention_flops(config, causal_pairs(length)))
    causal_cpu = statistics.median(times["causal"]["cpu"])
    return dict(length=length, segments=seg_lengths, times=times, floor=floor, dense=dense, causal_cpu=causal_cpu,
                mask_share=mask_cpu / causal_cpu)


def report(results: list[dict], args) -> str:
    lines = [
        f"Machine: {machine()}; model: SmolLM2-135M-shaped Llama ({args.layers} layers, random init, float32, "
        f"sdpa) + LoRA r=32 on q_proj/v_proj, AdamW; batch {args.batch}; {args.reps} interleaved repetitions.",
        "",
        f"Command: `python benchmarks/bench_train.py --reps {args.reps} --layers {args.layers} --batch {args.batch} "
        f"--lengths {' '.join(map(str, args.lengths))} --write`",
        "",
        "Ratio: MAS step / causal step of the same repetition, CPU time, min / median / max (wall-time median in "
        "brackets). FLOP columns count forward FLOPs (projections, LM head on every token, attention pairs); the "
        "floor counts only the pairs MAS allows, dense the T² pairs a masked kernel computes.",
        "",
        "| tokens | segments + answer | causal step CPU s | MAS / causal | floor | dense FLOPs | mask build |",
        "|---|---|---|---|---|---|---|",
    ]
    for res in results:
        t = res["times"]["mas"]
        segs = " + ".join(map(str, res["segments"])) + f" + {res['length'] - sum(res['segments'])}"
        lines.append(f"| {res['length']} | {segs} | {res['causal_cpu']:.2f} | {mmm(t['cpu_ratio'])} "
                     f"({statistics.median(t['wall_ratio']):.2f}) | {res['floor']:.3f} | {res['dense']:.3f} | "
                     f"{100 * res['mask_share']:.2f}% |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[256])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--layers", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--write", action="store_true", help="rewrite the bench_train section of docs/PERFORMANCE.md")
    parser.add_argument("--packing", action="store_true", help="packed vs padded training on real data; the other "
                        "flags are then bench_packing.py's")
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--packing" in argv:
        from bench_packing import main as packing_main

        return packing_main([a for a in argv if a != "--packing"])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one repetition, nothing written "
                       "(checks that the script runs; the slow test tier runs it)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.lengths, args.reps, args.layers, args.batch, args.write = [48], 1, 1, 1, False
    from peft import LoraConfig, get_peft_model

    import segmask

    torch.set_num_threads(args.threads)
    model = smollm2_shaped(args.layers).train()
    model = get_peft_model(model, LoraConfig(r=32, lora_alpha=64, lora_dropout=0.05,
                                             target_modules=["q_proj", "v_proj"]))
    segmask.enable(model)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    results = []
    for length in args.lengths:
        results.append(bench_length(model, optimizer, length, args.batch, args.reps))
        print(f"{length} tokens: MAS / causal {mmm(results[-1]['times']['mas']['cpu_ratio'])}", flush=True)
    text = report(results, args)
    print(text)
    if args.write:
        write_section(DOCS, "bench_train", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
