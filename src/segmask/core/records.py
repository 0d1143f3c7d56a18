"""LLM-Adapters commonsense records in one place: reading files of rows, checking a record, its labels, and the chat
it becomes. Training (``segmask.train.data``), the benchmarks (``segmask.eval.tasks``), the data fetcher
(``segmask.eval.data_fetch``) and the prompt builders all use these.

A record is ``{"instruction", "input", "output": "the correct answer is X", "answer": "X"}``; its instruction ends
with an ``Answer format: a/b/...`` line naming the labels it offers.

    >>> rows = load_records("data/commonsense_170k/train.json")      # .json list, .jsonl, or a folder of them
    >>> check_record(rows[0], "train.json record 0", labels=("true", "false"))
    'true'
    >>> offered_labels(rows[0])                                        # from its "Answer format: true/false" line
    ('true', 'false')
    >>> record_messages(rows[0], "Answer briefly.", answer=True)       # system, user (instruction + input), assistant
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .chat import conversation
from .files import parse_json, read_text

FORMAT_LINE = re.compile(r"Answer format:\s*([A-Za-z0-9_]+(?:\s*/\s*[A-Za-z0-9_]+)+)\s*$")
"""The instruction's last line, ``Answer format: a/b/c``: the labels the record offers."""
TEXT_FIELDS = ("instruction", "input", "output")


def load_records(path: str | Path) -> list[dict]:
    """Read rows from a ``.json`` list, a ``.jsonl`` file, or a folder.

    A folder is searched recursively for ``train.json`` files (the LLM-Adapters task layout); when it holds none,
    every ``.json``/``.jsonl`` file in it is read. Files are read in sorted path order. Each row gets
    ``row["_source"]`` = the file it came from. ``ValueError`` naming the file (and line) for anything else.
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(path.rglob("train.json")) or sorted(
            p for p in path.rglob("*") if p.suffix in (".json", ".jsonl") and p.is_file()
        )
        if not files:
            raise ValueError(f"{path}: folder holds no train.json, .json or .jsonl files")
        return [row for f in files for row in load_records(f)]
    if not path.exists():
        raise ValueError(f"{path}: no such file or folder")
    text = read_text(path)
    if path.suffix == ".jsonl":
        rows = [parse_json(line, f"{path}:{n}") for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    else:
        rows = parse_json(text, str(path))
        if isinstance(rows, dict):
            rows = [rows]
    if not isinstance(rows, list):
        raise ValueError(f"{path}: expected a JSON list of records")
    if not rows:
        raise ValueError(f"{path}: holds no records")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ValueError(f"{path}: row {i} is not a JSON object")
        row["_source"] = str(path)
    return rows


def check_record(row: Any, where: str, labels: tuple[str, ...] | None = None,
                 required: tuple[str, ...] = ("instruction",)) -> str:
    """Raise ``ValueError`` starting with ``where`` unless ``row`` is a record: a JSON object whose ``instruction``,
    ``input`` and ``output`` are strings or absent (those in ``required`` present) and, given ``labels``, whose
    ``answer`` (any case) is one of them. Returns the answer label, stripped and lower case."""
    if not isinstance(row, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(row).__name__}")
    for key in TEXT_FIELDS:
        value = row.get(key)
        if not isinstance(value, str) and (key in required or value is not None):
            raise ValueError(f"{where}: {key!r} must be a string")
    answer = str(row.get("answer", "")).strip().lower()
    if labels is not None and answer not in labels:
        raise ValueError(f"{where}: answer {row.get('answer')!r} is not one of {labels}")
    return answer


def answer_label(record: Mapping[str, Any]) -> str:
    """The record's answer label, lower case: its ``answer`` field, else the last word of its ``output``."""
    answer = str(record.get("answer") or "").strip()
    if not answer:
        output = str(record.get("output") or "").strip()
        answer = output.split()[-1] if output else ""
    return answer.lower()


def offered_labels(record: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The labels of the record's ``Answer format: a/b/c`` line, lower case, in order; None without one."""
    match = FORMAT_LINE.search(str(record.get("instruction", "")).rstrip())
    return None if match is None else tuple(part.strip().lower() for part in match.group(1).split("/"))


def record_messages(record: Mapping[str, Any], system: str | None = None, *, answer: bool = False) -> list[dict]:
    """A record as a chat: optional system message, user = instruction (+ a blank line and the input), and with
    ``answer`` the assistant's ``output`` (then the instruction and the output must not be empty)."""
    instruction, extra, output = record.get("instruction"), record.get("input") or "", record.get("output")
    if not isinstance(instruction, str) or (answer and not instruction.strip()):
        raise ValueError(f"record has no instruction: {dict(record)!r:.200}")
    messages = conversation(system, instruction + (f"\n\n{extra}" if extra else ""))
    if not answer:
        return messages
    if not isinstance(output, str) or not output:
        raise ValueError(f"record has no output to train on: {dict(record)!r:.200}")
    return [*messages, {"role": "assistant", "content": output}]
