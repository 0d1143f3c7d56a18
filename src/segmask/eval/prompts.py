"""Benchmark prompts as token ids: an LLM-Adapters record -> prompt pieces in a prompt form, under an eval mask, and
the log-likelihood requests (context + continuations) the scorer takes (``scoring.py``).

Masks (``EVAL_MASKS``): ``"mas"`` keeps the prompt's segments bidirectional in prefill; ``"causal"`` prefills the same
tokens causally; ``"causal-repeat"`` is the no-training baseline that gives a causal model look-ahead by reading
the prompt's segments (the question part) twice, causally, before the causal tail (``mask_pieces``).

    >>> prompt = prompt_example(tokenizer, record, mask="mas")
    >>> context, conts = loglik_request(tokenizer, record, ["answer1", "answer2"], mask="mas")
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..core.chat import chat_pieces
from ..core.masks import CAUSAL
from ..core.questions import rewrite_record
from ..core.recipe import PROMPT_FORMS, check_choice
from ..core.records import record_messages
from ..core.segments import IGNORE_INDEX, Example, Piece, encode_pieces
from ..core.templates import ANSWER_LEAD, commonsense_pieces, mask_pieces, text_prompt_prefix

__all__ = ["LOGLIK_PREFIX", "continuation_ids", "encode_prompt", "loglik_request", "mask_pieces", "prompt_example",
           "prompt_pieces", "prompt_prefix"]

LOGLIK_PREFIX = ANSWER_LEAD
"""Causal text after the response header that the log-likelihood continuations extend (as in ``output``)."""



def prompt_pieces(tokenizer: Any, record: Mapping[str, Any], prompt_form: str = "commonsense",
                  system: str | None = None, layout: str = "data") -> list[Piece]:
    """The prompt of an LLM-Adapters record as pieces, without the answer (the same prompts training uses).

    ``"commonsense"``: the paper's form (system segment, instruction segment, causal ``### Response:`` tail).
    ``"chat"``: the model's chat template: an optional ``system`` message, then one user message (instruction, then
    the input after a blank line), then the generation prompt.
    ``layout`` orders the record's context, question and options (``questions.LAYOUTS``, ``rewrite_record``);
    ``"data"`` keeps its instruction as written.
    """
    record = rewrite_record(record, layout=layout)  # checks the layout; "data": the record as it is
    check_choice("prompt_form", prompt_form, PROMPT_FORMS)
    if prompt_form == "commonsense":
        return commonsense_pieces(record)
    return chat_pieces(tokenizer, record_messages(record, system), True)


def prompt_prefix(tokenizer: Any, prompt_form: str) -> list[int]:
    """Causal ids in front of a prompt's pieces: the tokenizer's own BOS for the plain-text forms (Gemma's
    ``<bos>``, none for SmolLM2; ``templates.text_prompt_prefix``), none for ``chat`` (its template writes its own)."""
    return [] if prompt_form == "chat" else text_prompt_prefix(tokenizer)


def encode_prompt(tokenizer: Any, pieces: Sequence[Piece], prefix: Sequence[int] = ()) -> Example:
    """``encode_pieces`` with the causal, unlabelled ids ``prefix`` (see ``prompt_prefix``) in front."""
    example = encode_pieces(tokenizer, pieces)
    if not prefix:
        return example
    n = len(prefix)
    return Example([*prefix, *example.input_ids], [CAUSAL] * n + example.segment_ids,
                   [IGNORE_INDEX] * n + example.labels, tokenizer.decode(list(prefix)) + example.text, example.meta)


def prompt_example(tokenizer: Any, record: Mapping[str, Any], *, mask: str = "mas",
                   prompt_form: str = "commonsense", system: str | None = None, layout: str = "data") -> Example:
    """Tokenized generation prompt under ``mask`` (see ``mask_pieces``); causal prompts have segment ids -1."""
    pieces = prompt_pieces(tokenizer, record, prompt_form, system, layout)
    return encode_prompt(tokenizer, mask_pieces(pieces, mask), prompt_prefix(tokenizer, prompt_form))


def continuation_ids(tokenizer: Any, context: Sequence[Piece], continuation: Sequence[Piece], *,
                     where: Any = "?", prefix: Sequence[int] = ()) -> tuple[Example, list[int], int]:
    """Encode ``context`` pieces (after the ids ``prefix``), and the token ids ``continuation`` pieces add after them.

    Returns (context ``Example``, continuation ids, how many leading continuation ids are not scored: those of
    unlabelled continuation pieces, which must all come before the labelled ones). The continuation is tokenized
    together with the context; raises ``ValueError`` (naming ``where``) when a token spans the boundary (the
    context would differ between choices) or when no labelled token follows it.
    """
    ctx = encode_prompt(tokenizer, context, prefix)
    full = encode_prompt(tokenizer, [*context, *continuation], prefix)
    n = len(ctx)
    scored = [lab != IGNORE_INDEX for lab in full.labels[n:]]
    text = "".join(p.text for p in continuation)
    if full.input_ids[:n] != ctx.input_ids or not any(scored):
        raise ValueError(f"record {where}: continuation {text!r} does not tokenize as a continuation of the "
                         "context (a token spans the boundary)")
    skip = scored.index(True)
    if not all(scored[skip:]):
        raise ValueError(f"record {where}: continuation {text!r} has unscored tokens after scored ones")
    return ctx, full.input_ids[n:], skip


def loglik_request(tokenizer: Any, record: Mapping[str, Any], choices: Sequence[str], *, mask: str = "mas",
                   prompt_form: str = "commonsense", system: str | None = None,
                   layout: str = "data") -> tuple[Example, list[list[int]]]:
    """Context example (prompt + ``LOGLIK_PREFIX``) and the token ids of each continuation ``" " + choice``.

    Each choice is tokenized together with the context and its tokens are those after the context; raises
    ``ValueError`` when the tokenizer merges across that boundary (the context would differ between choices).
    """
    pieces = mask_pieces(prompt_pieces(tokenizer, record, prompt_form, system, layout), mask)
    pieces.append(Piece(LOGLIK_PREFIX))
    if not choices:
        raise ValueError(f"record {record.get('index', '?')}: no choices to score")
    conts, prefix = [], prompt_prefix(tokenizer, prompt_form)
    for choice in choices:
        context, ids, _ = continuation_ids(tokenizer, pieces, [Piece(" " + choice, label=True)],
                                           where=record.get("index", "?"), prefix=prefix)
        conts.append(ids)
    return context, conts
