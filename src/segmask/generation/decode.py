"""The decode loop, the one generation engine of segmask: ``segmask.generate`` and the server's batcher both run it.

It prefills a batch of requests together (MAS when enabled), then decodes one token per step for every row, each
row with its own sampler settings, stop conditions and event callback. Rows are left padded, positions counted from
each row's first real token (as ``model.generate`` does). With a prefix cache, ``run`` groups requests by their
cached leading segments and lays each group out as ``[prefix | padding | new tokens]``, so only the new tokens are
prefilled; requests that all start with the same uncached prefix prefill it once; cold requests store theirs.

With ``isolate`` (the server), a request fails alone: one that cannot be prefilled (the batch is then prefilled again
request by request), sampled or told of its tokens gets ``("error", message)`` and its batch-mates go on; only a
failure of the batched decode forward itself ends every row still decoding. Without it (``segmask.generate``) the
first error is raised.

    >>> loop = DecodeLoop(model, tokenizer, mas=True)              # model: segmask.enable()d causal LM
    >>> loop.run([GenRequest(input_ids=[...], segment_ids=[...], max_new_tokens=32, on_event=print)])

Shapes in the notation of ``segmask.core`` (B rows, T padded prompt length, P cached prefix, V vocabulary).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ..core.runs import CAUSAL
from ..core.segments import collate, from_segment_ids, pad_token_id, position_ids_from_attention_mask
from ..hf.backend import cache_kwarg, eos_token_ids, output_cache, unwrap
from ..hf.prefill import mas_prefill
from .rows import Rows, joinable
from .sampling import make_generator, pick_token, token_logprobs


@dataclass
class GenRequest:
    """One generation job: a tokenized prompt plus decoding options.

    ``on_event(kind, value)`` is called from the worker thread with ``("token", id)`` for each new token, ``("done",
    finish_reason)`` once (``"stop"`` for EOS or a stop condition, ``"length"`` at ``max_new_tokens``), or
    ``("error", message)`` once instead. ``should_stop(token_ids)`` may end the row early (stop strings, a gone
    client); EOS cannot end it before ``min_new_tokens``. With ``logprobs`` = k (None: off), ``token_logprobs`` gets
    ``(logprob, [(id, logprob)] * k)`` for each token before its ``"token"`` event
    (``segmask.generation.sampling.token_logprobs``). With ``keep_logits``, ``logits`` gets this row's raw logits
    [V] at every step its batch decodes (also after the row finished, as transformers' ``output_logits`` does).
    ``eos`` is the EOS token that ended the row (not in ``generated``); ``reused`` how many prompt tokens came from
    the prefix cache.
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
    top_k: int = 0
    min_new_tokens: int = 0
    keep_logits: bool = False
    generated: list[int] = field(default_factory=list)
    token_logprobs: list[tuple[float, list[tuple[int, float]]]] = field(default_factory=list)
    logits: list[torch.Tensor] = field(default_factory=list)
    eos: int | None = None
    reused: int = 0
    finished: bool = False


class DecodeLoop:
    """Runs batches of ``GenRequest``s on one model (see the module docstring).

    Args:
        model: causal LM with ``segmask.enable`` applied (needed only when ``mas`` is True).
        tokenizer: its tokenizer (pad and EOS ids are taken from it and the model's generation config).
        mas: prefill with the requests' segment ids; False prefills causally (segment ids ignored).
        prefix_cache: a ``segmask.generation.prefix_cache.PrefixCache`` for this model: cold requests store their
            leading segments in it (MAS only); ``run_batch(batch, prefix)`` starts from a stored entry.
        eos_ids: token ids that end a row (default: the model's and tokenizer's EOS ids; empty: none).
        prefill_route: ``segmask.hf.prefill.mas_prefill``'s route (``"auto"``, ``"dense"`` or ``"segment"``).
        isolate: a failing request fails alone (see the module docstring); False raises the first error.
    """

    def __init__(self, model: Any, tokenizer: Any, *, mas: bool = True, prefix_cache: Any = None,
                 eos_ids: set[int] | None = None, prefill_route: str = "auto", isolate: bool = True):
        if prefix_cache is not None:
            prefix_cache.check(model, tokenizer)
        self.model, self.tokenizer, self.mas = model, tokenizer, mas
        self.prefix_cache = prefix_cache if mas else None
        self.pad_id = pad_token_id(tokenizer, getattr(unwrap(model), "generation_config", None))
        self.eos_ids = eos_token_ids(model, tokenizer) if eos_ids is None else set(eos_ids)
        self._eos_index = torch.tensor(sorted(self.eos_ids), dtype=torch.long)  # held back before min_new_tokens
        self.prefill_route, self.isolate = prefill_route, isolate

    def run(self, requests: list[GenRequest], admit: Callable[[int], list[GenRequest]] | None = None) -> int:
        """Run ``requests`` in as few batches as their cached prefixes allow; returns the number of prefills.

        With ``admit`` (continuous batching, the server), finished rows leave the running batch after each decode
        step and ``admit(n)`` (n: rows still running) is asked for new requests, which are prefilled and join the
        batch; the call returns once no row is left. Caches that cannot be re-laid out by row
        (``segmask.generation.rows.joinable``: sliding-window, quantized, ...) admit nothing and run as without it.
        """
        groups = self.group_by_prefix(requests)
        if admit is None:
            for group, entry in groups:
                self.run_batch(group, entry)
            return len(groups)
        prefills, running = 0, None
        while groups or running is not None:
            for group, entry in groups:
                prefills += 1
                for rows in self._open(group, entry):
                    if running is not None and not (joinable(running.cache) and joinable(rows.cache)):
                        self._decode(running)  # cannot share a batch: the earlier rows finish first
                        running = None
                    running = rows if running is None else running.join(rows)
            if running is not None and not joinable(running.cache):
                self._decode(running)
                return prefills
            if running is not None:
                running = self._decode(running, one_step=True)
            new = admit(0 if running is None else len(running.requests))
            groups = self.group_by_prefix(new) if new else []
        return prefills

    def group_by_prefix(self, requests: list[GenRequest]) -> list[tuple[list[GenRequest], Any]]:
        """Split ``requests`` into (requests, prefix entry or None) groups that can be prefilled together; cold
        requests that all start with the same storable prefix get it prefilled once and stored."""
        if self.prefix_cache is None:
            return [(requests, None)]
        groups: dict[int, tuple[list[GenRequest], Any]] = {}
        for req in requests:
            entry = self.prefix_cache.lookup(req.input_ids, req.segment_ids)
            groups.setdefault(id(entry), ([], entry))[0].append(req)
        cold = groups.get(id(None))
        if cold is not None and len(cold[0]) > 1:
            prompts = [(r.input_ids, r.segment_ids) for r in cold[0]]
            groups[id(None)] = (cold[0], self.prefix_cache.prefill_shared(self.model, prompts))
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
        for rows in self._open(batch, prefix):
            self._decode(rows)

    @torch.no_grad()
    def _open(self, batch: list[GenRequest], prefix: Any) -> list[Rows]:
        """Prefill ``batch``: its rows, ready for their first token. When the batch cannot be prefilled (and
        ``isolate``), each request is prefilled alone and the one at fault fails."""
        for req in batch:
            req.reused = 0 if prefix is None else prefix.length
        try:
            out, attention_mask, positions = self._prefill(batch, prefix)
        except Exception as err:
            if not self.isolate:
                raise
            if len(batch) == 1:
                self._fail(batch[0], err)
                return []
            return [rows for req in batch for rows in self._open([req], prefix)]
        live, generators = [True] * len(batch), [None] * len(batch)
        for b, req in enumerate(batch):
            try:
                generators[b] = make_generator(req.seed, attention_mask.device)
            except Exception as err:
                live[b] = False
                self._fail(req, err)
        return [Rows.after(batch, out, attention_mask, positions[:, -1:], live, generators)]

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
            cache = prefix.to_cache(len(batch), config)
            attention_mask = torch.cat([attention_mask.new_ones(len(batch), p), attention_mask], dim=1)
            segment_ids = torch.cat([torch.tensor([prefix.segment_ids] * len(batch)).to(segment_ids), segment_ids], 1)
        positions = position_ids_from_attention_mask(attention_mask)
        kwargs = dict(attention_mask=attention_mask, position_ids=positions[:, p:], logits_to_keep=1)
        if self.mas:  # "auto": the cheaper route for this prompt shape (segmask.hf.plan.plan_prefill)
            out = mas_prefill(self.model, enc["input_ids"], segment_ids, past_key_values=cache,
                              route=self.prefill_route, **kwargs)
        else:
            out = self.model(input_ids=enc["input_ids"], use_cache=True, **kwargs, **{cache_kwarg(self.model): cache})
        if prefix is None and self.prefix_cache is not None:
            pads = (enc["attention_mask"].shape[1] - enc["attention_mask"].sum(-1)).tolist()
            self.prefix_cache.store([(r.input_ids, r.segment_ids) for r in batch], output_cache(out), pads)
        return out, attention_mask, positions

    @torch.no_grad()
    def _decode(self, rows: Rows, one_step: bool = False) -> Rows | None:
        """Decode one token per step for every live row of ``rows`` until every row is done; with ``one_step``, one
        step, after which the finished rows leave and the rest are returned, ready for their next token (None when
        none is left)."""
        for _ in range(1 if one_step else max(r.max_new_tokens for r in rows.requests)):
            next_ids = self._step(rows.requests, rows.logits, rows.live, rows.generators)
            if one_step:
                index = [b for b, alive in enumerate(rows.live) if alive]
                next_ids = [next_ids[b] for b in index]
                rows = rows.keep(index) if len(index) < len(rows.requests) else rows
            if not any(rows.live):
                return None
            rows.attention_mask = torch.cat([rows.attention_mask, rows.attention_mask.new_ones(len(next_ids), 1)], 1)
            rows.last_pos = rows.last_pos + 1
            try:
                out = self.model(input_ids=torch.tensor(next_ids, device=rows.attention_mask.device)[:, None],
                                 attention_mask=rows.attention_mask, position_ids=rows.last_pos,
                                 use_cache=True, **{cache_kwarg(self.model): rows.cache})
            except Exception as err:
                for b, req in enumerate(rows.requests):
                    if rows.live[b]:
                        self._fail(req, err)
                return None
            rows.logits, rows.cache = out.logits[:, -1, :].float(), output_cache(out)
        return rows

    def _step(self, batch: list[GenRequest], logits: torch.Tensor, live: list[bool], generators: list) -> list[int]:
        """Choose each live row's next token from ``logits`` [B, V] (``live`` updated in place); the ids to feed."""
        next_ids = [self.pad_id] * len(batch)
        for b, req in enumerate(batch):
            if req.keep_logits:
                req.logits.append(logits[b])
            if not live[b]:
                continue
            try:
                row = logits[b]
                if len(req.generated) < req.min_new_tokens and self.eos_ids:
                    row = row.index_fill(0, self._eos_index.to(row.device), float("-inf"))
                next_ids[b] = pick_token(row, req.temperature, req.top_p, generators[b], req.top_k)
                live[b] = self._advance(req, next_ids[b], logits[b])
            except Exception as err:  # this row's sampling or its client's callbacks: it alone fails
                live[b] = False
                self._fail(req, err)
        return next_ids

    def _advance(self, req: GenRequest, token: int, logits: torch.Tensor) -> bool:
        """Record ``token`` (chosen from ``logits`` [V]) for ``req``; return whether the row keeps decoding."""
        if token in self.eos_ids:
            req.eos = token
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

    def _fail(self, req: GenRequest, err: Exception) -> None:
        """Tell ``req`` it failed, once; a request that already finished or failed hears nothing more. Without
        ``isolate`` the error is raised instead."""
        if not self.isolate:
            raise err
        if req.finished:
            return
        req.finished = True
        try:
            req.on_event("error", f"{type(err).__name__}: {err}")
        except Exception:  # noqa: S110 - its callback is what failed: nobody is left to tell
            pass

