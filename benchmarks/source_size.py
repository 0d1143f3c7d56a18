"""Source size of a package: plain lines (``wc -l``) and code lines (not blank, not a comment, not a docstring).

    python benchmarks/source_size.py src/segmask --skip /vllm/
"""

from __future__ import annotations

import argparse
import ast
import io
import tokenize
from pathlib import Path

SKIPPED_TOKENS = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                  tokenize.ENDMARKER}


def code_lines(source: str) -> int:
    """Lines holding a token that is neither a comment nor part of a docstring (any string statement)."""
    docs: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            docs.update(range(node.lineno, node.end_lineno + 1))
    lines: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type not in SKIPPED_TOKENS:
            lines.update(n for n in range(tok.start[0], tok.end[0] + 1) if n not in docs)
    return len(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("root", type=Path)
    p.add_argument("--skip", action="append", default=[], help="leave out paths containing this text")
    args = p.parse_args(argv)
    files = [f for f in sorted(args.root.rglob("*.py")) if not any(s in str(f) for s in args.skip)]
    texts = [f.read_text(encoding="utf-8") for f in files]
    print(f"{len(files)} modules, {sum(t.count(chr(10)) for t in texts)} lines (wc -l), "
          f"{sum(code_lines(t) for t in texts)} code lines")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
