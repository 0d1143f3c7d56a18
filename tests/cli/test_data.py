"""`segmask data`: download from a local HTTP server on 127.0.0.1 laid out like the LLM-Adapters repository, copy
from a local folder, refuse bad files naming them, a second run is a no-op; the default data location. No network."""

from __future__ import annotations

import functools
import http.server
import json
import threading
from pathlib import Path

import pytest

from segmask.cli import main
from segmask.eval import data_fetch, tasks
from segmask.eval.tasks import COMMONSENSE_TASKS, TASKS, available_tasks, default_data_dir, load_records

MIXTURE = "commonsense_170k/train.json"


def records(task: str | None, n: int) -> list[dict]:
    labels = TASKS[task].labels if task else ("answer1", "true")
    return [{"instruction": f"{task} question {i}?", "input": "", "output": f"the correct answer is {labels[i % 2]}",
             "answer": labels[i % 2]} for i in range(n)]


def stand_in(root: Path, layout: str = "remote") -> dict[str, tuple[int, ...]]:
    """Tiny files under ``root`` laid out like the remote repository (or like segmask data's output); returns the
    manifest of their record counts."""
    manifest = {}
    for i, task in enumerate(COMMONSENSE_TASKS):
        rel = f"dataset/{task}/test.json" if layout == "remote" else f"{task}/test.json"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(json.dumps(records(task, 2 + i)))
        manifest[f"{task}/test.json"] = (2 + i,)
    mix = root / ("ft-training_set/commonsense_170k.json" if layout == "remote" else MIXTURE)
    mix.parent.mkdir(parents=True, exist_ok=True)
    mix.write_text(json.dumps(records(None, 5)))
    manifest[MIXTURE] = (5,)
    return manifest


def write_manifest(path: Path, manifest: dict) -> str:
    path.write_text(json.dumps({k: list(v) for k, v in manifest.items()}))
    return str(path)


@pytest.fixture
def server(tmp_path, monkeypatch):
    """(base URL, served folder, list of requested paths) of a file server on 127.0.0.1."""
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(var, "127.0.0.1,localhost")
    root, requested = tmp_path / "remote", []
    root.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            requested.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/repo", root, requested
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty default data location (``$SEGMASK_CACHE``), no ``$SEGMASK_DATA``, no ../shared fallback."""
    monkeypatch.delenv("SEGMASK_DATA", raising=False)
    monkeypatch.delenv("SEGMASK_DATA_URL", raising=False)
    monkeypatch.setenv("SEGMASK_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(tasks, "SHARED_DATA", tmp_path / "no-shared")
    return tmp_path / "cache" / "data" / "commonsense"


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns) for p in files}


def test_download_fetches_verifies_writes_and_a_second_run_is_a_no_op(server, home, tmp_path, capsys):
    url, root, requested = server
    (root / "repo").mkdir()
    manifest = write_manifest(tmp_path / "m.json", stand_in(root / "repo"))
    assert main(["data", "--base-url", url, "--manifest", manifest]) == 0
    out = capsys.readouterr().out
    assert len(requested) == 9 and "/repo/ft-training_set/commonsense_170k.json" in requested
    assert "LLM-Adapters" in out and "BoolQ, CC-BY-SA-3.0" in out and out.count("downloaded") == 9
    assert default_data_dir() == home and available_tasks(home) == list(COMMONSENSE_TASKS)
    for task in COMMONSENSE_TASKS:
        assert (home / task / "test.json").read_bytes() == (root / "repo" / "dataset" / task / "test.json").read_bytes()
    assert len(load_records(TASKS["hellaswag"], home)) == 2 + COMMONSENSE_TASKS.index("hellaswag")
    assert len(json.loads((home / MIXTURE).read_text())) == 5
    sources = json.loads((home / "SOURCES.json").read_text())["files"]
    assert sources["boolq/test.json"]["source"] == f"{url}/dataset/boolq/test.json"
    assert sources[MIXTURE]["records"] == 5 and len(sources[MIXTURE]["sha256"]) == 64
    assert not list(home.rglob("*.part"))

    before = snapshot(home)
    assert main(["data", "--base-url", url, "--manifest", manifest]) == 0
    assert len(requested) == 9  # nothing downloaded again
    assert capsys.readouterr().out.count("already there") == 9
    assert snapshot(home) == before  # nothing rewritten, SOURCES.json included


def test_real_counts_refuse_the_stand_ins(server, home, capsys):
    """Without a manifest the real record counts apply: a tiny stand-in is refused, naming the URL."""
    url, root, _ = server
    stand_in(root / "repo")
    assert main(["data", "--base-url", url]) == 2
    err = capsys.readouterr().err
    assert f"{url}/dataset/boolq/test.json" in err and "2 records, expected 3270 or 1635" in err
    assert not (home / "boolq" / "test.json").exists()


@pytest.mark.parametrize("bad, message", [
    (b"not json {", "not valid JSON"),
    (b'{"a": 1}', "expected a JSON list, got object"),
    (b"\xff\xfe", "not UTF-8 text"),
    (json.dumps([{"instruction": "q", "output": "o", "answer": "maybe"}] * 2).encode(), "answer 'maybe' is not one"),
])
def test_a_corrupt_download_is_refused_naming_it(server, home, tmp_path, capsys, bad, message):
    url, root, _ = server
    manifest = write_manifest(tmp_path / "m.json", stand_in(root / "repo"))
    (root / "repo" / "dataset" / "piqa" / "test.json").write_bytes(bad)
    assert main(["data", "--base-url", url, "--manifest", manifest]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"segmask data: error: {url}/dataset/piqa/test.json (for {home}/piqa/test.json)")
    assert message in err and len(err.splitlines()) == 1
    assert (home / "boolq" / "test.json").exists() and not (home / "piqa").exists()
    assert not list(home.rglob("*.part"))


def test_missing_remote_file_and_no_server_exit_2(server, home, tmp_path, capsys):
    url, root, _ = server
    manifest = write_manifest(tmp_path / "m.json", stand_in(root / "repo"))
    (root / "repo" / "dataset" / "winogrande" / "test.json").unlink()
    assert main(["data", "--base-url", url, "--manifest", manifest]) == 2
    assert "dataset/winogrande/test.json: download failed (HTTP 404" in capsys.readouterr().err
    assert main(["data", "--base-url", "http://127.0.0.1:9", "--manifest", manifest, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "http://127.0.0.1:9/dataset/boolq/test.json: cannot download" in err and "--from PATH" in err


@pytest.mark.parametrize("layout", ["remote", "output"])
def test_from_a_local_folder(home, tmp_path, capsys, layout):
    src = tmp_path / "copy"
    manifest = write_manifest(tmp_path / "m.json", stand_in(src, layout))
    args = ["data", "--from", str(src), "--manifest", manifest, "--base-url", "http://127.0.0.1:9"]
    assert main(args) == 0
    assert capsys.readouterr().out.count("copied") == 9
    assert available_tasks(home) == list(COMMONSENSE_TASKS) and (home / MIXTURE).exists()
    sources = json.loads((home / "SOURCES.json").read_text())["files"]
    assert sources["boolq/test.json"]["source"].startswith(str(src.resolve()))
    before = snapshot(home)
    assert main(args) == 0 and snapshot(home) == before


def test_from_a_copy_without_mixture_takes_its_train_sets_and_names_what_is_missing(home, tmp_path, capsys):
    src = tmp_path / "copy"
    for task in ("boolq", "piqa"):
        (src / task).mkdir(parents=True)
        (src / task / "test.json").write_text(json.dumps(records(task, 3)))
    (src / "boolq" / "train.json").write_text(json.dumps(records("boolq", 4)))
    manifest = write_manifest(tmp_path / "m.json", {"boolq/test.json": [3], "piqa/test.json": [3],
                                                    "boolq/train.json": [4]})
    assert main(["data", "--from", str(src), "--manifest", manifest, "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert f"not in {src}: social_i_qa/test.json" in out and "hellaswag/test.json" in out
    assert "commonsense_170k.json (its per-task train sets taken instead)" in out
    assert f"pass --data-dir {tmp_path / 'o'}" in out
    assert sorted(p.relative_to(tmp_path / "o").as_posix() for p in (tmp_path / "o").rglob("*.json")) == [
        "SOURCES.json", "boolq/test.json", "boolq/train.json", "piqa/test.json"]


def test_from_refuses_a_corrupt_file_and_an_empty_folder(home, tmp_path, capsys):
    src = tmp_path / "copy"
    manifest = write_manifest(tmp_path / "m.json", stand_in(src, "output"))
    (src / "openbookqa" / "test.json").write_text('[{"instruction": "q"')
    assert main(["data", "--from", str(src), "--manifest", manifest]) == 2
    assert f"error: {src}/openbookqa/test.json: not valid JSON" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["data", "--from", str(tmp_path / "empty"), "--manifest", manifest]) == 2
    assert "no test set found" in capsys.readouterr().err


def test_a_bad_file_already_there_is_replaced(home, tmp_path, capsys):
    src = tmp_path / "copy"
    manifest = write_manifest(tmp_path / "m.json", stand_in(src, "output"))
    (home / "boolq").mkdir(parents=True)
    (home / "boolq" / "test.json").write_text("[]")
    assert main(["data", "--from", str(src), "--manifest", manifest, "--tasks", "boolq", "--no-mixture"]) == 0
    out = capsys.readouterr().out
    assert f"replacing {home}/boolq/test.json: {home}/boolq/test.json: 0 records, expected 2" in out
    assert (home / "boolq" / "test.json").read_bytes() == (src / "boolq" / "test.json").read_bytes()
    assert available_tasks(home) == ["boolq"]


def test_bad_manifest_and_task_are_refused(home, tmp_path, capsys):
    (tmp_path / "m.json").write_text('{"boolq/test.json": "many"}')
    assert main(["data", "--manifest", str(tmp_path / "m.json")]) == 2
    assert "m.json: 'boolq/test.json' must map to a positive record count" in capsys.readouterr().err
    assert main(["data", "--tasks", "boolq,nope", "--from", str(tmp_path)]) == 2
    assert "unknown task 'nope'" in capsys.readouterr().err


def test_default_location_order(home, tmp_path, monkeypatch):
    assert default_data_dir() == home  # nothing anywhere: where segmask data writes
    shared = tmp_path / "shared"
    stand_in(shared, "output")
    monkeypatch.setattr(tasks, "SHARED_DATA", shared)
    assert default_data_dir() == shared  # this machine's copy while the cache is empty
    stand_in(home, "output")
    assert default_data_dir() == home
    monkeypatch.setenv("SEGMASK_DATA", str(tmp_path / "mine"))
    assert default_data_dir() == tmp_path / "mine" == tasks.data_home()


def test_eval_without_data_says_to_run_segmask_data(home, capsys):
    assert main(["eval", "--limit", "1"]) == 2
    err = capsys.readouterr().err
    assert f"no task data found under {home}" in err and "run `segmask data`" in err
    with pytest.raises(ValueError, match="run `segmask data`"):
        load_records(TASKS["piqa"], home)
    with pytest.raises(ValueError, match="segmask synth"):
        load_records(TASKS["reading"], home)


def test_expected_counts_match_this_machines_copy():
    """The built-in table against ../shared/data/commonsense (even-indexed halves of the test sets, full train
    sets), record by record counted."""
    if not (tasks.SHARED_DATA / "boolq").exists():
        pytest.skip(f"no copy of the data at {tasks.SHARED_DATA}")
    files = sorted(tasks.SHARED_DATA.glob("*/*.json"))
    assert len(files) >= 8
    for path in files:
        rel = path.relative_to(tasks.SHARED_DATA).as_posix()
        entry = data_fetch.Entry(rel, "", path.parent.name)
        n = data_fetch.verify(path.read_bytes(), str(path), entry, data_fetch.EXPECTED)
        assert n == len(json.loads(path.read_text())), rel
        assert n == data_fetch.EXPECTED[rel][-1], rel  # the half (test) or the full set (train) this copy holds
