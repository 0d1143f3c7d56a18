"""How the plugin hooks vLLM: wrappers that call vLLM's own function first, idempotent, failing loudly when the
target is gone (no vLLM import at module level)."""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Any

_MARK = "_segmask_hook"


def platform() -> str:
    from vllm.platforms import current_platform

    return str(current_platform.device_type)


def wrap(owner: Any, name: str, make: Callable[[Callable], Callable]) -> None:
    original = getattr(owner, name, None)
    if original is None:
        where = getattr(owner, "__qualname__", None) or getattr(owner, "__name__", repr(owner))
        raise RuntimeError(f"segmask: vLLM has no {where}.{name}, which the plugin must wrap; this vLLM is not one "
                           "the plugin supports")
    if getattr(original, _MARK, False):
        return
    wrapper = functools.wraps(original)(make(original))
    setattr(wrapper, _MARK, True)
    setattr(owner, name, wrapper)


def import_module(module: str, purpose: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise RuntimeError(f"segmask: cannot import {module} ({purpose}): {exc}") from exc


def is_hooked(function: Any) -> bool:
    """True when ``function`` is one of the plugin's wrappers."""
    return bool(getattr(function, _MARK, False))
