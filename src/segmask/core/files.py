"""Reading the JSON files users hand to segmask (training rows, eval data, run folders, adapter configs) as data,
with one-line errors that name the file (and line) instead of tracebacks.

    >>> rows = read_json("data/boolq/test.json", expect=list)
    >>> row = parse_json(line, "runs/a/predictions.jsonl:12", expect=dict)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def parse_json(text: str, where: str, expect: type | None = None) -> Any:
    """``json.loads(text)``; ``ValueError`` naming ``where`` when it is not JSON or not of type ``expect``."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{where}: not valid JSON ({err.msg} at line {err.lineno} column {err.colno})") from None
    except (ValueError, RecursionError) as err:  # integers beyond 4300 digits, nesting deeper than the stack
        raise ValueError(f"{where}: not valid JSON ({type(err).__name__}: {err})") from None
    if expect is not None and not isinstance(value, expect):
        raise ValueError(f"{where}: expected a JSON {_kind(expect)}, got {_kind(type(value))}")
    return value


def read_json(path: str | Path, expect: type | None = None) -> Any:
    """The JSON value in the file ``path`` (see ``parse_json``); unreadable files are a ``ValueError`` naming it."""
    return parse_json(read_text(path), str(path), expect)


def read_jsonl(path: str | Path, expect: type | None = dict) -> list[Any]:
    """The non-blank lines of ``path``, each parsed as JSON; errors name ``path:line``."""
    return [parse_json(line, f"{path}:{n}", expect)
            for n, line in enumerate(read_text(path).splitlines(), 1) if line.strip()]


def read_text(path: str | Path) -> str:
    """The UTF-8 text of ``path``; ``ValueError`` naming it when it is missing or cannot be read."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else f"{type(err).__name__}: {err}"
        raise ValueError(f"{path}: cannot read ({reason})") from None


def _kind(t: type) -> str:
    return {dict: "object", list: "list", str: "string", int: "number", float: "number", bool: "boolean",
            type(None): "null"}.get(t, t.__name__)
