"""Segment pieces through a causal/non-causal kernel equal attention under the dense MAS mask (pure torch, no vLLM).

The kernel is modelled as vLLM's CPU kernel behaves: a piece's queries are the last ``query_len`` positions before
``seq_len`` and read keys ``0 .. seq_len - 1`` of their request; causal pieces mask keys after each query.
"""

from __future__ import annotations

import random

import torch

from segmask import segment_mask
from segmask.vllm import cut_at_boundary, segment_cache_keys, segment_ids_from_ranges, split_pieces


def _kernel(q, k, v, plan, starts):
    """Attention of each piece over its request's keys. q [N, D]; k, v: per request [L, D]."""
    out = torch.zeros_like(q)
    for i in range(plan.num_pieces):
        q0, q1, row, seq = plan.query_start_loc[i], plan.query_start_loc[i + 1], plan.rows[i], plan.seq_lens[i]
        scores = q[q0:q1] @ k[row][:seq].T
        if plan.causal[i]:
            pos = torch.arange(seq - (q1 - q0), seq)[:, None]
            scores = scores.masked_fill(torch.arange(seq)[None, :] > pos, float("-inf"))
        out[q0:q1] = scores.softmax(-1) @ v[row][:seq]
    return out


def _dense(q, k, v, ranges, lengths, firsts):
    out = []
    for row, (length, first) in enumerate(zip(lengths, firsts)):
        allowed = segment_mask(torch.tensor([segment_ids_from_ranges(ranges.get(row, []), length)]))[0, 0]
        scores = q[row] @ k[row].T
        scores = scores.masked_fill(~allowed[first:], float("-inf"))
        out.append(scores.softmax(-1) @ v[row])
    return torch.cat(out)


def _random_ranges(rng, length):
    cuts = sorted(rng.sample(range(length + 1), k=min(length + 1, 2 * rng.randint(0, 4))))
    return [(s, e) for s, e in zip(cuts[0::2], cuts[1::2]) if e > s and rng.random() < 0.8]


def test_pieces_equal_dense_mas_mask():
    rng = random.Random(0)
    for _ in range(200):
        lengths = [rng.randint(1, 24) for _ in range(rng.randint(1, 4))]
        firsts = [rng.choice([0, 0, rng.randint(0, n - 1), n - 1]) for n in lengths]  # cached prefix, or a decode
        ranges = {r: _random_ranges(rng, n) for r, n in enumerate(lengths)}
        # a chunk never stops inside a segment (the scheduler hook) and a cached prefix covers whole segments
        # or starts inside one whose hash matched, which the dense reference models exactly
        k = [torch.randn(n, 8) for n in lengths]
        v = [torch.randn(n, 8) for n in lengths]
        q_rows = [torch.randn(n - f, 8) for n, f in zip(lengths, firsts)]
        query_start_loc = [0]
        for qr in q_rows:
            query_start_loc.append(query_start_loc[-1] + len(qr))
        plan = split_pieces(query_start_loc, lengths, ranges)
        expected = _dense(q_rows, k, v, ranges, lengths, firsts)
        if plan is None:  # nothing to cut: the stock causal call must already be exact
            assert all(not any(s < n and e > f for s, e in ranges[r]) for r, (n, f) in enumerate(zip(lengths, firsts)))
            continue
        got = _kernel(torch.cat(q_rows), k, v, plan, query_start_loc)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_split_pieces_layout():
    plan = split_pieces([0, 7, 8], [7, 13], {0: [(2, 5)]})
    assert (plan.query_start_loc, plan.seq_lens, plan.rows, plan.causal) == (
        [0, 2, 5, 7, 8], [2, 5, 7, 13], [0, 0, 0, 1], [1, 0, 1, 1])
    assert split_pieces([0, 1], [9], {0: [(2, 5)]}) is None  # a decode step: nothing to cut


def test_cut_at_boundary():
    ranges = [(4, 10), (10, 20)]
    assert cut_at_boundary(0, 30, ranges) == 30      # whole prompt
    assert cut_at_boundary(0, 12, ranges) == 10      # stops inside segment 1: cut at its start
    assert cut_at_boundary(0, 6, ranges) == 4
    assert cut_at_boundary(4, 5, ranges) == 0        # segment 0 does not fit this step
    assert cut_at_boundary(12, 3, ranges) == 0       # started inside segment 1 (cached part), cannot end inside
    assert cut_at_boundary(0, 10, ranges) == 10      # ends exactly at a boundary


def test_segment_cache_keys_cover_whole_segment():
    tokens = list(range(100, 140))
    ranges = [(0, 20), (20, 35)]
    block = segment_cache_keys(tokens, ranges, 16, 32)
    assert len(block) == 2 and segment_cache_keys(tokens, ranges, 32, 40) == block[1:]
    changed = tokens[:30] + [0] + tokens[31:]          # a token of segment 1 changes, outside block [0, 16)
    assert segment_cache_keys(changed, ranges, 0, 16) == segment_cache_keys(tokens, ranges, 0, 16)
    assert segment_cache_keys(changed, ranges, 16, 32)[1] != block[1]
    assert segment_cache_keys(tokens, [(0, 21), (21, 35)], 0, 16) != segment_cache_keys(tokens, ranges, 0, 16)
    assert segment_cache_keys(tokens, [], 0, 16) == []
