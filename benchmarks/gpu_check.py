"""GPU check: segmask's MAS masks, generation and prefill speed on CUDA, on random-init models of real shapes.

No weights travel (random init from the published configs' shapes), so the logits carry no language, but every mask
path, kernel and cache route is the one a real checkpoint takes. Three parts:

1. Masks: MAS logits of ``segmask.enable(model)`` on each backend (eager, sdpa, flex_attention) against an
   independent dense reference (an additive 4D mask written here from the definition, run on eager), float32 with
   TF32 off; SmolLM2-135M, Qwen2.5-0.5B, Gemma-3-270M and Llama-3.2-1B shapes, prompts of three segments + a causal
   header, left padding. bfloat16 on the same inputs: the MAS logits' error against the float32 reference must stay
   within 1.5x the error bfloat16 itself gives the stock causal path of the same model against its float32 logits.
2. Generation: ``segmask.generate`` greedy (KV cache, MAS prefill) against full recomputation at every step under
   the dense mask, and the batch against each prompt alone.
3. Speed (bfloat16): prefill of 8 x 2,048 tokens (system 256 + user 1,760 + header 32) under MAS against plain
   causal, per backend; and ``segmask.generate`` of 64 new tokens, MAS vs causal. Ratios measured side by side.

    python benchmarks/gpu_check.py --out DIR         # writes DIR/gpu_check.json; exits 1 if a check fails

Needs a CUDA device (run it on one; CPU CI never does). docs/GPU.md holds the numbers of the last run.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from segmask.bench import interleaved

SHAPES = {
    "smollm2-135m": ("LlamaConfig", "LlamaForCausalLM", dict(
        vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
        num_key_value_heads=3, max_position_embeddings=8192, rope_theta=100000.0, tie_word_embeddings=True)),
    "qwen2.5-0.5b": ("Qwen2Config", "Qwen2ForCausalLM", dict(
        vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
        num_key_value_heads=2, max_position_embeddings=32768, tie_word_embeddings=True)),
    "gemma3-270m": ("Gemma3TextConfig", "Gemma3ForCausalLM", dict(
        vocab_size=262144, hidden_size=640, intermediate_size=2048, num_hidden_layers=18, num_attention_heads=4,
        num_key_value_heads=1, head_dim=256, sliding_window=512, max_position_embeddings=32768)),
    "llama3.2-1b": ("LlamaConfig", "LlamaForCausalLM", dict(
        vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
        num_key_value_heads=8, max_position_embeddings=131072, rope_theta=500000.0, tie_word_embeddings=True)),
}
BACKENDS = ("eager", "sdpa", "flex_attention")
DEVICE = "cuda"
SMOKE = dict(vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, head_dim=16)
"""--smoke: the same script on the CPU with every shape shrunk to this (checks the script, not a GPU)."""


def build(shape: str, attn: str, dtype: torch.dtype):
    import transformers

    config_name, model_name, kwargs = SHAPES[shape]
    kwargs = {**kwargs, **SMOKE} if DEVICE == "cpu" else kwargs
    config = getattr(transformers, config_name)(**kwargs, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(0)
    with torch.device(DEVICE):
        model = getattr(transformers, model_name)(config)
    model.set_attn_implementation(attn)
    return model.to(dtype).eval()


def prompts(vocab: int, lengths: list[tuple[int, int, int]], seed: int = 0) -> dict[str, torch.Tensor]:
    """Left-padded batch; each row: (system, user, header) lengths -> segments 0, 1, then a causal header."""
    g = torch.Generator().manual_seed(seed)
    width = max(sum(x) for x in lengths)
    ids, mask, segs = [], [], []
    for s, u, h in lengths:
        n = s + u + h
        pad = width - n
        ids.append([0] * pad + torch.randint(3, vocab, (n,), generator=g).tolist())
        mask.append([0] * pad + [1] * n)
        segs.append([-1] * pad + [0] * s + [1] * u + [-1] * h)
    return {k: torch.tensor(v, device=DEVICE) for k, v in
            (("input_ids", ids), ("attention_mask", mask), ("segment_ids", segs))}


def dense_mask(batch: dict, extra: int = 0) -> torch.Tensor:
    """[B, 1, T, T] bool, from the definition: key real and (k <= q, or q and k in the same segment >= 0).
    ``extra`` generated tokens are appended causal (segment -1)."""
    seg = torch.nn.functional.pad(batch["segment_ids"], (0, extra), value=-1)
    real = torch.nn.functional.pad(batch["attention_mask"], (0, extra), value=1).bool()
    t = seg.shape[1]
    q, k = torch.arange(t, device=seg.device)[:, None], torch.arange(t, device=seg.device)[None, :]
    same = (seg[:, :, None] == seg[:, None, :]) & (seg[:, :, None] >= 0)
    return ((k <= q) | same) & real[:, None, :] & real[:, :, None] | (~real[:, :, None] & (k == q))


def reference_logits(model, batch: dict, extra_ids: torch.Tensor | None = None) -> torch.Tensor:
    """Full forward on eager with the dense additive mask (padding queries see themselves only)."""
    ids = batch["input_ids"] if extra_ids is None else torch.cat([batch["input_ids"], extra_ids], 1)
    extra = 0 if extra_ids is None else extra_ids.shape[1]
    allowed = dense_mask(batch, extra)[:, None]
    dtype = next(model.parameters()).dtype
    additive = torch.zeros(allowed.shape, dtype=dtype, device=ids.device).masked_fill(~allowed,
                                                                                      torch.finfo(dtype).min)
    real = torch.nn.functional.pad(batch["attention_mask"], (0, extra), value=1)
    pos = (real.cumsum(-1) - 1).clamp(min=0)
    kinds = set(getattr(model.config, "layer_types", None) or ["full_attention"])
    mask = {kind: additive for kind in kinds} if len(kinds) > 1 else additive
    previous = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            return model(input_ids=ids, attention_mask=mask, position_ids=pos).logits
    finally:
        model.set_attn_implementation(previous)


def mas_logits(model, batch: dict) -> torch.Tensor:
    pos = (batch["attention_mask"].cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        return model(**batch, position_ids=pos).logits


def check_masks(results: dict) -> bool:
    import segmask

    ok = True
    lengths = [(40, 150, 8), (25, 90, 6), (60, 200, 10)]  # < 512: Gemma's sliding window does not cut in
    for shape in SHAPES:
        ref_model = build(shape, "eager", torch.float32)
        batch = prompts(ref_model.config.vocab_size, lengths)
        real = batch["attention_mask"].bool()
        ref = reference_logits(ref_model, batch)
        causal = mas_logits(ref_model, {k: v for k, v in batch.items() if k != "segment_ids"})
        del ref_model
        for attn in BACKENDS:
            for dtype in (torch.float32, torch.bfloat16):
                model = segmask.enable(build(shape, attn, dtype))
                try:
                    got = mas_logits(model, batch).float()
                    err = (got - ref)[real].abs().max().item()
                    top1 = (got.argmax(-1) == ref.argmax(-1))[real].float().mean().item()
                    entry = {"max_abs_err": err, "top1_agree": top1, "scale": ref[real].abs().max().item()}
                    if dtype == torch.float32:
                        entry["ok"] = err < 1e-3 and (causal - ref)[real].abs().max().item() > 1e-2
                    else:  # bf16 rounding itself, measured on the stock causal path of the same model and inputs
                        plain = {k: v for k, v in batch.items() if k != "segment_ids"}
                        base = (mas_logits(model, plain).float() - causal)[real].abs().max().item()
                        entry.update(causal_bf16_err=base, ok=err <= 1.5 * base + 1e-3)
                except Exception as e:  # a backend that fails is a result, not a crash of the whole check
                    entry = {"ok": False, "error": f"{type(e).__name__}: {e}"[:300]}
                ok &= entry["ok"]
                results.setdefault("masks", {})[f"{shape}/{attn}/{str(dtype)[6:]}"] = entry
                print(shape, attn, dtype, entry, flush=True)
                del model
                torch.cuda.empty_cache()
    return ok


def check_generation(results: dict) -> bool:
    ok = True
    for shape in ("smollm2-135m", "llama3.2-1b"):
        for attn in [b for b in BACKENDS if b != "eager"]:
            try:
                entry = _generation_entry(build(shape, attn, torch.float32))
            except Exception as e:  # noqa: BLE001 (recorded as a failed check)
                entry = {"ok": False, "error": f"{type(e).__name__}: {e}"[:300]}
            ok &= entry["ok"]
            results.setdefault("generation", {})[f"{shape}/{attn}/float32"] = entry
            print(shape, attn, entry, flush=True)
            torch.cuda.empty_cache()
    return ok


def _generation_entry(model) -> dict:
    import segmask

    model = segmask.enable(model)
    batch = prompts(model.config.vocab_size, [(30, 120, 6), (20, 70, 5), (45, 160, 9)], seed=1)
    steps = 16
    gen = segmask.generate(model, batch, max_new_tokens=steps, do_sample=False, eos_token_id=None,
                           pad_token_id=0).sequences
    ids = batch["input_ids"][:, :0]
    for _ in range(steps):  # full recomputation under the dense mask, the generated tokens causal
        nxt = reference_logits(model, batch, ids)[:, -1].argmax(-1, keepdim=True)
        ids = torch.cat([ids, nxt], 1)
    alone = []
    for i in range(3):
        real = batch["attention_mask"][i].bool()
        one = {k: v[i:i + 1, real] for k, v in batch.items()}
        alone.append(segmask.generate(model, one, max_new_tokens=steps, do_sample=False, eos_token_id=None,
                                      pad_token_id=0).sequences[0])
    entry = {"cached_equals_recompute": bool((gen == ids).all()),
             "tokens_equal": int((gen == ids).sum()), "tokens": gen.numel(),
             "batch_equals_alone": bool(all((gen[i] == alone[i]).all() for i in range(3)))}
    entry["ok"] = entry["cached_equals_recompute"] and entry["batch_equals_alone"]
    return entry


def timed(fns: dict, reps: int = 10) -> dict[str, float]:
    """Median wall seconds of each fn, interleaved over ``reps`` repetitions after two warm-up rounds (the GPU
    synchronized around each call)."""
    sync = torch.cuda.synchronize if DEVICE == "cuda" else None
    times = interleaved(fns, reps, base=next(iter(fns)), sync=sync, warmup=2)
    return {name: statistics.median(t["wall"]) for name, t in times.items()}


def speed(results: dict) -> None:
    import segmask

    for shape in ("smollm2-135m", "llama3.2-1b"):
        for attn in [b for b in BACKENDS if b != "eager"]:
            model = segmask.enable(build(shape, attn, torch.bfloat16))
            batch = prompts(model.config.vocab_size, [(256, 1760, 32)] * 8 if DEVICE == "cuda" else [(8, 20, 4)] * 2,
                            seed=2)
            causal = {k: v for k, v in batch.items() if k != "segment_ids"}
            with torch.no_grad():
                t = timed({"causal": lambda m=model, b=causal: m(**b, logits_to_keep=1),
                           "mas": lambda m=model, b=batch: m(**b, logits_to_keep=1)})
            t_mas, t_causal = t["mas"], t["causal"]
            gen = dict(max_new_tokens=64, do_sample=False, eos_token_id=None, pad_token_id=0)
            g = timed({"causal": lambda m=model, b=causal, g=gen: segmask.generate(m, b, **g),
                       "mas": lambda m=model, b=batch, g=gen: segmask.generate(m, b, **g)}, reps=3)
            g_mas, g_causal = g["mas"], g["causal"]
            entry = {"prefill_s_mas": t_mas, "prefill_s_causal": t_causal, "prefill_ratio": t_mas / t_causal,
                     "prefill_tokens_per_s_mas": batch["input_ids"].numel() / t_mas,
                     "generate_s_mas": g_mas, "generate_s_causal": g_causal, "generate_ratio": g_mas / g_causal}
            results.setdefault("speed", {})[f"{shape}/{attn}/bfloat16/8x2048+64"] = entry
            print(shape, attn, entry, flush=True)
            del model
            torch.cuda.empty_cache()


def main(argv=None) -> int:
    global DEVICE, BACKENDS
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=".")
    p.add_argument("--parts", default="masks,generation,speed")
    p.add_argument("--backends", default=",".join(BACKENDS), help="attention backends to check")
    p.add_argument("--smoke", action="store_true", help="run on the CPU with tiny shapes (checks the script only)")
    args = p.parse_args(argv)
    DEVICE = "cpu" if args.smoke else "cuda"
    BACKENDS = tuple(args.backends.split(","))
    if not args.smoke and not torch.cuda.is_available():
        print("no CUDA device: this check runs on a GPU machine", file=sys.stderr)
        return 2
    import transformers

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    results = {"device": torch.cuda.get_device_name() if DEVICE == "cuda" else "cpu (smoke)",
               "torch": torch.__version__,
               "transformers": transformers.__version__, "python": platform.python_version()}
    start, ok = time.time(), True
    parts = args.parts.split(",")
    if "masks" in parts:
        ok &= check_masks(results)
    if "generation" in parts:
        ok &= check_generation(results)
    if "speed" in parts:
        speed(results)
    results.update(ok=ok, seconds=time.time() - start)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "gpu_check.json").write_text(json.dumps(results, indent=1) + "\n")
    print("ALL OK" if ok else "SOME CHECKS FAILED", f"in {results['seconds']:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
