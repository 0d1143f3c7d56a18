"""Shared pieces of the ``segmask serve`` tests: a tiny random Llama paired with SmolLM2's real tokenizer and chat
template (CPU, no network), a uvicorn server in a thread, the OpenAI client, and the independent reference answer
(``encode_chat`` + ``model.generate`` with MAS prefill on an untouched copy of the model)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import torch

from .hf_models import tiny_model

MODEL = "tiny-mas"
MAX_TOKENS = 12


@contextlib.contextmanager
def served_tiny_model(**config):
    """A uvicorn server in a thread serving a tiny model (``ServeConfig`` fields ``config`` on top of the tests'
    defaults); yields ``(base_url, reference model, tokenizer)``, the reference an untouched copy of the model."""
    import copy

    from segmask.hf.models import load_tokenizer
    from segmask.serve import ServeConfig, create_app
    from segmask.serve.front import front_options

    tokenizer = load_tokenizer()
    model = tiny_model(tokenizer=tokenizer)
    reference = copy.deepcopy(model)
    config = ServeConfig(**{"model_name": MODEL, "max_prompt_tokens": 300, "max_tokens": 64,
                            "default_max_tokens": MAX_TOKENS, "batch_wait_s": 0.05, **config})
    with running_server(create_app(model, tokenizer, config), **front_options(config)) as url:
        yield url, reference, tokenizer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(app, **options):
    """Serve ``app`` with uvicorn (``uvicorn.Config`` ``options``, e.g. ``front_options``) on a free localhost port
    in a thread; yields the base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", **options))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join()


def direct_answer(model, tokenizer, messages, max_new_tokens=MAX_TOKENS, final_answer=True) -> str:
    """The independent reference: ``encode_chat`` + ``model.generate`` (greedy) with MAS prefill."""
    from segmask import disable, enable, encode_chat

    batch = encode_chat(tokenizer, messages, final_answer=final_answer)
    enable(model)
    try:
        with torch.no_grad():
            out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
    finally:
        disable(model)
    return tokenizer.decode(out[0, batch["input_ids"].shape[1]:], skip_special_tokens=True)


def client(url):
    from openai import OpenAI

    return OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)


def conversation(i: int) -> list[dict]:
    return [{"role": "system", "content": "You answer in one short sentence."},
            {"role": "user", "content": f"Question {i}: what comes after {i * 7}?"}]
