"""Writing measured results into a marked section of a document, so a benchmark regenerates its own table.

A section is the text between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->``; everything outside stays as it is.
"""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[3] / "docs"
"""The repository's docs folder (the benchmarks run from a checkout)."""


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def read_section(path: str | Path, name: str) -> str:
    """The text of section ``name`` of ``path`` (without its markers)."""
    text, (start, end) = Path(path).read_text(), markers(name)
    if start not in text or end not in text:
        raise ValueError(f"{path} has no {start} ... {end} section")
    return text[text.index(start) + len(start):text.index(end)].strip()


def write_section(path: str | Path, name: str, body: str, *, append: bool = False) -> Path:
    """Replace section ``name`` of ``path`` with ``body``.

    Args:
        append: when the file or the section is missing, add the section at the end (else that is an error).
    """
    path = Path(path)
    start, end = markers(name)
    text = path.read_text() if path.exists() else ""
    if start not in text or end not in text:
        if not append:
            raise ValueError(f"{path} has no {start} ... {end} section")
        text = text.rstrip("\n") + ("\n\n" if text else "") + f"{start}\n{end}\n"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    path.write_text(pattern.sub(lambda _: f"{start}\n{body.strip()}\n{end}", text))
    return path
