"""MAS prefill routes: a single masked forward, or segment-wise over the KV cache, as a ``PrefillPlan`` says.

MAS attention needs the causal pairs plus the upper triangle inside each segment (causal + sum L_i^2 / 2 query-key
pairs). One forward with a dense mask (route ``"dense"``, the ``segmask.enable`` hook) makes the kernel compute all
T^2 pairs, because a masked kernel cannot skip blocks. Route ``"segment"`` prefills chunk by chunk: each
bidirectional segment is one forward call whose queries attend all of [cache + segment] (the mask is all True, so
no pair is wasted), and each run of causal tokens is one call with a causal mask. It computes exactly the pairs MAS
allows, at the price of one extra forward call per chunk (every call streams the weights once), so it pays off only
for long prompts. Which route a prompt takes is decided once, by ``segmask.hf.plan.plan_prefill`` (its cost model
for ``route="auto"``); ``run_prefill`` carries a plan out, ``mas_prefill`` plans and runs.

    >>> out = mas_prefill(model, batch["input_ids"], batch["segment_ids"], attention_mask=batch["attention_mask"])
    >>> out.logits[:, -1], out.past_key_values     # next-token logits and the cache to decode from

Shapes in ``segmask.core``'s notation (T: prompt tokens of this call, P: tokens already in the cache).
``segment_ids`` [B, >= P + T] is aligned with absolute positions as in ``segmask.hf.hook`` (-1 = causal; positions
past its end are causal).
"""

from __future__ import annotations

from typing import Any

import torch

from ..core.masks import segment_mask_rows
from .attention import packed_documents
from .backend import cache_kwarg, decoder, is_enabled, layer_kinds, past_length, unwrap
from .plan import PrefillPlan, plan_prefill


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


def mas_prefill(model: torch.nn.Module, input_ids: torch.Tensor, segment_ids: Any, *,
                attention_mask: torch.Tensor | None = None, past_key_values: Any = None,
                position_ids: torch.Tensor | None = None, logits_to_keep: int = 1, route: str = "auto") -> Any:
    """Prefill ``input_ids`` [B, T] under MAS into ``past_key_values`` by ``route`` (``plan_prefill`` decides
    ``"auto"``): plan the call, then ``run_prefill``.

    Args:
        segment_ids: [B, >= P + T] (ids past P + T are ignored), or the ``PrefillPlan`` of this call.
        attention_mask: [B, P + T] (1 = real token) or None.
        past_key_values: cache holding the P earlier tokens, or None for a new ``DynamicCache``.
        position_ids: [B, T] positions of the new tokens (e.g. ``generate``'s cumsum of a left-padded mask), or
            None for P, P + 1, ... as the model's own default.
        logits_to_keep: as in transformers: logits of the last this-many tokens (0 = all of the last call); None
            runs the last call through the decoder only too (no LM head) and returns None.

    Returns:
        the model output of the call that processed the last prompt token (``logits`` [B, min(keep, last call), V],
        ``past_key_values``: the filled cache).
    """
    plan = segment_ids
    if not isinstance(plan, PrefillPlan):
        plan = plan_prefill(unwrap(model).config, segment_ids, batch_size=input_ids.shape[0],
                            query_length=input_ids.shape[1], past=past_length(past_key_values),
                            attention_mask=attention_mask, route=route, trim=True, device=input_ids.device,
                            documents=packed_documents(position_ids, attention_mask, past_key_values,
                                                       input_ids.shape[0]))
    return run_prefill(model, input_ids, plan, past_key_values=past_key_values, position_ids=position_ids,
                       logits_to_keep=logits_to_keep)


def segment_prefill(model: torch.nn.Module, input_ids: torch.Tensor, segment_ids: Any, **kwargs: Any) -> Any:
    """``mas_prefill(..., route="segment")``: chunk by chunk (``segmask.hf.plan.chunk_bounds``) into the cache."""
    return mas_prefill(model, input_ids, segment_ids, route="segment", **kwargs)


def run_prefill(model: torch.nn.Module, input_ids: torch.Tensor, plan: PrefillPlan, *, past_key_values: Any = None,
                position_ids: torch.Tensor | None = None, logits_to_keep: int | None = 1) -> Any:
    """Prefill ``input_ids`` [B, T] (positions [plan.past, plan.total)) in ``plan``'s forward calls, no check of the
    ids again; arguments and result as ``mas_prefill``.

    Route ``"dense"`` is one forward through the ``segmask.enable`` hook. Route ``"segment"`` runs a call per chunk
    of ``plan.bounds``: calls before the last through the decoder only (no LM head), the last through the full
    model. sdpa models with only full-attention layers get their chunk masks from ``chunk_mask``; other backends and
    layouts go through the hook, chunk by chunk, which takes the plan as ``segment_ids``.
    """
    from transformers import DynamicCache

    if not is_enabled(model):
        raise ValueError("mas_prefill needs segmask.enable(model) first")
    config = unwrap(model).config
    if past_key_values is None:
        past_key_values = DynamicCache(config=config)
    if past_length(past_key_values) != plan.past or input_ids.shape[1] != plan.total - plan.past:
        raise ValueError(f"the plan covers positions [{plan.past}, {plan.total}); got {input_ids.shape[1]} tokens "
                         f"after {past_length(past_key_values)} cached")
    mask = plan.attention_mask
    if plan.route == "dense":
        return model(input_ids=input_ids, attention_mask=mask, segment_ids=plan, position_ids=position_ids,
                     use_cache=True, logits_to_keep=logits_to_keep, **{cache_kwarg(model): past_key_values})
    forward_decoder, past, out = decoder(model), plan.past, None
    for a, b in zip(plan.bounds, plan.bounds[1:]):
        kwargs: dict[str, Any] = {"input_ids": input_ids[:, a - past:b - past], cache_kwarg(model): past_key_values,
                                  "use_cache": True}
        if position_ids is not None:
            kwargs["position_ids"] = position_ids[:, a - past:b - past]
        if _direct_masks_ok(config, past_key_values, b - a, b):
            kwargs["attention_mask"] = chunk_mask(plan.segment_ids, mask, a, b)
        else:
            kwargs["segment_ids"] = plan
            if mask is not None:
                kwargs["attention_mask"] = mask[:, :b]
        if b == plan.total and logits_to_keep is not None:
            out = model(**kwargs, logits_to_keep=logits_to_keep)
        else:
            forward_decoder(**kwargs)
    return out
