"""Parsing LLM-Adapters records into question and option texts, options moved before the question, answers written
by content. Golden strings written by hand; every record of every task when the data folder exists.
CPU only, no network, no model."""

from __future__ import annotations

import json

import pytest

from segmask.core.questions import parse_question, rewrite_record
from segmask.core.records import answer_label
from segmask.eval.tasks import TASKS, available_tasks

ARC = ("Please choose the correct answer to the question: Which factor will most likely cause a fever?\n\n"
       "Answer1: a leg muscle relaxing Answer2: a bacterial population in the bloodstream Answer3: rain\n\n"
       "Answer format: answer1/answer2/answer3")
PIQA = ("Please choose the correct solution to the question: How do I dry a cup?\n\nSolution1: Use a towel. \n\n"
        "Solution2: Use a  hammer.\n\nAnswer format: solution1/solution2")
BOOLQ = "Please answer the following question with true or false, question: is ice cold?\n\nAnswer format: true/false"
WINO = ("Please choose the correct answer to fill in the blank to complete the given sentence: Sarah was a much better "
        "surgeon than Maria so _ always got the easier cases.\n\nOption1: Sarah Option2: Maria Answer format: "
        "option1/option2")


def rec(instruction: str, answer: str) -> dict:
    return {"instruction": instruction, "input": "", "output": f"the correct answer is {answer}", "answer": answer}


def test_parse_each_layout():
    q = parse_question(rec(ARC, "answer2"))
    assert q.intro == "Please choose the correct answer to the question: "
    assert q.question == "Which factor will most likely cause a fever?"
    assert q.labels == ("answer1", "answer2", "answer3")
    assert q.options == ("a leg muscle relaxing", "a bacterial population in the bloodstream", "rain")
    assert not q.blank
    q = parse_question(rec(PIQA, "solution1"))
    assert q.question == "How do I dry a cup?"
    assert q.options == ("Use a towel.", "Use a  hammer.")  # inner whitespace kept, outer stripped
    q = parse_question(rec(BOOLQ, "true"))
    assert (q.question, q.labels, q.options) == ("is ice cold?", ("true", "false"), ("true", "false"))
    q = parse_question(rec(WINO, "option2"))
    assert q.blank and q.options == ("Sarah", "Maria")
    assert q.split_blank() == ("Sarah was a much better surgeon than Maria so ", " always got the easier cases.")


@pytest.mark.parametrize("instruction", [ARC, PIQA, BOOLQ, WINO])
def test_after_gives_back_the_original_text(instruction):
    assert parse_question(rec(instruction, "x")).instruction("after") == instruction


def test_before_moves_the_options_block_in_front():
    assert parse_question(rec(ARC, "answer2")).instruction("before") == (
        "Answer1: a leg muscle relaxing Answer2: a bacterial population in the bloodstream Answer3: rain\n\n"
        "Please choose the correct answer to the question: Which factor will most likely cause a fever?\n\n"
        "Answer format: answer1/answer2/answer3")
    assert parse_question(rec(WINO, "option2")).instruction("before") == (
        "Option1: Sarah Option2: Maria\n\nPlease choose the correct answer to fill in the blank to complete the "
        "given sentence: Sarah was a much better surgeon than Maria so _ always got the easier cases.\n\n"
        "Answer format: option1/option2")
    assert parse_question(rec(BOOLQ, "true")).instruction("before") == BOOLQ  # no options block to move


def test_answer_by_content():
    assert parse_question(rec(ARC, "x")).answer_text("Answer2") == \
        "the correct answer is a bacterial population in the bloodstream"
    assert parse_question(rec(BOOLQ, "x")).answer_text("false") == "the correct answer is false"
    assert parse_question(rec(WINO, "x")).answer_text("option2") == \
        "Sarah was a much better surgeon than Maria so Maria always got the easier cases."
    out = rewrite_record(rec(PIQA, "solution2"), answer_form="text", layout="before")
    assert out["output"] == "the correct answer is Use a  hammer."
    assert out["instruction"].startswith("Solution1: Use a towel. \n\nSolution2: Use a  hammer.\n\nPlease choose")
    assert answer_label({"output": "the correct answer is Solution2"}) == "solution2"


def test_rewrite_defaults_leave_any_record_alone():
    odd = {"instruction": "Add 2 and 3.", "output": "5"}
    assert rewrite_record(odd) == odd and rewrite_record(odd) is not odd
    with pytest.raises(ValueError, match="not a commonsense multiple-choice layout"):
        rewrite_record({**odd, "index": 7}, layout="before")
    with pytest.raises(ValueError, match="answer_form must be one of"):
        rewrite_record(odd, answer_form="letters")
    with pytest.raises(ValueError, match="layout must be one of"):
        rewrite_record(odd, layout="middle")


def test_parse_errors_name_the_record():
    with pytest.raises(ValueError, match=r"record 3: options \['answer1', 'answer3'\] do not match"):
        parse_question({"index": 3, "instruction": ARC.replace("Answer2:", "Answer3:").replace(
            "Answer3: rain", "rain")})
    with pytest.raises(ValueError, match="exactly one '_'"):
        parse_question({"index": 4, "instruction": WINO.replace("so _", "so _ _")})
    with pytest.raises(ValueError, match="label 'answer9' is not one of"):
        parse_question(rec(ARC, "x")).answer_text("answer9")
    with pytest.raises(ValueError, match="no options are listed"):
        parse_question({"instruction": "Please pick: which?\n\nAnswer format: answer1/answer2"})


def test_every_record_of_every_task_parses(data_dir):
    """Round trip, labels = the answer format line, answer offered, every option and the question kept by 'before'."""
    files = sorted(p for p in data_dir.glob("*/*.json") if p.parent.name in TASKS)  # not commonsense_170k/
    assert {p.parent.name for p in files} >= set(available_tasks(data_dir))
    for path in files:
        task = TASKS[path.parent.name]
        for i, row in enumerate(json.loads(path.read_text(encoding="utf-8"))):
            where = (path.parent.name, path.stem, i)
            q = parse_question({**row, "index": i})
            assert q.instruction("after") == row["instruction"], where
            assert q.labels == task.choices(row) and answer_label(row) in q.labels, where
            assert len(q.options) == len(q.labels) and all(o == o.strip() and o for o in q.options), where
            before = q.instruction("before")
            assert before.count(q.question) >= 1 and all(o in before for o in q.options), where
            assert q.blank == (task.name == "winogrande"), where
            assert rewrite_record(row, answer_form="text")["output"] == q.answer_text(answer_label(row)), where


STRUCTURED = {"context": "Facts: Ann has a red cup. Bo has a blue cup.", "question": "What color is Ann's cup?",
              "options": ["blue", "red"], "answer": "answer2", "output": "the correct answer is answer2"}


def test_structured_records_render_every_layout():
    """Each layout is the named parts in its order, blank-line separated, the format line last (written by hand)."""
    c, q = STRUCTURED["context"], "Please choose the correct answer to the question: What color is Ann's cup?"
    o, f = "Answer1: blue Answer2: red", "Answer format: answer1/answer2"
    want = {"cqo": [c, q, o, f], "qoc": [q, o, c, f], "coq": [c, o, q, f], "ocq": [o, c, q, f], "oqc": [o, q, c, f],
            "qco": [q, c, o, f], "qo": [q, o, f], "oq": [o, q, f]}
    for layout, parts in want.items():
        assert rewrite_record(STRUCTURED, layout=layout)["instruction"] == "\n\n".join(parts), layout
    q2 = parse_question(STRUCTURED)
    assert q2.labels == ("answer1", "answer2") and q2.options == ("blue", "red") and q2.context == c
    # the rendered qo/oq text parses back as a commonsense record with the same options
    back = parse_question({"instruction": rewrite_record(STRUCTURED, layout="qo")["instruction"]})
    assert back.options == q2.options and back.question == q2.question
    assert rewrite_record(STRUCTURED, layout="qoc", answer_form="text")["output"] == "the correct answer is red"
    with pytest.raises(ValueError, match="'options' must be a list"):
        parse_question({**STRUCTURED, "options": ["only one"], "index": 5})


def test_context_layouts_on_commonsense_records():
    """A context layout moves the sentences before a question's last one (social_i_qa's situation); a one-sentence
    question has no context, so its ``c`` is left out."""
    siqa = rec("Please choose the correct answer to the question: Jan fed the cat. Why did Jan do this?\n\n"
               "Answer1: to be kind Answer2: to sleep Answer3: to run\n\nAnswer format: answer1/answer2/answer3",
               "answer1")
    assert rewrite_record(siqa, layout="qoc")["instruction"] == (
        "Please choose the correct answer to the question: Why did Jan do this?\n\n"
        "Answer1: to be kind Answer2: to sleep Answer3: to run\n\nJan fed the cat.\n\n"
        "Answer format: answer1/answer2/answer3")
    assert rewrite_record(rec(ARC, "answer2"), layout="qoc")["instruction"] == ARC
    assert rewrite_record(rec(ARC, "answer2"), layout="ocq")["instruction"] == \
        rewrite_record(rec(ARC, "answer2"), layout="oq")["instruction"]
    assert rewrite_record(rec(WINO, "option1"), layout="cqo")["instruction"] == WINO  # blanks keep their sentence
