"""The choice protocol: score each option's text as the continuation of the prompt, lm-evaluation-harness style.

The label protocols ask a model to name an option by its label ("answer3"), which small models cannot bind to the
option it stands for. This one asks which option's *content* the model finds most likely after the prompt. The
record's options are parsed out of its instruction (``segmask.core.questions``); the context is the prompt (its
segments bidirectional under MAS) followed by a causal answer lead-in, and every option is a continuation of that
same context, so the context is prefilled once and its KV cache serves all options (``scoring.loglik_scores``):

==========================  ===============================================  ===========================================
prompt form                 context                                          continuation of option k
==========================  ===============================================  ===========================================
commonsense, chat           the prompt (its instruction lists the options,   ``" " + option_k``
                            after or before the question) +
                            ``"the correct answer is"``
qa (lm-eval's ARC/PIQA)     ``"Question: {q}\\n"`` (segment) + ``"Answer:"``    ``" " + option_k``
winogrande, any form        as above, but the lead-in is the sentence up to  ``" " + option_k`` (not scored) + the rest
                            the blank (qa: that text is the segment)         of the sentence (scored): partial scoring
==========================  ===============================================  ===========================================

``acc`` picks the option with the highest summed log-probability of its scored tokens, ``acc_norm`` the highest
log-probability per UTF-8 byte of its scored text. A model trained with ``segmask train --answer-form text`` learned
exactly these continuations ("the correct answer is {option}", or winogrande's filled-in sentence).

    >>> request = choice_request(tokenizer, record, mask="mas", prompt_form="commonsense")
    >>> scores = loglik_scores(model, tokenizer, [request.context], [request.continuations], skip=[request.skip])
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..core.questions import Question, normalize_layout, parse_question
from ..core.recipe import CHOICE_PROMPT_FORMS, check_choice
from ..core.segments import Example, Piece
from ..core.templates import ANSWER_LEAD, QA_ANSWER, QA_QUESTION
from .prompts import continuation_ids, mask_pieces, prompt_pieces, prompt_prefix


@dataclass
class ChoiceRequest:
    """One record, ready to score: its context and, per option, the token ids after it."""

    question: Question
    context: Example
    continuations: list[list[int]]
    skip: list[int]
    """Leading continuation ids not scored (the option filled into winogrande's blank); 0 elsewhere."""
    scored: list[str]
    """The scored text of each option (``acc_norm`` divides by its UTF-8 bytes)."""

    def norm_lengths(self) -> list[int]:
        """UTF-8 bytes of each option's scored text."""
        return [len(text.encode("utf-8")) for text in self.scored]


def choice_pieces(tokenizer: Any, record: Mapping[str, Any], question: Question, *, prompt_form: str = "commonsense",
                  system: str | None = None, layout: str = "data") -> tuple[list[Piece], list[tuple[str, str]]]:
    """The context pieces (MAS segments kept) and, per option, its (unscored text, scored text) continuation."""
    where = record.get("index", "?")
    check_choice("prompt_form", prompt_form, CHOICE_PROMPT_FORMS)
    before = question.split_blank()[0] if question.blank else ""
    lead = before.rstrip()
    if prompt_form == "qa":
        if normalize_layout(layout) not in ("data", "qo"):
            raise ValueError(f"the qa prompt lists no options or context, so layout {layout!r} has no meaning")
        if question.blank and not lead:
            raise ValueError(f"record {where}: the blank opens the sentence, the qa prompt would be empty")
        context = ([Piece(lead, segment=True)] if question.blank else
                   [Piece(QA_QUESTION.format(question=question.question), segment=True), Piece(QA_ANSWER)])
    else:
        context = prompt_pieces(tokenizer, record, prompt_form, system, layout)
        context.append(Piece(lead if question.blank else ANSWER_LEAD))
    if question.blank:
        after = question.split_blank()[1]
        return context, [(before[len(lead):] + option, after) for option in question.options]
    return context, [("", " " + option) for option in question.options]


def choice_request(tokenizer: Any, record: Mapping[str, Any], *, mask: str = "mas", prompt_form: str = "commonsense",
                   system: str | None = None, layout: str = "data") -> ChoiceRequest:
    """Parse the record's options and tokenize its context (under ``mask``, see ``prompts.mask_pieces``) and the
    continuation of every option; ``ValueError`` names the record when it cannot be parsed or tokenized."""
    question = parse_question(record)
    context, options = choice_pieces(tokenizer, record, question, prompt_form=prompt_form, system=system,
                                     layout=layout)
    context, prefix = mask_pieces(context, mask), prompt_prefix(tokenizer, prompt_form)
    encoded, conts, skip = None, [], []
    for unscored, scored in options:
        encoded, ids, k = continuation_ids(tokenizer, context, [Piece(unscored), Piece(scored, label=True)],
                                           where=record.get("index", "?"), prefix=prefix)
        conts.append(ids)
        skip.append(k)
    return ChoiceRequest(question, encoded, conts, skip, [scored for _, scored in options])
