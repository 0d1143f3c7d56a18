"""Generation with MAS prefill: batched ``generate`` with input checks and segment KV reuse across requests.

After ``segmask.enable(model)``, Hugging Face ``model.generate(..., segment_ids=...)`` already prefills the prompt
under the MAS mask and decodes causally (greedy, sampling, beam search, stop strings, StaticCache, PeftModel). This
module adds what a serving loop needs on top:

    >>> cache = PrefixCache(model, tokenizer)
    >>> batch = encode_chat(tokenizer, [[system, user_a], [system, user_b]])
    >>> out = generate(model, batch, prefix_cache=cache, tokenizer=tokenizer, max_new_tokens=64)
    >>> tokenizer.batch_decode(out.sequences, skip_special_tokens=True)

With a ``PrefixCache``, a batch whose prompts all start with the same cached leading segments is laid out as
``[prefix | padding | new tokens]`` (padding in the middle is masked and skipped by the positions, so every sample
sees exactly the positions and keys of its cold prefill) and only the new tokens are prefilled. Otherwise the
batch is prefilled cold and the leading segments of each prompt are stored from the generation's own KV cache.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import torch

from ..core.segments import pad_token_id
from ..hf.backend import is_enabled, unwrap
from ..hf.generate import expand_size
from .prefix_cache import PrefixCache, PrefixEntry


@dataclass
class Generation:
    """Result of ``generate``.

    Attributes:
        sequences: [B * n, N] new tokens only (n = returned sequences per prompt), padded with the pad token.
        logits: per decoding step [B * n, V] raw logits when ``output_logits=True`` was asked, else None.
        reused: per prompt, how many prompt tokens came from the prefix cache (0 = cold prefill).
        past_key_values: the KV cache after generation.
    """

    sequences: torch.Tensor
    logits: tuple[torch.Tensor, ...] | None = None
    reused: list[int] = field(default_factory=list)
    past_key_values: Any = None


def check_prompts(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                  max_new_tokens: int | None = None) -> None:
    """Raise ``ValueError`` naming the sample for an empty prompt or one too long for the model.

    Args:
        input_ids, attention_mask: [B, T] (1 = real token).
        max_new_tokens: counted into the length limit when given.
    """
    if input_ids.ndim != 2 or input_ids.shape[0] == 0 or input_ids.shape[1] == 0:
        raise ValueError(f"empty prompt: input_ids has shape {tuple(input_ids.shape)}")
    lengths = attention_mask.sum(-1).tolist()
    limit = getattr(unwrap(model).config, "max_position_embeddings", None)
    for b, n in enumerate(lengths):
        if n == 0:
            raise ValueError(f"sample {b}: empty prompt (no real tokens)")
        total = n + (max_new_tokens or 0)
        if limit is not None and total > limit:
            raise ValueError(f"sample {b}: prompt of {n} tokens + {max_new_tokens or 0} new tokens exceeds the "
                             f"model's {limit} positions")


def generate(model: torch.nn.Module, batch: Mapping[str, torch.Tensor], *, prefix_cache: PrefixCache | None = None,
             tokenizer: Any = None, **gen_kwargs: Any) -> Generation:
    """Generate from a left-padded ``batch`` with MAS prefill (when it has ``segment_ids``) and causal decoding.

    Args:
        model: a model (or PeftModel) after ``segmask.enable``.
        batch: ``input_ids``, ``attention_mask``, optional ``segment_ids``, each [B, T], left padded.
        prefix_cache: reuse and store the KV of leading segments (needs ``segment_ids``).
        tokenizer: checked against the prefix cache and passed to ``generate`` (needed for ``stop_strings``).
        gen_kwargs: any ``model.generate`` option (``max_new_tokens``, ``do_sample``, ``num_beams``,
            ``num_return_sequences``, ``stop_strings``, ``cache_implementation``, ``output_logits``, ...). A warm
            request (prefix from the cache) decodes into a DynamicCache built from the entry, so it ignores
            ``cache_implementation``.

    Returns:
        ``Generation`` with the new tokens [B * n, N].
    """
    input_ids = batch["input_ids"]
    attention_mask = batch.get("attention_mask")
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    segment_ids = batch.get("segment_ids")
    check_prompts(model, input_ids, attention_mask, gen_kwargs.get("max_new_tokens"))
    if segment_ids is not None and not is_enabled(model):
        raise ValueError("batch has segment_ids but MAS is not enabled on this model: call segmask.enable(model)")
    if tokenizer is not None:
        gen_kwargs.setdefault("tokenizer", tokenizer)
        if tokenizer.pad_token_id is not None:
            gen_kwargs.setdefault("pad_token_id", tokenizer.pad_token_id)
    if prefix_cache is None or segment_ids is None:
        return _run(model, input_ids, attention_mask, segment_ids, gen_kwargs, reused=[0] * len(input_ids))
    prefix_cache.check(model, tokenizer)
    rows = _unpad(input_ids, attention_mask, segment_ids)
    entries = [prefix_cache.lookup(ids, segs) for ids, segs in rows]
    if entries[0] is None and len(rows) > 1:
        entries = [_prefill_shared_prefix(model, prefix_cache, rows, input_ids.device)] * len(rows)
    if entries[0] is not None and all(e is entries[0] for e in entries):
        return _generate_warm(model, rows, entries[0], gen_kwargs)
    out = _run(model, input_ids, attention_mask, segment_ids, gen_kwargs, reused=[0] * len(rows))
    pads = (attention_mask.shape[1] - attention_mask.sum(-1)).tolist()
    prefix_cache.store(rows, out.past_key_values, pads, expand_size(unwrap(model).generation_config, gen_kwargs))
    return out


def _prefill_shared_prefix(model, cache: PrefixCache, rows, device) -> PrefixEntry | None:
    """When every prompt of a batch starts with the same cacheable prefix (e.g. one system prompt), prefill it once,
    store it, and return its entry; else None (the batch is prefilled cold)."""
    from ..hf.prefill import mas_prefill

    p = cache.prefix_length(rows[0][1])
    if p is None or any((ids[:p], segs[:p]) != (rows[0][0][:p], rows[0][1][:p]) for ids, segs in rows):
        return None
    ids, segs = rows[0][0][:p], rows[0][1][:p]
    with torch.no_grad():
        out = mas_prefill(model, torch.tensor([ids], device=device), torch.tensor([segs], device=device))
    cache.put(ids, segs, [(layer.keys, layer.values) for layer in out.past_key_values.layers])
    return cache.lookup(rows[0][0], rows[0][1])


def _run(model, input_ids, attention_mask, segment_ids, gen_kwargs, *, reused, past_key_values=None) -> Generation:
    extra = {} if segment_ids is None else {"segment_ids": segment_ids}
    if past_key_values is not None:
        extra["past_key_values"] = past_key_values
    gen_kwargs = {**gen_kwargs, "return_dict_in_generate": True}
    with torch.no_grad():
        out = model.generate(input_ids=input_ids, attention_mask=attention_mask, **extra, **gen_kwargs)
    return Generation(out.sequences[:, input_ids.shape[1]:], getattr(out, "logits", None), reused,
                      getattr(out, "past_key_values", None))


def _unpad(input_ids, attention_mask, segment_ids) -> list[tuple[list[int], list[int]]]:
    """Per sample, the real tokens and their segment ids (any padding position dropped)."""
    rows = []
    for ids, mask, segs in zip(input_ids.tolist(), attention_mask.tolist(), segment_ids.tolist()):
        rows.append(([t for t, m in zip(ids, mask) if m], [s for s, m in zip(segs, mask) if m]))
    return rows


def _generate_warm(model, rows, entry: PrefixEntry, gen_kwargs) -> Generation:
    """Prefill only the tokens after ``entry``'s prefix: rows laid out as [prefix | padding | new tokens]."""
    lm = unwrap(model)
    pad = gen_kwargs.get("pad_token_id")
    batch = entry.layout(rows, pad if pad is not None else pad_token_id(None, lm.generation_config))
    cache = entry.to_cache(len(rows) * expand_size(lm.generation_config, gen_kwargs), lm.config)
    gen_kwargs = {k: v for k, v in gen_kwargs.items() if k != "cache_implementation"}
    return _run(model, batch["input_ids"], batch["attention_mask"], batch["segment_ids"], gen_kwargs,
                reused=[entry.length] * len(rows), past_key_values=cache)
