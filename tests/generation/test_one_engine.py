"""One generation engine: every generation in segmask goes through ``segmask.generation.generate`` (the decode loop,
transformers' generate only for options the loop lacks), ``Conversation`` included. CPU only, tiny random models;
the streamer test uses the embedded tokenizer (skipped without it)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

import segmask
from segmask.generation import generate
from segmask.generation.conversation import Conversation
from segmask.generation.prefix_cache import LivePrefix

from ..hf_models import tiny_model

SRC = Path(segmask.__file__).resolve().parent


def test_only_the_engine_calls_transformers_generate():
    """No module but ``generation/batch.py`` (its fallback for options the loop lacks) calls ``x.generate(...)``."""
    callers = set()
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "generate":
                callers.add(str(path.relative_to(SRC)))
    assert callers == {"generation/batch.py"}


class Collector:
    """A streamer that records what it is handed, as ``transformers.TextStreamer`` would receive it."""

    def __init__(self):
        self.puts, self.ended = [], 0

    def put(self, value: torch.Tensor) -> None:
        self.puts.append(value.tolist())

    def end(self) -> None:
        self.ended += 1


def test_conversation_streams_the_prompt_then_each_new_token(tokenizer):
    model = segmask.enable(tiny_model(tokenizer=tokenizer))
    chat = Conversation(model, tokenizer)
    for text in ("Name a colour.", "And a fruit?"):
        streamer = Collector()
        chat.send(text, streamer=streamer, max_new_tokens=5, do_sample=False)
        prompt = chat.last_output.sequences[0, : -len(chat.last_tokens)].tolist()
        assert streamer.puts[0] == [prompt] and streamer.ended == 1
        assert [t for (t,) in streamer.puts[1:]] == chat.last_tokens


def test_past_must_be_the_start_of_every_prompt():
    model = segmask.enable(tiny_model(vocab_size=64, pad_token_id=0, eos_token_id=1))
    from transformers import DynamicCache

    batch = {"input_ids": torch.tensor([[5, 6, 7, 8]]), "segment_ids": torch.tensor([[0, 0, -1, -1]])}
    past = LivePrefix((5, 9), (0, 0), DynamicCache(config=model.config))
    with pytest.raises(ValueError, match="start with the 2 tokens held in the KV cache"):
        generate(model, batch, past=past, max_new_tokens=2, do_sample=False)


def test_a_streamer_takes_one_sequence():
    model = segmask.enable(tiny_model(vocab_size=64, pad_token_id=0, eos_token_id=1))
    batch = {"input_ids": torch.tensor([[5, 6, 7], [8, 9, 10]])}
    with pytest.raises(ValueError, match="a streamer takes one sequence"):
        generate(model, batch, streamer=Collector(), max_new_tokens=2, do_sample=False)
