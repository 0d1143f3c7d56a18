"""The decode loop: prefill a batch of requests together (MAS when enabled), then decode one token per step for every
row, each row with its own sampler settings, stop conditions and event callback. The server's batcher runs it.

Rows are left padded, positions counted from each row's first real token (as ``model.generate`` does). Requests
that start with a cached prefix (``PrefixEntry``) are laid out as ``[prefix | padding | new tokens]`` and only the
new tokens are prefilled; cold requests store their leading segments in the prefix cache.

A request fails alone: one that cannot be prefilled (the batch is then prefilled again request by request), sampled
or told of its tokens gets ``("error", message)`` and its batch-mates go on. Only a failure of the batched decode
forward itself ends every row still decoding.

    >>> loop = DecodeLoop(model, tokenizer, mas=True)              # model: segmask.enable()d causal LM
    >>> loop.run_batch([GenRequest(input_ids=[...], segment_ids=[...], max_new_tokens=32, on_event=print)])

Shapes in the notation of ``segmask.core`` (B rows, T padded prompt length, P cached prefix, V vocabulary).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ..core.runs import CAUSAL
from ..core.segments import collate, from_segment_ids, pad_token_id, position_ids_from_attention_mask
from ..hf.backend import cache_kwarg, eos_token_ids
from ..hf.prefill import mas_prefill
from .sampling import make_generator, pick_token, token_logprobs


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


class DecodeLoop:
    """Runs batches of ``GenRequest``s on one model (see the module docstring).

    Args:
        model: causal LM with ``segmask.enable`` applied (needed only when ``mas`` is True).
        tokenizer: its tokenizer (pad and EOS ids are taken from it and the model's generation config).
        mas: prefill with the requests' segment ids; False prefills causally (segment ids ignored).
        prefix_cache: a ``segmask.generation.prefix_cache.PrefixCache`` for this model: cold requests store their
            leading segments in it (MAS only); ``run_batch(batch, prefix)`` starts from a stored entry.
    """

    def __init__(self, model: Any, tokenizer: Any, *, mas: bool = True, prefix_cache: Any = None):
        if prefix_cache is not None:
            prefix_cache.check(model, tokenizer)
        self.model, self.tokenizer, self.mas = model, tokenizer, mas
        self.prefix_cache = prefix_cache if mas else None
        self.pad_id = pad_token_id(tokenizer)
        self.eos_ids = eos_token_ids(model, tokenizer)

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
            cache = prefix.to_cache(len(batch), config)
            attention_mask = torch.cat([attention_mask.new_ones(len(batch), p), attention_mask], dim=1)
            segment_ids = torch.cat([torch.tensor([prefix.segment_ids] * len(batch)).to(segment_ids), segment_ids], 1)
        positions = position_ids_from_attention_mask(attention_mask)
        kwargs = dict(attention_mask=attention_mask, position_ids=positions[:, p:], logits_to_keep=1)
        if self.mas:  # the cheaper route for this prompt shape (segmask.hf.prefill.choose_route)
            out = mas_prefill(self.model, enc["input_ids"], segment_ids, past_key_values=cache, **kwargs)
        else:
            out = self.model(input_ids=enc["input_ids"], use_cache=True, **kwargs, **{cache_kwarg(self.model): cache})
        if prefix is None and self.prefix_cache is not None:
            pads = (enc["attention_mask"].shape[1] - enc["attention_mask"].sum(-1)).tolist()
            self.prefix_cache.store([(r.input_ids, r.segment_ids) for r in batch], out.past_key_values, pads)
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

