"""The response side of the OpenAI chat completions format, for ``segmask.serve``: text with stop strings cut off,
streamed deltas, log-probabilities and server-sent events.

    >>> job = Job(tokenizer, params, asyncio.get_running_loop(), TokenText(tokenizer))
    >>> request = job.request(input_ids, segment_ids)       # a batcher.GenRequest whose events feed the job
    >>> choice = await job.choice()                           # {"index", "message", "finish_reason", "logprobs"}
    >>> async for event in job.sse(head, usage): ...          # or: "data: {...}\\n\\n" chunks, then "data: [DONE]"

A ``logprobs`` entry is ``{"token", "logprob", "bytes", "top_logprobs": [{"token", "logprob", "bytes"}, ...]}``
per generated token, under the choice's ``"logprobs": {"content": [...], "refusal": null}`` (null when not asked).
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from typing import Any

from .batcher import GenRequest
from .schema import ApiError, ChatParams


class Completion:
    """Turns a request's token events into text: incremental deltas for streaming, stop strings cut off."""

    def __init__(self, tokenizer: Any, stop: list[str]):
        self.tokenizer, self.stop = tokenizer, stop
        self.text, self.sent, self.cut = "", 0, False
        self.ends: list[int] = []  # length of the (uncut) text after each token
        self.hold = max((len(s) for s in stop), default=1) - 1

    def update(self, token_ids: list[int]) -> bool:
        """Decode ``token_ids`` (all tokens so far, one more than last time); True when a stop string appeared."""
        text = self.tokenizer.decode(token_ids, skip_special_tokens=True)
        self.ends.append(len(text))
        whole = text.rstrip("\ufffd")  # a character still missing bytes decodes to U+FFFD: never match it
        for s in self.stop:
            cut = whole.find(s)
            if cut >= 0:
                self.text, self.cut = text[:cut], True
                return True
        self.text = text
        return False

    def delta(self, final: bool) -> str:
        """Text not sent yet; holds back a possible stop-string prefix or a partial character unless ``final``."""
        end = len(self.text)
        if not final:
            end -= self.hold
            while end > self.sent and self.text[end - 1] == "\ufffd":
                end -= 1
        if end <= self.sent:
            return ""
        piece, self.sent = self.text[self.sent:end], end
        return piece

    def kept_tokens(self) -> int:
        """How many leading tokens made the returned text: all of them, or after a stop string those that start
        before the cut."""
        if not self.cut:
            return len(self.ends)
        starts = [0] + self.ends[:-1]
        return sum(1 for start in starts if start < len(self.text))


class TokenText:
    """Text and UTF-8 bytes of one token, as logprobs entries show them (byte-level BPE tokens map to their exact
    bytes, so the bytes of a character split over two tokens are right; other tokenizers decode the token)."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        decoder = getattr(getattr(tokenizer, "backend_tokenizer", None), "decoder", None)
        self.byte_level = "ByteLevel" in repr(decoder)
        self.specials = set(getattr(tokenizer, "all_special_ids", []) or [])
        self._cache: dict[int, tuple[str, list[int]]] = {}

    def __call__(self, token_id: int) -> tuple[str, list[int]]:
        if token_id not in self._cache:
            raw = self._bytes(token_id)
            self._cache[token_id] = (raw.decode("utf-8", errors="replace"), list(raw))
        return self._cache[token_id]

    def _bytes(self, token_id: int) -> bytes:
        piece = self.tokenizer.convert_ids_to_tokens(token_id)
        if not isinstance(piece, str):
            return self.tokenizer.decode([token_id]).encode("utf-8")
        if token_id in self.specials:
            return piece.encode("utf-8")
        if self.byte_level and all(ch in _BYTE_OF_CHAR for ch in piece):
            return bytes(_BYTE_OF_CHAR[ch] for ch in piece)
        match = re.fullmatch(r"<0x([0-9A-Fa-f]{2})>", piece)  # sentencepiece byte fallback
        if match:
            return bytes([int(match.group(1), 16)])
        return self.tokenizer.decode([token_id]).encode("utf-8")

    def entry(self, token_id: int, logprob: float, alternatives: list[tuple[int, float]]) -> dict:
        """One ``logprobs.content`` item in OpenAI's format."""
        text, raw = self(token_id)
        top = [{"token": self(i)[0], "logprob": _finite(lp), "bytes": self(i)[1]} for i, lp in alternatives]
        return {"token": text, "logprob": _finite(logprob), "bytes": raw, "top_logprobs": top}


def _byte_of_char() -> dict[str, int]:
    """GPT-2's byte-level alphabet reversed: the character a byte-level BPE token uses for each byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


_BYTE_OF_CHAR = _byte_of_char()


def _finite(logprob: float) -> float:
    """OpenAI's floor for log-probabilities too small to show (JSON has no -Infinity)."""
    return max(logprob, -9999.0) if math.isfinite(logprob) else -9999.0


class Job:
    """The HTTP side of one request: events from the batcher's worker thread arrive on an asyncio queue."""

    def __init__(self, tokenizer: Any, params: ChatParams, loop: asyncio.AbstractEventLoop, token_text: TokenText):
        self.params, self.loop, self.token_text = params, loop, token_text
        self.completion = Completion(tokenizer, params.stop)
        self.events: asyncio.Queue = asyncio.Queue()
        self.cancelled = False
        self.gen: GenRequest | None = None
        self.reported = 0  # tokens whose logprobs were streamed
        self.tokens = 0  # token events seen

    def request(self, input_ids: list[int], segment_ids: list[int]) -> GenRequest:
        """The ``GenRequest`` for the batcher; its events and stop conditions come back to this job."""
        p = self.params
        self.gen = GenRequest(input_ids, segment_ids, p.max_tokens, self.on_event, temperature=p.temperature,
                              top_p=p.top_p, seed=p.seed, should_stop=self.should_stop, logprobs=p.logprobs)
        return self.gen

    def on_event(self, kind: str, value: Any) -> None:  # worker thread
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, (kind, value))
        except RuntimeError:  # the event loop is closed (server shutting down): nobody is waiting any more
            self.cancelled = True

    def should_stop(self, token_ids: list[int]) -> bool:  # worker thread
        return self.completion.update(token_ids) or self.cancelled

    def logprobs(self, upto: int) -> dict | None:
        """Logprobs entries of tokens [reported, upto) (nothing when the request did not ask for them)."""
        if self.params.logprobs is None:
            return None
        entries = [self.token_text.entry(self.gen.generated[i], *self.gen.token_logprobs[i])
                   for i in range(self.reported, upto)]
        self.reported = max(self.reported, upto)
        return {"content": entries, "refusal": None}

    async def choice(self) -> dict:
        """Wait for the end of generation; the choice object, or ``ApiError`` (500) when generation failed."""
        while True:
            kind, value = await self.events.get()
            if kind == "done":
                message = {"role": "assistant", "content": self.completion.text}
                return {"index": 0, "message": message, "finish_reason": value,
                        "logprobs": self.logprobs(self.completion.kept_tokens())}
            if kind == "error":
                raise ApiError(500, f"generation failed: {value}", code="generation_error")

    async def sse(self, head: dict, usage):
        """Server-sent events: a role chunk, content deltas, a finish chunk, optional usage, ``[DONE]``."""

        def chunk(delta: dict, reason: str | None = None, logprobs: dict | None = None) -> str:
            body = {**head, "object": "chat.completion.chunk",
                    "choices": [{"index": 0, "delta": delta, "finish_reason": reason, "logprobs": logprobs}]}
            return f"data: {json.dumps(body)}\n\n"

        try:
            yield chunk({"role": "assistant", "content": ""})
            while True:
                kind, value = await self.events.get()
                if kind == "token":
                    self.tokens += 1
                    text = self.completion.delta(final=False)
                    if text:
                        yield chunk({"content": text}, logprobs=self.logprobs(self.tokens))
                elif kind == "done":
                    text = self.completion.delta(final=True)
                    kept = self.completion.kept_tokens()
                    if text or kept > self.reported:
                        yield chunk({"content": text}, logprobs=self.logprobs(kept))
                    yield chunk({}, value)
                    if self.params.include_usage:
                        last = {**head, "object": "chat.completion.chunk", "choices": [], "usage": usage()}
                        yield f"data: {json.dumps(last)}\n\n"
                    break
                else:
                    err = ApiError(500, f"generation failed: {value}", code="generation_error")
                    yield f"data: {json.dumps(err.body())}\n\n"
                    break
            yield "data: [DONE]\n\n"
        finally:
            self.cancelled = True  # a client that went away stops its row at the next token
