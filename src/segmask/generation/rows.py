"""The rows a decode loop is running, as one object that can lose finished rows and take in newly prefilled ones
between two decode steps (continuous batching, ``DecodeLoop.run(..., admit=...)``).

Every row of a ``Rows`` is at the same point: its logits for the next token are ready. Its KV cache, attention mask
[B, L] and last position [B, 1] are laid out as the loop's prefill left them: left padding masked, positions counted
from each row's first real token. ``join`` left-pads the shorter of two ``Rows`` (zero keys and values under a zero
mask, which attention never reads) and stacks them; ``keep`` selects rows and drops the columns no row attends any
more. Both work on caches whose every layer is a plain ``transformers.DynamicLayer`` (``joinable``); sliding-window,
quantized, static or linear-attention caches are not re-laid out, and their loop stays static.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..hf.backend import output_cache

__all__ = ["Rows", "joinable"]


def joinable(cache: Any) -> bool:
    """Whether ``cache`` can be re-laid out by row (every layer a plain ``DynamicLayer`` holding keys)."""
    try:
        from transformers.cache_utils import DynamicLayer
    except ImportError:  # pragma: no cover - transformers 5.x has it
        return False
    layers = getattr(cache, "layers", None)
    return bool(layers) and all(type(layer) is DynamicLayer and getattr(layer, "keys", None) is not None
                                and layer.keys.dim() == 4 for layer in layers)


def _left_pad(t: torch.Tensor, n: int, dim: int) -> torch.Tensor:
    if n == 0:
        return t
    shape = list(t.shape)
    shape[dim] = n
    return torch.cat([t.new_zeros(shape), t], dim=dim)


@dataclass
class Rows:
    """Requests being decoded together: ``requests`` [B], ``logits`` [B, V] (float) for their next token, ``cache``
    (KV for L positions), ``attention_mask`` [B, L], ``last_pos`` [B, 1], per-row ``live`` flags and samplers."""

    requests: list
    logits: torch.Tensor
    cache: Any
    attention_mask: torch.Tensor
    last_pos: torch.Tensor
    live: list[bool]
    generators: list

    @classmethod
    def after(cls, requests: list, out: Any, attention_mask: torch.Tensor, last_pos: torch.Tensor, live: list[bool],
              generators: list) -> Rows:
        """The rows after a forward ``out`` (its last position's logits and its cache)."""
        return cls(requests, out.logits[:, -1, :].float(), output_cache(out), attention_mask, last_pos, live,
                   generators)

    def keep(self, index: list[int]) -> Rows:
        """These rows only (in this order), without the leading columns that none of them attends."""
        sel = torch.tensor(index, dtype=torch.long, device=self.attention_mask.device)
        mask = self.attention_mask.index_select(0, sel)
        start = int(mask.any(0).int().argmax()) if len(index) else 0
        for layer in self.cache.layers:
            layer.keys = layer.keys.index_select(0, sel)[:, :, start:]
            layer.values = layer.values.index_select(0, sel)[:, :, start:]
        return Rows([self.requests[i] for i in index], self.logits.index_select(0, sel), self.cache,
                    mask[:, start:], self.last_pos.index_select(0, sel), [self.live[i] for i in index],
                    [self.generators[i] for i in index])

    def join(self, other: Rows) -> Rows:
        """These rows, then ``other``'s, in one cache (``self``'s cache object, re-laid out)."""
        a, b = self.attention_mask.shape[1], other.attention_mask.shape[1]
        width = max(a, b)
        for mine, theirs in zip(self.cache.layers, other.cache.layers, strict=True):
            mine.keys = torch.cat([_left_pad(mine.keys, width - a, 2), _left_pad(theirs.keys, width - b, 2)])
            mine.values = torch.cat([_left_pad(mine.values, width - a, 2), _left_pad(theirs.values, width - b, 2)])
        mask = torch.cat([_left_pad(self.attention_mask, width - a, 1), _left_pad(other.attention_mask, width - b, 1)])
        return Rows(self.requests + other.requests, torch.cat([self.logits, other.logits]), self.cache, mask,
                    torch.cat([self.last_pos, other.last_pos]), self.live + other.live,
                    self.generators + other.generators)
