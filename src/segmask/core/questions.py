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
from dataclasses import dataclass, field
from typing import Any, Mapping

from .templates import ANSWER_LEAD

OPTION_ORDERS = ("after", "before")
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

    @property
    def blank(self) -> bool:
        """True for fill-in-the-blank sentences (winogrande): options fill the one ``_`` of ``question``."""
        return "fill in the blank" in self.intro

    def instruction(self, option_order: str = "after") -> str:
        """The instruction text with the options after the question (the original text) or before it."""
        if option_order not in OPTION_ORDERS:
            raise ValueError(f"option_order must be one of {OPTION_ORDERS}, got {option_order!r}")
        if option_order == "after" or not self.options_block:
            return self.intro + self.question + self.sep + self.options_block + self.tail + self.format_line
        return f"{self.options_block.rstrip()}\n\n{self.intro}{self.question}\n\n{self.format_line}"

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
    text = record.get("instruction")
    if not isinstance(text, str):
        raise ValueError(f"record {where}: no instruction")
    match = _LAYOUT.fullmatch(text)
    if match is None:
        raise ValueError(f"record {where}: instruction is not a commonsense multiple-choice layout: {text[:80]!r}")
    labels = tuple(label.lower() for label in match["labels"].split("/"))
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


def answer_label(record: Mapping[str, Any]) -> str:
    """The record's answer label, lower case: its ``answer`` field, else the last word of its ``output``."""
    answer = str(record.get("answer") or "").strip()
    if not answer:
        output = str(record.get("output") or "").strip()
        answer = output.split()[-1] if output else ""
    return answer.lower()


def rewrite_record(record: Mapping[str, Any], *, option_order: str = "after", answer_form: str = "label") -> dict:
    """A copy of ``record`` with its options moved (``option_order``) and its ``output`` written by content.

    ``answer_form="text"`` replaces ``output`` ("the correct answer is answer2") by ``Question.answer_text`` of the
    answer label. With the defaults the record is returned unchanged (a copy) and need not parse.
    """
    if option_order not in OPTION_ORDERS:
        raise ValueError(f"option_order must be one of {OPTION_ORDERS}, got {option_order!r}")
    if answer_form not in ANSWER_FORMS:
        raise ValueError(f"answer_form must be one of {ANSWER_FORMS}, got {answer_form!r}")
    out = dict(record)
    if option_order == "after" and answer_form == "label":
        return out
    question = parse_question(record)
    out["instruction"] = question.instruction(option_order)
    if answer_form == "text":
        out["output"] = question.answer_text(answer_label(record))
    return out
