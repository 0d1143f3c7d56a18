"""segmask.serve.schema.parse_request: null is the default, limits and refusals name the field, whatever passes
can be decoded. Pure Python, no model."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from segmask.serve.schema import ApiError, parse_request

CONFIG = SimpleNamespace(model_name="m", max_tokens=64, default_max_tokens=16, max_messages=8)
USER = [{"role": "user", "content": "hi"}]


def parse(**fields):
    return parse_request(json.dumps({"model": "m", "messages": USER, **fields}).encode(), CONFIG)


def refused(body: bytes | dict, param=None, code=None, status=400) -> ApiError:
    raw = body if isinstance(body, bytes) else json.dumps({"model": "m", "messages": USER, **body}).encode()
    with pytest.raises(ApiError) as info:
        parse_request(raw, CONFIG)
    err = info.value
    assert err.status == status and (param is None or err.param == param) and (code is None or err.code == code)
    json.dumps(err.body(), ensure_ascii=False).encode("utf-8")  # printable: no lone surrogates in the message
    return err


def test_null_means_default():
    base = parse()
    fields = ["max_tokens", "max_completion_tokens", "temperature", "top_p", "n", "stream", "stream_options", "stop",
              "seed", "logprobs", "top_logprobs", "tools", "tool_choice", "response_format", "frequency_penalty",
              "presence_penalty", "logit_bias", "user", "audio"]
    assert parse(**{f: None for f in fields}) == base
    assert (base.max_tokens, base.temperature, base.top_p, base.stop, base.seed, base.logprobs) == (
        16, 1.0, 1.0, [], None, None)
    assert parse(stream=True, stream_options={"include_usage": None}).include_usage is False


def test_max_tokens_and_max_completion_tokens():
    assert parse(max_tokens=3, max_completion_tokens=None).max_tokens == 3
    assert parse(max_tokens=None, max_completion_tokens=5).max_tokens == 5
    assert parse(max_tokens=9, max_completion_tokens=5).max_tokens == 5
    refused({"max_completion_tokens": 65}, param="max_completion_tokens")
    refused({"max_tokens": 0}, param="max_tokens")


@pytest.mark.parametrize("temperature, want", [(0, 0.0), (5e-324, 0.0), (1e-40, 0.0), (9e-6, 0.0), (1e-5, 1e-5),
                                               (0.7, 0.7), (2, 2.0)])
def test_temperatures_too_small_to_sample_are_greedy(temperature, want):
    assert parse(temperature=temperature).temperature == want


@pytest.mark.parametrize("value", [-0.1, 2.01, "1", True, [1], float("nan"), float("inf")])
def test_bad_temperatures(value):
    refused({"temperature": value}, param="temperature")  # json.dumps writes NaN/Infinity, which json.loads reads


@pytest.mark.parametrize("seed, ok", [(0, True), (2**64 - 1, True), (-1, False), (2**64, False),
                                      (1180591620717411303424, False), (1.0, False), (False, False)])
def test_seed_range(seed, ok):
    if ok:
        assert parse(seed=seed).seed == seed
    else:
        refused({"seed": seed}, param="seed")


def test_logprobs_fields():
    assert parse(logprobs=True).logprobs == 0
    assert parse(logprobs=True, top_logprobs=20).logprobs == 20
    assert parse(logprobs=False).logprobs is None
    refused({"logprobs": True, "top_logprobs": 21}, param="top_logprobs")
    refused({"top_logprobs": 1}, param="top_logprobs")
    refused({"logprobs": 1}, param="logprobs")


def test_unsupported_unknown_and_neutral_parameters():
    err = refused({"frequency_penalty": 0.1}, param="frequency_penalty", code="unsupported_parameter")
    assert "frequency_penalty" in err.message
    refused({"tools": [{"type": "function"}]}, param="tools", code="unsupported_parameter")
    refused({"response_format": {"type": "json_schema"}}, param="response_format")
    refused({"presence_penalty": False}, param="presence_penalty")
    refused({"n": 3}, param="n", code="unsupported_parameter")
    refused({"top_k": 1}, param="top_k", code="unknown_parameter")
    refused({"x\ud800": 1}, code="unknown_parameter")
    parse(frequency_penalty=0.0, presence_penalty=0, tools=[], response_format={"type": "text"}, logit_bias={},
          tool_choice="auto", user="u", metadata={"a": "b"}, n=1)


def test_messages():
    long = [{"role": "user", "content": ""}] * 9
    refused({"messages": long}, param="messages", code="too_many_messages")
    refused({"messages": [{"role": "user", "content": "a\ud800"}]}, param="messages[0].content")
    refused({"messages": [{"role": "robot", "content": "a"}]}, param="messages[0].role")
    refused({"messages": [{"role": ["user"], "content": "a"}]}, param="messages[0].role")
    refused({"messages": [{"role": "user", "content": None}]}, param="messages[0].content")
    refused({"messages": [{"role": "user", "content": "a", "colour": 1}]}, param="messages[0].colour")
    refused({"messages": [{"role": "assistant", "content": "", "tool_calls": [{"id": "1"}]}]},
            param="messages[0].tool_calls")
    parts = [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    assert parse(messages=[{"role": "user", "content": parts, "name": "x", "tool_calls": None}]).messages == [
        {"role": "user", "content": "ab"}]


@pytest.mark.parametrize("raw", [
    b"[" * 100_000 + b"]" * 100_000,
    b'{"model": "m", "messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    b'{"model": "m", "seed": ' + b"9" * 5000 + b"}",  # beyond Python's 4300-digit int limit
    b"\xff\xfe\xfa",
    b'"just a string"',
])
def test_bodies_that_are_not_a_json_object(raw):
    err = refused(raw)
    assert err.code in ("invalid_json", None)
    assert len(err.message) < 400
