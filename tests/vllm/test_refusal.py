"""Never a silently causal answer: engines on a route the plugin is not verified on, forced on this CPU machine.

- a worker whose attention backend ignores segments (the platform made to pick vLLM's stock ``CPU_ATTN`` class
  instead of the plugin's) fails at start-up;
- a custom scheduler that bypasses the plugin's chunk cut makes the route unverified: with
  ``SEGMASK_VLLM_MAS=on`` the engine refuses to start; with ``auto`` vLLM's OpenAI server answers causal requests
  and rejects every request that resolves to MAS (``vllm_xargs`` or a LoRA adapter whose segmask.json says
  ``"mas"``) with HTTP 400 naming the reason. ``make test-vllm``."""

from __future__ import annotations

import pytest

from segmask import encode_chat
from segmask.vllm.reference import reference_greedy

from .conftest import ADAPTER, openai_server, run_engine

pytestmark = pytest.mark.vllm
SCHEDULER = "tests.vllm.unverified_scheduler.OwnChunkScheduler"
MESSAGES = [{"role": "user", "content": "Name a yellow fruit."}]
STEPS = 8
ENGINE = ('LLM(MODEL, dtype="float32", enforce_eager=True, max_model_len=512, seed=0, '
          'distributed_executor_backend="uni", max_num_seqs=4, block_size=32{extra})')


def test_worker_refuses_a_backend_that_ignores_segments():
    """The platform hands out vLLM's stock CPU attention class (the kind of thing another plugin or a new vLLM
    could do): the front end still judges the route verified, the worker sees the real backend and refuses."""
    code = f"""
from vllm.platforms.cpu import CpuPlatform
CpuPlatform.get_attn_backend_cls = classmethod(
    lambda cls, *args, **kwargs: "vllm.v1.attention.backends.cpu_attn.CPUAttentionBackend")
from vllm import LLM
{ENGINE.format(extra="")}
print("ENGINE STARTED")
"""
    done = run_engine(code)
    assert done.returncode != 0 and "ENGINE STARTED" not in done.stdout, done.stdout[-3000:]
    assert ("this worker does not: attention backend vllm.v1.attention.backends.cpu_attn.CPUAttentionBackend does "
            "not compute MAS") in done.stdout, done.stdout[-3000:]


def test_startup_refusal_when_mas_is_asked_for():
    code = f"""
from vllm import LLM
{ENGINE.format(extra=f", scheduler_cls={SCHEDULER!r}")}
print("ENGINE STARTED")
"""
    done = run_engine(code, env={"SEGMASK_VLLM_MAS": "on"})
    assert done.returncode != 0 and "ENGINE STARTED" not in done.stdout, done.stdout[-3000:]
    assert "MAS is asked for at start-up (SEGMASK_VLLM_MAS=on)" in done.stdout, done.stdout[-3000:]
    assert "scheduler OwnChunkScheduler does not inherit" in done.stdout
    assert "Loading weights" not in done.stdout  # refused before the model loads


@pytest.fixture(scope="module")
def unverified_server(tmp_path_factory):
    log = tmp_path_factory.mktemp("unverified") / "server.log"
    with openai_server(log, "--served-model-name", "base", "--scheduler-cls", SCHEDULER, "--enable-lora",
                       "--max-lora-rank", "32", "--lora-modules", f"mas-chat={ADAPTER}") as started:
        yield started


def test_unverified_server_serves_causal_and_refuses_mas(unverified_server, reference_model):
    from openai import BadRequestError, OpenAI

    lines = [line for line in unverified_server.log.read_text().splitlines() if "segmask MAS route:" in line]
    assert len(lines) == 1 and "NOT verified (scheduler OwnChunkScheduler" in lines[0]
    assert lines[0].endswith("MAS requests are refused (HTTP 400), causal requests are served")

    client = OpenAI(base_url=unverified_server.url + "/v1", api_key="unused", max_retries=0, timeout=600)

    def ask(model, **extra_body):
        reply = client.chat.completions.create(model=model, messages=MESSAGES, temperature=0, max_tokens=STEPS,
                                               extra_body=extra_body or None)
        return reply.choices[0].message.content

    model, tokenizer = reference_model
    prompt = encode_chat(tokenizer, MESSAGES)["input_ids"][0].tolist()
    causal = tokenizer.decode(reference_greedy(model, prompt, [], STEPS)[0], skip_special_tokens=True)
    assert ask("base") == causal
    assert ask("base", vllm_xargs={"segmask_mas": 0}) == causal
    for model_name, extra in (("base", {"vllm_xargs": {"segmask_mas": 1}}),
                              ("base", {"vllm_xargs": {"segmask_ranges": [0, 3]}}),
                              ("mas-chat", {})):  # the adapter's segmask.json asks for MAS
        with pytest.raises(BadRequestError) as err:
            ask(model_name, **extra)
        assert err.value.status_code == 400
        message = str(err.value)
        assert "refused rather than answered with causal attention" in message, message
        assert "scheduler OwnChunkScheduler" in message
