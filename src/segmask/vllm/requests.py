"""Which requests get MAS and with which segments: the plugin's per-request policy (pure, no vLLM import).

Resolved once per request in vLLM's front end; the result travels in ``SamplingParams.extra_args`` as the flat
list ``segmask_ranges = [s0, e0, s1, e1, ...]`` (half-open token ranges) that the scheduler, the prefix cache and
the attention backend read. An empty list (or no key) means plain causal attention.

Precedence, first match wins:

1. ``extra_args["segmask_mas"]`` false (``vllm_xargs: {"segmask_mas": 0}``): causal.
2. ``extra_args["segmask_ranges"]``: these ranges, exactly (flat ints, as ``vllm_xargs`` carries them).
3. ``extra_args["segmask_mas"]`` true: MAS with the segments found from the chat template.
4. ``$SEGMASK_VLLM_MAS``: ``on`` (every chat prompt) or ``off`` (none); ``auto``, the default, reads ``"mask"``
   from the ``segmask.json`` of the request's LoRA adapter, else of the served model's folder: ``"mas"`` = MAS.

Segments found from the prompt are those of ``find_segments``: a prompt with no chat header stays causal.
"""

from __future__ import annotations

import hashlib
import os
from array import array
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..core.recipe import choose_mask, load_adapter_config
from .segments import Range, find_segments, validate_ranges

MAS_ENV = "SEGMASK_VLLM_MAS"
XARG_MAS = "segmask_mas"
XARG_RANGES = "segmask_ranges"
_ON = ("on", "1", "true", "yes")
_OFF = ("off", "0", "false", "no")


def request_ranges(
    tokenizer: Any,
    token_ids: Sequence[int],
    extra_args: Mapping[str, Any] | None,
    *,
    model_path: str | None = None,
    lora_path: str | None = None,
    max_segment_tokens: int | None = None,
) -> list[Range]:
    """The segment ranges of one request (empty: causal), following the precedence in the module docstring.

    ``max_segment_tokens``: the most prompt tokens one scheduler step can take; a longer segment cannot be
    prefilled whole in one step, so it is refused (``ValueError``) rather than served inexactly.
    """
    extra = extra_args or {}
    switch = extra.get(XARG_MAS)
    if switch is not None and not _as_bool(switch, XARG_MAS):
        return []
    if XARG_RANGES in extra:
        ranges = validate_ranges(list(extra[XARG_RANGES]), len(token_ids))
    elif (switch is not None) or mas_default(model_path, lora_path):
        if tokenizer is None:
            raise ValueError("MAS needs the tokenizer to find chat segments (the engine was started without one); "
                             f"give explicit ranges in extra_args[{XARG_RANGES!r}]")
        ranges = find_segments(tokenizer, token_ids)
    else:
        return []
    if max_segment_tokens is not None:
        for i, (start, end) in enumerate(ranges):
            if end - start > max_segment_tokens:
                raise ValueError(f"segment {i} has {end - start} tokens, more than the {max_segment_tokens} one "
                                 "scheduler step can prefill (raise max_num_batched_tokens)")
    return ranges


def mas_default(model_path: str | None, lora_path: str | None) -> bool:
    """MAS for a request that does not say: ``$SEGMASK_VLLM_MAS``, else the adapter's or model's segmask.json, else
    causal (``segmask.core.recipe.choose_mask``, the policy every segmask loader follows)."""
    recorded = (folder_config(folder) for folder in (lora_path, model_path))  # the model's read only when needed
    return choose_mask(env_mask(), recorded, default="causal") == "mas"


def env_mask() -> str | None:
    """The mask ``$SEGMASK_VLLM_MAS`` asks for: ``on`` -> ``"mas"``, ``off`` -> ``"causal"``, ``auto`` (the default)
    -> None (the recipe decides); ``ValueError`` for any other value."""
    env = os.environ.get(MAS_ENV, "auto").strip().lower()
    if env in _ON:
        return "mas"
    if env in _OFF:
        return "causal"
    if env != "auto":
        raise ValueError(f"{MAS_ENV}={env!r}: expected on, off or auto")
    return None


def folder_config(folder: str | os.PathLike | None) -> dict[str, Any]:
    """``folder/segmask.json`` (as ``segmask adapt`` and ``segmask train`` write it), ``{}`` without one (or for a
    hub model id), through the one reader, which validates it and names the file in its errors."""
    if not folder or not Path(folder).is_dir():  # a hub model id: no local recipe
        return {}
    return load_adapter_config(folder)


def folder_mask(folder: str | os.PathLike | None) -> str | None:
    """``"mask"`` of ``folder/segmask.json``, or None."""
    return folder_config(folder).get("mask")


def flat_ranges(ranges: Sequence[Range]) -> list[int]:
    """``[(s0, e0), (s1, e1)]`` -> ``[s0, e0, s1, e1]``, the form ``extra_args`` carries."""
    return [x for pair in ranges for x in pair]


def ranges_of(extra_args: Mapping[str, Any] | None) -> list[Range]:
    """The resolved ranges a request carries (``segmask_ranges`` set by the front end); [] for causal."""
    flat = (extra_args or {}).get(XARG_RANGES) or ()
    return list(zip(flat[0::2], flat[1::2]))


def segment_cache_keys(token_ids: Sequence[int], ranges: Sequence[Range], start: int, end: int) -> list[tuple]:
    """Extra prefix-cache keys of the KV block holding positions ``[start, end)``: one per segment it overlaps.

    Each key hashes the segment's position and all of its tokens, so a cached block is reused only by a request
    whose whole overlapping segment is the same; a causal request's blocks carry no such key and are never
    shared with a MAS request's.
    """
    keys = []
    for s, e in ranges:
        if s < end and e > start:
            digest = hashlib.sha256(array("q", [s, e, *token_ids[s:e]]).tobytes()).digest()
            keys.append(("segmask", digest))
    return keys


def _as_bool(value: Any, name: str) -> bool:
    if isinstance(value, bool) or value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _ON + _OFF:
        return value.strip().lower() in _ON
    raise ValueError(f"extra_args[{name!r}] must be a boolean (or 0/1), got {value!r:.60}")
