"""A request queue and batched decode loop for serving: MAS prefill of a padded batch, then causal decoding.

One worker thread owns the model. It takes up to ``max_batch_size`` waiting requests (waiting ``batch_wait_s`` for
more to arrive), prefills them together under the MAS mask (left padded, positions counted from each row's first
real token, as ``model.generate`` does), then decodes one token per step for every row until each row has met its
stop condition. Each request gets its tokens through a callback as they are produced, so the same loop serves
streaming and non-streaming clients.

A request fails alone: one that cannot be prefilled (the batch is then prefilled again request by request), sampled
or streamed to gets ``("error", message)`` and its batch-mates go on. Only a failure of the batched decode forward
itself ends every row still decoding.

    >>> batcher = Batcher(model, tokenizer, mas=True)              # model: segmask.enable()d causal LM
    >>> batcher.start()
    >>> req = GenRequest(input_ids=[...], segment_ids=[...], max_new_tokens=32, on_event=print)
    >>> batcher.submit(req)                                         # on_event("token", id), then ("done", reason)

Notation: B rows in a batch, T padded prompt length, V vocabulary size.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ..core.masks import CAUSAL
from ..core.segments import collate, from_segment_ids, position_ids_from_attention_mask
from ..generation.sampling import make_generator, pick_token, token_logprobs
from ..hf.backend import cache_kwarg
from ..hf.prefill import mas_prefill


class QueueFull(Exception):
    """The server holds ``max_queue`` waiting requests already."""


@dataclass
class GenRequest:
    """One generation job: a tokenized prompt plus decoding options.

    ``on_event(kind, value)`` is called from the worker thread with ``("token", id)`` for each new token,
    ``("done", finish_reason)`` once (``"stop"`` for EOS or a stop condition, ``"length"`` at ``max_new_tokens``),
    or ``("error", message)`` once instead. ``should_stop(token_ids)`` may end the row early (stop strings, a gone
    client). With ``logprobs`` = k (None: off), ``token_logprobs`` gets ``(logprob, [(id, logprob)] * k)`` for
    each token before its ``"token"`` event (``segmask.generation.sampling.token_logprobs``).
    """

    input_ids: list[int]
    segment_ids: list[int]
    max_new_tokens: int
    on_event: Callable[[str, Any], None]
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    should_stop: Callable[[list[int]], bool] | None = None
    logprobs: int | None = None
    generated: list[int] = field(default_factory=list)
    token_logprobs: list[tuple[float, list[tuple[int, float]]]] = field(default_factory=list)
    finished: bool = False


class Batcher:
    """Queue of ``GenRequest``s served by one worker thread in batches (see the module docstring).

    Args:
        model: causal LM with ``segmask.enable`` applied (needed only when ``mas`` is True).
        tokenizer: its tokenizer (pad and EOS ids are taken from it and the model's generation config).
        mas: prefill with the requests' segment ids; False prefills causally (segment ids ignored).
        max_batch_size: most requests prefilled and decoded together.
        batch_wait_s: how long the worker waits for more requests before starting a batch.
        max_queue: waiting requests beyond this are refused with ``QueueFull``.
        prefix_cache: a ``segmask.generation.prefix_cache.PrefixCache`` for this model: requests whose leading segments (e.g.
            a shared system prompt) are stored skip their prefill; cold requests store theirs. MAS only.
    """

    def __init__(self, model: Any, tokenizer: Any, *, mas: bool = True, max_batch_size: int = 8,
                 batch_wait_s: float = 0.01, max_queue: int = 256, prefix_cache: Any = None):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if prefix_cache is not None:
            prefix_cache.check(model, tokenizer)
        self.model, self.tokenizer, self.mas = model, tokenizer, mas
        self.prefix_cache = prefix_cache if mas else None
        self.max_batch_size, self.batch_wait_s, self.max_queue = max_batch_size, batch_wait_s, max_queue
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.eos_ids = eos_token_ids(model, tokenizer)
        self._queue: queue.Queue[GenRequest | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self.batches_run = 0
        self.cache_stats: dict[str, int] | None = None if self.prefix_cache is None else {
            "entries": 0, "bytes": 0, "hits": 0, "misses": 0}

    def start(self) -> "Batcher":
        """Start the worker thread (idempotent); returns self."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="segmask-batcher", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Finish the batch in flight, then end the worker thread."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def pending(self) -> int:
        """Number of requests waiting for a batch."""
        return self._queue.qsize()

    def submit(self, request: GenRequest) -> None:
        """Queue ``request``; raises ``QueueFull`` when ``max_queue`` requests are already waiting."""
        if self._queue.qsize() >= self.max_queue:
            raise QueueFull(f"{self.max_queue} requests are already waiting")
        self._queue.put(request)

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            deadline = time.monotonic() + self.batch_wait_s
            while len(batch) < self.max_batch_size:
                try:
                    nxt = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                batch.append(nxt)
            try:
                for group in self._group_by_prefix(batch):
                    self.run_batch(*group)
                    self.batches_run += 1
            except Exception as err:  # run_batch isolates request failures; this is the last line of defence
                for req in batch:
                    self._fail(req, err)
            if self.prefix_cache is not None:  # read by /health from another thread: a snapshot, not the cache
                cache = self.prefix_cache
                self.cache_stats = {"entries": len(cache), "bytes": cache.nbytes, "hits": cache.hits,
                                    "misses": cache.misses}

    def _group_by_prefix(self, batch: list[GenRequest]) -> list[tuple[list[GenRequest], Any]]:
        """Split ``batch`` into (requests, cached prefix entry or None) groups that can be prefilled together."""
        if self.prefix_cache is None:
            return [(batch, None)]
        groups: dict[int, tuple[list[GenRequest], Any]] = {}
        for req in batch:
            entry = self.prefix_cache.lookup(req.input_ids, req.segment_ids)
            groups.setdefault(id(entry), ([], entry))[0].append(req)
        return list(groups.values())

    @torch.no_grad()
    def run_batch(self, batch: list[GenRequest], prefix: Any = None) -> None:
        """Prefill ``batch`` together (MAS when enabled) and decode until every row is done.

        With ``prefix`` (a ``PrefixEntry`` every request starts with), rows are laid out as
        ``[prefix | padding | new tokens]``: the prefix KV comes from the cache, the padding is masked and skipped
        by the positions, and only the new tokens are prefilled. Without it the rows are left padded and prefilled
        whole, and their leading segments are stored in the prefix cache. When the batch cannot be prefilled, each
        request is run alone, so only the one at fault gets an error.
        """
        try:
            out, attention_mask, positions = self._prefill(batch, prefix)
        except Exception as err:
            if len(batch) == 1:
                self._fail(batch[0], err)
                return
            for req in batch:
                self.run_batch([req], prefix)
            return
        self._decode(batch, out, attention_mask, positions)

    def _prefill(self, batch: list[GenRequest], prefix: Any) -> tuple[Any, torch.Tensor, torch.Tensor]:
        """One prefill forward of ``batch``: (output with the last position's logits and the KV cache,
        attention_mask [B, P + T], position_ids [B, P + T])."""
        from transformers import DynamicCache

        device = next(self.model.parameters()).device
        p = 0 if prefix is None else prefix.length
        rows_segs = [r.segment_ids[p:] if self.mas else [CAUSAL] * (len(r.input_ids) - p) for r in batch]
        examples = [from_segment_ids(r.input_ids[p:], segs) for r, segs in zip(batch, rows_segs)]
        enc = collate(examples, pad_token_id=self.pad_id, padding_side="left").to(device)
        attention_mask, segment_ids = enc["attention_mask"], enc["segment_ids"]
        config = getattr(self.model, "config", None)
        if prefix is None:
            cache = DynamicCache(config=config)
        else:
            rows = len(batch)
            cache = DynamicCache(ddp_cache_data=[(k.expand(rows, -1, -1, -1).contiguous(),
                                                  v.expand(rows, -1, -1, -1).contiguous()) for k, v in prefix.layers],
                                 config=config)
            as_rows = lambda x: torch.tensor([list(x)] * rows, dtype=torch.long, device=device)  # noqa: E731
            attention_mask = torch.cat([as_rows([1] * p), attention_mask], dim=1)
            segment_ids = torch.cat([as_rows(prefix.segment_ids), segment_ids], dim=1)
        positions = position_ids_from_attention_mask(attention_mask)
        kwargs = dict(attention_mask=attention_mask, position_ids=positions[:, p:], logits_to_keep=1)
        if self.mas:  # the cheaper route for this prompt shape (segmask.hf.prefill.choose_route)
            out = mas_prefill(self.model, enc["input_ids"], segment_ids, past_key_values=cache, **kwargs)
        else:
            out = self.model(input_ids=enc["input_ids"], use_cache=True, **kwargs, **{cache_kwarg(self.model): cache})
        if prefix is None and self.prefix_cache is not None:
            self._store_prefixes(batch, enc["attention_mask"], out.past_key_values)
        return out, attention_mask, positions

    def _decode(self, batch: list[GenRequest], out: Any, attention_mask: torch.Tensor,
                positions: torch.Tensor) -> None:
        """Decode one token per step for every live row of ``batch`` after its prefill ``out``."""
        device = attention_mask.device
        live, generators = [True] * len(batch), [None] * len(batch)
        for b, req in enumerate(batch):
            try:
                generators[b] = make_generator(req.seed, device)
            except Exception as err:
                live[b] = False
                self._fail(req, err)
        last_pos = positions[:, -1:]
        for step in range(max(r.max_new_tokens for r in batch)):
            logits = out.logits[:, -1, :].float()
            next_ids = [self.pad_id] * len(batch)
            for b, req in enumerate(batch):
                if not live[b]:
                    continue
                try:
                    next_ids[b] = pick_token(logits[b], req.temperature, req.top_p, generators[b])
                    live[b] = self._advance(req, next_ids[b], logits[b])
                except Exception as err:  # this row's sampling or its client's callbacks: it alone fails
                    live[b] = False
                    self._fail(req, err)
            if not any(live):
                return
            attention_mask = torch.cat([attention_mask, attention_mask.new_ones(len(batch), 1)], dim=1)
            last_pos = last_pos + 1
            try:
                out = self.model(input_ids=torch.tensor(next_ids, device=device)[:, None],
                                 attention_mask=attention_mask, position_ids=last_pos,
                                 use_cache=True, **{cache_kwarg(self.model): out.past_key_values})
            except Exception as err:
                for b, req in enumerate(batch):
                    if live[b]:
                        self._fail(req, err)
                return

    def _store_prefixes(self, batch: list[GenRequest], attention_mask: torch.Tensor, kv_cache: Any) -> None:
        """Copy each prompt's leading segments out of the prefill KV (left padded rows) into the prefix cache."""
        pads = (attention_mask.shape[1] - attention_mask.sum(-1)).tolist()
        for b, req in enumerate(batch):
            p = self.prefix_cache.prefix_length(req.segment_ids)
            if p is None or (req.input_ids[:p], req.segment_ids[:p]) in self.prefix_cache:
                continue
            start = int(pads[b])
            self.prefix_cache.put(req.input_ids[:p], req.segment_ids[:p],
                                  [(layer.keys[b:b + 1, :, start:start + p], layer.values[b:b + 1, :, start:start + p])
                                   for layer in kv_cache.layers])

    def _advance(self, req: GenRequest, token: int, logits: torch.Tensor) -> bool:
        """Record ``token`` (chosen from ``logits`` [V]) for ``req``; return whether the row keeps decoding."""
        if token in self.eos_ids:
            return self._finish(req, "stop")
        if req.logprobs is not None:
            req.token_logprobs.append(token_logprobs(logits, token, req.logprobs))
        req.generated.append(token)
        req.on_event("token", token)
        if req.should_stop is not None and req.should_stop(req.generated):
            return self._finish(req, "stop")
        if len(req.generated) >= req.max_new_tokens:
            return self._finish(req, "length")
        return True

    @staticmethod
    def _finish(req: GenRequest, reason: str) -> bool:
        req.finished = True
        req.on_event("done", reason)
        return False

    @staticmethod
    def _fail(req: GenRequest, err: Exception) -> None:
        """Tell ``req`` it failed, once; a request that already finished or failed hears nothing more."""
        if req.finished:
            return
        req.finished = True
        try:
            req.on_event("error", f"{type(err).__name__}: {err}")
        except Exception:  # noqa: S110 - its callback is what failed: nobody is left to tell
            pass


def eos_token_ids(model: Any, tokenizer: Any) -> set[int]:
    """Token ids that end generation: the model's generation-config EOS ids and the tokenizer's EOS id."""
    ids: set[int] = set()
    config = getattr(model, "generation_config", None)
    eos = getattr(config, "eos_token_id", None)
    ids.update([eos] if isinstance(eos, int) else list(eos or []))
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return ids
