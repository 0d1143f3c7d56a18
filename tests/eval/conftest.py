"""Fixtures of the eval tests: the SmolLM2 tokenizer and a tiny Llama with its vocabulary, next to an eager copy
with the same weights run stock as the reference."""

from __future__ import annotations

import pytest

from ..hf_models import tiny_model


@pytest.fixture(scope="module")
def models(tok):
    """(sdpa model, MAS not enabled; eager copy with the same weights, the stock reference)."""
    model = tiny_model("llama", "sdpa", vocab_size=len(tok), max_position_embeddings=512)
    reference = tiny_model("llama", "eager", vocab_size=len(tok), max_position_embeddings=512)
    reference.load_state_dict(model.state_dict())
    return model, reference
