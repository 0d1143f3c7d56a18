"""Getting the commonsense benchmark data (``segmask data``): the eight LLM-Adapters test sets and the
commonsense_170k training mixture, downloaded from the public LLM-Adapters repository or copied from a local copy,
checked, and written atomically into the folder the other commands read by default (``tasks.default_data_dir``).

    >>> rows = prepare(data_home())                                   # download (DEFAULT_BASE_URL or $SEGMASK_DATA_URL)
    >>> rows = prepare("data/commonsense", source="../LLM-Adapters")  # from a local copy, no network

Written under ``out``:

    out/<task>/test.json                 the test sets, as ``segmask eval --data-dir out`` reads them
    out/commonsense_170k/train.json      the training mixture (``segmask train out`` reads every train.json below out)
    out/<task>/train.json                a local copy's per-task train sets, only when it has no mixture
    out/SOURCES.json                     each file's source, records, sha256 and licence

A local copy is laid out like the remote repository (``dataset/<task>/test.json``,
``ft-training_set/commonsense_170k.json``) or like the output (``<task>/test.json``). Every file must be a JSON list
of records with string ``instruction`` and ``output`` (a task's records: an ``answer`` among its labels) and hold one
of the expected record counts (``EXPECTED``: the public file, or for a test set its even-indexed half, the
development copy on the project's machine); ``manifest`` replaces the counts. A file already in ``out`` that passes
the check is kept as it is.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..core.files import parse_json, read_json
from ..core.records import check_record
from .tasks import COMMONSENSE_TASKS, TASKS, Task, data_home

DEFAULT_BASE_URL = "https://raw.githubusercontent.com/AGI-Edgerunners/LLM-Adapters/main"
"""The remote repository's raw files; ``$SEGMASK_DATA_URL`` or ``base_url=`` replaces it (a mirror, a test server)."""
SOURCE = ("LLM-Adapters (https://github.com/AGI-Edgerunners/LLM-Adapters, code Apache-2.0): dataset/<task>/test.json "
          "and ft-training_set/commonsense_170k.json; each dataset keeps its own licence")
LICENCES = {
    "boolq": "BoolQ, CC-BY-SA-3.0", "piqa": "PIQA, AFL-3.0", "social_i_qa": "Social IQa, CC-BY-4.0",
    "hellaswag": "HellaSwag, MIT", "winogrande": "WinoGrande, Apache-2.0/CC-BY", "ARC-Easy": "ARC, CC-BY-SA-4.0",
    "ARC-Challenge": "ARC, CC-BY-SA-4.0", "openbookqa": "OpenBookQA, Apache-2.0",
}
MIXTURE = "commonsense_170k"
MIXTURE_LICENCE = "the eight tasks' train sets, each under its licence above"
TEST_COUNTS = {"boolq": 3270, "piqa": 1838, "social_i_qa": 1954, "hellaswag": 10042, "winogrande": 1267,
               "ARC-Easy": 2376, "ARC-Challenge": 1172, "openbookqa": 500}
"""Records in each public test set (validation sets for BoolQ, PIQA, Social IQa, HellaSwag and WinoGrande)."""
TRAIN_COUNTS = {"boolq": 9427, "ARC-Easy": 2251, "ARC-Challenge": 1119, "openbookqa": 4957}
"""Records in the per-task train sets a local copy may hold (those of ../shared/data/commonsense)."""
MIXTURE_COUNT = 170420


@dataclass(frozen=True)
class Entry:
    """One file: its path under ``out``, its path in the remote repository, its task (None: the mixture)."""

    path: str
    remote: str
    task: str | None

    @property
    def licence(self) -> str:
        return LICENCES[self.task] if self.task else MIXTURE_LICENCE


def _expected() -> dict[str, tuple[int, ...]]:
    counts = {f"{t}/test.json": (n, (n + 1) // 2) for t, n in TEST_COUNTS.items()}
    counts.update({f"{t}/train.json": (n,) for t, n in TRAIN_COUNTS.items()})
    counts[f"{MIXTURE}/train.json"] = (MIXTURE_COUNT,)
    return counts


EXPECTED: dict[str, tuple[int, ...]] = _expected()
"""Path under ``out`` -> the record counts accepted for it."""


def read_manifest(path: str | Path) -> dict[str, tuple[int, ...]]:
    """A JSON object ``{path under out: count or [counts]}`` as a table of accepted counts (``ValueError`` naming
    the file when it is not one)."""
    raw = read_json(path, expect=dict)
    table = {}
    for key, value in raw.items():
        counts = value if isinstance(value, list) else [value]
        if not counts or not all(isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in counts):
            raise ValueError(f"{path}: {key!r} must map to a positive record count or a list of them")
        table[key] = tuple(counts)
    return table


def entries(tasks: list[str] | None = None, *, mixture: bool = True, source: Path | None = None,
            out: Path | None = None) -> list[Entry]:
    """The files to prepare: each task's test set, then the mixture; with a local ``source`` that has no mixture
    (and none already in ``out``), the per-task train sets it holds instead."""
    names = list(tasks or COMMONSENSE_TASKS)
    unknown = [n for n in names if n not in COMMONSENSE_TASKS]
    if unknown:
        raise ValueError(f"unknown commonsense tasks {unknown}; known: {', '.join(COMMONSENSE_TASKS)}")
    tests = [Entry(f"{t}/test.json", f"dataset/{t}/test.json", t) for t in names]
    mix = Entry(f"{MIXTURE}/train.json", f"ft-training_set/{MIXTURE}.json", None)
    if mixture and (source is None or find_local(source, mix) is not None or (out and (out / mix.path).is_file())):
        return tests + [mix]
    if mixture:
        trains = [Entry(f"{t}/train.json", f"dataset/{t}/train.json", t) for t in names if t in TRAIN_COUNTS]
        tests += [e for e in trains if find_local(source, e) is not None]
    return tests


def find_local(source: Path, entry: Entry) -> Path | None:
    """``entry``'s file in a local copy laid out like the remote repository or like the output, or None."""
    names = [entry.remote, entry.path] + ([f"{MIXTURE}.json"] if entry.task is None else [])
    return next((source / n for n in names if (source / n).is_file()), None)


def check_records(data: bytes, where: str, task: Task | None) -> int:
    """The number of records in ``data`` (a file's bytes); ``ValueError`` naming ``where`` unless it is a JSON list
    of LLM-Adapters records (``task``'s answers among its labels)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{where}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    rows = parse_json(text, where, expect=list)
    for i, row in enumerate(rows):
        check_record(row, f"{where} record {i}", task.labels if task else None, required=("instruction", "output"))
    return len(rows)


def verify(data: bytes, where: str, entry: Entry, counts: dict[str, tuple[int, ...]]) -> int:
    """``check_records`` plus the record count against ``counts[entry.path]``; returns the count."""
    n = check_records(data, where, TASKS[entry.task] if entry.task else None)
    want = counts.get(entry.path)
    if want is None:
        raise ValueError(f"{where}: no expected record count for {entry.path} (add it to the --manifest)")
    if n not in want:
        raise ValueError(f"{where}: {n} records, expected {' or '.join(map(str, want))} for {entry.path} "
                         "(truncated or changed upstream? a --manifest FILE can state other counts)")
    return n


def download(url: str, timeout: float = 60.0) -> bytes:
    """The body of ``url``; ``OSError`` naming it when the download fails."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - http(s) URLs the user chose
            return response.read()
    except urllib.error.HTTPError as err:
        raise OSError(f"{url}: download failed (HTTP {err.code} {err.reason})") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
        reason = getattr(err, "reason", err)
        raise OSError(f"{url}: cannot download ({reason}); without network, use `segmask data --from PATH`") from None


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename: readers see the old
    file or the new one, never part of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.part")
    try:
        with open(tmp, "xb") as f:  # a fresh name, permissions from the umask
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _existing(target: Path, entry: Entry, counts: dict, log: Callable[[str], None]) -> int | None:
    """The record count of a verified file already at ``target``, or None (absent, or failing the check)."""
    if not target.is_file():
        return None
    try:
        return verify(target.read_bytes(), str(target), entry, counts)
    except (ValueError, OSError) as err:
        log(f"replacing {target}: {err}")
        return None


def prepare_one(entry: Entry, out: Path, *, source: Path | None, base_url: str, counts: dict,
                log: Callable[[str], None]) -> dict | None:
    """Make ``out/entry.path`` a verified copy; returns its row for SOURCES.json, or None when a local ``source``
    lacks it."""
    target = out / entry.path
    n = _existing(target, entry, counts, log)
    if n is not None:
        data, origin, status = target.read_bytes(), None, "already there"
    elif source is not None:
        found = find_local(source, entry)
        if found is None:
            return None
        data, origin, status = found.read_bytes(), str(found.resolve()), "copied"
        n = verify(data, str(found), entry, counts)
    else:
        origin = f"{base_url.rstrip('/')}/{entry.remote}"
        log(f"downloading {origin}")
        data, status = download(origin), "downloaded"
        n = verify(data, f"{origin} (for {target})", entry, counts)
    if status != "already there":
        write_atomic(target, data)
    return {"path": entry.path, "records": n, "sha256": hashlib.sha256(data).hexdigest(), "source": origin,
            "licence": entry.licence, "status": status}


def prepare(out: str | Path | None = None, *, source: str | Path | None = None, base_url: str | None = None,
            tasks: list[str] | None = None, mixture: bool = True, manifest: dict | None = None,
            log: Callable[[str], None] = print) -> list[dict]:
    """Prepare every file of ``entries`` under ``out`` (default ``data_home()``), from ``source`` (a local folder)
    or by download from ``base_url`` (default ``$SEGMASK_DATA_URL`` or ``DEFAULT_BASE_URL``); returns one row per
    file (``status``: downloaded, copied, already there). Stops at the first file that fails its check."""
    out = Path(out) if out is not None else data_home()
    base_url = base_url or os.environ.get("SEGMASK_DATA_URL") or DEFAULT_BASE_URL
    src = Path(source).expanduser() if source is not None else None
    if src is not None and not src.is_dir():
        raise ValueError(f"--from {src}: not a folder")
    counts = manifest if manifest is not None else EXPECTED
    todo = entries(tasks, mixture=mixture, source=src, out=out)
    if src is not None and not any(e.path.endswith("/test.json") and find_local(src, e) for e in todo):
        raise ValueError(f"--from {src}: no test set found (expected e.g. {src}/boolq/test.json or "
                         f"{src}/dataset/boolq/test.json)")
    rows, missing = [], []
    for entry in todo:
        row = prepare_one(entry, out, source=src, base_url=base_url, counts=counts, log=log)
        (rows.append(row) if row else missing.append(entry.path))
    if mixture and src is not None and not any(e.task is None for e in todo):
        missing.append(f"{MIXTURE}.json (its per-task train sets taken instead)")
    if missing:
        log(f"not in {src}: {', '.join(missing)}")
    write_sources(out, rows)
    return rows


def write_sources(out: Path, rows: list[dict]) -> None:
    """Merge ``rows`` into ``out/SOURCES.json`` (kept sources of files already there); rewritten only on change."""
    path = out / "SOURCES.json"
    old = read_json(path, expect=dict) if path.is_file() else {}
    files = dict(old.get("files", {}))
    for row in rows:
        prior = files.get(row["path"], {})
        keep = row["status"] == "already there" and prior.get("sha256") == row["sha256"]
        files[row["path"]] = {"records": row["records"], "sha256": row["sha256"], "licence": row["licence"],
                              "source": prior.get("source") if keep else row["source"]}
    text = json.dumps({"source": SOURCE, "files": dict(sorted(files.items()))}, indent=1) + "\n"
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        write_atomic(path, text.encode("utf-8"))
