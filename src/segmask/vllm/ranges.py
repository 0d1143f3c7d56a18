"""MAS as vLLM's own bidirectional ranges: the pure part of the opt-in range route (no vLLM import).

vLLM's GPU attention backends whose ``supports_mm_prefix()`` is true (TRITON_ATTN, FLEX_ATTENTION, FlashAttention 4)
already compute "causal OR same range" for Gemma 3/4 image tokens from ``CommonAttentionMetadata.mm_req_doc_ranges``:
request row -> inclusive ``(start, end)`` prompt positions, ranges of one request never overlapping. A MAS segment is
exactly such a range, so the range route (``segmask.vllm.range_route``, opted in with ``$SEGMASK_VLLM_RANGES=on``)
hands each request's segments to vLLM there instead of cutting pieces for the CPU kernel.

Ranges are absolute prompt positions, as vLLM's backends read them (FLEX_ATTENTION compares them with the query's
logical position, i.e. its offset in the chunk plus the tokens already computed), so a chunk or a prefix-cache hit
changes nothing in them; only segments that hold a query of this step are handed over (a segment wholly in the
computed past is already visible to every later query by causality), so decode steps stay plain causal:

    >>> scheduled_doc_ranges([0, 7, 8], [7, 13], {0: [(2, 5)], 1: [(0, 9)]})
    {0: [(2, 4)]}
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

Range = tuple[int, int]
RANGES_ENV = "SEGMASK_VLLM_RANGES"
_ON = ("on", "1", "true", "yes")
_OFF = ("off", "0", "false", "no", "")


def ranges_opted_in() -> bool:
    """True when ``$SEGMASK_VLLM_RANGES`` asks for the range route (``on``); ``ValueError`` for an unknown value."""
    value = os.environ.get(RANGES_ENV, "").strip().lower()
    if value in _ON:
        return True
    if value in _OFF:
        return False
    raise ValueError(f"{RANGES_ENV}={value!r}: expected on or off")


def scheduled_doc_ranges(query_start_loc: Sequence[int], seq_lens: Sequence[int],
                         ranges: Mapping[int, Sequence[Range]]) -> dict[int, list[Range]]:
    """Row -> inclusive ``(start, end)`` of the half-open segments ``ranges`` that hold a query of this step.

    Args:
        query_start_loc: [R + 1] start of each row's scheduled queries in the flat token dimension.
        seq_lens: [R] tokens of each row after this step (its queries are its last positions).
        ranges: row -> the request's half-open segment ranges ``(start, end)`` in prompt positions.
    Rows with no such segment are left out.
    """
    out: dict[int, list[Range]] = {}
    for row, segments in ranges.items():
        if row + 1 >= len(query_start_loc) or row >= len(seq_lens):
            continue
        end = seq_lens[row]
        first = end - (query_start_loc[row + 1] - query_start_loc[row])
        live = [(s, e - 1) for s, e in segments if s < end and e > first]
        if live:
            out[row] = live
    return out


def merge_doc_ranges(existing: Mapping[int, Sequence[Range]] | None,
                     ours: Mapping[int, Sequence[Range]]) -> dict[int, list[Range]] | None:
    """vLLM's own ranges of the batch (image tokens of a prefix-LM model, or None) with the segments added.

    All ranges inclusive. A vLLM range inside a segment is covered by it and dropped; one outside every segment is
    kept; one that straddles a segment boundary would join two parts that MAS keeps apart: ``ValueError``.
    """
    if not ours:
        return None if existing is None else {row: list(r) for row, r in existing.items()}
    merged = {row: list(r) for row, r in (existing or {}).items()}
    for row, segments in ours.items():
        kept = []
        for start, end in merged.get(row, ()):
            inside = any(s <= start and end <= e for s, e in segments)
            apart = all(end < s or start > e for s, e in segments)
            if not (inside or apart):
                raise ValueError(f"segmask: vLLM's bidirectional range ({start}, {end}) of batch row {row} straddles "
                                 f"a MAS segment boundary (segments {list(segments)}); refusing to merge them")
            if apart:
                kept.append((start, end))
        merged[row] = sorted(kept + list(segments))
    return merged
