"""``segmask.hf.plan``: one ``PrefillPlan`` per prefill, whose route every entry point takes and whose ids nothing
checks again. CPU, tiny random Llama models, no network."""

from __future__ import annotations

import pytest
import torch

import segmask
from segmask.generation import generate
from segmask.hf import plan as plan_module
from segmask.hf.plan import chunk_bounds, plan_prefill
from segmask.hf.prefill import mas_prefill

from ..hf_models import left_padded, tiny_model

IDS = dict(vocab_size=128, pad_token_id=0, bos_token_id=2, eos_token_id=1)
ROWS = [([5, 6, 7, 8, 9, 10, 11], [0, 0, 0, 1, 1, 1, 1]),
        ([12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22], [0, 0, 0, 0, 1, 1, 1, 2, 2, -1, -1]),
        ([23, 24, 25, 26, 27], [-1, 0, 0, -1, -1])]


def test_every_entry_point_takes_the_route_plan_prefill_decides(monkeypatch):
    """Force the one route decision (``decide_route``) either way: every entry point prefills in as many forward
    calls as the plan says, also where the cost model would pick the other route. An entry point with a route
    chooser of its own would not follow."""
    model = segmask.enable(tiny_model("llama", "sdpa", **IDS))
    batch = left_padded(ROWS)
    chunks = len(chunk_bounds(batch["segment_ids"], 0, batch["input_ids"].shape[1])) - 1
    assert chunks > 2
    calls = []
    model.model.register_forward_pre_hook(lambda module, args, kwargs: calls.append(1), with_kwargs=True)
    one_token = dict(max_new_tokens=1, do_sample=False)
    entry_points = {
        "mas_prefill": lambda: mas_prefill(model, batch["input_ids"], batch["segment_ids"],
                                           attention_mask=batch["attention_mask"]),
        "model.generate": lambda: model.generate(**batch, **one_token),
        "segmask.generate, decode loop": lambda: generate(model, batch, **one_token),
        "segmask.generate, transformers": lambda: generate(model, batch, repetition_penalty=1.2, **one_token),
    }
    for forced, expected in (("segment", chunks), ("dense", 1)):
        monkeypatch.setattr(plan_module, "decide_route", lambda config, route, bounds, blocked, r=forced: r)
        for name, run in entry_points.items():
            calls.clear()
            with torch.no_grad():
                run()
            assert len(calls) == expected, f"{name} with route {forced}"


def test_segment_ids_are_checked_once_per_prefill(monkeypatch):
    """The segment route on eager runs every chunk through the hook; the hook takes the plan and checks nothing."""
    model = segmask.enable(tiny_model("llama", "eager", **IDS))
    batch = left_padded(ROWS)
    checks = []
    check = plan_module.validate_segment_ids
    monkeypatch.setattr(plan_module, "validate_segment_ids", lambda *args: checks.append(1) or check(*args))
    calls = []
    model.model.register_forward_pre_hook(lambda module, args, kwargs: calls.append(1), with_kwargs=True)
    with torch.no_grad():
        mas_prefill(model, batch["input_ids"], batch["segment_ids"], attention_mask=batch["attention_mask"],
                    route="segment")
    assert len(calls) > 2 and len(checks) == 1


def test_plan_renumbers_pads_and_matches_its_calls():
    config = tiny_model("llama", "sdpa", **IDS).config
    plan = plan_prefill(config, [[7, 7, 3, -1]], batch_size=1, query_length=6, route="segment")
    assert plan.segment_ids.tolist() == [[0, 0, 1, -1, -1, -1]] and plan.bounds == (0, 2, 3, 6)
    assert plan.head().bounds == (0, 2, 3) and plan.head().total == 3
    trimmed = plan_prefill(config, [[0, 0, 1, 1, 2, 2]], batch_size=1, query_length=4, trim=True)
    assert trimmed.segment_ids.tolist() == [[0, 0, 1, 1]]
    with pytest.raises(ValueError, match="continues past the tokens of this forward call"):
        plan_prefill(config, [[0, 0, 1, 1, 2, 2]], batch_size=1, query_length=5)
    with pytest.raises(ValueError, match="sample 1: segment 4 is not one contiguous run"):
        plan_prefill(config, [[0, 0, 0], [4, 5, 4]], batch_size=2, query_length=3)
    with pytest.raises(ValueError, match="unknown prefill_route 'fast'"):
        plan_prefill(config, [[0]], batch_size=1, query_length=1, route="fast")
    model = segmask.enable(tiny_model("llama", "sdpa", **IDS))
    with pytest.raises(ValueError, match=r"prefill plan for 1 sequences and calls \(0, 2, 3, 6\)"):
        model(input_ids=torch.tensor([[3, 4, 5, 6]]), segment_ids=plan)  # [0, 4) is none of its calls
