"""Score a model on benchmark prompts, batched, with MAS or causal prefill: generation and log-likelihood.

Notation: B prompts in a batch, R = (prompt, choice) rows, P padded prompt length, M longest continuation, V vocab.

Masks (``MASKS``): ``"mas"`` keeps the prompt's segments bidirectional in prefill; ``"causal"`` prefills the same
tokens causally; ``"causal-repeat"`` is the no-training baseline that gives a causal model look-ahead by reading
the prompt's segments (the question part) twice, causally, before the causal tail (``mask_pieces``).

Generative (the paper's protocol): the prompt is prefilled (under MAS when ``segment_ids`` are kept), then
``generate`` decodes causally with beam search (``num_beams=1`` is greedy); the caller extracts the first label.

Log-likelihood (lm-evaluation-harness style): the context is the prompt followed by ``LOGLIK_PREFIX`` ("the correct
answer is", causal, as in the training targets), and each choice's continuation is ``" " + label``. The context is
prefilled once per prompt (MAS segments bidirectional, the prefix causal), its KV cache is repeated per choice and
the continuation tokens are scored causally. ``acc`` picks the highest summed log-probability, ``acc_norm`` the
highest log-probability per character of the continuation, as lm-eval does. With these label continuations most
tasks offer labels of equal length (``answer1``..``answer5``), so acc_norm differs from acc only where lengths differ
(boolq's " true"/" false"). The choice protocol (``choice.py``) scores option texts with the same function.

    >>> prompt = prompt_example(tokenizer, record, mask="mas")
    >>> texts = generate_texts(model, tokenizer, [prompt], num_beams=4, max_new_tokens=32)
    >>> context, conts = loglik_request(tokenizer, record, ["answer1", "answer2"], mask="mas")
    >>> scores = loglik_scores(model, tokenizer, [context], [conts])   # [[log p(" answer1"), log p(" answer2")]]

``segmask.enable(model)`` must have been called for MAS prompts (their ``segment_ids`` reach the model).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import torch

from ..core.chat import chat_pieces
from ..core.masks import CAUSAL
from ..core.questions import OPTION_ORDERS, rewrite_record
from ..core.segments import IGNORE_INDEX, Example, Piece, collate, encode_pieces, position_ids_from_attention_mask
from ..core.templates import ANSWER_LEAD, commonsense_pieces, text_prompt_prefix
from ..hf.backend import cache_kwarg

LOGLIK_PREFIX = ANSWER_LEAD
"""Causal text after the response header that the log-likelihood continuations extend (as in ``output``)."""

PROMPT_FORMS = ("commonsense", "chat")
MASKS = ("mas", "causal", "causal-repeat")


def prompt_pieces(tokenizer: Any, record: Mapping[str, Any], prompt_form: str = "commonsense",
                  system: str | None = None, option_order: str = "after") -> list[Piece]:
    """The prompt of an LLM-Adapters record as pieces, without the answer (the same prompts training uses).

    ``"commonsense"``: the paper's form (system segment, instruction segment, causal ``### Response:`` tail).
    ``"chat"``: the model's chat template: an optional ``system`` message, then one user message (instruction, then
    the input after a blank line), then the generation prompt.
    ``option_order="before"`` lists the record's options before its question (``questions.rewrite_record``).
    """
    if option_order not in OPTION_ORDERS:
        raise ValueError(f"option_order must be one of {OPTION_ORDERS}, got {option_order!r}")
    if option_order != "after":
        record = rewrite_record(record, option_order=option_order)
    if prompt_form == "commonsense":
        return commonsense_pieces(record)
    if prompt_form == "chat":
        content = record["instruction"] + (f"\n\n{record['input']}" if record.get("input") else "")
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": content}]
        return chat_pieces(tokenizer, messages, True)
    raise ValueError(f"prompt_form must be one of {PROMPT_FORMS}, got {prompt_form!r}")


def mask_pieces(pieces: Sequence[Piece], mask: str) -> list[Piece]:
    """The prompt pieces as ``mask`` prefills them.

    ``"mas"``: unchanged. ``"causal"``: every piece causal (the same tokens). ``"causal-repeat"``: every piece
    causal, and the pieces up to the last segment (the question part) once more before the causal tail, so the
    second copy of the question is read with the whole question in view.
    """
    if mask not in MASKS:
        raise ValueError(f"mask must be one of {MASKS}, got {mask!r}")
    if mask == "mas":
        return list(pieces)
    causal = [Piece(p.text, label=p.label) for p in pieces]
    if mask == "causal":
        return causal
    head = max((i + 1 for i, p in enumerate(pieces) if p.segment), default=0)
    return causal[:head] + causal[:head] + causal[head:]


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
                   prompt_form: str = "commonsense", system: str | None = None, option_order: str = "after") -> Example:
    """Tokenized generation prompt under ``mask`` (see ``mask_pieces``); causal prompts have segment ids -1."""
    pieces = prompt_pieces(tokenizer, record, prompt_form, system, option_order)
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
                   option_order: str = "after") -> tuple[Example, list[list[int]]]:
    """Context example (prompt + ``LOGLIK_PREFIX``) and the token ids of each continuation ``" " + choice``.

    Each choice is tokenized together with the context and its tokens are those after the context; raises
    ``ValueError`` when the tokenizer merges across that boundary (the context would differ between choices).
    """
    pieces = mask_pieces(prompt_pieces(tokenizer, record, prompt_form, system, option_order), mask)
    pieces.append(Piece(LOGLIK_PREFIX))
    if not choices:
        raise ValueError(f"record {record.get('index', '?')}: no choices to score")
    conts, prefix = [], prompt_prefix(tokenizer, prompt_form)
    for choice in choices:
        context, ids, _ = continuation_ids(tokenizer, pieces, [Piece(" " + choice, label=True)],
                                           where=record.get("index", "?"), prefix=prefix)
        conts.append(ids)
    return context, conts


def _pad_id(tokenizer: Any) -> int:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        raise ValueError("tokenizer has neither a pad token nor an eos token to pad with")
    return pad


def _batches(examples: Sequence[Example], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (longest first), to waste little on padding."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = sorted(range(len(examples)), key=lambda i: -len(examples[i]))
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def _model_inputs(batch: Mapping[str, torch.Tensor], device: Any) -> dict[str, torch.Tensor]:
    inputs = {"input_ids": batch["input_ids"].to(device), "attention_mask": batch["attention_mask"].to(device)}
    if (batch["segment_ids"] != CAUSAL).any():
        inputs["segment_ids"] = batch["segment_ids"].to(device)
    return inputs


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def generate_texts(
    model: torch.nn.Module,
    tokenizer: Any,
    prompts: Sequence[Example],
    *,
    num_beams: int = 4,
    max_new_tokens: int = 32,
    batch_size: int = 8,
    on_batch: Callable[[int], None] | None = None,
) -> list[str]:
    """Decode an answer for each prompt: left-padded batches, MAS prefill where segment ids are set, then causal
    beam search (``num_beams=1``: greedy). Returns the new text of each prompt, special tokens dropped, in order.

    ``on_batch(n)`` is called after each batch of n prompts (for progress bars).
    """
    if num_beams < 1 or max_new_tokens < 1:
        raise ValueError(f"num_beams and max_new_tokens must be >= 1, got {num_beams} and {max_new_tokens}")
    texts: list[str] = [""] * len(prompts)
    pad = _pad_id(tokenizer)
    for idx in _batches(prompts, batch_size):
        batch = collate([prompts[i] for i in idx], pad_token_id=pad, padding_side="left", with_labels=False)
        inputs = _model_inputs(batch, _device(model))
        out = model.generate(**inputs, num_beams=num_beams, do_sample=False, max_new_tokens=max_new_tokens,
                             pad_token_id=pad, early_stopping=num_beams > 1)
        new = out[:, inputs["input_ids"].shape[1]:]
        for row, i in enumerate(idx):
            texts[i] = tokenizer.decode(new[row], skip_special_tokens=True)
        if on_batch is not None:
            on_batch(len(idx))
    return texts


def loglik_scores(
    model: torch.nn.Module,
    tokenizer: Any,
    contexts: Sequence[Example],
    continuations: Sequence[Sequence[Sequence[int]]],
    *,
    skip: Sequence[Sequence[int]] | None = None,
    batch_size: int = 8,
    on_batch: Callable[[int], None] | None = None,
) -> list[list[float]]:
    """Summed log-probability of each continuation given its context.

    Args:
        contexts: one tokenized context per prompt (segment ids set for MAS, all -1 for causal).
        continuations: for prompt i, a list of token-id lists (each non-empty) to score after context i.
        skip: ``skip[i][c]`` leading tokens of continuation c are fed but not scored (winogrande's option, before
            the scored rest of the sentence); default 0.
        batch_size: prompts per forward (each brings all its choices to the second forward).

    Returns:
        ``scores[i][c]`` = sum over continuation c's scored tokens t of log p(t | context i, earlier tokens of c).
    """
    scored = continuation_scores(model, tokenizer, contexts, continuations, skip=skip, batch_size=batch_size,
                                 on_batch=on_batch)
    return [[logp for logp, _ in row] for row in scored]


@torch.no_grad()
def continuation_scores(
    model: torch.nn.Module,
    tokenizer: Any,
    contexts: Sequence[Example],
    continuations: Sequence[Sequence[Sequence[int]]],
    *,
    skip: Sequence[Sequence[int]] | None = None,
    batch_size: int = 8,
    on_batch: Callable[[int], None] | None = None,
) -> list[list[tuple[float, bool]]]:
    """``loglik_scores`` with lm-eval's second answer: ``(log-probability, is_greedy)`` per continuation, where
    is_greedy says every scored token is the argmax of its position."""
    if len(contexts) != len(continuations):
        raise ValueError(f"{len(contexts)} contexts but {len(continuations)} continuation lists")
    skip = skip if skip is not None else [[0] * len(conts) for conts in continuations]
    for i, conts in enumerate(continuations):
        if not conts or any(len(c) == 0 for c in conts):
            raise ValueError(f"prompt {i}: needs at least one choice and every continuation needs tokens")
        if len(skip[i]) != len(conts) or any(not 0 <= k < len(c) for k, c in zip(skip[i], conts)):
            raise ValueError(f"prompt {i}: skip {list(skip[i])} must leave every continuation a scored token")
    scores: list[list[tuple[float, bool]]] = [[] for _ in contexts]
    pad = _pad_id(tokenizer)
    device = _device(model)
    for idx in _batches(contexts, batch_size):
        batch = collate([contexts[i] for i in idx], pad_token_id=pad, padding_side="left", with_labels=False)
        rows = [(b, cont, k) for b, i in enumerate(idx) for cont, k in zip(continuations[i], skip[i])]
        results = _score_batch(model, _model_inputs(batch, device), rows, pad)
        k = 0
        for i in idx:
            scores[i] = results[k:k + len(continuations[i])]
            k += len(continuations[i])
        if on_batch is not None:
            on_batch(len(idx))
    return scores


def _score_batch(model: torch.nn.Module, inputs: dict[str, torch.Tensor],
                 rows: list[tuple[int, Sequence[int], int]], pad: int) -> list[tuple[float, bool]]:
    """Prefill the [B, P] contexts once, repeat the cache per row, score each row's continuation causally.

    A row is (context index b, continuation ids, number of leading ids not scored); returns (summed log-probability
    of the scored ids, whether each scored id is its position's argmax) per row."""
    from transformers import DynamicCache

    mask = inputs["attention_mask"]
    device = mask.device
    cache = DynamicCache(config=getattr(model, "config", None))
    out = model(**inputs, position_ids=position_ids_from_attention_mask(mask), **{cache_kwarg(model): cache},
                use_cache=True, logits_to_keep=1)
    first = torch.log_softmax(out.logits[:, -1].float(), dim=-1)  # [B, V]: next token after each context
    which = torch.tensor([b for b, _, _ in rows], device=device)
    first_ids = torch.tensor([cont[0] for _, cont, _ in rows], device=device)
    scored_first = torch.tensor([k == 0 for _, _, k in rows], device=device)
    total = torch.where(scored_first, first[which, first_ids], 0.0)  # [R]
    greedy = ~scored_first | (first[which].argmax(-1) == first_ids)  # [R]
    longest = max(len(cont) for _, cont, _ in rows)
    if longest > 1:
        # Feed tokens 0..m-2 of each continuation (right padded) on top of the context cache; they predict 1..m-1.
        width = longest - 1
        feed = torch.full((len(rows), width), pad, dtype=torch.long, device=device)
        target = torch.zeros((len(rows), width), dtype=torch.long, device=device)
        real = torch.zeros((len(rows), width), dtype=torch.bool, device=device)
        for r, (_, cont, k) in enumerate(rows):
            n = len(cont) - 1
            feed[r, :n] = torch.tensor(cont[:-1], device=device)
            target[r, :n] = torch.tensor(cont[1:], device=device)
            real[r, max(k - 1, 0):n] = True  # target j + 1 is scored when j + 1 >= k
        cache.batch_select_indices(which)
        full_mask = torch.cat([mask[which], torch.ones_like(feed)], dim=1)
        positions = mask[which].sum(-1, keepdim=True) + torch.arange(width, device=device)[None]
        out = model(input_ids=feed, attention_mask=full_mask, position_ids=positions, **{cache_kwarg(model): cache},
                    use_cache=True)
        logp_all = torch.log_softmax(out.logits.float(), dim=-1)  # [R, M-1, V]
        logp = logp_all.gather(-1, target[..., None])[..., 0]  # [R, M-1]
        total = total + torch.where(real, logp, 0.0).sum(-1)
        greedy = greedy & ((logp_all.argmax(-1) == target) | ~real).all(-1)
    return list(zip(total.tolist(), greedy.tolist()))


def pick(scores: Sequence[float], lengths: Sequence[int] | None = None) -> int:
    """Index of the best choice: highest score, or highest score per unit length when ``lengths`` are given
    (ties go to the first choice, as ``argmax`` does)."""
    values = list(scores) if lengths is None else [s / n for s, n in zip(scores, lengths)]
    return max(range(len(values)), key=lambda i: (values[i], -i))
