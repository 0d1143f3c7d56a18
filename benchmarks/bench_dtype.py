"""bf16 autocast vs float32 for training on this CPU: one matmul and one SmolLM2-shaped LoRA training step.

    python benchmarks/bench_dtype.py --layers 4 --reps 3

Prints CPU time per call (one torch thread, process time) and the bf16 / fp32 ratio, measured side by side in one
run. bf16 only pays where the CPU has bf16 matrix instructions (AVX512-BF16 or AMX); elsewhere it is emulated.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def cpu_time(fn, reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return statistics.median(times)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--reps", type=int, default=3)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    from _common import smollm2_shaped

    from segmask.train.lora import add_lora

    x, w = torch.randn(688, 576), torch.randn(1536, 576)
    mm = {dt: cpu_time(lambda dt=dt: torch.nn.functional.linear(x.to(dt), w.to(dt)), args.reps * 10)
          for dt in (torch.float32, torch.bfloat16)}
    model = add_lora(smollm2_shaped(args.layers)).train()
    ids = torch.randint(0, 49152, (4, 172))

    def step(autocast: bool):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        model.zero_grad()

    steps = {name: cpu_time(lambda a=a: step(a), args.reps) for name, a in (("fp32", False), ("bf16", True))}
    print(f"bf16 BLAS: {torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()}")
    print(f"matmul 688x576x1536: fp32 {mm[torch.float32] * 1e3:.1f} ms, bf16 {mm[torch.bfloat16] * 1e3:.1f} ms, "
          f"bf16/fp32 {mm[torch.bfloat16] / mm[torch.float32]:.2f}")
    print(f"LoRA train step ({args.layers} SmolLM2 layers, 4x172 tokens): fp32 {steps['fp32']:.2f} s, bf16 autocast "
          f"{steps['bf16']:.2f} s, bf16/fp32 {steps['bf16'] / steps['fp32']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
