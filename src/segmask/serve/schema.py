"""The OpenAI chat completions wire format: request validation and error bodies, for ``segmask.serve``.

``parse_request(body, config)`` turns a request body into ``ChatParams`` or raises ``ApiError`` carrying the HTTP
status and the OpenAI error object ``{"error": {"message", "type", "param", "code"}}``: 400 for malformed JSON,
bad fields, unknown roles and parameters the server does not implement, 404 for an unknown model. Whatever passes
can be decoded: seeds are in [0, 2**64), temperatures below ``MIN_TEMPERATURE`` are greedy, text is valid Unicode.

``null`` means "the default" for every optional field, as in OpenAI's API. Parameters the server does not implement
(tools, response formats, penalties, ...) are refused when they ask for anything but their neutral value, and
unknown parameters are refused: a request is never answered as if a parameter had been applied when it was not.
"""

from __future__ import annotations

import json
import reprlib
from dataclasses import dataclass
from typing import Any

from ..core.recipe import MASKS, choice_error
from ..core.roles import CAUSAL_ROLES, SEGMENT_ROLES
from ..generation.sampling import MAX_SEED, MAX_TOP_LOGPROBS, MIN_TEMPERATURE

# Accepted and without effect on the completion (bookkeeping on OpenAI's side).
IGNORED = ("user", "metadata", "store", "service_tier", "parallel_tool_calls")
# Not implemented: refused unless null or their neutral value (the value that asks for nothing).
NEUTRAL: dict[str, tuple] = {
    "tools": ([],), "tool_choice": ("none", "auto"), "functions": ([],), "function_call": ("none", "auto"),
    "response_format": ({"type": "text"},), "frequency_penalty": (0,), "presence_penalty": (0,),
    "logit_bias": ({},), "modalities": (["text"],), "audio": (), "prediction": (), "reasoning_effort": (),
    "web_search_options": (),
}
IMPLEMENTED = ("model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "n", "stream",
               "stream_options", "stop", "seed", "logprobs", "top_logprobs", "mask")
MESSAGE_KEYS = ("role", "content", "name", "tool_call_id", "refusal", "annotations")  # name etc.: not rendered
MESSAGE_REFUSED = ("tool_calls", "function_call", "audio")

_repr = reprlib.Repr()
_repr.maxstring, _repr.maxother, _repr.maxlevel, _repr.maxlist, _repr.maxdict = 60, 60, 3, 6, 6


def show(value: Any) -> str:
    """A short, printable repr of a client's value for error messages (bounded length and depth, no surrogates)."""
    return _repr.repr(value)


class ApiError(Exception):
    """An error answered as OpenAI-style JSON with HTTP ``status``."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    def body(self) -> dict:
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}


@dataclass
class ChatParams:
    """A validated chat completion request. ``logprobs`` None: no log-probabilities; k: the chosen token's and the
    k most likely ones (``top_logprobs``)."""

    messages: list[dict]
    max_tokens: int
    temperature: float
    top_p: float
    stream: bool
    include_usage: bool
    stop: list[str]
    seed: int | None
    logprobs: int | None = None
    mask: str = "mas"


def parse_request(body: bytes, config: Any) -> ChatParams:
    """Validate a ``/v1/chat/completions`` body against ``config`` (a ``ServeConfig``: ``model_name``,
    ``max_tokens``, ``default_max_tokens``, ``max_messages``).

    Raises ``ApiError`` (400, or 404 for an unknown model) naming the offending field.
    """
    data = load_object(body)
    _check_parameters(data)
    model = data.get("model")
    if not isinstance(model, str):
        raise ApiError(400, "'model' is required and must be a string", param="model")
    if model != config.model_name:
        raise ApiError(404, f"model {show(model)} does not exist; this server serves {config.model_name!r}",
                       param="model", code="model_not_found")
    n = _get(data, "n", 1)
    if not _is_int(n) or n < 1:
        raise ApiError(400, f"'n' must be a positive integer, got {show(n)}", param="n")
    if n != 1:
        raise ApiError(400, f"n={n} is not supported: this server returns one choice per request (n=1)",
                       param="n", code="unsupported_parameter")
    name = "max_completion_tokens" if _get(data, "max_completion_tokens") is not None else "max_tokens"
    max_tokens = _get(data, name, config.default_max_tokens)
    if not _is_int(max_tokens) or not 1 <= max_tokens <= config.max_tokens:
        raise ApiError(400, f"'{name}' must be an integer in [1, {config.max_tokens}], got {show(max_tokens)}",
                       param=name)
    temperature = _number(data, "temperature", 1.0, 0.0, 2.0)
    top_p = _number(data, "top_p", 1.0, 0.0, 1.0)
    if top_p == 0.0:
        raise ApiError(400, "'top_p' must be > 0", param="top_p")
    stream = _flag(data, "stream")
    options = _get(data, "stream_options", {})
    if not isinstance(options, dict):
        raise ApiError(400, f"'stream_options' must be an object, got {show(options)}", param="stream_options")
    include_usage = _flag(options, "include_usage", "stream_options.include_usage")
    seed = _get(data, "seed")
    if seed is not None and (not _is_int(seed) or not 0 <= seed < MAX_SEED):
        raise ApiError(400, f"'seed' must be an integer in [0, 2**64), got {show(seed)}", param="seed")
    return ChatParams(_messages(data.get("messages"), config.max_messages), max_tokens,
                      0.0 if temperature < MIN_TEMPERATURE else temperature, top_p, stream, include_usage,
                      _stop(_get(data, "stop")), seed, _logprobs(data), _mask(data, config))


def load_object(body: bytes) -> dict:
    """The request body as a JSON object; ``ApiError`` (400) for anything else."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as err:  # JSONDecodeError, bad UTF-8, integers beyond 4300 digits, nesting
        raise ApiError(400, f"request body is not valid JSON: {type(err).__name__}: {str(err)[:200]}",
                       code="invalid_json") from None
    if not isinstance(data, dict):
        raise ApiError(400, f"request body must be a JSON object, got {type(data).__name__}")
    return data


def parse_messages(data: dict, config: Any) -> list[dict]:
    """``data["messages"]`` checked as for a chat completion (at most ``config.max_messages``)."""
    return _messages(data.get("messages"), config.max_messages)


def _mask(data: dict, config: Any) -> str:
    """The prefill this request asks for: ``"mas"`` or ``"causal"``; the server's own when left out. A causal server
    (``mas`` False: the model was not loaded for MAS, nor its hooks enabled) refuses ``"mas"``."""
    server = "mas" if getattr(config, "mas", True) else "causal"
    mask = _get(data, "mask", server)
    error = choice_error("'mask'", mask, MASKS, show)
    if error:
        raise ApiError(400, error, param="mask")
    if mask == "mas" and server == "causal":
        raise ApiError(400, "'mask': 'mas' is not available: this server prefills causally (segmask serve "
                       "--causal); only 'causal' is", param="mask", code="unsupported_parameter")
    return mask


def _check_parameters(data: dict) -> None:
    for key, value in data.items():
        if key in IMPLEMENTED or key in IGNORED or value is None:
            continue
        if key not in NEUTRAL:
            raise ApiError(400, f"unknown parameter {show(key)}", param=_name(key), code="unknown_parameter")
        if not any(_is_neutral(value, neutral) for neutral in NEUTRAL[key]):
            raise ApiError(400, f"'{key}' is not supported by this server (got {show(value)}); leave it out",
                           param=key, code="unsupported_parameter")


def _is_neutral(value: Any, neutral: Any) -> bool:
    if isinstance(neutral, (int, float)):  # 0 and 0.0, not False
        return isinstance(value, (int, float)) and not isinstance(value, bool) and value == neutral
    return type(value) is type(neutral) and value == neutral


def _name(key: str) -> str:
    """A client's field name as an error's ``param``: itself when it is valid Unicode, else its repr."""
    try:
        key.encode("utf-8")
        return key[:60]
    except UnicodeEncodeError:
        return show(key)


def _get(data: dict, name: str, default: Any = None) -> Any:
    """``data[name]``; a missing field and ``null`` both give ``default``."""
    value = data.get(name)
    return default if value is None else value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(data: dict, name: str, default: float, low: float, high: float) -> float:
    value = _get(data, name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ApiError(400, f"'{name}' must be a number in [{low}, {high}], got {show(value)}", param=name)
    return float(value)


def _flag(data: dict, name: str, param: str | None = None) -> bool:
    value = _get(data, name, False)
    if not isinstance(value, bool):
        raise ApiError(400, f"'{param or name}' must be a boolean, got {show(value)}", param=param or name)
    return value


def _logprobs(data: dict) -> int | None:
    wanted, top = _flag(data, "logprobs"), _get(data, "top_logprobs")
    if top is not None and (not _is_int(top) or not 0 <= top <= MAX_TOP_LOGPROBS):
        raise ApiError(400, f"'top_logprobs' must be an integer in [0, {MAX_TOP_LOGPROBS}], got {show(top)}",
                       param="top_logprobs")
    if top is not None and not wanted:
        raise ApiError(400, "'top_logprobs' needs 'logprobs': true", param="top_logprobs")
    return (top or 0) if wanted else None


def _stop(stop: Any) -> list[str]:
    stops = [] if stop is None else [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or len(stops) > 4 or not all(isinstance(s, str) and s for s in stops):
        raise ApiError(400, f"'stop' must be a non-empty string or a list of at most 4, got {show(stop)}",
                       param="stop")
    return stops


def _messages(messages: Any, limit: int) -> list[dict]:
    """OpenAI messages -> ``{"role", "content": str}`` dicts; text content parts are joined."""
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "'messages' must be a non-empty list", param="messages")
    if len(messages) > limit:
        raise ApiError(400, f"'messages' holds {len(messages)} messages, more than the limit of {limit}",
                       param="messages", code="too_many_messages")
    return [_message(i, msg) for i, msg in enumerate(messages)]


def _message(i: int, msg: Any) -> dict:
    where = f"messages[{i}]"
    if not isinstance(msg, dict):
        raise ApiError(400, f"{where} must be an object, got {show(msg)}", param=where)
    for key, value in msg.items():
        if key in MESSAGE_REFUSED and value not in (None, []):
            raise ApiError(400, f"{where}.{key} is not supported by this server (text messages only)",
                           param=f"{where}.{key}", code="unsupported_parameter")
        if key not in MESSAGE_KEYS + MESSAGE_REFUSED:
            raise ApiError(400, f"{where}: unknown field {show(key)}", param=f"{where}.{_name(key)}",
                           code="unknown_parameter")
    role, content = msg.get("role"), msg.get("content")
    error = choice_error(f"{where}.role", role, SEGMENT_ROLES + CAUSAL_ROLES, show)
    if error:
        raise ApiError(400, error, param=f"{where}.role")
    if isinstance(content, list):
        if not all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
                   for p in content):
            raise ApiError(400, f"{where}.content: only text parts are supported", param=f"{where}.content")
        content = "".join(p["text"] for p in content)
    if not isinstance(content, str):
        raise ApiError(400, f"{where}.content must be a string or a list of text parts, got {show(content)}",
                       param=f"{where}.content")
    try:
        content.encode("utf-8")
    except UnicodeEncodeError as err:
        raise ApiError(400, f"{where}.content is not valid Unicode (lone surrogate at character {err.start})",
                       param=f"{where}.content") from None
    return {"role": role, "content": content}
