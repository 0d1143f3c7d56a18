"""Segment runs: where each run of one segment id starts and ends. Every caller that needs boundaries uses these.

Shapes in the notation declared in ``segmask.core`` (B batch, T sequence length).

A run is a maximal stretch of equal ids in one sample: a bidirectional segment (id >= 0) or a stretch of causal
tokens (-1). Two neighbouring positions lie in the same *segment* when they hold the same id >= 0.

    >>> segment_runs([0, 0, 1, -1, -1])
    [Run(start=0, end=2, segment=0), Run(start=2, end=3, segment=1), Run(start=3, end=5, segment=-1)]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

CAUSAL = -1
"""Segment id of a causal token (answer, generation header, padding)."""


class Run(NamedTuple):
    """Positions [start, end) of one sample hold the id ``segment`` (-1: causal tokens)."""

    start: int
    end: int
    segment: int


def segment_runs(segment_ids: Sequence[int] | torch.Tensor) -> list[Run]:
    """The runs of one sample's ``segment_ids`` [T] (a list or 1-D tensor), in order; they cover [0, T)."""
    ids = segment_ids.tolist() if isinstance(segment_ids, torch.Tensor) else list(segment_ids)
    runs, start = [], 0
    for t in range(1, len(ids) + 1):
        if t == len(ids) or ids[t] != ids[start]:
            runs.append(Run(start, t, int(ids[start])))
            start = t
    return runs


def segment_continues(segment_ids: torch.Tensor) -> torch.Tensor:
    """BoolTensor [B, T]: True at t when token t lies in the same bidirectional segment as token t - 1."""
    same = torch.zeros_like(segment_ids, dtype=torch.bool)
    same[:, 1:] = (segment_ids[:, 1:] >= 0) & (segment_ids[:, 1:] == segment_ids[:, :-1])
    return same


def segment_run_starts(segment_ids: torch.Tensor) -> torch.Tensor:
    """BoolTensor [B, T]: True at the first position of each run of one segment id >= 0 in ``segment_ids`` [B, T]."""
    return (segment_ids >= 0) & ~segment_continues(segment_ids)


def check_whole_segments(segment_ids: torch.Tensor, start: int, end: int) -> None:
    """Raise ``ValueError`` naming the sample when a segment of ``segment_ids`` [B, L] crosses position ``start`` or
    ``end``: a bidirectional segment must be prefilled whole, in one forward call with query positions
    [start, end)."""
    continues = segment_continues(segment_ids)
    for cut, where in ((start, "begins in the KV cache and continues in this call"),
                       (end, "continues past the tokens of this forward call")):
        if 0 < cut < segment_ids.shape[1] and continues[:, cut].any():
            b = int(continues[:, cut].nonzero()[0])
            raise ValueError(f"sample {b}: segment {int(segment_ids[b, cut])} {where}; "
                             "a segment must be prefilled in one forward call")
