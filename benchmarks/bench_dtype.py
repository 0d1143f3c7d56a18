"""bf16 autocast vs float32 for training on this CPU: one matmul and one SmolLM2-shaped LoRA training step.

    python benchmarks/bench_dtype.py --layers 4 --reps 3
    python benchmarks/bench_dtype.py --smoke            # one layer, one repetition: does it run

Prints the median CPU time per call (one torch thread, process time, fp32 and bf16 interleaved) and the median of the
per-repetition bf16 / fp32 ratios, measured side by side in one run. bf16 only pays where the CPU has bf16 matrix
instructions (AVX512-BF16 or AMX); elsewhere it is emulated.
"""

from __future__ import annotations

import argparse
import statistics

import torch

from segmask.bench import interleaved, smollm2_shaped
from segmask.train.lora import add_lora


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--smoke", action="store_true", help="one layer, one repetition (a check that it runs)")
    args = p.parse_args(argv)
    shape = (1, 32) if args.smoke else (4, 172)
    if args.smoke:
        args.layers, args.reps = 1, 1
    torch.set_num_threads(1)
    x, w = torch.randn(688, 576), torch.randn(1536, 576)
    mm = interleaved({str(dt): (lambda dt=dt: torch.nn.functional.linear(x.to(dt), w.to(dt)))
                      for dt in (torch.float32, torch.bfloat16)}, args.reps * 10, base="torch.float32", warmup=1)
    model = add_lora(smollm2_shaped(args.layers)).train()
    ids = torch.randint(0, 49152, shape)

    def step(autocast: bool):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        model.zero_grad()

    steps = interleaved({"fp32": lambda: step(False), "bf16": lambda: step(True)}, args.reps, base="fp32", warmup=1)
    med = statistics.median
    print(f"bf16 BLAS: {torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()}")
    f32, b16 = mm["torch.float32"], mm["torch.bfloat16"]
    print(f"matmul 688x576x1536: fp32 {med(f32['cpu']) * 1e3:.1f} ms, bf16 {med(b16['cpu']) * 1e3:.1f} ms, "
          f"bf16/fp32 {med(b16['cpu_ratio']):.2f}")
    print(f"LoRA train step ({args.layers} SmolLM2 layers, {shape[0]}x{shape[1]} tokens): "
          f"fp32 {med(steps['fp32']['cpu']):.2f} s, "
          f"bf16 autocast {med(steps['bf16']['cpu']):.2f} s, bf16/fp32 {med(steps['bf16']['cpu_ratio']):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
