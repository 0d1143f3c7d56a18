"""Synthetic prompt-order tasks (``segmask synth``): determinism per seed, answers checked against an independent
solver of each task's text, every layout, and the files ``segmask train``/``eval`` read. CPU only, no model."""

from __future__ import annotations

import json
import re

import pytest

from segmask.cli import main
from segmask.core.questions import LAYOUTS, parse_question, rewrite_record
from segmask.eval.synth import GENERATORS, draw
from segmask.eval.tasks import get_task, load_records


def solve(record: dict) -> str:
    """The right option text, worked out from the rendered context and question alone."""
    context, question = record["context"], record["question"]
    if record["task"] in ("reading", "lookup"):
        name, obj = re.fullmatch(r"What color is (\w+)'s (\w+)\?", question).groups()
        (color,) = re.findall(rf"\b{name} has an? (\w+) {obj}\.", context)
        return color
    items = context.removeprefix("List: ").removesuffix(".").split(", ")
    if record["task"] == "name_index":
        ordinal = re.fullmatch(r"What is the (\w+) name in the list\?", question).group(1)
        from segmask.eval.synth import ORDINALS
        return items[ORDINALS.index(ordinal)]
    a, b = re.fullmatch(r"Which name comes right between (\w+) and (\w+) in the list\?", question).groups()
    i = items.index(a)
    assert items[i + 2] == b
    return items[i + 1]


@pytest.mark.parametrize("task", sorted(GENERATORS))
def test_answers_are_right_and_draws_repeat_per_seed(task):
    records = draw(task, 200, seed=3)
    assert records == draw(task, 200, seed=3)
    assert records != draw(task, 200, seed=4)
    for r in records:
        q = parse_question(r)
        assert q.options[q.index(r["answer"])] == solve(r), r["instruction"]
        assert len(set(q.options)) == 4
        if task in ("reading", "lookup"):  # every option colour occurs in the facts: copying is no shortcut
            assert all(f" {o} " in r["context"] for o in q.options)
    counts = {f"answer{i}": sum(r["answer"] == f"answer{i}" for r in records) for i in range(1, 5)}
    assert min(counts.values()) > 30, counts  # the answer position is uniform


@pytest.mark.parametrize("task", sorted(GENERATORS))
def test_every_layout_holds_the_same_parts(task):
    r = draw(task, 1, seed=0, length=6)[0]
    for layout in LAYOUTS[1:]:
        text = rewrite_record(r, layout=layout)["instruction"]
        want = [p for p in layout]
        where = {"c": text.find(r["context"]), "q": text.find(r["question"]), "o": text.find("Answer1: ")}
        assert [k for k in sorted(want, key=lambda k: where[k])] == list(layout), (layout, text)
        assert text.endswith("Answer format: answer1/answer2/answer3/answer4")


def test_lengths_are_checked():
    with pytest.raises(ValueError, match="length"):
        draw("reading", 3, seed=0, length=2)
    with pytest.raises(ValueError, match="unknown synthetic task"):
        draw("sudoku", 3, seed=0)


def test_cli_writes_files_eval_and_train_read(tmp_path):
    assert main(["synth", "reading", "middle_match", "--n", "30", "--test-n", "10", "--seed", "5", "--length", "6",
                 "--out", str(tmp_path)]) == 0
    for task in ("reading", "middle_match"):
        train = json.loads((tmp_path / task / "train.json").read_text())
        test = load_records(get_task(task), tmp_path)
        assert len(train) == 30 and len(test) == 10
        assert not {r["instruction"] for r in train} & {r["instruction"] for r in test}
        assert all(r["length"] == 6 for r in train)
