"""MAS prefill routes and the rule that picks one: a single masked forward, or segment-wise over the KV cache.

MAS attention needs the causal pairs plus the upper triangle inside each segment (causal + sum L_i^2 / 2 query-key
pairs). One forward with a dense mask (route ``"dense"``, the ``segmask.enable`` hook) makes the kernel compute all
T^2 pairs, because a masked kernel cannot skip blocks. Route ``"segment"`` prefills chunk by chunk: each
bidirectional segment is one forward call whose queries attend all of [cache + segment] (the mask is all True, so
no pair is wasted), and each run of causal tokens is one call with a causal mask. It computes exactly the pairs MAS
allows, at the price of one extra forward call per chunk (every call streams the weights once), so it pays off only
for long prompts. ``choose_route`` weighs the two with a cost model whose one constant (the cost of a call) was
measured by ``benchmarks/bench_prefill.py`` (see docs/PERFORMANCE.md); ``mas_prefill(route="auto")`` uses it.

    >>> out = mas_prefill(model, batch["input_ids"], batch["segment_ids"], attention_mask=batch["attention_mask"])
    >>> out.logits[:, -1], out.past_key_values     # next-token logits and the cache to decode from

Shapes in ``segmask.core``'s notation (T: prompt tokens of this call, P: tokens already in the cache).
``segment_ids`` [B, >= P + T] is aligned with absolute positions as in ``segmask.hf.hook`` (-1 = causal; positions
past its end are causal).
"""

from __future__ import annotations

from typing import Any

import torch

from ..core.cost import pair_flops, token_flops
from ..core.masks import as_segment_ids, pad_segment_ids, segment_mask_rows, validate_segment_ids
from ..core.runs import check_whole_segments, segment_continues
from .backend import cache_kwarg, decoder, is_enabled, layer_kinds, past_length, unwrap

ROUTES = ("dense", "segment")

CALL_COST_TOKENS = {"sdpa": 32.0, "eager": 32.0}
"""Cost of one extra forward call (the weights are streamed once more) in tokens of prefill, per attention backend;
absent = never chunk. Measured with benchmarks/bench_prefill.py on a SmolLM2-135M-shaped model on one CPU core:
(segment route - FLOP floor) / extra calls came to 28-35 tokens at 256-2,048 tokens (docs/PERFORMANCE.md)."""


def choose_route(config: Any, segment_ids: torch.Tensor, end: int, start: int = 0) -> str:
    """The cheaper MAS prefill route for positions [start, end) of ``segment_ids`` [B, >= end] under ``config``.

    Cost model: ``"dense"`` computes every query-key pair of the call, ``"segment"`` only the pairs of its chunks
    but pays ``CALL_COST_TOKENS`` per extra call; a pair costs (attention FLOPs per pair) / (projection FLOPs per
    token) tokens. flex_attention skips fully masked blocks within one call, so it always takes ``"dense"``.
    """
    return cheaper_route(config, chunk_bounds(segment_ids, start, end))


def cheaper_route(config: Any, bounds: list[int]) -> str:
    """``choose_route``'s cost model for the cut points ``bounds`` of ``chunk_bounds``."""
    call_cost = CALL_COST_TOKENS.get(config._attn_implementation or "eager")
    if call_cost is None or len(bounds) <= 2:
        return "dense"
    start, end = bounds[0], bounds[-1]
    saved = (end - start) * end - sum((b - a) * b for a, b in zip(bounds, bounds[1:]))
    return "segment" if saved * pair_cost_tokens(config) > (len(bounds) - 2) * call_cost else "dense"


def pair_cost_tokens(config: Any) -> float:
    """Attention FLOPs of one query-key pair / projection + MLP FLOPs of one token (same in every layer)."""
    return pair_flops(config) / token_flops(config)


def chunk_bounds(segment_ids: torch.Tensor, start: int, end: int) -> list[int]:
    """Cut points start = c_0 < c_1 < ... < c_n = end for segment-wise prefill of positions [start, end).

    A cut lies where some sample changes segment (or enters/leaves a causal run) and no sample's segment continues
    across it, so each chunk holds whole segments of every sample. ``segment_ids`` [B, >= end].

    Returns:
        list of absolute positions, first ``start``, last ``end``.
    """
    ids = pad_segment_ids(segment_ids, end)[:, start:end]
    if ids.shape[1] <= 1:
        return [start, end]
    change = (ids[:, 1:] != ids[:, :-1]).any(0)
    split = segment_continues(ids)[:, 1:].any(0)
    cuts = (change & ~split).nonzero().flatten() + start + 1
    return [start, *cuts.tolist(), end]


def chunk_mask(segment_ids: torch.Tensor, attention_mask: torch.Tensor | None, start: int,
               end: int) -> torch.Tensor:
    """Rows [start, end) of the MAS mask over keys [0, end), built with tensor ops (no loop over tokens).

    Args:
        segment_ids: [B, >= end] (-1 = causal).
        attention_mask: [B, >= end] 2-D padding mask (1 = real) or None.

    Returns:
        bool [B, 1, end - start, end], contiguous, True at [b, 0, i, k]: query start + i may attend key k. Always
        materialized, also when every entry is True: on CUDA a broadcast [B, 1, 1, 1] mask fails inside sdpa
        (cuDNN in bfloat16; "last dimension must be contiguous" in the memory-efficient kernel in float32;
        measured on an H100, docs/GPU.md).
    """
    return segment_mask_rows(segment_ids, attention_mask, start=start, end=end).contiguous()


def _direct_masks_ok(config: Any, cache: Any, query_length: int, total: int) -> bool:
    """True when a plain bool mask over keys [0, total) is what the model expects (sdpa, full attention only)."""
    if config._attn_implementation != "sdpa" or set(layer_kinds(config)) != {"full_attention"}:
        return False
    kv_length, kv_offset = cache.get_mask_sizes(query_length, 0)
    return int(kv_length) == total and int(kv_offset) == 0


def segment_prefill(model: torch.nn.Module, input_ids: torch.Tensor, segment_ids: torch.Tensor, *,
                    attention_mask: torch.Tensor | None = None, past_key_values: Any = None,
                    position_ids: torch.Tensor | None = None, logits_to_keep: int = 1) -> Any:
    """Prefill ``input_ids`` [B, T] chunk by chunk (see ``chunk_bounds``) into ``past_key_values``.

    Chunks before the last run through the decoder only (no LM head); the last runs through the full model.
    sdpa models with only full-attention layers get their chunk masks from ``chunk_mask``; other backends and
    layouts go through the ``segmask.enable`` hook, chunk by chunk.

    Args:
        attention_mask: [B, P + T] (1 = real token) or None.
        past_key_values: cache holding the P earlier tokens, or None for a new ``DynamicCache``.
        position_ids: [B, T] positions of the new tokens (e.g. ``generate``'s cumsum of a left-padded mask), or
            None for P, P + 1, ... as the model's own default.
        logits_to_keep: as in transformers: logits of the last this-many tokens (0 = all of the last chunk); None
            runs the last chunk through the decoder only too (no LM head) and returns None.

    Returns:
        the model output of the last chunk (``logits`` [B, min(keep, last chunk), V], ``past_key_values``).
    """
    from transformers import DynamicCache

    if not is_enabled(model):
        raise ValueError("segment_prefill needs segmask.enable(model) first")
    config = unwrap(model).config
    if past_key_values is None:
        past_key_values = DynamicCache(config=config)
    past = past_length(past_key_values)
    total = past + input_ids.shape[1]
    segment_ids = pad_segment_ids(as_segment_ids(segment_ids).to(input_ids.device), total)
    if attention_mask is not None and attention_mask.shape[1] != total:
        raise ValueError(f"attention_mask covers {attention_mask.shape[1]} positions, expected {total} "
                         f"({past} cached + {input_ids.shape[1]} new)")
    validate_segment_ids(segment_ids[:, :total], attention_mask)
    check_whole_segments(segment_ids[:, :total], past, total)  # no segment may continue from the cache
    bounds = chunk_bounds(segment_ids, past, total)
    forward_decoder = decoder(model)
    out = None
    for i, (a, b) in enumerate(zip(bounds, bounds[1:])):
        last = i == len(bounds) - 2
        kwargs: dict[str, Any] = {"input_ids": input_ids[:, a - past:b - past], cache_kwarg(model): past_key_values,
                                  "use_cache": True}
        if position_ids is not None:
            kwargs["position_ids"] = position_ids[:, a - past:b - past]
        if _direct_masks_ok(config, past_key_values, b - a, b):
            kwargs["attention_mask"] = chunk_mask(segment_ids, attention_mask, a, b)
        else:
            kwargs["segment_ids"] = segment_ids[:, :b]
            if attention_mask is not None:
                kwargs["attention_mask"] = attention_mask[:, :b]
        if last and logits_to_keep is not None:
            out = model(**kwargs, logits_to_keep=logits_to_keep)
        else:
            forward_decoder(**kwargs)
    return out


def mas_prefill(model: torch.nn.Module, input_ids: torch.Tensor, segment_ids: torch.Tensor, *,
                attention_mask: torch.Tensor | None = None, past_key_values: Any = None,
                position_ids: torch.Tensor | None = None, logits_to_keep: int = 1,
                route: str = "auto") -> Any:
    """Prefill a MAS prompt by ``route`` (``"auto"``: ``choose_route``); same arguments as ``segment_prefill``.

    Both routes return the model output of the call that processed the last prompt token, with the filled cache.
    """
    if route == "auto":
        past = past_length(past_key_values)
        ids = pad_segment_ids(as_segment_ids(segment_ids), past + input_ids.shape[1])
        route = choose_route(unwrap(model).config, ids, past + input_ids.shape[1], start=past)
    if route == "segment":
        return segment_prefill(model, input_ids, segment_ids, attention_mask=attention_mask,
                               past_key_values=past_key_values, position_ids=position_ids,
                               logits_to_keep=logits_to_keep)
    if route != "dense":
        raise ValueError(f"unknown prefill route {route!r}; expected 'auto' or one of {ROUTES}")
    if not is_enabled(model):
        raise ValueError("mas_prefill needs segmask.enable(model) first")
    from transformers import DynamicCache

    if past_key_values is None:
        past_key_values = DynamicCache(config=unwrap(model).config)
    total = past_length(past_key_values) + input_ids.shape[1]
    segment_ids = pad_segment_ids(as_segment_ids(segment_ids).to(input_ids.device), total)[:, :total]
    return model(input_ids=input_ids, attention_mask=attention_mask, segment_ids=segment_ids, position_ids=position_ids,
                 use_cache=True, logits_to_keep=logits_to_keep, **{cache_kwarg(model): past_key_values})
