"""Benchmark tasks: answer extraction on tricky generations, offered choices, seeded subsets, data loading.
CPU only, no network; the data test skips when there is no commonsense data (``segmask data`` gets it)."""

from __future__ import annotations

import json

import pytest

from segmask.eval.tasks import TASKS, Task, available_tasks, get_task, load_records, resolve_tasks, sample_indices


@pytest.mark.parametrize(
    "task, text, expected",
    [
        ("ARC-Easy", "the correct answer is answer2.", "answer2"),
        ("piqa", "Answer: solution1 because the other one burns", "solution1"),
        ("piqa", "SOLUTION2", "solution2"),
        ("boolq", "True. It is.", "true"),
        ("boolq", "the correct answer is False", "false"),
        ("social_i_qa", "answer3 or maybe answer1", "answer3"),  # several labels: the first one written
        ("social_i_qa", "I think answer1, not answer3", "answer1"),
        ("winogrande", "The blank is Sarah.", None),  # no label at all
        ("boolq", "falsely accused, untrue", None),  # labels must be whole words
        ("ARC-Challenge", "answer12 is not a label; answer4 is", "answer4"),
        ("openbookqa", "the correct answer is answer", None),
        ("winogrande", "the correct answer is option2<|im_end|>", "option2"),
        ("hellaswag", "\n\nending3\n", "ending3"),
        ("boolq", "", None),
    ],
)
def test_extract(task, text, expected):
    assert TASKS[task].extract(text) == expected


def test_extract_returns_first_by_position_not_by_label_order():
    # "answer1" is listed first among the labels, but "answer2" comes first in the text.
    assert TASKS["ARC-Easy"].extract("answer2 answer1") == "answer2"


def test_choices_follow_the_answer_format_line():
    arc = TASKS["ARC-Challenge"]
    three = {"instruction": "Q?\n\nAnswer1: a Answer2: b Answer3: c\n\nAnswer format: answer1/answer2/answer3"}
    five = {"instruction": "Q?\n\nAnswer format: answer1/answer2/answer3/answer4/answer5"}
    assert arc.choices(three) == ("answer1", "answer2", "answer3")
    assert arc.choices(five) == arc.labels
    assert arc.choices({"instruction": "no format line"}) == arc.labels
    wino = {"instruction": "Sarah or Maria _ ?\n\nOption1: Sarah Option2: Maria Answer format: option1/option2"}
    assert TASKS["winogrande"].choices(wino) == ("option1", "option2")
    with pytest.raises(ValueError, match="unknown labels"):
        TASKS["boolq"].choices({"instruction": "x\n\nAnswer format: yes/no"})


def test_task_validation_and_lookup():
    with pytest.raises(ValueError, match="labels"):
        Task("bad", "bad", ("Yes", "No"))
    assert get_task("arc-easy") is TASKS["ARC-Easy"]
    with pytest.raises(ValueError, match="unknown task 'mmlu'"):
        get_task("mmlu")


def test_sample_indices_fixed_sorted_and_independent_of_other_runs():
    first = sample_indices(1000, 10, 0, "piqa")
    assert first == sample_indices(1000, 10, 0, "piqa")
    assert first == sorted(first) and len(set(first)) == 10
    assert first != sample_indices(1000, 10, 1, "piqa")
    assert first != sample_indices(1000, 10, 0, "boolq")
    assert sample_indices(5, 10, 0, "piqa") == [0, 1, 2, 3, 4]
    assert sample_indices(5, None, 0, "piqa") == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="limit"):
        sample_indices(5, 0, 0, "piqa")


def test_load_records_from_a_folder(tmp_path):
    rows = [{"instruction": f"q{i}\n\nAnswer format: true/false", "input": "", "output": "x", "answer": a}
            for i, a in enumerate(["true", "False", "true", "false"])]
    (tmp_path / "boolq").mkdir()
    (tmp_path / "boolq" / "test.json").write_text(json.dumps(rows))
    records = load_records(TASKS["boolq"], tmp_path, limit=2, seed=3)
    assert [r["index"] for r in records] == sample_indices(4, 2, 3, "boolq")
    assert all(r["answer"] in ("true", "false") for r in records)
    assert available_tasks(tmp_path) == ["boolq"]
    assert [t.name for t in resolve_tasks(None, tmp_path)] == ["boolq"]
    assert [t.name for t in resolve_tasks("boolq, piqa", tmp_path)] == ["boolq", "piqa"]
    with pytest.raises(ValueError, match="not found"):
        load_records(TASKS["piqa"], tmp_path)
    rows[1]["answer"] = "maybe"
    (tmp_path / "boolq" / "test.json").write_text(json.dumps(rows))
    with pytest.raises(ValueError, match="record 1: answer 'maybe'"):
        load_records(TASKS["boolq"], tmp_path)


def test_real_data_labels_and_choices(data_dir):
    for name in available_tasks(data_dir):
        task = TASKS[name]
        for record in load_records(task, data_dir):
            offered = task.choices(record)
            assert record["answer"] in offered, (name, record["index"])
            assert task.extract(record["output"]) == record["answer"]
