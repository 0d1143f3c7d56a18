"""Run the cheap snippets of README.md and docs/*.md for real and report which pass (``tests/test_docs.py`` only
checks them without running).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/run_docs.py                 # every doc but SERVING.md, RESULTS.md
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/run_docs.py README.md docs/generation.md --timeout 300

Runs every ``segmask ...`` shell command and every Python snippet that is not marked ``needs: ...`` (conventions in
``tests/doc_snippets.py``); the Python snippets of one doc share one interpreter, in order, as a reader would paste
them. Everything runs in a scratch folder where ``adapters``, ``benchmarks`` and ``examples`` link to the repository's,
so ``runs/...`` and other outputs never land in the checkout. ``make``, ``pip`` and other programs are not run
(``make test`` is the whole suite). Exit status 1 when any run fails.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from segmask.bench.snippets import ROOT, all_docs, segmask_argv, shell_commands, snippets

SEGMASK = Path(sys.executable).parent / "segmask"


def runs(doc: str) -> list[tuple[str, str, list[str], str]]:
    """``(where, what, argv, stdin)`` of each run for ``doc``: its unmarked segmask commands and Python snippets."""
    found, python = [], []
    for snippet in snippets(doc):
        if snippet.lang == "python":
            if not snippet.needs:
                python.append(snippet)
            continue
        for command in shell_commands(snippet):
            rest = segmask_argv(command.argv)
            if rest is not None and not command.needs:
                found.append((command.where, command.text, [str(SEGMASK), *rest], "/quit\n"))
    if python:
        code = "\n".join(s.text for s in python)
        found.append((python[0].where, f"{len(python)} Python snippet(s)", [sys.executable, "-c", code], ""))
    return found


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("docs", nargs="*", help="docs to run (default: README.md and docs/*.md but the skipped two)")
    p.add_argument("--timeout", type=float, default=600, help="seconds per run (default 600)")
    args = p.parse_args(argv)
    failed = 0
    with tempfile.TemporaryDirectory(prefix="segmask-docs-") as scratch:
        for name in ("adapters", "benchmarks", "examples"):
            os.symlink(ROOT / name, Path(scratch) / name)
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "PYTHONPATH": str(ROOT)}
        for doc in args.docs or all_docs():
            for where, what, cmd, stdin in runs(doc):
                start = time.perf_counter()
                try:
                    done = subprocess.run(cmd, cwd=scratch, env=env, input=stdin, capture_output=True, text=True,
                                          timeout=args.timeout)
                    ok, tail = done.returncode == 0, (done.stderr if done.returncode else done.stdout).strip()
                except subprocess.TimeoutExpired:
                    ok, tail = False, f"still running after {args.timeout:g} s: mark it needs: time"
                failed += not ok
                last = tail.splitlines()[-1] if tail else ""
                print(f"{'PASS' if ok else 'FAIL'} {time.perf_counter() - start:6.1f} s  {where}  {what[:90]}"
                      f"\n       {last[:150]}", flush=True)
    print(f"{failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
