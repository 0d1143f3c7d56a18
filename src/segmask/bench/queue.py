"""The job queue of a study: subprocesses in priority order, a few at a time, each once what it needs is done.

A job is done when its marker file exists (an adapter's ``segmask.json``, an evaluation's ``summary.json``), so a
study is resumable by running it again: done jobs are skipped, and a training cut short restarts from its last
checkpoint (``resume``: the run folder; ``--resume`` is added when it holds a ``checkpoint-*``). Each job logs to
``LOGS/NAME.log``; ``LOGS/../timing.json`` sums each job's wall seconds over sittings.
"""

from __future__ import annotations

import fnmatch
import json
import os
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Job:
    """One subprocess (``argv``), done when ``marker`` exists, started once every path of ``needs`` exists."""

    name: str
    argv: tuple[str, ...]
    marker: Path
    needs: tuple[Path, ...] = ()
    resume: Path | None = None

    def done(self) -> bool:
        return self.marker.exists()

    def ready(self) -> bool:
        return all(p.exists() for p in self.needs)

    def command(self) -> list[str]:
        """``argv``, plus ``--resume`` when the run folder ``resume`` holds a checkpoint from an earlier sitting."""
        again = self.resume is not None and any(Path(self.resume).glob("checkpoint-*"))
        return [*self.argv, *(["--resume"] if again else [])]

    def state(self) -> str:
        return "done" if self.done() else ("ready" if self.ready() else "waits")


def matches(name: str, only: str | None) -> bool:
    """Whether ``name`` matches one of the comma-separated names or globs of ``only`` (every name does without it)."""
    return not only or any(fnmatch.fnmatch(name, p.strip()) for p in only.split(",") if p.strip())


def select(jobs: Sequence[Job], only: str | None) -> list[Job]:
    """The jobs whose name ``matches`` ``only``."""
    return [j for j in jobs if matches(j.name, only)]


def print_plan(jobs: Sequence[Job]) -> None:
    for job in jobs:
        print(f"{job.state():5s} {job.name}")
    print(f"{sum(j.done() for j in jobs)}/{len(jobs)} done")


def record_timing(path: Path, name: str, wall: float) -> None:
    """Add ``wall`` seconds to job ``name`` in the JSON file ``path`` (a job resumed over sittings sums them)."""
    old = json.loads(path.read_text()) if path.exists() else {}
    old[name] = old.get(name, 0.0) + wall
    path.write_text(json.dumps(old, indent=1) + "\n")


def run_queue(jobs: Sequence[Job], logs: Path, *, parallel: int = 2, cwd: Path | None = None,
              env: dict[str, str] | None = None, on_exit: Callable[[Job, int], object] | None = None,
              on_tick: Callable[[], object] | None = None, poll: float = 5.0) -> dict[str, int]:
    """Run the jobs not done yet, ``parallel`` at a time in the given order, each once it is ready.

    Every process gets one torch thread (``OMP_NUM_THREADS=1``; on a shared 2-core CPU one thread per process is
    several times faster than two). ``on_exit(job, returncode)`` runs as each job ends (e.g. to export an adapter),
    ``on_tick()`` every ``poll`` seconds. Returns {name: return code}; raises SystemExit when the jobs left wait on
    jobs that will not run (not selected, or failed).
    """
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           **(env or {})}
    pending = [j for j in jobs if not j.done()]
    running: dict[str, tuple[Job, subprocess.Popen, float]] = {}
    codes: dict[str, int] = {}
    while pending or running:
        for job in [j for j in pending if j.ready()][: max(0, parallel - len(running))]:
            pending.remove(job)
            print(f"{time.strftime('%H:%M:%S')} {job.name}: started", flush=True)
            with open(logs / f"{job.name}.log", "a") as log:
                proc = subprocess.Popen(job.command(), cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
            running[job.name] = (job, proc, time.time())
        if not running and pending:
            raise SystemExit(f"blocked: {[j.name for j in pending]} wait on jobs that did not run or failed")
        time.sleep(poll)
        if on_tick:
            on_tick()
        for name, (job, proc, start) in list(running.items()):
            if proc.poll() is None:
                continue
            del running[name]
            wall, codes[name] = time.time() - start, proc.returncode
            print(f"{time.strftime('%H:%M:%S')} {name}: exit {proc.returncode} after {wall:.0f} s", flush=True)
            record_timing(logs.parent / "timing.json", name, wall)
            if on_exit:
                on_exit(job, proc.returncode)
    return codes
