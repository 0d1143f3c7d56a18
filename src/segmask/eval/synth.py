"""Synthetic multiple-choice tasks whose hard part comes late in the prompt, drawn from a seed (no network).

Each task writes LLM-Adapters records (``instruction``, ``input``, ``output``, ``answer``) that also keep their
structure, so every layout of ``questions.LAYOUTS`` can be rendered from them: ``context`` (the facts or the
list), ``question`` and ``options`` (4 option texts; the answer is ``answer1``..``answer4``, uniform over the
positions). The written ``instruction`` uses the layout ``cqo`` (context, question, options).

    lookup        facts "NAME has a COLOR OBJECT." with distinct names; "What color is NAME's OBJECT?"; every
                  option colour occurs in the facts (one key: the name)
    reading       the same facts, but the asked name and object each occur in other facts (both keys matter)
    name_index    a list of names; "What is the k-th name in the list?"; options: the answer, its neighbours
    middle_match  a list of names; "Which name comes right between X and Y?"; options include X or Y

    >>> records = draw("reading", 100, seed=0, length=8)
    >>> write_task("name_index", "data/synth", n_train=2000, n_test=500, seed=0)   # data/synth/name_index/*.json

``length`` is the number of facts or list items. Train and test are drawn from separate streams of the seed and no
test instruction occurs in train. ``segmask synth`` is the command line.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..core.questions import STRUCTURED_INTRO, structured_instruction
from ..core.templates import ANSWER_LEAD

N_OPTIONS = 4
NAMES = ("Alice", "Bob", "Carol", "David", "Emma", "Frank", "Grace", "Henry", "Irene", "Jack", "Karen", "Liam",
         "Maria", "Nora", "Oscar", "Paul", "Rita", "Sam", "Tina", "Victor", "Wendy", "Yusuf", "Zoe", "Omar",
         "Lucy", "Ivan", "Hugo", "Clara", "Ben", "Ella")
OBJECTS = ("hat", "car", "cup", "bike", "coat", "lamp", "box", "pen", "bag", "kite", "ball", "boat", "chair",
           "shirt", "phone")
COLORS = ("red", "blue", "green", "yellow", "black", "white", "pink", "brown", "orange", "purple", "gray", "gold")
ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth",
            "eleventh", "twelfth", "thirteenth", "fourteenth", "fifteenth", "sixteenth", "seventeenth", "eighteenth",
            "nineteenth", "twentieth")
DEFAULT_LENGTH = {"lookup": 5, "reading": 8, "name_index": 10, "middle_match": 10}


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _options(rng: random.Random, answer: str, distractors: list[str]) -> tuple[list[str], str]:
    """``N_OPTIONS`` distinct option texts (the answer and the first distinct distractors), shuffled; the label."""
    chosen = [answer]
    for d in distractors:
        if d not in chosen:
            chosen.append(d)
        if len(chosen) == N_OPTIONS:
            break
    if len(chosen) < N_OPTIONS:
        raise ValueError(f"not enough distinct distractors for {answer!r}: {distractors}")
    rng.shuffle(chosen)
    return chosen, f"answer{chosen.index(answer) + 1}"


def reading(rng: random.Random, length: int) -> dict[str, Any]:
    """Facts about who has which coloured object, and a question that needs both the name and the object."""
    if not 4 <= length <= 20:
        raise ValueError(f"reading: length (facts) must be 4..20, got {length}")
    names, objects = rng.sample(NAMES, max(2, length // 2)), rng.sample(OBJECTS, max(2, length // 2))
    name, obj = names[0], objects[0]
    pairs = [(name, obj), (name, rng.choice(objects[1:])), (rng.choice(names[1:]), obj)]
    while len(pairs) < length:
        pair = (rng.choice(names), rng.choice(objects))
        if pair not in pairs:
            pairs.append(pair)
    colors = rng.sample(COLORS, length) if length <= len(COLORS) else [rng.choice(COLORS) for _ in range(length)]
    facts = list(zip(pairs, colors))
    answer = colors[0]
    near = [c for (p, c) in facts[1:3]]                      # the facts sharing the name or the object
    others = [c for (p, c) in facts[3:]]
    rng.shuffle(others)
    options, label = _options(rng, answer, near + others)
    rng.shuffle(facts)
    context = "Facts: " + " ".join(f"{n} has {article(c)} {c} {o}." for (n, o), c in facts)
    return {"context": context, "question": f"What color is {name}'s {obj}?", "options": options, "answer": label}


def lookup(rng: random.Random, length: int) -> dict[str, Any]:
    """Facts about who has which coloured object, one fact per name, and the colour of one name's object."""
    if not 4 <= length <= len(COLORS):
        raise ValueError(f"lookup: length (facts) must be 4..{len(COLORS)}, got {length}")
    names, colors = rng.sample(NAMES, length), rng.sample(COLORS, length)
    objects = [rng.choice(OBJECTS) for _ in range(length)]
    k = rng.randrange(length)
    others = [c for i, c in enumerate(colors) if i != k]
    rng.shuffle(others)
    options, label = _options(rng, colors[k], others)
    context = "Facts: " + " ".join(f"{n} has {article(c)} {c} {o}." for n, c, o in zip(names, colors, objects))
    return {"context": context, "question": f"What color is {names[k]}'s {objects[k]}?", "options": options,
            "answer": label}


def name_index(rng: random.Random, length: int) -> dict[str, Any]:
    """A list of names and the name at a given position."""
    if not 4 <= length <= len(ORDINALS):
        raise ValueError(f"name_index: length (list items) must be 4..{len(ORDINALS)}, got {length}")
    items = rng.sample(NAMES, length)
    k = rng.randrange(length)
    near = [items[j] for j in (k - 1, k + 1) if 0 <= j < length]
    rest = [x for j, x in enumerate(items) if abs(j - k) > 1]
    rng.shuffle(rest)
    options, label = _options(rng, items[k], near + rest)
    return {"context": "List: " + ", ".join(items) + ".", "question": f"What is the {ORDINALS[k]} name in the list?",
            "options": options, "answer": label}


def middle_match(rng: random.Random, length: int) -> dict[str, Any]:
    """A list of names and the one that stands right between two given names."""
    if not 5 <= length <= len(NAMES):
        raise ValueError(f"middle_match: length (list items) must be 5..{len(NAMES)}, got {length}")
    items = rng.sample(NAMES, length)
    i = rng.randrange(1, length - 1)
    before, after = items[i - 1], items[i + 1]
    rest = [x for j, x in enumerate(items) if abs(j - i) > 1]
    rng.shuffle(rest)
    options, label = _options(rng, items[i], [rng.choice([before, after])] + rest)
    return {"context": "List: " + ", ".join(items) + ".",
            "question": f"Which name comes right between {before} and {after} in the list?",
            "options": options, "answer": label}


GENERATORS: dict[str, Callable[[random.Random, int], dict[str, Any]]] = {
    "lookup": lookup, "reading": reading, "name_index": name_index, "middle_match": middle_match}
"""Task name -> generator of one instance (``rng``, ``length``)."""


def make_record(task: str, item: dict[str, Any], length: int) -> dict[str, Any]:
    """An instance as an LLM-Adapters record in layout ``cqo``, keeping its parts for other layouts."""
    instruction = structured_instruction(item["context"], item["question"], item["options"], "cqo")
    return {"instruction": instruction, "input": "", "output": f"{ANSWER_LEAD} {item['answer']}",
            "answer": item["answer"], "context": item["context"], "question": item["question"],
            "options": item["options"], "intro": STRUCTURED_INTRO, "task": task, "length": length}


def draw(task: str, n: int, *, seed: int, length: int | None = None, split: str = "train",
         exclude: set[str] = frozenset()) -> list[dict[str, Any]]:
    """``n`` distinct records of ``task`` from the stream ``(seed, task, split)``, none whose instruction is in
    ``exclude``."""
    if task not in GENERATORS:
        raise ValueError(f"unknown synthetic task {task!r}; known: {', '.join(GENERATORS)}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    length = DEFAULT_LENGTH[task] if length is None else length
    rng = random.Random(f"{seed}:{task}:{split}")
    records, seen = [], set(exclude)
    for _ in range(50 * n):
        record = make_record(task, GENERATORS[task](rng, length), length)
        if record["instruction"] not in seen:
            seen.add(record["instruction"])
            records.append(record)
            if len(records) == n:
                return records
    raise ValueError(f"{task}: could not draw {n} distinct instances of length {length}")


def write_task(task: str, out: str | Path, *, n_train: int, n_test: int, seed: int,
               length: int | None = None) -> Path:
    """Write ``out/task/train.json`` and ``test.json`` (no test instruction in train); returns the task folder."""
    train = draw(task, n_train, seed=seed, length=length, split="train")
    test = draw(task, n_test, seed=seed, length=length, split="test", exclude={r["instruction"] for r in train})
    folder = Path(out) / task
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train", train), ("test", test)):
        (folder / f"{name}.json").write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    return folder
