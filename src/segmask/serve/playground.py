"""The playground: a web page at ``/`` of ``segmask serve`` that shows MAS on a prompt a person types.

It shows the chat prompt's tokens coloured by segment, the attention mask as a picture, and the answers of MAS
prefill and causal prefill side by side, streamed (two ``/v1/chat/completions`` requests with ``"mask"``). The
page is three static files in ``segmask/serve/static`` (no build step, nothing fetched from elsewhere); it reads:

    GET  /playground/info       {"model", "loaded_from", "base_model", "merged_adapter", "adapter", "mask",
                                 "masks", "limits"}: what is served, and which prefills a request may ask for
    POST /playground/segments   {"messages": [...]} -> {"tokens", "token_ids", "segment_ids", "spans", "visible"}

``segments`` uses the server's own prompt code (``Completer.example``: ``encode_chat``'s segments, the same
message checks and ``max_prompt_tokens``) under the same body limits, in the prompt threads. ``visible[q]`` is how
many keys query q may attend under MAS, keys ``[0, visible[q])``: with contiguous segments and no padding each row
of the mask is a prefix (``segmask.core.masks.segment_mask_rows``, summed row by row).
"""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations (Request) at runtime.

from importlib import resources
from typing import Any

import torch

from ..core.masks import segment_mask_rows
from ..core.runs import segment_runs
from ..hf.models import MAS_READY
from .schema import ApiError, load_object, parse_messages, show

ASSETS = {"playground.js": "text/javascript; charset=utf-8", "playground.css": "text/css; charset=utf-8"}
ROWS_PER_CHUNK = 256  # mask rows built at once for ``visible`` (256 x 4096 bools for the longest default prompt)


def add_playground(app: Any, tokenizer: Any, config: Any, completer: Any) -> None:
    """The page (``/``, ``/static/...``) and its two JSON endpoints on ``app``; ``completer`` is the server's
    ``Completer`` (prompt code, body limits, prompt threads)."""
    from fastapi import Request
    from starlette.responses import Response

    info = server_info(config)

    @app.get("/")
    async def page():
        return Response(asset("index.html"), media_type="text/html; charset=utf-8",
                        headers={"Cache-Control": "no-cache"})

    @app.get("/static/{name}")
    async def static(name: str):
        if name not in ASSETS:
            raise ApiError(404, f"no file {show(name)}")
        return Response(asset(name), media_type=ASSETS[name], headers={"Cache-Control": "no-cache"})

    @app.get("/playground/info")
    async def playground_info():
        return info

    @app.post("/playground/segments")
    async def playground_segments(request: Request):
        return await completer.prepared(request, lambda body: segments(body, config, completer))


def asset(name: str) -> bytes:
    """A file of ``segmask/serve/static`` (package data)."""
    return resources.files(__package__).joinpath("static", name).read_bytes()


def server_info(config: Any) -> dict:
    """What the page says about the server: the model (and, for a MAS-ready name, its base and merged adapter), the
    adapter loaded on top, the server's prefill and the prefills a request may choose."""
    loaded = config.model_path or config.model_name
    base, merged = MAS_READY.get(loaded, (None, None))
    return {"model": config.model_name, "loaded_from": loaded, "base_model": base, "merged_adapter": merged,
            "adapter": config.adapter, "mask": "mas" if config.mas else "causal",
            "masks": ["mas", "causal"] if config.mas else ["causal"],
            "limits": {"max_tokens": config.max_tokens, "default_max_tokens": config.default_max_tokens,
                       "max_prompt_tokens": config.max_prompt_tokens, "max_messages": config.max_messages}}


def segments(body: bytes, config: Any, completer: Any) -> dict:  # prompt thread
    """The ``/playground/segments`` answer for a body ``{"messages": [...]}``; ``ApiError`` (400) as for a chat
    completion's messages."""
    data = load_object(body)
    for key in data:
        if key != "messages":
            raise ApiError(400, f"unknown parameter {show(key)} (only 'messages')", param="messages",
                           code="unknown_parameter")
    example = completer.example(parse_messages(data, config))
    ids, segs = example.input_ids, example.segment_ids
    spans = [{"start": run.start, "end": run.end, "segment": run.segment,
              "text": completer.tokenizer.decode(ids[run.start:run.end])} for run in segment_runs(segs)]
    return {"tokens": [completer.token_text(i)[0] for i in ids], "token_ids": ids, "segment_ids": segs,
            "spans": spans, "visible": visible_keys(segs)}


def visible_keys(segment_ids: list[int]) -> list[int]:
    """How many keys each query of one unpadded prompt may attend under MAS (its mask row is a prefix)."""
    ids, n = torch.tensor([segment_ids]), len(segment_ids)
    counts = [segment_mask_rows(ids, start=s, end=min(s + ROWS_PER_CHUNK, n), kv_length=n)[0, 0].sum(-1)
              for s in range(0, n, ROWS_PER_CHUNK)]
    return torch.cat(counts).tolist() if counts else []
