"""Continuous batching in the decode loop (``DecodeLoop.run(..., admit=...)``): rows leave when done and requests
admitted between decode steps join the running batch. Every row's greedy tokens must equal its own full
recomputation (the dense MAS reference of ``tests/hf_models.py``, no cache), whatever joined or left around it.
CPU only, tiny random models."""

from __future__ import annotations

import copy

import pytest
import torch

import segmask
from segmask.generation.decode import DecodeLoop, GenRequest
from segmask.generation.prefix_cache import PrefixCache
from segmask.generation.rows import joinable

from ..hf_models import reference_logits, tiny_model


def recomputed(reference, family, ids, segs, n) -> list[int]:
    """Greedy tokens of one prompt, each from a full forward of prompt + tokens so far under the dense mask."""
    ids, segs, out = list(ids), list(segs), []
    for _ in range(n):
        t = torch.tensor([ids])
        logits = reference_logits(reference, family, t, torch.ones_like(t), torch.tensor([segs]))
        out.append(int(logits[0, -1].argmax()))
        ids.append(out[-1])
        segs.append(-1)
    return out


def prompt(i: int, shared: list[int] | None = None) -> tuple[list[int], list[int]]:
    """Prompt i: [shared system segment] + a user segment of 3 + i % 5 tokens + a 2-token causal header."""
    g = torch.Generator().manual_seed(100 + i)
    user = torch.randint(3, 90, (3 + i % 5,), generator=g).tolist()
    head = shared or []
    return head + user + [5, 6], [0] * len(head) + [1] * len(user) + [-1, -1]


class Arrivals:
    """``admit``: hands out ``waves[k]`` on its k-th call and records how many rows were running then."""

    def __init__(self, waves):
        self.waves, self.running = list(waves), []

    def __call__(self, running: int) -> list[GenRequest]:
        self.running.append(running)
        return self.waves.pop(0) if self.waves else []


def requests(prompts, budgets, log):
    return [GenRequest(ids, segs, n, lambda kind, value, i=i: log.append((i, kind, value)), min_new_tokens=n)
            for i, ((ids, segs), n) in enumerate(zip(prompts, budgets))]


@pytest.mark.parametrize("family", ["llama", "qwen3", "phi3"])
def test_rows_that_join_and_leave_decode_as_they_would_alone(family):
    reference = tiny_model(family, pad_token_id=0, initializer_range=0.5)
    model = segmask.enable(copy.deepcopy(reference))
    prompts = [prompt(i) for i in range(7)]
    budgets = [6, 2, 9, 4, 3, 7, 5]
    log: list = []
    reqs = requests(prompts, budgets, log)
    arrivals = Arrivals([[], reqs[2:4], [], [reqs[4]], [], [], reqs[5:]])
    prefills = DecodeLoop(model, None, mas=True, eos_ids=set(), isolate=False).run(reqs[:2], admit=arrivals)
    assert prefills == 4
    # row 1 (2 tokens) left before the third wave, and rows 0, 2, 3 were still decoding when 4 joined
    assert arrivals.running[:4] == [2, 1, 3, 3], arrivals.running
    expected = [recomputed(reference, family, *prompts[i], budgets[i]) for i in range(7)]
    assert len({tuple(e[:2]) for e in expected}) > 2  # every prompt ends in [5, 6]: the answers read the context
    for i, req in enumerate(reqs):
        assert req.generated == expected[i], f"request {i}"
    assert [value for i, kind, value in log if kind == "done"] == ["length"] * 7
    first_token = {i: n for n, (i, kind, _) in reversed(list(enumerate(log))) if kind == "token"}
    done = {i: n for n, (i, kind, _) in enumerate(log) if kind == "done"}
    assert first_token[4] < done[0] and first_token[5] < done[2]  # the late ones did not wait for the batch


def test_joined_rows_with_a_cached_prefix_equal_their_recomputation():
    """Rows laid out [prefix | padding | new tokens] (a stored system segment) join rows prefilled whole."""
    reference = tiny_model("llama", initializer_range=0.5)
    model = segmask.enable(copy.deepcopy(reference))
    shared = list(range(10, 22))
    cache = PrefixCache(model, None)
    prompts = [prompt(i, shared) for i in range(5)]
    log: list = []
    reqs = requests(prompts, [5, 8, 4, 6, 3], log)
    loop = DecodeLoop(model, None, mas=True, eos_ids=set(), isolate=False, prefix_cache=cache)
    loop.run(reqs[:1], admit=Arrivals([reqs[1:3], [], reqs[3:]]))
    assert cache.hits >= 3 and reqs[3].reused == len(shared)
    expected = [recomputed(reference, "llama", *prompts[i], req.max_new_tokens) for i, req in enumerate(reqs)]
    assert len({tuple(e[:2]) for e in expected}) > 2
    for i, req in enumerate(reqs):
        assert req.generated == expected[i], f"request {i}"


def test_sliding_window_caches_finish_their_batch_first():
    """Mistral's sliding-window cache cannot be re-laid out by row: nothing is admitted, the batch runs as before."""
    reference = tiny_model("mistral", initializer_range=0.5)
    model = segmask.enable(copy.deepcopy(reference))
    prompts = [prompt(i) for i in range(2)]
    log: list = []
    reqs = requests(prompts, [6, 4], log)
    arrivals = Arrivals([])
    assert DecodeLoop(model, None, mas=True, eos_ids=set(), isolate=False).run(reqs, admit=arrivals) == 1
    assert arrivals.running == []
    for i, req in enumerate(reqs):
        assert req.generated == recomputed(reference, "mistral", *prompts[i], req.max_new_tokens)


def test_joinable_is_false_for_sliding_and_true_for_plain_caches():
    from transformers import DynamicCache

    plain = tiny_model("llama").config
    sliding = tiny_model("gemma3").config
    kv = [(torch.zeros(1, 2, 3, 8), torch.zeros(1, 2, 3, 8))] * 2
    assert joinable(DynamicCache(ddp_cache_data=kv, config=plain))
    assert not joinable(DynamicCache(ddp_cache_data=kv, config=sliding))
    assert not joinable(DynamicCache(config=plain))  # empty: nothing to re-lay out
