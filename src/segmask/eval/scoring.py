"""Score a model on benchmark prompts, batched, with MAS or causal prefill: generation and log-likelihood.

Shapes in ``segmask.core``'s notation (B prompts, P padded prompt length), plus R = (prompt, choice) rows and M
the longest continuation.

The prompts come from ``prompts.py`` (prompt forms, eval masks, log-likelihood requests).

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

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from ..core.masks import CAUSAL
from ..core.segments import Example, collate, pad_token_id, position_ids_from_attention_mask
from ..generation.batch import generate
from ..hf.backend import cache_kwarg


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
    pad = pad_token_id(tokenizer)
    for idx in _batches(prompts, batch_size):
        batch = collate([prompts[i] for i in idx], pad_token_id=pad, padding_side="left", with_labels=False)
        inputs = _model_inputs(batch, _device(model))
        beams = {"num_beams": num_beams, "early_stopping": True} if num_beams > 1 else {}
        new = generate(model, inputs, do_sample=False, max_new_tokens=max_new_tokens, pad_token_id=pad,
                       **beams).sequences
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
    pad = pad_token_id(tokenizer)
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
