"""MAS through a causal/non-causal paged-attention kernel: split each prefill request into segment pieces.

A kernel that takes per-sequence ``(query_start_loc, seq_len, causal)`` and reads keys ``0 .. seq_len - 1`` of the
sequence from its paged cache computes MAS exactly when every request's scheduled queries are cut into pieces:

- a segment ``[s, e)``: one **non-causal** piece; its queries see keys ``0 .. e - 1`` (all earlier text and the
  whole segment);
- text between segments: one **causal** piece; query ``p`` sees keys ``0 .. p``.

All pieces of a request share its block-table row, so earlier K/V (written by this step or cached) are read from
the paged cache; the queries keep their order, so outputs need no reordering. Pure Python, no vLLM import:

    >>> plan = split_pieces([0, 7, 8], [7, 13], {0: [(2, 5)]})     # request 0: 7 new tokens, segment [2, 5)
    >>> plan.query_start_loc, plan.seq_lens, plan.rows, plan.causal
    ([0, 2, 5, 7, 8], [2, 5, 7, 13], [0, 0, 0, 1], [1, 0, 1, 1])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

Range = tuple[int, int]


@dataclass
class PiecePlan:
    """The batch as pieces: ``query_start_loc`` [P + 1], ``seq_lens`` [P], ``rows`` [P] (the request each piece
    belongs to, i.e. its block-table row) and ``causal`` [P] (1 causal, 0 bidirectional)."""

    query_start_loc: list[int]
    seq_lens: list[int]
    rows: list[int]
    causal: list[int]

    @property
    def num_pieces(self) -> int:
        return len(self.seq_lens)


def split_pieces(
    query_start_loc: Sequence[int], seq_lens: Sequence[int], ranges: Mapping[int, Sequence[Range]]
) -> PiecePlan | None:
    """Cut the batch's requests into MAS pieces; None when no scheduled query lies in a segment (nothing to cut).

    Args:
        query_start_loc: [R + 1] start of each request's scheduled queries in the flat token dimension.
        seq_lens: [R] tokens of each request in the cache after this step (its queries are the last positions).
        ranges: request index -> its half-open segment ranges ``(start, end)`` in prompt positions, sorted.
    """
    plan = PiecePlan([query_start_loc[0]], [], [], [])
    split = False
    for row, seq_len in enumerate(seq_lens):
        q_start, q_end = query_start_loc[row], query_start_loc[row + 1]
        cuts = request_pieces(seq_len - (q_end - q_start), seq_len, ranges.get(row, ()))
        split |= len(cuts) > 1 or any(not causal for _, _, causal in cuts)
        for _start, end, causal in cuts:
            plan.query_start_loc.append(q_start + end - (seq_len - (q_end - q_start)))
            plan.seq_lens.append(end)
            plan.rows.append(row)
            plan.causal.append(int(causal))
    return plan if split else None


def request_pieces(first: int, end: int, ranges: Sequence[Range]) -> list[tuple[int, int, bool]]:
    """One request's scheduled positions ``[first, end)`` as ``(start, stop, causal)`` pieces, in order.

    A segment cut by ``end`` (a chunk that stops inside it) keeps only its scheduled part: vLLM's scheduler is kept
    from doing that by the plugin (``segmask.vllm.plugin``), since such a chunk cannot see the segment's later keys.
    A request with no queries (padding) keeps one empty causal piece, so rows stay aligned.
    """
    pieces: list[tuple[int, int, bool]] = []
    pos = first
    for s, e in ranges:
        if e <= pos or s >= end:
            continue
        if s > pos:
            pieces.append((pos, s, True))
            pos = s
        stop = min(e, end)
        pieces.append((pos, stop, False))
        pos = stop
    if pos < end or not pieces:
        pieces.append((pos, end, True))
    return pieces



def cut_at_boundary(first: int, count: int, ranges: Sequence[Range]) -> int:
    """Tokens of a prefill chunk ``[first, first + count)`` to schedule so that it never ends inside a segment.

    A chunk that would stop inside a segment stops at the segment's start instead, or takes nothing this step if
    it starts inside (or at) that segment: the segment's queries must all see its last key.
    """
    end = first + count
    for s, e in ranges:
        if s < end < e:
            return max(s - first, 0)
    return count
