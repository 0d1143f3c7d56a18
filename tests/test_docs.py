"""The docs run as written (issue 29): every ```` ```bash ```` / ```` ```python ```` snippet of README.md and
docs/*.md is checked without running it, and every relative link and image points at a file (and heading) that
exists. Conventions are in ``tests/doc_snippets.py``; ``benchmarks/run_docs.py`` really runs the cheap snippets.

- shell: each ``segmask ...`` command (also ``python -m segmask``, ``accelerate launch -m segmask``) is parsed by the
  real parser (``segmask.cli.build_parser``), nothing run; ``python SCRIPT.py ...`` by the script's own parser (caught
  at its ``parse_args``); ``python -m MODULE`` must be importable; ``make`` targets must be in the Makefile; ``pip
  install 'segmask[X]'`` extras must be declared; any other program must be in ``OTHER_PROGRAMS``.
- python: compiles; every name it uses is defined by it or by an earlier snippet of the same doc (they run in one
  namespace, as ``run_docs`` runs them); ``segmask`` imports and ``segmask.NAME`` attributes exist; other packages
  are installed or the snippet is marked ``needs: extra``.
- markers: ``needs:`` words come from ``doc_snippets.NEEDS`` and the marked lines are listed in ``MARKED``.

Every doc is checked (``doc_snippets.SKIPPED_DOCS`` is where one would be left out, with its reason).
"""

from __future__ import annotations

import argparse
import ast
import builtins
import contextlib
import importlib
import importlib.util
import io
import runpy
import sys
from functools import cache

import pytest
import tomllib

from segmask.bench.snippets import (
    NEEDS,
    ROOT,
    all_docs,
    broken_link,
    links,
    make_targets,
    segmask_argv,
    shell_commands,
    snippets,
)

OTHER_PROGRAMS = {"cd", "source", "export", "echo", "ls", "cat", "curl", "git", "nvidia-smi"}
MARKED = {
    "docs/ADAPT.md": {"time": 9, "input": 3, "data": 3},
    "docs/OWN_MODEL.md": {"network": 7, "gpu": 7, "time": 7},
    "docs/RESULTS-gemma.md": {"time": 7, "extra": 7, "data": 7},
    "docs/SCALING.md": {"input": 2, "gpu": 1, "time": 1},
    "docs/SERVING.md": {"extra": 2},
    "docs/eval.md": {"time": 11, "network": 1, "data": 11},
    "docs/generation.md": {"network": 1, "input": 1},
    "docs/training.md": {"time": 6, "network": 1, "data": 6, "input": 4, "gpu": 1, "extra": 1},
}
"""doc -> {need: number of marked shell commands and Python snippets}: what the quick run skips, and why."""


class _Caught(Exception):
    def __init__(self, parser: argparse.ArgumentParser):
        super().__init__("parser caught")
        self.parser = parser


@cache
def script_parser(path: str) -> argparse.ArgumentParser:
    """The parser ``python PATH`` builds, caught when it calls ``parse_args`` (nothing after that runs)."""
    def catch(self, *args, **kwargs):
        raise _Caught(self)

    saved = argparse.ArgumentParser.parse_args, sys.argv, list(sys.path)
    argparse.ArgumentParser.parse_args = catch
    sys.argv, sys.path[:0] = [path], [str((ROOT / path).parent)]
    try:
        runpy.run_path(str(ROOT / path), run_name="__main__")
    except _Caught as caught:
        return caught.parser
    finally:
        argparse.ArgumentParser.parse_args, sys.argv, sys.path[:] = saved
    raise AssertionError(f"{path} never called parse_args")


def exact(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``parser`` and its subparsers with abbreviated flags refused: a doc must spell each flag in full."""
    parser.allow_abbrev = False
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                exact(sub)
    return parser


def parse_error(parser: argparse.ArgumentParser, args: list[str]) -> str | None:
    """The parser's last error line for ``args`` (flags in full), or None when they parse."""
    exact(parser)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            parser.parse_args(args)
        except SystemExit as exit_:
            if exit_.code:
                return err.getvalue().strip().splitlines()[-1]
    return None


def extras() -> set[str]:
    return set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])


def command_error(argv: list[str], extra: bool = False) -> str | None:
    """Why one documented shell command would fail before doing anything, or None. ``extra``: the command is marked
    ``needs: extra``, so a ``python -m`` module of an optional package may be absent here."""
    from segmask.cli import build_parser

    rest = segmask_argv(argv)
    if rest is not None:
        return parse_error(build_parser(), rest)
    prog = argv[0].rsplit("/", 1)[-1]
    if prog.startswith("python"):
        if argv[1] == "-m":
            found = importlib.util.find_spec(argv[2].split(".")[0]) and importlib.util.find_spec(argv[2])
            return None if found or extra else f"no module {argv[2]}"
        if not (ROOT / argv[1]).is_file():
            return f"no script {argv[1]}"
        return parse_error(script_parser(argv[1]), [w for w in argv[2:] if w != "..."])
    if prog == "make":
        missing = [t for t in argv[1:] if "=" not in t and not t.startswith("-") and t not in make_targets()]
        return f"no make target {missing}" if missing else None
    if prog == "pip":
        wanted = {e for w in argv if w.startswith(("segmask[", ".[")) for e in w.split("[")[1].rstrip("]").split(",")}
        return f"no extra {sorted(wanted - extras())}" if wanted - extras() else None
    if argv[:2] == ["accelerate", "launch"]:
        return "accelerate launch runs only -m segmask here"
    return None if prog in OTHER_PROGRAMS else f"unknown program {argv[0]!r}"


def python_errors(snippet, defined: set[str]) -> list[str]:
    """Problems of one Python snippet; adds the names it defines to ``defined``."""
    try:
        tree = ast.parse(snippet.text, snippet.where)
        compile(tree, snippet.where, "exec")
    except SyntaxError as err:
        return [f"does not compile: {err}"]
    errors = []
    defined |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load)}
    defined |= {a.asname or a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
                for a in n.names}
    defined |= {a.arg for n in ast.walk(tree) if isinstance(n, ast.arguments) for a in n.args + n.kwonlyargs}
    defined |= {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            if node.id not in defined and not hasattr(builtins, node.id):
                errors.append(f"line {node.lineno}: {node.id!r} is not defined by this doc's snippets")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            errors += import_errors(node, "extra" in snippet.needs)
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "segmask":
            if not hasattr(importlib.import_module("segmask"), node.attr):
                errors.append(f"line {node.lineno}: segmask has no attribute {node.attr!r}")
    return errors


def import_errors(node: ast.Import | ast.ImportFrom, extra: bool) -> list[str]:
    modules = [node.module] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
    errors = []
    for name in modules:
        if not name.startswith("segmask"):
            if importlib.util.find_spec(name.split(".")[0]) is None and not extra:
                errors.append(f"line {node.lineno}: {name} is not installed and the snippet is not marked needs: extra")
            continue
        module = importlib.import_module(name)
        for alias in node.names if isinstance(node, ast.ImportFrom) else ():
            if not hasattr(module, alias.name) and importlib.util.find_spec(f"{name}.{alias.name}") is None:
                errors.append(f"line {node.lineno}: {name} has no {alias.name!r}")
    return errors


def doc_problems(doc: str) -> list[str]:
    """Every problem the checks find in ``doc`` (links, shell and Python snippets), as ``doc:line: what``."""
    problems = [f"{doc}:{n}: link {t!r}: {why}" for n, t in links(doc) if (why := broken_link(doc, t))]
    defined: set[str] = set()
    for snippet in snippets(doc):
        if snippet.lang == "python":
            problems += [f"{snippet.where}: {e}" for e in python_errors(snippet, defined)]
            continue
        for command in shell_commands(snippet):
            if why := command_error(command.argv, "extra" in command.needs):
                problems.append(f"{command.where}: {command.text!r}: {why}")
    return problems


def marked(doc: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for snippet in snippets(doc):
        units = [snippet.needs] if snippet.lang == "python" else [c.needs for c in shell_commands(snippet)]
        for needs in units:
            for need in set(needs):
                counts[need] = counts.get(need, 0) + 1
    return counts


@pytest.mark.parametrize("doc", all_docs())
def test_doc_snippets_and_links(doc):
    assert doc_problems(doc) == []


def test_needs_markers_are_known_and_listed():
    """Each ``needs:`` word is one of NEEDS, and the marked lines per doc are the ones listed in MARKED."""
    found = {doc: counts for doc in all_docs() if (counts := marked(doc))}
    assert {w for counts in found.values() for w in counts} <= set(NEEDS)
    assert found == MARKED


def test_the_checks_catch_what_they_are_for():
    """A bad flag, an unknown subcommand, a missing make target, an undefined name, a missing segmask name and a
    broken link are each reported."""
    assert "unrecognized arguments: --no-such-flag" in command_error(["segmask", "show", "--no-such-flag"])
    assert "invalid choice: 'shw'" in command_error(["segmask", "shw"])
    assert command_error(["segmask", "train", "DATA", "--mask", "mas", "--out", "o", "..."]) is None
    assert "unrecognized arguments: --max-new-token" in command_error(["segmask", "generate", "--max-new-token", "3"])
    assert "no make target ['tset']" == command_error(["make", "tset"])
    assert "--part" in command_error(["python", "benchmarks/bench_adapt.py", "--part", "nope"])
    assert command_error(["rm", "-rf", "x"]) == "unknown program 'rm'"
    assert command_error(["python", "-m", "no_such_pkg.server"]) == "no module no_such_pkg.server"
    assert command_error(["python", "-m", "no_such_pkg.server"], extra=True) is None
    from segmask.bench.snippets import Snippet

    bad = Snippet("x.md", 1, "python", "import segmask\nsegmask.lod_model()\nprint(tok)\n", ())
    errors = python_errors(bad, set())
    assert any("'tok' is not defined" in e for e in errors) and any("'lod_model'" in e for e in errors)
    assert broken_link("docs/eval.md", "nothing.png") == "no file docs/nothing.png"
    assert broken_link("README.md", "docs/eval.md#no-such-heading").startswith("no heading")
