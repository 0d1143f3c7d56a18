"""The multiple-choice structure of LLM-Adapters commonsense records: question text and option texts.

Every record of the commonsense tasks lists its options inside the instruction. ``parse_question`` takes them apart,
so a prompt can show them after the question (the data's layout) or before it, and an answer can be the option's
text instead of its label:

    >>> q = parse_question(record)              # an ARC-Easy record
    >>> q.question, q.options, q.labels
    ('Which factor will most likely cause ...?', ('a leg muscle relaxing after exercise', ...), ('answer1', ...))
    >>> q.instruction("before")                 # the options block first, then the question, then the format line
    >>> rewrite_record(record, answer_form="text")["output"]
    'the correct answer is a bacterial population in the bloodstream'

Layouts, whitespace as in the data (``q.instruction("after")`` gives back the original text exactly):

    boolq       Please answer the following question with true or false, question: {q}\\n\\nAnswer format: true/false
    piqa        Please choose the correct solution to the question: {q}\\n\\nSolution1: {a}\\n\\nSolution2: {b}
                \\n\\nAnswer format: solution1/solution2
    ARC, openbookqa, social_i_qa
                Please choose the correct answer to the question: {q}\\n\\nAnswer1: {a} Answer2: {b} ...
                \\n\\nAnswer format: answer1/answer2/...
    winogrande  Please choose the correct answer to fill in the blank to complete the given sentence: {s}
                \\n\\nOption1: {a} Option2: {b} Answer format: option1/option2       ({s} holds one blank "_")

boolq has no options block: its options are the words ``true`` and ``false``, so ``"before"`` leaves it unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .recipe import check_choice
from .records import answer_label, offered_labels
from .templates import ANSWER_LEAD

LAYOUTS = ("data", "qo", "oq", "cqo", "qoc", "coq", "ocq", "oqc", "qco")
"""Prompt layouts: ``data`` keeps the record's instruction as written; the others order its parts, ``c`` the context
(facts or a list the question is about), ``q`` the request with its question, ``o`` the numbered options; the
``Answer format`` line always comes last. ``after``/``before`` (options after/before the question) are accepted as
the older names of ``qo``/``oq``."""
LEGACY_LAYOUTS = {"after": "qo", "before": "oq"}
LAYOUT_HELP = ("prompt layout: data (as written), or the order of context c, question q and options o, e.g. qo, oq, "
               "cqo, qoc, coq (see segmask.core.questions.LAYOUTS)")
ANSWER_FORMS = ("label", "text")
BLANK = "_"

_LAYOUT = re.compile(
    r"(?P<intro>Please [^:\n]*: )(?P<question>.+?)"
    r"(?:(?P<sep>\n\n)(?P<options>(?:Answer|Solution|Option|Ending)1: .+?))?"
    r"(?P<tail>\s+)(?P<format>Answer format: (?P<labels>[A-Za-z0-9]+(?:/[A-Za-z0-9]+)+)\s*)",
    re.S,
)
_MARKER = re.compile(r"(?:^|(?<=\s))(Answer|Solution|Option|Ending)(\d+): ")


@dataclass(frozen=True)
class Question:
    """One record's question, labels and option texts, plus the raw layout needed to render it again."""

    intro: str = field(metadata={"help": "the opening request up to its colon and space"})
    question: str = field(metadata={"help": "the question (winogrande: the sentence with its blank '_')"})
    labels: tuple[str, ...] = field(metadata={"help": "lower-case labels of the Answer format line"})
    options: tuple[str, ...] = field(metadata={"help": "option texts, stripped, in label order"})
    options_block: str = field(default="", repr=False, metadata={"help": "the options as listed ('' for boolq)"})
    sep: str = field(default="", repr=False, metadata={"help": "whitespace between question and options block"})
    tail: str = field(default="\n\n", repr=False, metadata={"help": "whitespace before the format line"})
    format_line: str = field(default="", repr=False, metadata={"help": "'Answer format: a/b/...'"})
    context: str = field(default="", metadata={"help": "facts or a list the question is about ('' when none)"})

    @property
    def blank(self) -> bool:
        """True for fill-in-the-blank sentences (winogrande): options fill the one ``_`` of ``question``."""
        return "fill in the blank" in self.intro

    def instruction(self, layout: str = "qo") -> str:
        """The instruction text in ``layout`` (``LAYOUTS``); ``"qo"`` on a record without context gives back the
        original text exactly. A layout's ``c`` is left out when the question has no context; parts are separated
        by a blank line and the format line comes last."""
        layout = normalize_layout(layout)
        if layout == "data":
            raise ValueError("layout 'data' is the record's own instruction; render a named layout instead")
        if not self.context:
            layout = layout.replace("c", "")
        if layout == "qo" and not self.context:
            return self.intro + self.question + self.sep + self.options_block + self.tail + self.format_line
        blocks = {"c": self.context.strip(), "q": self.intro + self.question, "o": self.options_block.rstrip()}
        return "\n\n".join([*(blocks[part] for part in layout if blocks[part]), self.format_line])

    def index(self, label: str) -> int:
        """Position of ``label`` (any case) among the labels; ``ValueError`` when the record does not offer it."""
        try:
            return self.labels.index(label.strip().lower())
        except ValueError:
            raise ValueError(f"label {label!r} is not one of {self.labels}") from None

    def split_blank(self) -> tuple[str, str]:
        """(text before the blank, text after it) of a fill-in-the-blank sentence."""
        if not self.blank:
            raise ValueError(f"not a fill-in-the-blank question: {self.question[:60]!r}")
        before, _, after = self.question.partition(BLANK)
        return before, after

    def answer_text(self, label: str) -> str:
        """The answer written by content: ``"the correct answer is {option}"``, or the filled-in sentence."""
        option = self.options[self.index(label)]
        if self.blank:
            before, after = self.split_blank()
            return before + option + after
        return f"{ANSWER_LEAD} {option}"


def parse_question(record: Mapping[str, Any]) -> Question:
    """Split a record's instruction into intro, question, labels and option texts.

    Raises ``ValueError`` naming the record (its ``index`` or ``_source``) when the instruction does not have one of
    the layouts in the module docstring, its options are not numbered 1..n in the format line's order, an option is
    empty, or a fill-in-the-blank sentence does not hold exactly one blank.
    """
    where = record.get("index", record.get("_source", "?"))
    if "options" in record:
        return _structured_question(record, where)
    text = record.get("instruction")
    if not isinstance(text, str):
        raise ValueError(f"record {where}: no instruction")
    match = _LAYOUT.fullmatch(text)
    if match is None:
        raise ValueError(f"record {where}: instruction is not a commonsense multiple-choice layout: {text[:80]!r}")
    labels = offered_labels(record)  # the format line's labels, read as every record's are
    block = match["options"] or ""
    if block:
        options = _split_options(block, labels, where)
    elif labels == ("true", "false"):
        options = labels
    else:
        raise ValueError(f"record {where}: labels {labels} but no options are listed")
    question = Question(match["intro"], match["question"], labels, options, block, match["sep"] or "",
                        match["tail"], match["format"])
    if question.blank and question.question.count(BLANK) != 1:
        raise ValueError(f"record {where}: a fill-in-the-blank sentence needs exactly one {BLANK!r}: "
                         f"{question.question[:80]!r}")
    return question


STRUCTURED_INTRO = "Please choose the correct answer to the question: "
"""The request of a structured record (fields ``context``, ``question``, ``options``) without its own ``intro``."""


def structured_instruction(context: str, question: str, options: list[str], layout: str = "cqo",
                           intro: str = STRUCTURED_INTRO) -> str:
    """The instruction of a structured record, in the commonsense style: ``Answer1: x Answer2: y`` options and an
    ``Answer format: answer1/answer2`` line (what ``parse_question`` reads back for layouts ``qo`` and ``oq``)."""
    return _structured_question({"context": context, "question": question, "options": options, "intro": intro},
                                "?").instruction(layout)


def _structured_question(record: Mapping[str, Any], where: Any) -> Question:
    options, question = record.get("options"), record.get("question")
    context, intro = record.get("context") or "", record.get("intro", STRUCTURED_INTRO)
    if not isinstance(options, list) or len(options) < 2 or not all(isinstance(o, str) and o.strip() for o in options):
        raise ValueError(f"record {where}: 'options' must be a list of >= 2 non-empty strings")
    if not isinstance(question, str) or not question.strip() or not isinstance(context, str) \
            or not isinstance(intro, str):
        raise ValueError(f"record {where}: a structured record needs a 'question' string (and string 'context', "
                         "'intro' when given)")
    labels = tuple(f"answer{i}" for i in range(1, len(options) + 1))
    block = " ".join(f"Answer{i}: {o.strip()}" for i, o in enumerate(options, 1))
    return Question(intro, question.strip(), labels, tuple(o.strip() for o in options), block, "\n\n", "\n\n",
                    "Answer format: " + "/".join(labels), context.strip())


_LAST_SENTENCE = re.compile(r"(?<=[.!])\s+(?=[^.!?]+\?\s*$)")


def split_context(question: Question) -> Question:
    """``question`` with the sentences before its last one moved into ``context`` (social_i_qa's situation before
    its question); unchanged when it already has a context, is a fill-in-the-blank or is a single sentence."""
    if question.context or question.blank:
        return question
    parts = _LAST_SENTENCE.split(question.question.strip(), maxsplit=1)
    if len(parts) != 2:
        return question
    return replace(question, context=parts[0], question=parts[1])


def normalize_layout(layout: str) -> str:
    """``layout`` as one of ``LAYOUTS`` (``after``/``before`` mapped to ``qo``/``oq``); ``ValueError`` otherwise."""
    layout = LEGACY_LAYOUTS.get(layout, layout)
    check_choice("layout", layout, LAYOUTS)
    return layout


def layout_mix(layouts: str) -> tuple[str, ...]:
    """A comma-separated list of layouts (a training mix, e.g. ``"cqo,qoc,coq"``) as normalized names."""
    names = tuple(normalize_layout(part.strip()) for part in str(layouts).split(",") if part.strip())
    if not names:
        raise ValueError(f"no layout given in {layouts!r}")
    return names


def _split_options(block: str, labels: tuple[str, ...], where: Any) -> tuple[str, ...]:
    marks = list(_MARKER.finditer(block))
    names = [f"{m[1].lower()}{m[2]}" for m in marks]
    if names != list(labels) or marks[0].start() != 0:
        raise ValueError(f"record {where}: options {names} do not match the answer format {labels}")
    ends = [m.start() for m in marks[1:]] + [len(block)]
    options = tuple(block[m.end():end].strip() for m, end in zip(marks, ends))
    if not all(options):
        raise ValueError(f"record {where}: an option is empty: {block[:80]!r}")
    return options


def rewrite_record(record: Mapping[str, Any], *, layout: str = "data", answer_form: str = "label") -> dict:
    """A copy of ``record`` with its instruction rendered in ``layout`` and its ``output`` written by content.

    ``answer_form="text"`` replaces ``output`` ("the correct answer is answer2") by ``Question.answer_text`` of the
    answer label. With the defaults the record is returned unchanged (a copy) and need not parse. A layout with a
    context part takes the context from a structured record's ``context`` field, else the question's sentences
    before its last one (``split_context``).
    """
    layout = normalize_layout(layout)
    check_choice("answer_form", answer_form, ANSWER_FORMS)
    out = dict(record)
    if layout == "data" and answer_form == "label":
        return out
    question = parse_question(record)
    if layout != "data":
        out["instruction"] = question.instruction(layout) if "c" not in layout else \
            split_context(question).instruction(layout)
    if answer_form == "text":
        out["output"] = question.answer_text(answer_label(record))
    return out
