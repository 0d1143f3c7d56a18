"""MAS masks in the attention backend's own format, built with transformers' ``create_causal_mask``.

sdpa gets a bool [B, 1, Q, K] mask, eager an additive float mask, flex_attention a BlockMask; one mask per layer
kind (full and sliding attention). The mask rule itself comes from ``segmask.core.masks``.
"""

from __future__ import annotations

from typing import Any

import torch

from ..core.masks import (
    packed_document_ids,
    pad_segment_ids,
    same_document_mod,
    same_segment_mod,
    segment_mask_rows,
    window_mod,
)
from .backend import cache_param, check_backend, layer_kinds, past_length


def build_mas_masks(
    config: Any,
    segment_ids: torch.Tensor,
    *,
    batch_size: int,
    query_length: int,
    dtype: torch.dtype,
    device: torch.device,
    attention_mask: torch.Tensor | None = None,
    past_key_values: Any = None,
    position_ids: torch.Tensor | None = None,
) -> dict[str, Any]:
    """MAS masks in the backend's own format, one per layer kind (see ``layer_kinds``).

    Args:
        segment_ids: [B, L], entry j = segment of absolute position j; positions >= L are causal.
        attention_mask: [B, past + Q] 2-D padding mask (1 = real) or None.
        past_key_values: the cache the forward call will use, or None.

    Returns:
        {kind: mask} where mask is what transformers' ``create_causal_mask`` returns for the backend (bool
        [B, 1, Q, K] for sdpa, additive float for eager, BlockMask for flex_attention).

    Packed rows (``position_ids`` restarting at 0, no ``attention_mask``, no cache; see ``segmask.core.packing``) get
    MAS AND the same-sequence (block-diagonal) mask; a BlockMask for flex_attention, never a dense T x T there.
    """
    from transformers.masking_utils import and_masks, create_causal_mask

    check_backend(config)
    past = past_length(past_key_values)
    total = past + query_length
    max_keys = total if attention_mask is None else max(total, attention_mask.shape[-1])
    kinds = layer_kinds(config)
    if past_key_values is not None:
        for layer_idx in kinds.values():
            kv_length, kv_offset = past_key_values.get_mask_sizes(query_length, layer_idx)
            max_keys = max(max_keys, int(kv_length) + int(kv_offset))
    segment_ids = pad_segment_ids(segment_ids.to(device), max_keys)
    documents = packed_documents(position_ids, attention_mask, past_key_values, batch_size)
    if documents is not None:
        position_ids = None  # transformers would remap q_idx/kv_idx to positions, our mask_mods index tokens
    shape_only = torch.empty((batch_size, query_length, 0), dtype=dtype, device=device)
    masks = {}
    for kind, layer_idx in kinds.items():
        fast = _fast_sdpa_mask(config, kind, segment_ids, attention_mask, past_key_values, documents, past,
                               query_length, layer_idx)
        if fast is not None:
            masks[kind] = fast
            continue
        # create_causal_mask ORs first, then ANDs: (causal | same segment) & window, as mas_mod defines it.
        window = window_mod(config.sliding_window) if kind == "sliding_attention" else None
        if documents is not None:
            same_doc = same_document_mod(documents.to(device))
            window = same_doc if window is None else and_masks(window, same_doc)
        masks[kind] = create_causal_mask(
            config=config,
            inputs_embeds=shape_only,
            attention_mask=attention_mask,
            position_ids=position_ids,
            **{cache_param(create_causal_mask): past_key_values},
            or_mask_function=same_segment_mod(segment_ids),
            and_mask_function=window,
            layer_idx=layer_idx if past_key_values is not None else None,
        )
    return masks


def _fast_sdpa_mask(config, kind, segment_ids, attention_mask, past_key_values, documents, past, query_length,
                    layer_idx) -> torch.Tensor | None:
    """The sdpa bool mask of a full-attention layer built directly with tensor ops (``segment_mask_rows``, AND the
    same-sequence mask of packed rows), the same mask ``create_causal_mask`` builds through vmap at ~10x the cost;
    None where that equality is not certain (other backends, sliding layers, caches with a key offset)."""
    if config._attn_implementation != "sdpa" or kind != "full_attention":
        return None
    if documents is not None:
        same = documents[:, :, None] == documents[:, None, :]
        return segment_mask_rows(segment_ids, None, end=query_length) & same[:, None].to(segment_ids.device)
    if past_key_values is not None:
        kv_length, kv_offset = (int(v) for v in past_key_values.get_mask_sizes(query_length, layer_idx))
    else:
        kv_length, kv_offset = (past + query_length if attention_mask is None else attention_mask.shape[-1]), 0
    if kv_offset != 0:
        return None
    return segment_mask_rows(segment_ids, attention_mask, start=past, end=past + query_length, kv_length=kv_length)


def packed_documents(position_ids: torch.Tensor | None, attention_mask: torch.Tensor | None, past_key_values: Any,
                     batch_size: int) -> torch.Tensor | None:
    """``document_ids`` [B, T] of a packed batch (``position_ids`` restart inside a row, no ``attention_mask``, no
    cache: transformers' own rule for packed sequences), else None."""
    if position_ids is None or attention_mask is not None or past_length(past_key_values) > 0:
        return None
    return packed_document_ids(position_ids, batch_size)


