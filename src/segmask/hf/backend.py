"""What segmask needs to know about a Hugging Face model: the module that builds its attention masks, the name of its
cache argument, its attention backend and layer kinds, and whether ``segmask.enable`` was applied.

Every other module reaches into a model through these public helpers (a PeftModel is unwrapped here, once).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

STATE_ATTR = "_segmask_state"
"""Attribute ``enable`` sets on the decoder: the handle of its forward pre-hook."""
MASKED_BACKENDS = ("sdpa", "eager", "flex_attention")
"""Attention implementations that take an arbitrary mask, hence MAS."""


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """Return the transformers ``PreTrainedModel`` inside ``model`` (itself, or the model inside a PeftModel)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def decoder(model: torch.nn.Module) -> torch.nn.Module:
    """The module that builds attention masks: the base model of a *ForCausalLM, or the model itself."""
    inner = unwrap(model)
    base = getattr(inner, "base_model", inner)
    return base if isinstance(base, torch.nn.Module) else inner


def cache_param(fn: Any) -> str:
    """The name under which callable ``fn`` takes a KV cache: ``"cache"`` or ``"past_key_values"``."""
    return "cache" if "cache" in inspect.signature(fn).parameters else "past_key_values"


def cache_kwarg(model: torch.nn.Module) -> str:
    """The name under which ``model``'s forward takes its KV cache: ``"cache"`` (transformers >= 5.24) or
    ``"past_key_values"`` (earlier 5.x; later versions still accept it, with a deprecation warning)."""
    return cache_param(unwrap(model).forward)


def output_cache(out: Any) -> Any:
    """The KV cache a forward or ``generate`` output carries: its ``cache`` field (transformers >= 5.24, where reading
    ``past_key_values`` logs a deprecation warning) or ``past_key_values`` (earlier 5.x); None if it has neither."""
    fields = getattr(out, "__dataclass_fields__", {})
    return getattr(out, "cache" if "cache" in fields else "past_key_values", None)


def past_length(past_key_values: Any) -> int:
    """Tokens held in a KV cache (0 for None)."""
    return 0 if past_key_values is None else int(past_key_values.get_seq_length())


def is_enabled(model: torch.nn.Module) -> bool:
    """True if ``enable`` was called on ``model`` (or the model it wraps) and not undone."""
    return hasattr(decoder(model), STATE_ATTR)


def check_backend(config: Any) -> None:
    """Raise ``ValueError`` unless the configured attention implementation can take a MAS mask."""
    impl = config._attn_implementation or "eager"
    if impl not in MASKED_BACKENDS:
        raise ValueError(
            f"attention implementation {impl!r} cannot apply a MAS mask (it takes no arbitrary mask); "
            f"load the model with attn_implementation in {MASKED_BACKENDS}"
        )


def layer_kinds(config: Any) -> dict[str, int]:
    """Map each attention-layer kind of ``config`` to the index of its first layer.

    Kinds are ``"full_attention"`` and ``"sliding_attention"`` as in transformers' ``config.layer_types``; a config
    without layer types uses one kind for all layers (sliding when ``config.sliding_window`` is set, as Mistral and
    Phi-3 do).
    """
    types = getattr(config, "layer_types", None)
    if not types:
        sliding = getattr(config, "sliding_window", None) is not None
        types = ["sliding_attention" if sliding else "full_attention"]
    kinds: dict[str, int] = {}
    for i, kind in enumerate(types):
        if kind not in ("full_attention", "sliding_attention"):
            raise ValueError(f"layer {i} has attention kind {kind!r}; segmask supports full and sliding attention")
        kinds.setdefault(kind, i)
    return kinds


def eos_token_ids(model: torch.nn.Module, tokenizer: Any = None) -> set[int]:
    """Token ids that end generation: the model's generation-config EOS ids and the tokenizer's EOS id."""
    config = getattr(unwrap(model), "generation_config", None)
    eos = getattr(config, "eos_token_id", None)
    ids = [eos] if isinstance(eos, int) else list(eos or [])
    ids.append(getattr(tokenizer, "eos_token_id", None))
    return {int(i) for i in ids if i is not None}
