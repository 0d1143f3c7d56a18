"""The range route's pure part (segmask.vllm.ranges) against the dense reference MAS mask: the ranges handed to
vLLM, read the way vLLM's backends read them ("causal OR query and key in the same range", absolute positions),
give each scheduled query exactly its reference row, for chunks, prefix-cache hits and decode steps. No vLLM."""

from __future__ import annotations

import random

import pytest
import torch

from segmask import segment_mask
from segmask.vllm import cut_at_boundary, segment_ids_from_ranges
from segmask.vllm.ranges import RANGES_ENV, merge_doc_ranges, ranges_opted_in, scheduled_doc_ranges


def range_mask(doc: list[tuple[int, int]], first: int, end: int) -> torch.Tensor:
    """[end - first, end] what vLLM's mm-prefix mask allows: key <= query, or both inside one inclusive range."""
    q = torch.arange(first, end)[:, None]
    k = torch.arange(end)[None, :]
    allowed = k <= q
    for s, e in doc:
        allowed |= (q >= s) & (q <= e) & (k >= s) & (k <= e)
    return allowed


def reference_rows(ranges, length: int, first: int, end: int) -> torch.Tensor:
    full = segment_mask(torch.tensor([segment_ids_from_ranges(ranges, length)]))[0, 0]
    return full[first:end, :end]


def random_segments(rng: random.Random, length: int) -> list[tuple[int, int]]:
    cuts = sorted(rng.sample(range(length + 1), k=min(length + 1, 2 * rng.randint(0, 4))))
    return [(s, e) for s, e in zip(cuts[0::2], cuts[1::2]) if e > s and rng.random() < 0.8]


def test_scheduled_ranges_give_the_reference_rows():
    """200 random batches: rows with a cached prefix (possibly ending inside a segment, as a prefix-cache hit keyed
    by the whole segment can), chunks cut where the scheduler hook cuts them, decode steps, causal rows."""
    rng = random.Random(0)
    checked = 0
    for _ in range(200):
        rows = []
        for _ in range(rng.randint(1, 5)):
            prompt = rng.randint(1, 40)
            segments = random_segments(rng, prompt) if rng.random() < 0.8 else []
            first = rng.choice([0, 0, rng.randint(0, prompt - 1), prompt])  # prompt: a decode step
            want = rng.randint(1, prompt + 4 - first)
            count = cut_at_boundary(first, want, segments) if first < prompt else 1
            if count == 0:
                continue  # the scheduler takes nothing of this request this step
            rows.append((prompt, segments, first, first + count))
        query_start_loc = [0]
        for _, _, first, end in rows:
            query_start_loc.append(query_start_loc[-1] + end - first)
        by_row = {r: row[1] for r, row in enumerate(rows) if row[1]}
        doc = scheduled_doc_ranges(query_start_loc, [end for *_, end in rows], by_row)
        for r, (prompt, segments, first, end) in enumerate(rows):
            length = max(prompt, end)  # generated tokens after the prompt are causal
            got = range_mask(doc.get(r, []), first, end)
            assert torch.equal(got, reference_rows(segments, length, first, end)), (r, rows[r], doc.get(r))
            assert all(s < end and e >= first for s, e in doc.get(r, []))  # only segments with a query this step
            checked += end - first
    assert checked > 3000


def test_decode_steps_and_segments_in_the_past_hand_over_nothing():
    # row 0 decodes (its prompt's segment lies in the past); row 1's chunk is after its segment
    assert scheduled_doc_ranges([0, 1, 5], [31, 20], {0: [(0, 21)], 1: [(0, 10)]}) == {}
    # a chunk that ends at a segment boundary leaves the next segment for a later step
    assert scheduled_doc_ranges([0, 10], [10], {0: [(0, 10), (10, 20)]}) == {0: [(0, 9)]}
    # a cache hit inside a segment: the whole segment is handed over (its cached keys are in the range too)
    assert scheduled_doc_ranges([0, 8], [20], {0: [(4, 20)]}) == {0: [(4, 19)]}


def test_merge_with_vllms_own_ranges():
    ours = {0: [(0, 9), (20, 29)]}
    assert merge_doc_ranges(None, {}) is None
    assert merge_doc_ranges({0: [], 1: [(3, 5)]}, {}) == {0: [], 1: [(3, 5)]}
    assert merge_doc_ranges(None, ours) == ours
    # vLLM's image range inside a segment is covered by it; one in the causal part stays; other rows stay
    assert merge_doc_ranges({0: [(2, 5), (12, 15)], 1: [(0, 3)]}, ours) == {
        0: [(0, 9), (12, 15), (20, 29)], 1: [(0, 3)]}
    with pytest.raises(ValueError, match=r"\(8, 12\) of batch row 0 straddles"):
        merge_doc_ranges({0: [(8, 12)]}, ours)


def test_opt_in(monkeypatch):
    monkeypatch.delenv(RANGES_ENV, raising=False)
    assert not ranges_opted_in()
    for value, expected in (("on", True), ("1", True), ("off", False), ("0", False)):
        monkeypatch.setenv(RANGES_ENV, value)
        assert ranges_opted_in() is expected
    monkeypatch.setenv(RANGES_ENV, "maybe")
    with pytest.raises(ValueError, match=RANGES_ENV):
        ranges_opted_in()
