"""Timing on a shared CPU, the one loop every benchmark uses.

Every route of one repetition runs back to back, in a rotating order, and each route's time is divided by the base
route's time of the same repetition: a load spike on the shared machine then hits both sides of a ratio. Ratios use
process CPU time with one torch thread (wall time of a one-thread process inflates with every other process on the
machine; its CPU time much less so); wall ratios are kept next to them.

    >>> t = interleaved({"a": lambda: None, "b": lambda: None}, reps=3, base="a")
    >>> sorted(t["b"]), len(t["b"]["cpu_ratio"])
    (['cpu', 'cpu_ratio', 'wall', 'wall_ratio'], 3)
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable

from ..core.recipe import check_choice


def interleaved(fns: dict[str, Callable[[], object]], reps: int, base: str,
                sync: Callable[[], object] | None = None, warmup: int = 0) -> dict[str, dict[str, list[float]]]:
    """Run every fn ``reps`` times, rotating the order each repetition (after ``warmup`` untimed rounds).

    Args:
        sync: called before each clock read (e.g. ``torch.cuda.synchronize``), so asynchronous work is counted.

    Returns:
        {name: {"cpu": [s], "wall": [s], "cpu_ratio": [time / base time of the same rep], "wall_ratio": [...]}}.
    """
    check_choice("base", base, tuple(fns))  # one of the timed functions
    names = list(fns)
    for _ in range(warmup):
        for n in names:
            fns[n]()
    out = {n: {"cpu": [], "wall": []} for n in names}
    for r in range(reps):
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            if sync:
                sync()
            c, w = time.process_time(), time.perf_counter()
            fns[n]()
            if sync:
                sync()
            out[n]["cpu"].append(time.process_time() - c)
            out[n]["wall"].append(time.perf_counter() - w)
    for n in names:
        for kind in ("cpu", "wall"):
            out[n][f"{kind}_ratio"] = [t / b if b else float("nan") for t, b in zip(out[n][kind], out[base][kind])]
    return out


def mmm(values: list[float], fmt: str = "{:.3f}") -> str:
    """'min / median / max' of ``values``."""
    return " / ".join(fmt.format(v) for v in (min(values), statistics.median(values), max(values)))


def machine() -> str:
    """One line about where the numbers come from."""
    import torch
    import transformers

    return (f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch thread(s) "
            f"(os.cpu_count()={os.cpu_count()}), torch {torch.__version__}, "
            f"transformers {transformers.__version__}, Python {platform.python_version()}")
