"""Segment KV reuse across requests: an LRU cache of the KV of leading prompt segments.

Under MAS a segment attends bidirectionally to itself and causally to everything before it, never to what follows,
so the keys and values of a prompt's leading segments (typically a long system prompt) depend only on those tokens.
``PrefixCache`` keeps them, keyed by the exact token ids and segment ids of the prefix, bounded in bytes, least
recently used first out; ``generate`` with ``prefix_cache=cache`` (``segmask.generation``) (and the server) then
prefill only the new segments.

    >>> cache = PrefixCache(model, tokenizer, max_bytes=2**30)
    >>> out = generate(model, encode_chat(tok, [sys_msg, user_1]), prefix_cache=cache)   # cold: stores the system turn
    >>> out = generate(model, encode_chat(tok, [sys_msg, user_2]), prefix_cache=cache)   # warm: prefills user_2 only

A cache belongs to one model (configuration, dtype, weights) and tokenizer: using it with another raises ValueError.
Models with sliding-window layers keep only a window of keys, so their prefixes are not cached.
"""

from __future__ import annotations

import hashlib
import json
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..core.runs import CAUSAL, segment_runs
from ..core.segments import Batch
from ..hf.backend import layer_kinds, output_cache, unwrap

_TOKENIZER_DIGESTS: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def model_fingerprint(model: torch.nn.Module) -> str:
    """Digest of ``model``'s class, configuration, dtype and a sample of every parameter (LoRA adapters included).

    Cheap (a few values per tensor), so it is recomputed on every use and follows weight updates.
    """
    inner = unwrap(model)
    h = hashlib.sha1(type(inner).__name__.encode())
    h.update(inner.config.to_json_string(use_diff=False).encode())
    with torch.no_grad():
        for name, param in model.named_parameters():
            flat = param.detach().reshape(-1)
            sample = torch.cat([flat[:4], flat[-4:]]).float().cpu()
            h.update(f"{name}{tuple(param.shape)}{param.dtype}".encode())
            h.update(sample.numpy().tobytes())
    return h.hexdigest()


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """Digest of ``tokenizer``'s vocabulary and special tokens (memoized per tokenizer object)."""
    try:
        return _TOKENIZER_DIGESTS[tokenizer]
    except (KeyError, TypeError):
        pass
    vocab = sorted(tokenizer.get_vocab().items())
    specials = {k: str(v) for k, v in getattr(tokenizer, "special_tokens_map", {}).items()}
    digest = hashlib.sha1(json.dumps([type(tokenizer).__name__, vocab, specials]).encode()).hexdigest()
    try:
        _TOKENIZER_DIGESTS[tokenizer] = digest
    except TypeError:
        pass
    return digest


def segment_ends(segment_ids: Sequence[int]) -> list[int]:
    """Lengths P at which a prefix ends right after a bidirectional segment, strictly inside the prompt.

    ``segment_ids`` is one unpadded sample [T]. These are the cut points where a prompt may be split between the
    KV cache and the next forward call without splitting a segment.
    """
    return [run.end for run in segment_runs(segment_ids)[:-1] if run.segment != CAUSAL]


@dataclass
class PrefixEntry:
    """The KV of one prompt prefix: per layer (keys, values), each [1, H_kv, P, D]."""

    token_ids: tuple[int, ...]
    segment_ids: tuple[int, ...]
    layers: list[tuple[torch.Tensor, torch.Tensor]]
    fingerprint: str

    @property
    def length(self) -> int:
        return len(self.token_ids)

    @property
    def nbytes(self) -> int:
        return sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in self.layers)

    def to_cache(self, rows: int, config: Any) -> Any:
        """A new ``DynamicCache`` holding this prefix's KV in each of ``rows`` rows (a copy: the entry stays)."""
        from transformers import DynamicCache

        kv = [(k.repeat(rows, 1, 1, 1), v.repeat(rows, 1, 1, 1)) for k, v in self.layers]
        return DynamicCache(ddp_cache_data=kv, config=config)

    def layout(self, prompts: Sequence[tuple[Sequence[int], Sequence[int]]], pad_id: int) -> Batch:
        """Unpadded prompts (token ids, segment ids) that start with this prefix, as rows
        ``[prefix | padding | new tokens]``: ``input_ids``, ``attention_mask`` and ``segment_ids`` [B, P + W] (W the
        longest new part) on the entry's device. The padding in the middle is masked, and
        ``position_ids_from_attention_mask`` skips it, so every row sees the positions and keys of its cold prefill.
        """
        p = self.length
        width = max(len(ids) - p for ids, _ in prompts)
        rows: dict[str, list[list[int]]] = {"input_ids": [], "attention_mask": [], "segment_ids": []}
        for ids, segs in prompts:
            fill = width - (len(ids) - p)
            rows["input_ids"].append([*self.token_ids, *[pad_id] * fill, *ids[p:]])
            rows["attention_mask"].append([1] * p + [0] * fill + [1] * (len(ids) - p))
            rows["segment_ids"].append([*self.segment_ids, *[CAUSAL] * fill, *segs[p:]])
        device = self.layers[0][0].device
        return Batch({k: torch.tensor(v, dtype=torch.long, device=device) for k, v in rows.items()})


@dataclass
class LivePrefix:
    """Tokens a caller's own KV cache already holds (a ``Conversation``'s earlier turns), for the decode loop to
    continue: the prompt starts with them and ``cache`` [1 row, P positions] is extended in place, not copied.
    It stands where a ``PrefixEntry`` would (``length``, ``segment_ids``, ``to_cache``)."""

    token_ids: tuple[int, ...]
    segment_ids: tuple[int, ...]
    cache: Any

    @property
    def length(self) -> int:
        return len(self.token_ids)

    def to_cache(self, rows: int, config: Any) -> Any:
        """The caller's cache itself; it holds one row, so ``rows`` must be 1."""
        if rows != 1:
            raise ValueError(f"a live KV cache holds one sequence; cannot continue it for {rows} rows")
        return self.cache


class PrefixCache:
    """LRU cache of leading-segment KV for one model and tokenizer (see the module docstring).

    Args:
        model: the model (or PeftModel) the entries are computed with.
        tokenizer: its tokenizer, or None when only token ids are used.
        max_bytes: memory bound over all entries; the least recently used entries are dropped to stay under it.
        leading_segments: after a cold request, store the prefix that ends with this many segments (1: the first
            segment, e.g. the system turn).
    """

    def __init__(self, model: torch.nn.Module, tokenizer: Any = None, *, max_bytes: int = 2**30,
                 leading_segments: int = 1):
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        if leading_segments < 1:
            raise ValueError(f"leading_segments must be at least 1, got {leading_segments}")
        if "sliding_attention" in layer_kinds(unwrap(model).config):
            raise ValueError("prefix caching needs full-attention layers; this model has sliding-window layers")
        tok = tokenizer_fingerprint(tokenizer) if tokenizer is not None else ""
        self.fingerprint = hashlib.sha1((model_fingerprint(model) + tok).encode()).hexdigest()
        self._tokenizer_digest = tok
        self.max_bytes = max_bytes
        self.leading_segments = leading_segments
        self._entries: OrderedDict[tuple, PrefixEntry] = OrderedDict()
        self.hits = 0
        self.misses = 0

    @classmethod
    def for_model(cls, model: torch.nn.Module, tokenizer: Any = None, **kwargs: Any) -> PrefixCache | None:
        """A cache for ``model``, or None when it has sliding-window layers (they keep no full prefix)."""
        return None if "sliding_attention" in layer_kinds(unwrap(model).config) else cls(model, tokenizer, **kwargs)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        """Bytes held by all entries."""
        return sum(e.nbytes for e in self._entries.values())

    def __contains__(self, prefix: tuple[Sequence[int], Sequence[int]]) -> bool:
        """``(token_ids, segment_ids) in cache``: is exactly this prefix stored (no LRU or statistics update)."""
        token_ids, segment_ids = prefix
        return (tuple(token_ids), tuple(segment_ids)) in self._entries

    def clear(self) -> None:
        """Drop every entry."""
        self._entries.clear()

    def check(self, model: torch.nn.Module, tokenizer: Any = None) -> None:
        """Raise ``ValueError`` unless this cache was built for ``model`` (and ``tokenizer`` when given)."""
        tok = self._tokenizer_digest
        if tokenizer is not None:
            tok = tokenizer_fingerprint(tokenizer)
            if self._tokenizer_digest and tok != self._tokenizer_digest:
                raise ValueError("prefix cache was built with another tokenizer; make a new PrefixCache for this one")
        if hashlib.sha1((model_fingerprint(model) + tok).encode()).hexdigest() != self.fingerprint:
            raise ValueError("prefix cache was built for another model (configuration, dtype or weights differ); "
                             "make a new PrefixCache for this model")

    def lookup(self, token_ids: Sequence[int], segment_ids: Sequence[int]) -> PrefixEntry | None:
        """Longest stored prefix of one unpadded prompt that ends at a segment boundary before its end, or None."""
        for p in reversed(segment_ends(segment_ids)):
            entry = self._entries.get((tuple(token_ids[:p]), tuple(segment_ids[:p])))
            if entry is not None:
                if entry.fingerprint != self.fingerprint:
                    raise ValueError("prefix cache entry comes from another model or tokenizer")
                self._entries.move_to_end(entry_key(entry))
                self.hits += 1
                return entry
        self.misses += 1
        return None

    def prefix_length(self, segment_ids: Sequence[int]) -> int | None:
        """Length of the prefix this cache stores for a prompt: its first ``leading_segments`` segments (None if
        the prompt has fewer segments before its last token)."""
        ends = segment_ends(segment_ids)
        return ends[self.leading_segments - 1] if len(ends) >= self.leading_segments else None

    def put(self, token_ids: Sequence[int], segment_ids: Sequence[int],
            layers: list[tuple[torch.Tensor, torch.Tensor]]) -> PrefixEntry | None:
        """Store the KV ``layers`` (per layer [1, H_kv, P, D] keys and values) of a prefix of length P.

        Returns the entry, or None when it alone exceeds ``max_bytes``. Evicts least recently used entries.
        """
        p = len(token_ids)
        if p != len(segment_ids) or any(k.shape[-2] != p or v.shape[-2] != p for k, v in layers):
            raise ValueError(f"prefix of {p} tokens does not match its KV of {layers[0][0].shape[-2]} positions")
        entry = PrefixEntry(tuple(int(t) for t in token_ids), tuple(int(s) for s in segment_ids),
                            [(k.detach().clone(), v.detach().clone()) for k, v in layers], self.fingerprint)
        if entry.nbytes > self.max_bytes:
            return None
        self._entries[entry_key(entry)] = entry
        self._entries.move_to_end(entry_key(entry))
        while self.nbytes > self.max_bytes:
            self._entries.popitem(last=False)
        return entry

    def prefill_shared(self, model: torch.nn.Module,
                       prompts: Sequence[tuple[Sequence[int], Sequence[int]]]) -> PrefixEntry | None:
        """When every unpadded prompt (token ids, segment ids) starts with the same storable prefix (e.g. one new
        system prompt), prefill it once under MAS, store it and return its entry; else None."""
        from ..hf.prefill import mas_prefill

        ids, segs = prompts[0]
        p = self.prefix_length(segs)
        if p is None or any((list(i[:p]), list(s[:p])) != (list(ids[:p]), list(segs[:p])) for i, s in prompts):
            return None
        device = next(model.parameters()).device
        with torch.no_grad():
            out = mas_prefill(model, torch.tensor([ids[:p]], device=device), torch.tensor([segs[:p]], device=device))
        self.put(ids[:p], segs[:p], [(layer.keys, layer.values) for layer in output_cache(out).layers])
        return self.lookup(ids, segs)

    def store(self, prompts: Sequence[tuple[Sequence[int], Sequence[int]]], kv_cache: Any, starts: Sequence[int],
              expand: int = 1) -> None:
        """Copy the leading segments (``prefix_length``) of each unpadded prompt (token ids, segment ids) out of a
        filled KV cache, no extra forward: prompt b's first token sits at position ``starts[b]`` of cache row
        ``b * expand`` (``expand`` rows per prompt, as ``generate`` lays out beams). Stored prefixes are skipped."""
        if kv_cache is None or not hasattr(kv_cache, "layers"):
            return
        for b, (ids, segs) in enumerate(prompts):
            p = self.prefix_length(segs)
            if p is None or (ids[:p], segs[:p]) in self:
                continue
            start, row = int(starts[b]), b * expand
            self.put(ids[:p], segs[:p], [(layer.keys[row:row + 1, :, start:start + p],
                                          layer.values[row:row + 1, :, start:start + p]) for layer in kv_cache.layers])


def entry_key(entry: PrefixEntry) -> tuple:
    """The lookup key of an entry: (token ids, segment ids) of its prefix."""
    return entry.token_ids, entry.segment_ids
