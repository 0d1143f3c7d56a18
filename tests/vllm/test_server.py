"""The OpenAI server vLLM starts, with the plugin loaded by its entry point in every process: MAS off by default
for a model folder without segmask.json, on per request through ``vllm_xargs``, and on for a LoRA module whose
segmask.json says ``"mask": "mas"``. Answers are compared with the reference as decoded text. ``make test-vllm``."""

from __future__ import annotations

import pytest

from segmask import encode_chat
from segmask.vllm import find_segments
from segmask.vllm.reference import reference_greedy

from .conftest import ADAPTER, openai_server

pytestmark = pytest.mark.vllm
MESSAGES = [{"role": "system", "content": "Answer in one short sentence."},
            {"role": "user", "content": "Why do leaves fall in autumn?"}]
STEPS = 12


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The OpenAI server on the embedded model with the MAS adapter as a LoRA module (``.url``, ``.log``)."""
    log = tmp_path_factory.mktemp("server") / "server.log"
    with openai_server(log, "--served-model-name", "base", "--enable-lora", "--max-lora-rank", "32",
                       "--lora-modules", f"mas-chat={ADAPTER}") as started:
        yield started


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
    assert _ask(server.url, "base") == causal
    assert _ask(server.url, "base", vllm_xargs={"segmask_mas": 1}) == mas


def test_lora_module_with_mas_segmask_json(server):
    import segmask

    model, tokenizer = segmask.load_model("smollm2-135m-instruct", adapter=str(ADAPTER))
    segmask.enable(model)
    out = segmask.generate(model, encode_chat(tokenizer, MESSAGES), max_new_tokens=STEPS, do_sample=False)
    assert _ask(server.url, "mas-chat") == tokenizer.decode(out.sequences[0], skip_special_tokens=True)


def test_route_logged_once(server):
    """Start-up logs the active MAS route in one line (the front end judges it; here: the verified CPU route)."""
    lines = [line for line in server.log.read_text().splitlines() if "segmask MAS route:" in line]
    assert len(lines) == 1
    assert lines[0].endswith("platform cpu, attention CPU_ATTN, model runner V1: verified (MAS prefill by segment "
                             "pieces on the CPU kernel)")
    assert "segmask MAS route: vLLM 0.32." in lines[0]
