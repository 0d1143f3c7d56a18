"""Prompt templates as module constants; whitespace is data and golden tests pin the rendered text.

The commonsense form is the LLM-Adapters prompt the paper fine-tunes and evaluates with. Under MAS it is cut into
a system segment (the opening sentence), an instruction segment (``### Instruction:`` with the question and its
options, plus ``### Input:`` when present), and a causal ``### Response:`` tail followed by the answer.

    >>> example = encode_commonsense(tokenizer, {"instruction": "Is water wet?\\n\\nAnswer format: true/false",
    ...                                          "input": "", "output": "the correct answer is true"})
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .recipe import EVAL_MASKS, check_choice
from .segments import Example, Piece, encode_pieces

COMMONSENSE_SYSTEM = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
)
COMMONSENSE_SYSTEM_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
)
INSTRUCTION = "### Instruction:\n{instruction}\n\n"
INPUT = "### Input:\n{input}\n\n"
RESPONSE = "### Response:\n"
ANSWER_LEAD = "the correct answer is"
"""How every LLM-Adapters answer begins ("the correct answer is answer3"): the causal lead-in that the log-likelihood
and choice protocols score continuations after, and the start of a text-form training target."""
QA_QUESTION = "Question: {question}\n"
QA_ANSWER = "Answer:"
"""The ``qa`` prompt of the choice protocol, as lm-evaluation-harness's ARC and PIQA tasks write it: the question
line is the segment, ``Answer:`` the causal lead-in, each option the continuation ``" " + option``."""


def text_prompt_prefix(tokenizer: Any) -> list[int]:
    """The ids a tokenizer puts in front of plain text by itself: Gemma's ``<bos>``, none for SmolLM2.

    Plain-text prompts (the commonsense and qa forms) start with them, as the model saw text in pre-training: Gemma 3
    without its BOS degenerates into repeating words. Chat templates write their own, so chat prompts do not.
    """
    with_specials = tokenizer("a")["input_ids"]
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    for k in range(len(with_specials) - len(plain) + 1):
        if with_specials[k:k + len(plain)] == plain:
            return list(with_specials[:k])
    return []


def commonsense_pieces(record: Mapping[str, Any], *, with_answer: bool = False,
                       eos_token: str | None = None) -> list[Piece]:
    """The paper's prompt for an LLM-Adapters record (``instruction``, optional ``input``, ``output``) as pieces.

    Args:
        record: one dataset row.
        with_answer: append ``record["output"]`` as the labelled answer (training).
        eos_token: appended to the answer when given, so a tuned model learns to stop.
    """
    instruction = record.get("instruction")
    if not isinstance(instruction, str) or not instruction.strip():
        raise ValueError(f"record has no instruction: {dict(record)!r:.200}")
    extra = record.get("input") or ""
    system = COMMONSENSE_SYSTEM_WITH_INPUT if extra else COMMONSENSE_SYSTEM
    body = INSTRUCTION.format(instruction=instruction) + (INPUT.format(input=extra) if extra else "")
    pieces = [Piece(system, segment=True), Piece(body, segment=True), Piece(RESPONSE)]
    if with_answer:
        output = record.get("output")
        if not isinstance(output, str) or not output:
            raise ValueError(f"record has no output to train on: {dict(record)!r:.200}")
        pieces.append(Piece(output + (eos_token or ""), label=True))
    return pieces


def mask_pieces(pieces: Sequence[Piece], mask: str) -> list[Piece]:
    """The prompt pieces as ``mask`` prefills them.

    ``"mas"``: unchanged. ``"causal"``: every piece causal (the same tokens). ``"causal-repeat"``: every piece
    causal, and the pieces up to the last segment (the question part) once more before the causal tail, so the
    second copy of the question is read with the whole question in view. Pieces after the tail (a training
    answer) stay where they are, after the second copy.
    """
    check_choice("mask", mask, EVAL_MASKS)
    if mask == "mas":
        return list(pieces)
    causal = [Piece(p.text, label=p.label) for p in pieces]
    if mask == "causal":
        return causal
    head = max((i + 1 for i, p in enumerate(pieces) if p.segment), default=0)
    return causal[:head] + causal[:head] + causal[head:]


def encode_commonsense(tokenizer: Any, record: Mapping[str, Any], *, with_answer: bool = False,
                       mask: str = "mas") -> Example:
    """Tokenize a commonsense record in the paper's prompt form (see ``commonsense_pieces``) as ``mask`` prefills it
    (``mask_pieces``: ``causal-repeat`` reads the question part twice)."""
    eos = tokenizer.eos_token if with_answer else None
    pieces = commonsense_pieces(record, with_answer=with_answer, eos_token=eos)
    return encode_pieces(tokenizer, pieces if mask == "mas" else mask_pieces(pieces, mask))
