"""The FLOP model of a decoder forward pass, shared by the prefill route choice and the benchmarks.

Per layer and token, the projections and the MLP cost ``2 (2 h q + 2 h kv + 3 h i)`` FLOPs (a multiply-add is two);
per layer and query-key pair, attention costs ``4 q`` (QK^T and PV), with ``q = heads * head_dim`` and
``kv = kv_heads * head_dim``. A causal prompt of T tokens has T(T+1)/2 pairs; MAS adds the strict upper triangle
inside each segment; a masked dense kernel computes all T^2.

    >>> causal_pairs(4), mas_pairs(4, [2, 2])
    (10, 12)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def _dims(config: Any) -> tuple[int, int, int, int, int]:
    """(hidden, q width, kv width, intermediate, heads) of a transformers text config."""
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    inter = getattr(config, "intermediate_size", None) or 4 * config.hidden_size
    return config.hidden_size, heads * head_dim, kv_heads * head_dim, inter, heads


def token_flops(config: Any) -> float:
    """FLOPs of the projections and the MLP of one token in one layer."""
    h, q, kv, inter, _ = _dims(config)
    return 2.0 * (2 * h * q + 2 * h * kv + 3 * h * inter)


def pair_flops(config: Any) -> float:
    """FLOPs of QK^T and PV of one query-key pair in one layer (all heads)."""
    return 4.0 * _dims(config)[1]


def linear_flops(config: Any, tokens: int, lm_head_tokens: int) -> float:
    """FLOPs of the projections and MLPs of ``tokens`` tokens in every layer, plus the LM head on ``lm_head_tokens``."""
    head = 2.0 * config.hidden_size * config.vocab_size * lm_head_tokens
    return token_flops(config) * config.num_hidden_layers * tokens + head


def attention_flops(config: Any, pairs: float) -> float:
    """FLOPs of QK^T and PV over ``pairs`` query-key pairs in every layer."""
    return pair_flops(config) * config.num_hidden_layers * pairs


def causal_pairs(length: int) -> int:
    return length * (length + 1) // 2


def mas_pairs(length: int, segment_lengths: Sequence[int]) -> int:
    """The MAS floor: the causal pairs plus the strict upper triangle inside each segment."""
    return causal_pairs(length) + sum(n * (n - 1) // 2 for n in segment_lengths)
