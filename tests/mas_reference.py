"""Independent reference for MAS generation: recompute the whole sequence at every step with a dense 4-D mask.

No KV cache, no segmask hook: the prompt is masked by ``segment_mask`` (the dense reference of masks.py), generated
tokens are causal, padding is never attended, positions count real tokens from 0 as ``generate`` does.
"""

from __future__ import annotations

import torch

from segmask.core.masks import pad_segment_ids, segment_mask


def dense_mas_forward(model, input_ids, attention_mask, segment_ids):
    """Logits [B, T, V] of a full forward under the dense MAS mask (additive float, finite so padding stays sane)."""
    segs = pad_segment_ids(segment_ids, input_ids.shape[1])
    allowed = segment_mask(segs, attention_mask)
    dtype = next(model.parameters()).dtype
    additive = torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)
    positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        return model(input_ids=input_ids, attention_mask=additive, position_ids=positions).logits


def reference_greedy(model, input_ids, attention_mask, segment_ids, steps):
    """Greedy decoding by full recomputation: returns (new tokens [B, steps], logits per step [steps][B, V])."""
    ids, mask, logits = input_ids, attention_mask, []
    for _ in range(steps):
        step = dense_mas_forward(model, ids, mask, segment_ids)[:, -1]
        logits.append(step)
        ids = torch.cat([ids, step.argmax(-1, keepdim=True)], 1)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
    return ids[:, input_ids.shape[1]:], logits


def tolerance(dtype: torch.dtype) -> float:
    """Absolute tolerance on logits of tiny models: a few hundred ulps of the dtype (KV cache vs recompute)."""
    return 300 * torch.finfo(dtype).eps
