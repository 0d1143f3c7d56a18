"""The snippets and links of the Markdown docs (README.md, docs/*.md), for ``tests/test_docs.py`` (static checks) and
``benchmarks/run_docs.py`` (runs the cheap ones).

A snippet is a fenced block opened with ```` ```bash ```` or ```` ```python ````; other fences (plain ```` ``` ````)
hold program output and are not checked. A shell line is one logical line (``\\``-continuations joined); its ``# ...``
comment may say ``needs: WHAT`` (one or more words of ``NEEDS``, comma separated) when the line cannot run in the
quick check here; such a comment on a snippet's first line, or anywhere in a Python snippet, marks the whole snippet.
A lone ``...`` word in a ``segmask`` command stands for "the other flags, as above" and is dropped before parsing.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
NEEDS = {
    "network": "downloads a model or data (no network here)",
    "gpu": "needs a CUDA GPU",
    "data": "needs the commonsense benchmark data (`segmask data`)",
    "time": "runs for minutes to hours on a 2-core CPU",
    "server": "talks to a running `segmask serve`",
    "extra": "needs an optional package (segmask[trl], segmask[lmeval], segmask[serve], vLLM)",
    "input": "reads a file the reader supplies (their data, prompts or adapter)",
}
SKIPPED_DOCS: tuple[str, ...] = ()
"""Docs left out of the check (none now); ``all_docs(include_skipped=True)`` checks them anyway."""
_FENCE = re.compile(r"^(\s*)```\s*([\w+-]*)\s*$")
_NEEDS = re.compile(r"needs:\s*([a-z]+(?:\s*,\s*[a-z]+)*)")


@dataclass
class Snippet:
    doc: str  # path relative to the repository root
    line: int  # 1-based line of the first line inside the fence
    lang: str  # "bash" or "python"
    text: str
    needs: tuple[str, ...]  # what the whole snippet needs (empty: runs here)

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"


@dataclass
class Command:
    snippet: Snippet
    line: int
    text: str  # the logical line as written (continuations joined)
    argv: list[str]  # one simple command, variables expanded, environment assignments dropped
    needs: tuple[str, ...]

    @property
    def where(self) -> str:
        return f"{self.snippet.doc}:{self.line}"


def all_docs(include_skipped: bool = False) -> list[str]:
    """README.md and docs/*.md, relative to the repository root."""
    docs = ["README.md"] + sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md"))
    return [d for d in docs if include_skipped or d not in SKIPPED_DOCS]


def parse_needs(comment: str) -> tuple[str, ...]:
    """The ``needs:`` words of one comment, e.g. ``("network", "gpu")``; unknown words are kept (the test flags
    them)."""
    return tuple(w.strip() for m in _NEEDS.finditer(comment) for w in m.group(1).split(","))


def snippets(doc: str) -> list[Snippet]:
    """Every ```` ```bash ```` / ```` ```python ```` block of ``doc``, in order."""
    found, lines = [], (ROOT / doc).read_text().splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, lang = len(m.group(1)), m.group(2)
        j = i + 1
        while j < len(lines) and not re.match(r"^\s*```\s*$", lines[j]):
            j += 1
        body = [line[indent:] for line in lines[i + 1:j]]
        if lang in ("bash", "sh", "shell", "python"):
            text = "\n".join(body) + "\n"
            first = body[0] if body else ""
            if lang == "python":
                needs = parse_needs("\n".join(line.split("#", 1)[1] for line in body if "#" in line))
            else:
                needs = parse_needs(first) if first.lstrip().startswith("#") else ()
            found.append(Snippet(doc, i + 2, "python" if lang == "python" else "bash", text, needs))
        i = j + 1
    return found


def split_comment(line: str) -> tuple[str, str]:
    """``(code, comment)`` of one shell line: the comment starts at the first ``#`` outside quotes that begins a
    word."""
    quote = None
    for k, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (k == 0 or line[k - 1].isspace()):
            return line[:k], line[k + 1:]
    return line, ""


def _expand(code: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{?([A-Za-z_]\w*)\}?", lambda m: env.get(m.group(1), m.group(0)), code)


def shell_commands(snippet: Snippet) -> list[Command]:
    """The simple commands of a shell snippet (split at ``;``, ``&&``, ``||``, ``|``), with ``NAME=value``
    assignments applied to later lines (``$NAME``) and dropped as commands."""
    env: dict[str, str] = {}
    commands: list[Command] = []
    logical: list[tuple[int, str, str]] = []  # (line, code, comment)
    code_acc, comment_acc, start = "", "", None
    for k, raw in enumerate(snippet.text.splitlines()):
        code, comment = split_comment(raw)
        start = snippet.line + k if start is None else start
        comment_acc += " " + comment
        if code.rstrip().endswith("\\"):
            code_acc += code.rstrip()[:-1] + " "
            continue
        logical.append((start, code_acc + code, comment_acc))
        code_acc, comment_acc, start = "", "", None
    for line, code, comment in logical:
        if not code.strip():
            continue
        lexer = shlex.shlex(_expand(code, env), posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True
        words, parts = list(lexer), [[]]
        for w in words:
            parts.append([]) if w in (";", "&&", "||", "|", "&") else parts[-1].append(w)
        for argv in filter(None, parts):
            while argv and re.match(r"^[A-Za-z_]\w*=", argv[0]):
                name, value = argv.pop(0).split("=", 1)
                env[name] = value
            if argv:
                needs = snippet.needs + parse_needs(comment)
                commands.append(Command(snippet, line, code.strip(), argv, needs))
    return commands


def segmask_argv(argv: list[str]) -> list[str] | None:
    """The arguments after ``segmask`` when ``argv`` runs the segmask CLI (directly, ``python -m segmask`` or
    ``accelerate launch ... -m segmask``), with placeholder ``...`` words dropped; else None."""
    if Path(argv[0]).name == "segmask":
        rest = argv[1:]
    elif "-m" in argv and argv.index("-m") + 1 < len(argv) and argv[argv.index("-m") + 1] == "segmask" \
            and (Path(argv[0]).name.startswith("python") or argv[:2] == ["accelerate", "launch"]):
        rest = argv[argv.index("-m") + 2:]
    else:
        return None
    return [w for w in rest if w != "..."]


def make_targets() -> set[str]:
    """The targets the Makefile defines."""
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z][\w.-]*)\s*:(?!=)", text, flags=re.M)) - {"PHONY"}


def _strip_code(text: str, inline: bool = True) -> str:
    """``text`` with fenced blocks (and with ``inline`` code spans) blanked, line numbers kept."""
    out, fenced = [], False
    for line in text.splitlines():
        if re.match(r"^\s*```", line):
            fenced = not fenced
            out.append("")
            continue
        out.append("" if fenced else re.sub(r"`[^`]*`", "", line) if inline else line)
    return "\n".join(out)


def anchors(doc: str) -> set[str]:
    """GitHub's anchors of the headings of ``doc``."""
    heads = re.findall(r"^#{1,6}\s+(.+?)\s*$", _strip_code((ROOT / doc).read_text(), inline=False), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in heads}


def links(doc: str) -> list[tuple[int, str]]:
    """``(line, target)`` of every relative link and image in ``doc`` (Markdown and ``<img src>``), outside code."""
    found = []
    for n, line in enumerate(_strip_code((ROOT / doc).read_text()).splitlines(), start=1):
        targets = re.findall(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", line)
        targets += re.findall(r"<img[^>]*\ssrc=\"([^\"]+)\"", line)
        found += [(n, t) for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]
    return found


def broken_link(doc: str, target: str) -> str | None:
    """Why ``target`` (relative to ``doc``) is broken, or None: a missing file, or a missing heading anchor."""
    path, _, anchor = target.partition("#")
    resolved = (ROOT / doc).parent / path if path else ROOT / doc
    if resolved.resolve() in {(ROOT / d).resolve() for d in SKIPPED_DOCS}:
        return None  # left out of the check (SKIPPED_DOCS)
    if not resolved.exists():
        return f"no file {resolved.relative_to(ROOT) if resolved.is_relative_to(ROOT) else resolved}"
    if anchor and resolved.suffix == ".md" and anchor not in anchors(str(resolved.relative_to(ROOT))):
        return f"no heading #{anchor} in {resolved.relative_to(ROOT)}"
    return None

