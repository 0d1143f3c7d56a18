"""Commonsense benchmarks in the LLM-Adapters format: one small dataclass per task, mapped by a plain dict.

Each task folder under the data directory holds ``test.json``, a list of records
``{"instruction", "input", "output": "the correct answer is X", "answer": "X"}``. A task knows its answer labels
and extracts the first label a model wrote:

    >>> TASKS["piqa"].extract("Answer: Solution2, because ...")
    'solution2'
    >>> records = load_records(TASKS["boolq"], default_data_dir(), limit=50, seed=0)

``default_data_dir()`` is where commands look when no ``--data-dir`` is given: the folder ``segmask data`` fills
(``$SEGMASK_DATA``, else ``~/.cache/segmask/data/commonsense`` under ``$SEGMASK_CACHE`` when set).

Extraction follows LLM-Adapters (first match of the task's labels in the generated text) but ignores case and
needs whole words, so "Solution1" counts and "answer12" or "falsely" do not.
"""

from __future__ import annotations

import os
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.files import read_json
from ..core.records import check_record, offered_labels


@dataclass(frozen=True)
class Task:
    """One benchmark: its folder under the data directory and its answer labels (lower case)."""

    name: str
    folder: str
    labels: tuple[str, ...]
    split: str = field(default="test", metadata={"help": "file name without .json inside the folder"})

    def __post_init__(self):
        if len(self.labels) < 2 or any(lab != lab.lower() or not lab.isalnum() for lab in self.labels):
            raise ValueError(f"task {self.name!r}: labels must be >= 2 lower-case alphanumeric words, "
                             f"got {self.labels}")

    @property
    def pattern(self) -> re.Pattern:
        """Regex matching any label as a whole word, case-insensitively (longest labels tried first)."""
        alternatives = "|".join(re.escape(lab) for lab in sorted(self.labels, key=len, reverse=True))
        return re.compile(rf"(?<![A-Za-z0-9_])({alternatives})(?![A-Za-z0-9_])", re.IGNORECASE)

    def extract(self, text: str) -> str | None:
        """The first label written in ``text`` (lower case), or None when there is none."""
        match = self.pattern.search(text)
        return match.group(1).lower() if match else None

    def choices(self, record: dict[str, Any]) -> tuple[str, ...]:
        """The labels offered by one record: its ``Answer format: a/b/c`` line, else the task's labels.

        Some ARC questions offer 3 or 5 answers; the log-likelihood protocol scores exactly the offered ones.
        """
        offered = offered_labels(record)
        if offered is None:
            return self.labels
        unknown = [c for c in offered if c not in self.labels]
        if unknown:
            raise ValueError(f"task {self.name!r}: record offers unknown labels {unknown} (known: {self.labels})")
        return offered

    def path(self, data_dir: str | Path) -> Path:
        """``data_dir/folder/split.json``."""
        return Path(data_dir) / self.folder / f"{self.split}.json"


def _answers(prefix: str, n: int) -> tuple[str, ...]:
    return tuple(f"{prefix}{i}" for i in range(1, n + 1))


TASKS: dict[str, Task] = {
    "boolq": Task("boolq", "boolq", ("true", "false")),
    "piqa": Task("piqa", "piqa", _answers("solution", 2)),
    "social_i_qa": Task("social_i_qa", "social_i_qa", _answers("answer", 3)),
    "hellaswag": Task("hellaswag", "hellaswag", _answers("ending", 4)),
    "winogrande": Task("winogrande", "winogrande", _answers("option", 2)),
    "ARC-Easy": Task("ARC-Easy", "ARC-Easy", _answers("answer", 5)),
    "ARC-Challenge": Task("ARC-Challenge", "ARC-Challenge", _answers("answer", 5)),
    "openbookqa": Task("openbookqa", "openbookqa", _answers("answer", 4)),
}
SYNTH_TASKS: dict[str, Task] = {name: Task(name, name, _answers("answer", 4))
                                for name in ("lookup", "reading", "name_index", "middle_match")}
"""The synthetic prompt-order tasks of ``segmask synth`` (``eval.synth``): four options, answer1..answer4."""
TASKS.update(SYNTH_TASKS)
COMMONSENSE_TASKS = tuple(name for name in TASKS if name not in SYNTH_TASKS)
"""The paper's eight commonsense tasks, in its table order (``TASKS`` also holds the synthetic ones)."""


SHARED_DATA = Path(__file__).resolve().parents[4] / "shared" / "data" / "commonsense"
"""``../shared/data/commonsense`` beside a source checkout: this machine's copy of the data (test fixtures)."""
GET_DATA_HINT = "run `segmask data` to get the commonsense benchmark data (or pass --data-dir)"


def data_home() -> Path:
    """The folder ``segmask data`` writes by default: ``$SEGMASK_DATA``, else ``data/commonsense`` under
    ``$SEGMASK_CACHE`` (default ``~/.cache/segmask``)."""
    if os.environ.get("SEGMASK_DATA"):
        return Path(os.environ["SEGMASK_DATA"]).expanduser()
    cache = Path(os.environ.get("SEGMASK_CACHE") or Path.home() / ".cache" / "segmask").expanduser()
    return cache / "data" / "commonsense"


def default_data_dir() -> Path:
    """The commonsense data folder used when none is given: ``data_home()`` when ``$SEGMASK_DATA`` is set or it holds
    task data, else ``../shared/data/commonsense`` beside the source checkout when that holds task data, else
    ``data_home()`` (empty: the commands then say to run ``segmask data``)."""
    home = data_home()
    if os.environ.get("SEGMASK_DATA") or available_tasks(home) or not available_tasks(SHARED_DATA):
        return home
    return SHARED_DATA


def get_task(name: str) -> Task:
    """Look a task up by name (case-insensitive); ``ValueError`` lists the known ones."""
    for key, task in TASKS.items():
        if key.lower() == name.lower():
            return task
    raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")


def available_tasks(data_dir: str | Path) -> list[str]:
    """Names of the tasks whose test file exists under ``data_dir`` (hellaswag only when its data is there)."""
    return [name for name, task in TASKS.items() if task.path(data_dir).exists()]


def resolve_tasks(names: str | list[str] | None, data_dir: str | Path) -> list[Task]:
    """Tasks from a comma-separated string or list; ``None`` or ``"all"`` means every task present in ``data_dir``."""
    if names is None or names == "all" or names == ["all"]:
        present = available_tasks(data_dir)
        if not present:
            raise ValueError(f"no task data found under {data_dir} (expected e.g. {TASKS['boolq'].path(data_dir)}); "
                             + GET_DATA_HINT)
        return [TASKS[n] for n in present]
    if isinstance(names, str):
        names = [n for n in names.split(",") if n.strip()]
    return [get_task(n.strip()) for n in names]


def sample_indices(n: int, limit: int | None, seed: int, task_name: str) -> list[int]:
    """A fixed, sorted random subset of ``range(n)`` of size ``limit`` (all when ``limit`` is None or >= n).

    Seeded by ``(seed, task_name)`` only, so every run (any model, mask or protocol) sees the same examples.
    """
    if limit is None or limit >= n:
        return list(range(n))
    if limit <= 0:
        raise ValueError(f"limit must be positive, got {limit}")
    return sorted(random.Random(f"{seed}:{task_name}").sample(range(n), limit))


def load_records(task: Task, data_dir: str | Path, *, limit: int | None = None, seed: int = 0) -> list[dict]:
    """Read the task's test records (a ``limit`` subset, ``sample_indices``); each gets ``index`` (its position in
    the file) and its ``answer`` lower case. Each is checked (``segmask.core.records.check_record``) against the
    task's labels."""
    path = task.path(data_dir)
    if not path.exists():
        hint = "draw it with `segmask synth`" if task.name in SYNTH_TASKS else GET_DATA_HINT
        raise ValueError(f"task {task.name!r}: data file {path} not found; {hint}")
    rows = read_json(path, expect=list)
    records = []
    for i in sample_indices(len(rows), limit, seed, task.name):
        answer = check_record(rows[i], f"{path} record {i}", task.labels)
        records.append({**rows[i], "answer": answer, "index": i})
    return records
