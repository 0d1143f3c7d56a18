"""Training data: row loading and mixing, answer-only labels, the no-cut cutoff rule, the right-padding collator.

CPU only, no network: the SmolLM2 tokenizer is the cached embedded one; no model is run here.
"""

from __future__ import annotations

import json
import random

import pytest
import torch

from segmask.core.masks import CAUSAL
from segmask.core.records import load_records, record_messages
from segmask.core.segments import IGNORE_INDEX, Example
from segmask.core.templates import COMMONSENSE_SYSTEM, RESPONSE
from segmask.train.data import (
    SegmentCollator,
    encode_record,
    fit_cutoff,
    mix,
    prepare,
)

RECORD = {"instruction": "Please answer the following question with true or false, question: is the sky blue?"
                         "\n\nAnswer format: true/false", "input": "", "output": "the correct answer is true",
          "answer": "true"}


def labelled_text(tok, example: Example) -> str:
    return tok.decode([t for t, lab in zip(example.input_ids, example.labels) if lab != IGNORE_INDEX])


def test_load_records_json_jsonl_and_folder(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "train.json").write_text(json.dumps([RECORD, RECORD]))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "train.json").write_text(json.dumps([RECORD]))
    chats = tmp_path / "chats.jsonl"
    chats.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n\n")
    assert len(load_records(tmp_path)) == 3  # train.json files only
    rows = load_records(chats)
    assert rows[0]["messages"][0]["content"] == "hi" and rows[0]["_source"] == str(chats)
    (tmp_path / "bad.jsonl").write_text("{not json}\n")
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        load_records(tmp_path / "bad.jsonl")
    with pytest.raises(ValueError, match="no such file"):
        load_records(tmp_path / "missing.json")


@pytest.mark.parametrize("name, content, message", [
    ("a.json", b"this is not JSON", r"a.json: not valid JSON \(Expecting value at line 1 column 1\)"),
    ("a.json", b"[]", "a.json: holds no records"),
    ("a.jsonl", b"\n\n", "a.jsonl: holds no records"),
    ("a.json", b"[" * 100_000 + b"]" * 100_000, "a.json: not valid JSON"),
    ("a.json", b"\xff\xfe not utf-8", r"a.json: cannot read \(UnicodeDecodeError"),
    ("a.json", b"[1]", "a.json: row 0 is not a JSON object"),
    ("a.jsonl", b'{"ok": 1}\n[', r"a.jsonl:2: not valid JSON"),
])
def test_load_records_names_the_file_and_the_problem(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        load_records(path)


def test_mix_is_a_seeded_shuffle_of_all_rows():
    a, b = [{"i": i} for i in range(10)], [{"i": i} for i in range(10, 15)]
    mixed = mix([a, b], seed=3)
    expected = a + b
    random.Random(3).shuffle(expected)
    assert mixed == expected
    assert mix([a, b], seed=3, limit=4) == expected[:4]
    assert mix([a, b], seed=4) != mixed


def test_commonsense_labels_cover_only_the_answer(tok):
    ex = encode_record(tok, RECORD, form="commonsense")
    assert labelled_text(tok, ex) == RECORD["output"] + tok.eos_token
    # segments: system sentence = 0, instruction = 1, "### Response:\n" + answer causal
    def text_of(seg):
        return tok.decode([t for t, s in zip(ex.input_ids, ex.segment_ids) if s == seg])
    assert text_of(0) == COMMONSENSE_SYSTEM
    assert text_of(1).startswith("### Instruction:\n") and "is the sky blue?" in text_of(1)
    assert text_of(CAUSAL) == RESPONSE + RECORD["output"] + tok.eos_token
    assert all(s == CAUSAL for s, lab in zip(ex.segment_ids, ex.labels) if lab != IGNORE_INDEX)


def test_chat_form_and_chat_rows(tok):
    ex = encode_record(tok, RECORD, form="chat", system="Answer briefly.")
    assert labelled_text(tok, ex).startswith(RECORD["output"])
    assert RECORD["output"] not in tok.decode([t for t, s in zip(ex.input_ids, ex.segment_ids) if s != CAUSAL])
    assert max(ex.segment_ids) == 1  # system + user segments
    messages = record_messages(RECORD, "Answer briefly.", answer=True)
    row = {"messages": messages}
    assert encode_record(tok, row).input_ids == ex.input_ids  # chat rows ignore the form: same rendering
    with pytest.raises(ValueError, match="sample 7"):
        encode_record(tok, {"messages": messages[:-1]}, index=7)
    with pytest.raises(ValueError, match="sample 2 .*no output"):
        encode_record(tok, {"instruction": "x", "input": ""}, index=2)


def _segment_token_counts(example: Example) -> dict[int, int]:
    counts: dict[int, int] = {}
    for s in example.segment_ids:
        if s != CAUSAL:
            counts[s] = counts.get(s, 0) + 1
    return counts


def test_cutoff_never_cuts_a_segment(tok):
    ex = encode_record(tok, RECORD)
    first_answer = ex.labels.index(next(lab for lab in ex.labels if lab != IGNORE_INDEX))
    last_segment = max(i for i, s in enumerate(ex.segment_ids) if s != CAUSAL)
    for cutoff in range(1, len(ex) + 3):
        out = fit_cutoff(ex, cutoff)
        if cutoff >= len(ex):
            assert out is ex
        elif cutoff <= first_answer:
            assert out is None, cutoff  # no answer token would survive, or a segment would be cut
        else:
            assert out is not None and len(out) == cutoff
            assert _segment_token_counts(out) == _segment_token_counts(ex)
            assert out.input_ids == ex.input_ids[:cutoff] and out.labels == ex.labels[:cutoff]
            assert out.meta["truncated_from"] == len(ex)
        assert cutoff > last_segment or out is None


def test_prepare_counts_dropped_and_truncated(tok):
    long_record = dict(RECORD, instruction="word " * 300)
    long_answer = dict(RECORD, output="the correct answer is true " + "because " * 300)
    examples, stats = prepare(tok, [RECORD, long_record, long_answer], cutoff=128)
    assert (stats.rows, stats.kept, stats.dropped, stats.truncated) == (3, 2, 1, 1)
    assert all(len(e) <= 128 for e in examples)
    assert stats.answer_tokens == sum(lab != IGNORE_INDEX for e in examples for lab in e.labels)
    with pytest.raises(ValueError, match="no example fits"):
        prepare(tok, [long_record], cutoff=128)


def test_collator_right_pads_and_keeps_segments_aligned(tok):
    records = [RECORD, dict(RECORD, instruction="A much longer question about many things? " * 3),
               dict(RECORD, input="some context")]
    examples = [encode_record(tok, r) for r in records]
    rows = [{"input_ids": e.input_ids, "segment_ids": e.segment_ids, "labels": e.labels} for e in examples]
    batch = SegmentCollator(tok.pad_token_id)(rows)
    width = max(map(len, examples))
    assert batch["input_ids"].shape == (3, width)
    for b, ex in enumerate(examples):
        n, pad = len(ex), width - len(ex)
        assert batch["input_ids"][b].tolist() == ex.input_ids + [tok.pad_token_id] * pad
        assert batch["segment_ids"][b].tolist() == ex.segment_ids + [CAUSAL] * pad
        assert batch["labels"][b].tolist() == ex.labels + [IGNORE_INDEX] * pad
        assert batch["attention_mask"][b].tolist() == [1] * n + [0] * pad
    causal = SegmentCollator(tok.pad_token_id, with_segments=False)(rows)
    assert "segment_ids" not in causal
    assert all(torch.equal(causal[k], batch[k]) for k in causal)
    longest = max(range(3), key=lambda i: len(examples[i]))
    with pytest.raises(ValueError, match=f"sample {longest} has {len(examples[longest])} tokens"):
        SegmentCollator(tok.pad_token_id, max_length=width - 1)(rows)


def test_real_train_sets_encode_within_the_cutoff(tok, data_dir):
    rows = mix([load_records(p) for p in sorted(data_dir.glob("*/train.json"))], seed=0, limit=200)
    examples, stats = prepare(tok, rows, cutoff=256)
    assert stats.kept + stats.dropped == 200 and stats.kept >= 190
    assert all(labelled_text(tok, e).startswith("the correct answer is") for e in examples)


ARC_RECORD = {"instruction": "Please choose the correct answer to the question: Where do fish live?\n\nAnswer1: in "
                             "trees Answer2: in water\n\nAnswer format: answer1/answer2", "input": "",
              "output": "the correct answer is answer2", "answer": "answer2"}


def test_answer_form_text_and_options_before(tok):
    ex = encode_record(tok, ARC_RECORD, answer_form="text", layout="before")
    assert labelled_text(tok, ex) == "the correct answer is in water" + tok.eos_token
    instruction = tok.decode([t for t, s in zip(ex.input_ids, ex.segment_ids) if s == 1])
    assert instruction == ("### Instruction:\nAnswer1: in trees Answer2: in water\n\nPlease choose the correct answer "
                           "to the question: Where do fish live?\n\nAnswer format: answer1/answer2\n\n")
    default = encode_record(tok, ARC_RECORD)
    assert labelled_text(tok, default) == "the correct answer is answer2" + tok.eos_token
    chat = encode_record(tok, ARC_RECORD, form="chat", answer_form="text")
    assert labelled_text(tok, chat).startswith("the correct answer is in water")
    examples, _ = prepare(tok, [ARC_RECORD], answer_form="text")
    assert examples[0].input_ids == encode_record(tok, ARC_RECORD, answer_form="text").input_ids
    messages = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "answer1"}]}
    assert labelled_text(tok, encode_record(tok, messages, answer_form="text")).startswith("answer1")  # as it is
    with pytest.raises(ValueError, match="sample 3 .*not a commonsense multiple-choice layout"):
        encode_record(tok, {"instruction": "Add 2 and 3.", "output": "5"}, answer_form="text", index=3)
    with pytest.raises(ValueError, match="answer_form must be one of"):
        encode_record(tok, ARC_RECORD, answer_form="letter")


def test_causal_repeat_training_rows_and_layout_mixes(tok):
    """``--mask causal-repeat`` trains on the question part twice (all causal), the answer once after the second copy,
    the same tokens eval's causal-repeat prompt gives; a layout mix gives row i layout i mod n."""
    from segmask.eval.prompts import prompt_example

    rep = encode_record(tok, ARC_RECORD, mask="causal-repeat")
    plain = encode_record(tok, ARC_RECORD)
    assert set(rep.segment_ids) == {CAUSAL}
    assert labelled_text(tok, rep) == labelled_text(tok, plain)
    prompt = prompt_example(tok, ARC_RECORD, mask="causal-repeat")
    assert rep.input_ids[:len(prompt)] == prompt.input_ids
    body = "### Instruction:\n" + ARC_RECORD["instruction"]
    assert tok.decode(rep.input_ids).count(body) == 2
    with pytest.raises(ValueError, match="causal-repeat .* commonsense prompt form only"):
        encode_record(tok, ARC_RECORD, form="chat", mask="causal-repeat")
    examples, _ = prepare(tok, [ARC_RECORD] * 4, layout="qo,oq")
    first = [tok.decode(e.input_ids).index("Answer1:") < tok.decode(e.input_ids).index("Where do fish") for e in
             examples]
    assert first == [False, True, False, True]
    with pytest.raises(ValueError, match="layout must be one of"):
        prepare(tok, [ARC_RECORD], layout="qo,xyz")
