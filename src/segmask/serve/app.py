"""OpenAI-compatible HTTP server with MAS prefill: ``/v1/chat/completions`` (streaming and not), ``/v1/models``,
``/health``, and a playground page at ``/`` (``segmask.serve.playground``).

System, developer, user and tool messages are prefilled as bidirectional segments (``segmask.core.chat.encode_chat``);
the generation header and the answer are causal. Requests go through one ``Batcher`` queue, so concurrent clients
are batched together. Limits (body bytes and read time, messages, prompt tokens, ``max_tokens``, waiting requests)
answer with OpenAI-style 4xx JSON errors: ``{"error": {"message", "type", "param", "code"}}``; a client's mistake
never gets a 5xx. Parsing the body, rendering the chat template and tokenizing run in a worker thread, so the event
loop (and ``/health``) stays responsive while a large request is prepared.

    >>> app = create_app(model, tokenizer, ServeConfig(model_name="smollm2-135m-mas"))
    >>> uvicorn.run(app, host="127.0.0.1", port=8000)      # or: segmask serve --port 8000

Then any OpenAI client works: ``OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="-")``.
"""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations (Request) at runtime.

import asyncio
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..core.chat import chat_example
from ..core.runs import CAUSAL
from ..core.segments import Example
from ..generation.prefix_cache import PrefixCache
from ..hf.hook import enable
from .batcher import Batcher, QueueFull
from .playground import add_playground
from .response import Job, TokenText
from .schema import ApiError, ChatParams, parse_request, show


@dataclass
class ServeConfig:
    """What the server serves and its limits."""

    model_name: str = field(metadata={"help": "model id clients must send (``/v1/models`` lists it)"})
    mas: bool = field(default=True, metadata={"help": "MAS prefill; False = plain causal prefill"})
    max_prompt_tokens: int = field(default=4096, metadata={"help": "longest accepted prompt, in tokens"})
    max_tokens: int = field(default=1024, metadata={"help": "largest accepted max_tokens"})
    default_max_tokens: int = field(default=256, metadata={"help": "max_tokens when the request gives none"})
    max_body_bytes: int = field(default=1 << 20, metadata={"help": "largest accepted request body"})
    body_timeout_s: float = field(default=30.0, metadata={"help": "a request body not received in this time gets "
                                                                   "408 (stalled uploads)"})
    max_messages: int = field(default=256, metadata={"help": "most messages in one request (rendering the chat "
                                                             "template costs time quadratic in their number)"})
    max_batch_size: int = field(default=8, metadata={"help": "requests decoded together"})
    batch_wait_s: float = field(default=0.01, metadata={"help": "wait for more requests before a batch starts"})
    max_queue: int = field(default=256, metadata={"help": "waiting requests beyond this get 503"})
    prefix_cache_bytes: int = field(default=256 << 20, metadata={"help": "KV memory for shared leading segments "
                                                                          "(system prompts); 0 turns reuse off"})
    header_timeout_s: float = field(default=10.0, metadata={"help": "a connection whose request headers have not "
                                                                     "arrived in this time is closed (408)"})
    keep_alive_s: float = field(default=5.0, metadata={"help": "idle keep-alive connections are closed after this"})
    max_connections: int = field(default=512, metadata={"help": "open connections beyond this are refused (503)"})
    small_body_bytes: int = field(default=64 << 10, metadata={
        "help": "bodies up to this size are prepared on their own thread, never behind a large one"})
    disconnect_poll_s: float = field(default=0.2, metadata={
        "help": "how often a non-streaming request checks that its client is still connected (gone: row cancelled)"})
    model_path: str | None = field(default=None, metadata={"help": "what the model was loaded from (--model), "
                                                                      "named by the playground; None: model_name"})
    adapter: str | None = field(default=None, metadata={"help": "LoRA adapter loaded on top, named by the playground"})

    def __post_init__(self):
        for name in ("max_prompt_tokens", "max_tokens", "default_max_tokens", "max_body_bytes", "max_batch_size",
                     "max_messages", "max_queue", "max_connections", "small_body_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        for name in ("body_timeout_s", "header_timeout_s", "keep_alive_s", "disconnect_poll_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if self.prefix_cache_bytes < 0:
            raise ValueError(f"prefix_cache_bytes must be >= 0, got {self.prefix_cache_bytes!r}")
        if self.default_max_tokens > self.max_tokens:
            raise ValueError(f"default_max_tokens {self.default_max_tokens} exceeds max_tokens {self.max_tokens}")


def prompt_example(tokenizer: Any, messages: list[dict]) -> Example:
    """Token ids and segment ids of a chat prompt that ends with the assistant generation header: exactly
    ``encode_chat(tokenizer, messages, final_answer=False)``'s row.

    A conversation that ends with an assistant message is prior context: the header of a new assistant turn follows.
    """
    return chat_example(tokenizer, messages, add_generation_prompt=True, final_answer=False)


def create_app(model: Any, tokenizer: Any, config: ServeConfig):
    """A FastAPI app serving ``model`` (``segmask.enable``d when ``config.mas``) under ``config.model_name``."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI

    batcher = _batcher(model, tokenizer, config)
    # Prompts are prepared (JSON, chat template, tokenizer) off the event loop, on two threads: one for bodies up to
    # small_body_bytes, one for larger ones, so a small request never waits behind a large one.
    prompts = {lane: ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"segmask-prompt-{lane}")
               for lane in ("small", "large")}

    @asynccontextmanager
    async def lifespan(app):
        batcher.start()
        yield
        await asyncio.to_thread(batcher.stop)
        for pool in prompts.values():
            pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="segmask", lifespan=lifespan)
    app.state.batcher, app.state.config = batcher, config
    app.state.completer = Completer(model, tokenizer, config, batcher, prompts)
    _add_error_handlers(app)
    _add_routes(app, config, batcher, app.state.completer)
    add_playground(app, tokenizer, config, app.state.completer)
    return app


def _batcher(model: Any, tokenizer: Any, config: ServeConfig) -> Batcher:
    """The request batcher: MAS enabled on ``model`` when ``config.mas``, with a prefix cache when it has memory and
    the model only full-attention layers."""
    if config.mas:
        enable(model)
    prefix_cache = None if not config.mas or config.prefix_cache_bytes == 0 else \
        PrefixCache.for_model(model, tokenizer, max_bytes=config.prefix_cache_bytes)
    return Batcher(model, tokenizer, mas=config.mas, max_batch_size=config.max_batch_size,
                   batch_wait_s=config.batch_wait_s, max_queue=config.max_queue, prefix_cache=prefix_cache)


class Completer:
    """Answers one ``/v1/chat/completions`` request: prompt prepared in the prompt thread, generated by the batcher,
    returned whole or streamed."""

    def __init__(self, model: Any, tokenizer: Any, config: ServeConfig, batcher: Batcher,
                 prompts: dict[str, ThreadPoolExecutor]):
        self.tokenizer, self.config, self.batcher, self.prompts = tokenizer, config, batcher, prompts
        self.max_positions = getattr(getattr(model, "config", None), "max_position_embeddings", None)
        self.token_text = TokenText(tokenizer)
        self.preparing = 0  # requests handed to the prompt thread and not back yet (event loop only)

    def prepare(self, body: bytes) -> tuple[ChatParams, Example]:  # prompt thread
        """Parse and check the request and tokenize its prompt; ``ApiError`` (400) for what the server refuses."""
        config = self.config
        params = parse_request(body, config)
        example = self.example(params.messages)
        n_prompt = len(example.input_ids)
        if self.max_positions is not None and n_prompt + params.max_tokens > self.max_positions:
            raise ApiError(400, f"prompt ({n_prompt} tokens) + max_tokens ({params.max_tokens}) exceeds the "
                           f"model's context of {self.max_positions}", param="max_tokens",
                           code="context_length_exceeded")
        return params, example

    def example(self, messages: list[dict]) -> Example:  # prompt thread
        """The prompt's tokens and segments (``prompt_example``); ``ApiError`` (400) when the chat template refuses
        the conversation or the prompt is longer than ``max_prompt_tokens``."""
        try:
            example = prompt_example(self.tokenizer, messages)
        except ValueError as err:
            raise ApiError(400, str(err), param="messages") from None
        n_prompt, limit = len(example.input_ids), self.config.max_prompt_tokens
        if n_prompt > limit:
            raise ApiError(400, f"prompt has {n_prompt} tokens, more than the limit {limit}", param="messages",
                           code="context_length_exceeded")
        return example

    async def __call__(self, request: Any) -> Any:
        """The response to one request: a completion object, or a ``StreamingResponse`` of server-sent events."""
        from fastapi.responses import StreamingResponse

        config, loop = self.config, asyncio.get_running_loop()
        params, example = await self.prepared(request, self.prepare)
        causal = params.mask == "causal"  # a per-request causal prefill: no token in a segment
        job = Job(self.tokenizer, params, loop, self.token_text)
        gen = job.request(example.input_ids, [CAUSAL] * len(example.input_ids) if causal else example.segment_ids)
        try:
            self.batcher.submit(gen)
        except QueueFull as err:
            raise ApiError(503, f"server busy: {err}", code="server_busy") from None
        n_prompt = len(example.input_ids)
        head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": config.model_name}
        usage = lambda: {"prompt_tokens": n_prompt, "completion_tokens": len(gen.generated),  # noqa: E731
                         "total_tokens": n_prompt + len(gen.generated)}
        if params.stream:
            return StreamingResponse(job.sse(head, usage), media_type="text/event-stream")
        choice = await self.wait_connected(request, job)
        return {**head, "object": "chat.completion", "usage": usage(), "choices": [choice]}

    async def prepared(self, request: Any, prepare: Any) -> Any:
        """``prepare(body)`` run in a prompt thread on the request's body, read within the server's limits (size,
        time, waiting requests)."""
        config = self.config
        body = await _read_body(request, config.max_body_bytes, config.body_timeout_s)
        if self.preparing + self.batcher.pending() >= config.max_queue:
            raise ApiError(503, f"server busy: {config.max_queue} requests are already waiting", code="server_busy")
        self.preparing += 1
        try:
            lane = "small" if len(body) <= config.small_body_bytes else "large"
            return await asyncio.get_running_loop().run_in_executor(self.prompts[lane], prepare, body)
        finally:
            self.preparing -= 1

    async def wait_connected(self, request: Any, job: Job) -> dict:
        """``job.choice()``, cancelling the row (it stops at its next token) when the client goes away first."""
        waiting = asyncio.ensure_future(job.choice())
        try:
            while True:
                done, _ = await asyncio.wait({waiting}, timeout=self.config.disconnect_poll_s)
                if done:
                    return waiting.result()
                if await request.is_disconnected():
                    job.cancelled = True
                    raise ApiError(400, "the client disconnected before the answer was ready",
                                   code="client_disconnected")
        finally:
            waiting.cancel()


def _add_error_handlers(app: Any) -> None:
    """Every error as an OpenAI error object: ours, Starlette's HTTP errors, and (as a 500) any bug."""
    from fastapi import Request
    from starlette.exceptions import HTTPException

    @app.exception_handler(ApiError)
    async def api_error(request: Request, err: ApiError):
        return _error_response(err)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException):
        return _error_response(ApiError(err.status_code, str(err.detail)))

    @app.exception_handler(Exception)
    async def server_error(request: Request, err: Exception):  # a bug: still answer in the OpenAI format
        return _error_response(ApiError(500, f"internal error: {type(err).__name__}", code="internal_error"))


def _add_routes(app: Any, config: ServeConfig, batcher: Batcher, complete: Completer) -> None:
    """``/health``, ``/v1/models``, ``/v1/models/{id}`` and ``/v1/chat/completions``."""
    from fastapi import Request

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": config.model_name, "mask": "mas" if config.mas else "causal",
                "waiting": batcher.pending(), "preparing": complete.preparing, "prefix_cache": batcher.cache_stats}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [_model_card(config)]}

    @app.get("/v1/models/{model_id:path}")
    async def model_card(model_id: str):
        if model_id != config.model_name:
            raise ApiError(404, f"model {show(model_id)} does not exist", param="model", code="model_not_found")
        return _model_card(config)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        return await complete(request)


def _model_card(config: ServeConfig) -> dict:
    return {"id": config.model_name, "object": "model", "created": 0, "owned_by": "segmask"}


def _error_response(err: ApiError):
    """The OpenAI error object as JSON; ASCII-escaped, so no client text can make encoding it fail."""
    from starlette.responses import Response

    return Response(json.dumps(err.body(), ensure_ascii=True), status_code=err.status, media_type="application/json")


async def _read_body(request: Any, limit: int, timeout_s: float) -> bytes:
    """The request body, refused with 413 beyond ``limit`` bytes and with 408 when not complete in ``timeout_s``."""
    from starlette.requests import ClientDisconnect

    length = request.headers.get("content-length", "")
    if length.isascii() and length.isdigit() and int(length) > limit:
        raise ApiError(413, f"request body of {length} bytes exceeds the limit of {limit}", code="body_too_large")
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise ApiError(413, f"request body exceeds the limit of {limit} bytes", code="body_too_large")
                chunks.append(chunk)
    except TimeoutError:
        raise ApiError(408, f"request body not received within {timeout_s:g} s", code="body_timeout") from None
    except ClientDisconnect:
        raise ApiError(400, "the client disconnected while sending the body", code="client_disconnected") from None
    return b"".join(chunks)
