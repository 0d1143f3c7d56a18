"""A label-free chat prompt pool for MAS adaptation, shipped with the package (no network, no data files needed).

``prompt_pool(n, seed=..., split="train")`` returns ``n`` conversations (lists of ``{"role", "content"}`` messages
ending with a user turn), each tagged with a category, drawn from:

* ``facts``, ``howto``, ``explain``, ``creative``, ``advice``, ``rewrite``: request templates filled with seed topics,
  tasks, concepts and passages listed in ``prompt_words.json``;
* ``math``: arithmetic word problems made from templates with random numbers, plus the questions of
  ``<data>/prompts/math_questions.json`` when a data folder is given;
* ``commonsense``: the instructions of ``<data>/commonsense/*/train.json`` when a data folder is given;
* ``self_instruct``: filled in later by the teacher (``adapt`` asks the base model to write questions about topics).

Multi-turn conversations are built by ``adapt`` from a first answer of the teacher plus a follow-up of
``FOLLOW_UPS``. About half the conversations get a system message from ``SYSTEMS``; the rest have none (the chat
template may then inject its default system prompt, which ``encode_chat`` turns into a segment as well).

The split is by content: every topic, task, concept, passage and math question belongs to ``train`` or
``heldout`` by a stable hash (``HELDOUT_SHARE`` of them are held out), so a held-out prompt never shares its
filler with a training prompt. ``benchmarks/bench_adapt.py`` measures on ``split="heldout"``.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

from ..core.chat import conversation
from ..core.recipe import check_choice

_WORDS = json.loads(Path(__file__).with_name("prompt_words.json").read_text(encoding="utf-8"))
"""The pool's fillers (data, in ``prompt_words.json``): system messages, topics, how-to tasks, concepts, pairs,
characters, passages, sentences, follow-ups, request templates per category, math templates and names."""
(SYSTEMS, TOPICS, HOWTO_TASKS, CONCEPTS, PAIRS, CHARACTERS, PASSAGES, SENTENCES, FOLLOW_UPS, TEMPLATES, MATH_TEMPLATES,
 NAMES) = (_WORDS[k] for k in ("systems", "topics", "howto_tasks", "concepts", "pairs", "characters", "passages",
                               "sentences", "follow_ups", "templates", "math_templates", "names"))

HELDOUT_SHARE = 0.15
CATEGORIES = ("facts", "howto", "explain", "creative", "advice", "rewrite", "math", "commonsense")


def heldout(item: str) -> bool:
    """True when ``item`` (a topic, task, passage, question, ...) belongs to the held-out split (stable hash)."""
    digest = hashlib.sha256(item.encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < HELDOUT_SHARE


def _items(values: list[str], split: str) -> list[str]:
    keep = [v for v in values if heldout(v) == (split == "heldout")]
    if not keep:
        raise ValueError(f"no {split} items in a seed list starting {values[:2]!r}")
    return keep


def _ing(task: str) -> str:
    verb, _, rest = task.partition(" ")
    stem = verb[:-1] if verb.endswith("e") and not verb.endswith("ee") else verb
    return f"{stem}ing {rest}".strip()


def _template_prompt(category: str, rng: random.Random, split: str) -> tuple[str, str]:
    """(user text, the filler that decides its split)."""
    template = rng.choice(TEMPLATES[category])
    topic = rng.choice(_items(TOPICS, split))
    task = rng.choice(_items(HOWTO_TASKS, split))
    concept = rng.choice(_items(CONCEPTS, split))
    a, b = rng.choice([p for p in PAIRS if heldout(" vs ".join(p)) == (split == "heldout")] or PAIRS)
    character = rng.choice(_items(CHARACTERS, split))
    passage = rng.choice(_items(PASSAGES, split))
    sentence = rng.choice(_items(SENTENCES, split))
    text = template.format(topic=topic, task=task, task_ing=_ing(task), concept=concept, a=a, b=b,
                           character=character, passage=passage, sentence=sentence)
    return text, text


def _math_prompt(rng: random.Random, split: str) -> str:
    while True:
        a, b = rng.randint(2, 40), rng.randint(2, 12)
        text = rng.choice(MATH_TEMPLATES).format(name=rng.choice(NAMES), a=a, b=b, c=a * b + rng.randint(0, 9))
        if heldout(text) == (split == "heldout"):
            return text


def _data_prompts(data_dir: str | Path | None, split: str) -> dict[str, list[str]]:
    """Extra user prompts from a data folder (``prompts/math_questions.json``, ``commonsense/*/train.json``)."""
    out: dict[str, list[str]] = {"math": [], "commonsense": []}
    if data_dir is None:
        return out
    root = Path(data_dir)
    math_file = root / "prompts" / "math_questions.json"
    if math_file.exists():
        out["math"] = [r["instruction"] for r in json.loads(math_file.read_text()) if isinstance(r, dict)]
    for train in sorted((root / "commonsense").glob("*/train.json")):
        out["commonsense"] += [r["instruction"] + (f"\n\n{r['input']}" if r.get("input") else "")
                               for r in json.loads(train.read_text())]
    return {k: [t for t in v if isinstance(t, str) and t.strip() and heldout(t) == (split == "heldout")]
            for k, v in out.items()}


def prompt_pool(
    n: int,
    *,
    seed: int = 0,
    split: str = "train",
    data_dir: str | Path | None = None,
    system_share: float = 0.5,
    weights: dict[str, float] | None = None,
) -> list[dict[str, Any]]:
    """``n`` distinct prompts ``{"category", "messages"}`` (messages end with the user turn).

    Args:
        split: ``"train"`` or ``"heldout"`` (disjoint fillers, see the module docstring).
        data_dir: a folder with ``prompts/`` and/or ``commonsense/`` (e.g. ``~/.cache/segmask/data``, the parent
            of the folder ``segmask data`` fills); optional.
        system_share: share of prompts that get a system message from ``SYSTEMS``.
        weights: relative share of each category (default: even over the template categories and math; the
            commonsense category joins only when ``data_dir`` provides it).
    """
    check_choice("split", split, ("train", "heldout"))
    if n < 1:
        raise ValueError(f"the prompt pool needs n >= 1, got {n}")
    rng = random.Random(f"{seed}-{split}")
    extra = _data_prompts(data_dir, split)
    weights = dict(weights or {c: 1.0 for c in CATEGORIES})
    if not extra["commonsense"]:
        weights.pop("commonsense", None)
    unknown = set(weights) - set(CATEGORIES)
    if unknown:
        raise ValueError(f"unknown prompt categories {sorted(unknown)}; known: {CATEGORIES}")
    names, shares = zip(*[(k, v) for k, v in weights.items() if v > 0])
    seen: set[str] = set()
    out: list[dict[str, Any]] = []
    for _ in range(n * 50):
        if len(out) == n:
            break
        category = rng.choices(names, shares)[0]
        if category == "math":
            use_data = extra["math"] and rng.random() < 0.5
            user = rng.choice(extra["math"]) if use_data else _math_prompt(rng, split)
        elif category == "commonsense":
            user = rng.choice(extra["commonsense"])
        else:
            user, _ = _template_prompt(category, rng, split)
        system = rng.choice(SYSTEMS) if rng.random() < system_share else None
        key = f"{system}\x00{user}"
        if key in seen:
            continue
        seen.add(key)
        out.append({"category": category, "messages": conversation(system, user)})
    if len(out) < n:
        raise ValueError(f"the {split} prompt pool holds only {len(out)} distinct prompts; asked for {n}")
    return out


def follow_up(conversation: list[dict], answer: str, rng: random.Random) -> list[dict]:
    """``conversation`` + the assistant ``answer`` + a follow-up user turn from ``FOLLOW_UPS``."""
    return [*conversation, {"role": "assistant", "content": answer},
            {"role": "user", "content": rng.choice(FOLLOW_UPS)}]
