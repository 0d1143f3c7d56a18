"""``segmask.core.records``: the one place that checks an LLM-Adapters record, reads its labels and builds its chat,
used by training, the benchmarks and the data fetcher alike. No model, CPU only."""

from __future__ import annotations

import re

import pytest

from segmask.core.records import check_record, offered_labels, record_messages

RECORD = {"instruction": "Is the sky blue?\n\nAnswer format: true/false", "input": "",
          "output": "the correct answer is true", "answer": " True"}


def test_check_record_names_the_record_and_the_problem():
    assert check_record(RECORD, "f.json record 0", ("true", "false")) == "true"
    assert check_record({"instruction": "x"}, "r") == ""  # no labels given: any answer
    for row, problem in [([], "expected a JSON object, got list"), ({"input": "x"}, "'instruction' must be a string"),
                         ({"instruction": "x", "input": 5}, "'input' must be a string"),
                         ({**RECORD, "answer": "maybe"}, "answer 'maybe' is not one of ('true', 'false')")]:
        with pytest.raises(ValueError, match="^" + re.escape(f"f.json record 3: {problem}")):
            check_record(row, "f.json record 3", ("true", "false"))
    with pytest.raises(ValueError, match="'output' must be a string"):  # the fetcher needs the answer text too
        check_record({"instruction": "x"}, "r", required=("instruction", "output"))


def test_offered_labels_read_the_format_line():
    assert offered_labels(RECORD) == ("true", "false")
    assert offered_labels({"instruction": "Q\n\nAnswer format: Answer1 / answer2/answer3 \n"}) == \
        ("answer1", "answer2", "answer3")
    assert offered_labels({"instruction": "no format line"}) is None and offered_labels({}) is None


def test_record_messages_for_prompts_and_for_training():
    prompt = record_messages({**RECORD, "input": "Context."}, "Be brief.")
    assert prompt == [{"role": "system", "content": "Be brief."},
                      {"role": "user", "content": RECORD["instruction"] + "\n\nContext."}]
    assert record_messages(RECORD, answer=True) == [*record_messages(RECORD),
                                                    {"role": "assistant", "content": RECORD["output"]}]
    with pytest.raises(ValueError, match="no output to train on"):
        record_messages({**RECORD, "output": ""}, answer=True)
    with pytest.raises(ValueError, match="no instruction"):
        record_messages({"instruction": 5})
