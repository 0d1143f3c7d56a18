"""Fast MAS routes against the dense reference ``segment_mask``: the direct sdpa mask builder behind the
``enable`` hook, segment-wise prefill (``segmask.hf.prefill``), and the route choice. CPU, tiny random Llama configs,
no network; a few seconds in all."""

from __future__ import annotations

import pytest
import torch

import segmask
from segmask.core.masks import same_segment_mod, segment_mask, segment_mask_rows
from segmask.hf.attention import build_mas_masks
from segmask.hf.plan import chunk_bounds, pair_cost_tokens, plan_prefill
from segmask.hf.prefill import chunk_mask, mas_prefill, segment_prefill

from ..hf_models import tiny_model

WIDE = dict(hidden_size=64, intermediate_size=96, max_position_embeddings=256)
"""A wider tiny Llama: the route cost model needs a realistic ratio of attention to projection work."""


def random_segments(batch: int, length: int, gen: torch.Generator, pad: bool = True):
    """(segment_ids, attention_mask) [batch, length]: left padding, then runs of causal tokens and segments."""
    rows, masks = [], []
    for b in range(batch):
        n_pad = int(torch.randint(0, length // 3 + 1, (1,), generator=gen)) if pad and b else 0
        row, seg = [-1] * n_pad, 0
        while len(row) < length:
            run = int(torch.randint(1, 6, (1,), generator=gen))
            causal = bool(torch.randint(0, 3, (1,), generator=gen) == 0)
            row += [-1 if causal else seg] * run
            seg += not causal
        rows.append(row[:length])
        masks.append([0] * n_pad + [1] * (length - n_pad))
    return torch.tensor(rows), torch.tensor(masks)



@pytest.mark.parametrize("seed", range(4))
def test_segment_mask_rows_equals_dense_reference(seed):
    gen = torch.Generator().manual_seed(seed)
    ids, am = random_segments(3, 23, gen)
    ref = segment_mask(ids, am)
    for start, end in ((0, 23), (5, 17), (22, 23)):
        assert torch.equal(segment_mask_rows(ids, am, start=start, end=end), ref[:, :, start:end, :end])
    # more keys than tokens (a static cache): extra keys are padding, never attended
    wide = segment_mask_rows(ids, am, start=4, end=23, kv_length=30)
    assert torch.equal(wide[..., :23], ref[:, :, 4:23]) and not wide[..., 23:].any()
    assert torch.equal(segment_mask_rows(ids), segment_mask(ids))


@pytest.mark.parametrize("seed", range(3))
def test_chunk_bounds_keep_segments_whole(seed):
    gen = torch.Generator().manual_seed(seed)
    ids, _ = random_segments(3, 40, gen)
    bounds = chunk_bounds(ids, 0, 40)
    assert bounds[0] == 0 and bounds[-1] == 40 and bounds == sorted(set(bounds))
    for cut in bounds[1:-1]:
        assert not ((ids[:, cut] >= 0) & (ids[:, cut] == ids[:, cut - 1])).any()
    one = ids[:1]  # batch 1: a cut at every run boundary
    runs = [0] + [t for t in range(1, 40) if one[0, t] != one[0, t - 1]] + [40]
    assert chunk_bounds(one, 0, 40) == runs
    assert chunk_bounds(one, 10, 30)[0] == 10 and chunk_bounds(one, 10, 30)[-1] == 30


def test_chunk_mask_rows_are_materialized_and_contiguous():
    gen = torch.Generator().manual_seed(7)
    ids, am = random_segments(2, 30, gen)
    ref = segment_mask(ids, am)
    for a, b in zip(chunk_bounds(ids, 0, 30), chunk_bounds(ids, 0, 30)[1:]):
        got = chunk_mask(ids, am, a, b)
        assert torch.equal(got, ref[:, :, a:b, :b])
    # An all-True chunk (a whole segment sees every key) still gets a full, contiguous mask: a broadcast
    # [B, 1, 1, 1] one made sdpa fail on CUDA (cuDNN in bf16, "last dimension must be contiguous" in fp32).
    seg = torch.tensor([[0, 0, 0, 1, 1]])
    got = chunk_mask(seg, None, 3, 5)
    assert got.shape == (1, 1, 2, 5) and bool(got.all()) and got.is_contiguous() and got.stride(-1) == 1


@pytest.mark.parametrize("with_past", [False, True])
def test_fast_sdpa_mask_equals_transformers_and_reference(with_past):
    from transformers import DynamicCache, StaticCache
    from transformers.masking_utils import create_causal_mask

    model = tiny_model("llama", "sdpa", **WIDE)
    gen = torch.Generator().manual_seed(3)
    ids, am = random_segments(2, 20, gen)
    past = 8 if with_past else 0
    for cache in ([None, DynamicCache(config=model.config)] if not with_past else
                  [DynamicCache(config=model.config), StaticCache(config=model.config, max_cache_len=32)]):
        if with_past:  # fill the cache with `past` tokens
            model(input_ids=torch.zeros(2, past, dtype=torch.long), past_key_values=cache, use_cache=True)
        q = 20 - past
        fast = build_mas_masks(model.config, ids, batch_size=2, query_length=q, dtype=torch.float32,
                               device=torch.device("cpu"), attention_mask=am, past_key_values=cache)["full_attention"]
        slow = create_causal_mask(config=model.config, inputs_embeds=torch.empty(2, q, 0), attention_mask=am,
                                  past_key_values=cache, or_mask_function=same_segment_mod(
                                      torch.nn.functional.pad(ids, (0, 12), value=-1)))
        assert torch.equal(fast, slow)
        ref = segment_mask(ids, am)[:, :, past:]
        assert torch.equal(fast[..., :20], ref) and not fast[..., 20:].any()


def _reference_forward(model, input_ids, segment_ids, attention_mask):
    """Last-token logits and cache of one forward with the dense reference mask passed as a 4-D mask."""
    mask = segment_mask(segment_ids, attention_mask)
    if model.config._attn_implementation == "eager":
        mask = torch.zeros(mask.shape).masked_fill(~mask, torch.finfo(torch.float32).min)
    out = model(input_ids=input_ids, attention_mask=mask, use_cache=True)
    return out.logits[:, -1], out.past_key_values


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_segment_prefill_equals_dense_reference(attn):
    from transformers import DynamicCache

    model = segmask.enable(tiny_model("llama", attn, **WIDE))
    gen = torch.Generator().manual_seed(11)
    ids, am = random_segments(3, 26, gen)
    input_ids = torch.randint(0, 97, ids.shape, generator=gen)
    with torch.no_grad():
        ref_logits, ref_cache = _reference_forward(model, input_ids, ids, am)
        out = segment_prefill(model, input_ids, ids, attention_mask=am)
        assert len(chunk_bounds(ids, 0, 26)) > 2  # it really ran in chunks
        real = am.bool()
        torch.testing.assert_close(out.logits[:, -1], ref_logits, rtol=1e-5, atol=1e-5)
        for layer, ref_layer in zip(out.past_key_values.layers, ref_cache.layers):
            torch.testing.assert_close(layer.keys.transpose(1, 2)[real], ref_layer.keys.transpose(1, 2)[real])
            torch.testing.assert_close(layer.values.transpose(1, 2)[real], ref_layer.values.transpose(1, 2)[real],
                                       rtol=1e-5, atol=1e-5)
        # continuing a cache: the first 9 positions prefilled by the dense route, the rest segment-wise
        head = DynamicCache(config=model.config)
        cut = chunk_bounds(ids, 0, 26)[1]
        mas_prefill(model, input_ids[:, :cut], ids, attention_mask=am[:, :cut], past_key_values=head, route="dense")
        tail = segment_prefill(model, input_ids[:, cut:], ids, attention_mask=am, past_key_values=head)
        torch.testing.assert_close(tail.logits[:, -1], ref_logits, rtol=1e-5, atol=1e-5)
        split = torch.tensor([[0, 0, 0, 0, -1]] * 3)
        with pytest.raises(ValueError, match="begins in the KV cache"):
            segment_prefill(model, input_ids[:, 2:5], split, past_key_values=_filled(model, input_ids[:, :2]))


def test_segment_prefill_with_generate_positions():
    """Left-padded rows with positions counted from each row's first real token, as ``generate`` passes them."""
    model = segmask.enable(tiny_model("llama", "sdpa", **WIDE))
    gen = torch.Generator().manual_seed(5)
    ids, am = random_segments(3, 24, gen)
    input_ids = torch.randint(0, 97, ids.shape, generator=gen)
    positions = (am.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        mask = segment_mask(ids, am)
        ref = model(input_ids=input_ids, attention_mask=mask, position_ids=positions).logits[:, -1]
        for route in ("segment", "dense"):
            out = mas_prefill(model, input_ids, ids, attention_mask=am, position_ids=positions, route=route)
            torch.testing.assert_close(out.logits[:, -1], ref, rtol=1e-5, atol=1e-5)


def _filled(model, input_ids):
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    model(input_ids=input_ids, past_key_values=cache, use_cache=True)
    return cache


def test_routes_agree_and_decode_continues():
    model = segmask.enable(tiny_model("llama", "sdpa", **WIDE))
    ids = torch.tensor([[0] * 8 + [1] * 20 + [-1] * 4])
    input_ids = torch.randint(0, 97, ids.shape)
    with torch.no_grad():
        dense = mas_prefill(model, input_ids, ids, route="dense")
        seg = mas_prefill(model, input_ids, ids, route="segment")
        torch.testing.assert_close(seg.logits, dense.logits, rtol=1e-5, atol=1e-5)
        nxt = dense.logits[:, -1:].argmax(-1)
        steps = [m(input_ids=nxt, past_key_values=o.past_key_values, segment_ids=ids).logits for m, o in
                 ((model, dense), (model, seg))]
        torch.testing.assert_close(steps[0], steps[1], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="unknown prefill_route 'blocks'"):
        mas_prefill(model, input_ids, ids, route="blocks")


def route_of(config, segment_ids, end, start=0):
    return plan_prefill(config, segment_ids, batch_size=len(segment_ids), query_length=end - start, past=start).route


def test_plan_prefill_weighs_saved_pairs_against_calls():
    config = tiny_model("llama", "sdpa", **WIDE).config
    config.max_position_embeddings = 8192
    per_pair = pair_cost_tokens(config)
    # independent count: 4 heads x 16 dims x 2 (QK, PV) / (q, o: 2 x 64 x 64, k, v: 2 x 64 x 32, MLP: 3 x 64 x 96)
    assert per_pair == pytest.approx(128 / (8192 + 4096 + 18432))
    short = torch.tensor([[0] * 16 + [1] * 40 + [-1] * 8])
    assert route_of(config, short, 64) == "dense"  # saves too few pairs for two extra calls
    long = torch.tensor([[0] * 2048 + [1] * 6000 + [-1] * 144])
    assert route_of(config, long, 8192) == "segment"
    assert route_of(config, long, 8192, start=2048) == "segment"
    assert route_of(config, torch.full((1, 8192), -1), 8192) == "dense"  # causal only: one chunk
    assert plan_prefill(config, long, batch_size=1, query_length=8192).bounds == (0, 2048, 8048, 8192)
    assert plan_prefill(config, short, batch_size=1, query_length=64).bounds == (0, 64)  # one call
    config._attn_implementation = "flex_attention"
    assert route_of(config, long, 8192) == "dense"
