"""The prefill plan: a forward call's segment ids checked, padded and renumbered once, and its route decided once.

Every MAS prefill starts with ``plan_prefill``; what it returns, a ``PrefillPlan``, is handed down instead of raw ids:
``segmask.generate`` plans the batch before anything runs, ``model.generate`` (the ``generate`` integration),
``mas_prefill`` and the decode loop plan the prompt they prefill, and the ``enable`` hook takes a plan as
``segment_ids`` (or plans raw ids itself, as in ``model(..., segment_ids=ids)``). Nothing downstream checks, pads or
routes the ids again; this module is the one place that does.

    >>> plan = plan_prefill(model.config, batch["segment_ids"], batch_size=2, query_length=T,
    ...                     attention_mask=batch["attention_mask"])
    >>> plan.route, plan.bounds            # "dense" or "segment"; the cut points of its forward calls
    >>> mas_prefill(model, batch["input_ids"], plan)

Routes: ``"dense"`` is one masked forward (the kernel computes all T^2 pairs), ``"segment"`` one forward per chunk of
whole segments (``chunk_bounds``; exactly the pairs MAS allows, one extra call per chunk). ``"auto"`` weighs the two
with a cost model whose one constant, the cost of a call, was measured by ``benchmarks/bench_prefill.py``
(docs/PERFORMANCE.md). Shapes in ``segmask.core``'s notation (P tokens already in the KV cache, T in this call).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..core.cost import pair_flops, token_flops
from ..core.masks import as_segment_ids, pad_segment_ids, renumber_segments, validate_documents, validate_segment_ids
from ..core.runs import CAUSAL, check_whole_segments, segment_continues

ROUTES = ("dense", "segment")

CALL_COST_TOKENS = {"sdpa": 32.0, "eager": 32.0}
"""Cost of one extra forward call (the weights are streamed once more) in tokens of prefill, per attention backend;
absent = never chunk. Measured with benchmarks/bench_prefill.py on a SmolLM2-135M-shaped model on one CPU core:
(segment route - FLOP floor) / extra calls came to 28-35 tokens at 256-2,048 tokens (docs/PERFORMANCE.md)."""


@dataclass(frozen=True)
class PrefillPlan:
    """One prefill's checked segment ids and its route; made by ``plan_prefill`` only.

    Attributes:
        segment_ids: LongTensor [B, >= total], checked and renumbered 0, 1, ... per sample; -1 (causal) past the
            caller's ids. All causal when the call lies past the caller's ids (decode steps).
        attention_mask: [B, total] (1 = real token) as given, or None.
        past: P, positions already in the KV cache; total: P + T.
        route: ``"dense"`` or ``"segment"``.
        bounds: cut points past = c_0 < ... < c_n = total of the forward calls the route makes (``(past, total)``
            for one call).
    """

    segment_ids: torch.Tensor
    attention_mask: torch.Tensor | None
    past: int
    total: int
    route: str
    bounds: tuple[int, ...]

    def has_segments(self, start: int, end: int) -> bool:
        """Whether some query of positions [start, end) lies in a segment (else the call is plain causal)."""
        return bool((self.segment_ids[:, start:end] != CAUSAL).any())

    def check_call(self, batch_size: int, start: int, end: int) -> None:
        """Raise ``ValueError`` unless a forward call of ``batch_size`` rows over positions [start, end) is one of
        this plan's calls (or a run of them)."""
        if self.segment_ids.shape[0] != batch_size or start not in self.bounds or end not in self.bounds \
                or start >= end:
            raise ValueError(f"a prefill plan for {self.segment_ids.shape[0]} sequences and calls {self.bounds} "
                             f"was given to a call of {batch_size} sequences over positions [{start}, {end})")

    def head(self) -> PrefillPlan:
        """The plan of every call but the last (what ``generate`` prefills before it starts)."""
        cut = self.bounds[-2]
        mask = None if self.attention_mask is None else self.attention_mask[:, :cut]
        return PrefillPlan(self.segment_ids, mask, self.past, cut, self.route, self.bounds[:-1])


def check_route(route: str) -> None:
    """Raise ``ValueError`` unless ``route`` is ``"auto"`` or one of ``ROUTES``."""
    if route not in ("auto", *ROUTES):
        raise ValueError(f"unknown prefill_route {route!r}; expected 'auto' or one of {ROUTES}")


def plan_prefill(config: Any, segment_ids: Any, *, batch_size: int, query_length: int, past: int = 0,
                 attention_mask: torch.Tensor | None = None, route: str = "auto", blocked: Sequence[str] = (),
                 documents: torch.Tensor | None = None, trim: bool = False,
                 device: torch.device | None = None) -> PrefillPlan:
    """Check, pad and renumber ``segment_ids`` for a forward call of T = ``query_length`` tokens after P = ``past``
    cached ones, and decide its route.

    Args:
        config: the model's config (``max_position_embeddings``, the attention backend and shapes of the cost model).
        segment_ids: [B, L] integers (tensor, array or nested lists), entry j = segment of absolute position j;
            positions >= L are causal. Ids past P + T are checked too (no segment may continue past the call),
            unless ``trim`` drops them (``mas_prefill``: the prompt ends there).
        attention_mask: [B, >= L] 2-D padding mask (1 = real token) or None.
        route: ``"auto"`` (the cost model), ``"dense"`` or ``"segment"``.
        blocked: why the caller cannot chunk (``segmask.hf.generate.generate_blockers``): ``"auto"`` then takes
            ``"dense"`` and ``"segment"`` raises.
        documents: ``document_ids`` [B, T] of a packed batch (the hook's ``packed_documents``), or None.

    Raises ``ValueError`` naming the sample (and segment) for ids that break the contract, for a segment cut by the
    call's first or last position, and for a call longer than the model's positions.
    """
    check_route(route)
    ids = as_segment_ids(segment_ids)
    if ids.ndim != 2 or ids.shape[0] != batch_size:
        raise ValueError(f"segment_ids shape {tuple(ids.shape)} does not match the batch of {batch_size} sequences")
    if attention_mask is not None and attention_mask.ndim != 2:
        raise ValueError("segment_ids needs a 2-D attention_mask (or none); got a prepared mask of "
                         f"{attention_mask.ndim} dims")
    ids, total = (ids if device is None else ids.to(device)), past + query_length
    if past >= ids.shape[1]:  # decode steps after the prompt: every query is causal, nothing to check
        ids = ids.new_full((batch_size, total), CAUSAL)
    else:
        max_positions = getattr(config, "max_position_embeddings", None)
        if max_positions is not None and total > max_positions:
            raise ValueError(f"sequence of {total} tokens exceeds the model's max_position_embeddings {max_positions}")
        ids = pad_segment_ids(_checked(ids[:, :total] if trim else ids, attention_mask, documents), total)
        check_whole_segments(ids, past, total)
    bounds = [past, total] if route == "dense" or blocked else chunk_bounds(ids, past, total)
    route = decide_route(config, route, bounds, blocked)
    if route == "segment" and attention_mask is not None and attention_mask.shape[1] != total:
        raise ValueError(f"attention_mask covers {attention_mask.shape[1]} positions, expected {total} "
                         f"({past} cached + {query_length} new)")
    return PrefillPlan(ids, attention_mask, past, total, route, tuple(bounds) if route == "segment" else (past, total))


def _checked(ids: torch.Tensor, attention_mask: torch.Tensor | None, documents: torch.Tensor | None) -> torch.Tensor:
    """``validate_segment_ids`` (and ``validate_documents`` for packed rows), then ``renumber_segments``."""
    padding = attention_mask[:, : ids.shape[1]] if attention_mask is not None else None
    if padding is not None and padding.shape[1] < ids.shape[1]:
        raise ValueError(f"segment_ids covers {ids.shape[1]} positions but attention_mask only {padding.shape[1]}")
    try:
        validate_segment_ids(ids, padding)
    except ValueError as err:
        if documents is None:
            raise
        raise ValueError(f"{err}; in a packed row segment ids must be unique across its sequences "
                         "(segmask.pack renumbers them)") from None
    if documents is not None:
        validate_documents(pad_segment_ids(ids, documents.shape[1]), documents.to(ids.device))
    return renumber_segments(ids)  # small ids whatever the caller used


def decide_route(config: Any, route: str, bounds: list[int], blocked: Sequence[str]) -> str:
    """The route: as asked, ``"dense"`` where the caller is ``blocked``, else the cheaper one for the cut points
    ``bounds`` (``chunk_bounds``) by the cost model: ``"dense"`` computes every query-key pair of the call,
    ``"segment"`` only the pairs of its chunks but pays ``CALL_COST_TOKENS`` per extra call; a pair costs (attention
    FLOPs per pair) / (projection FLOPs per token) tokens. flex_attention skips fully masked blocks within one call,
    so it always takes ``"dense"``."""
    if blocked:
        if route == "segment":
            raise ValueError(f"prefill_route='segment' in generate needs a DynamicCache and full-attention layers; "
                             f"not with {', '.join(blocked)}")
        return "dense"
    if route != "auto":
        return route
    call_cost = CALL_COST_TOKENS.get(config._attn_implementation or "eager")
    if call_cost is None or len(bounds) <= 2:
        return "dense"
    start, end = bounds[0], bounds[-1]
    saved = (end - start) * end - sum((b - a) * b for a, b in zip(bounds, bounds[1:]))
    return "segment" if saved * pair_cost_tokens(config) > (len(bounds) - 2) * call_cost else "dense"


def pair_cost_tokens(config: Any) -> float:
    """Attention FLOPs of one query-key pair / projection + MLP FLOPs of one token (same in every layer)."""
    return pair_flops(config) / token_flops(config)


def chunk_bounds(segment_ids: torch.Tensor, start: int, end: int) -> list[int]:
    """Cut points start = c_0 < c_1 < ... < c_n = end for segment-wise prefill of positions [start, end).

    A cut lies where some sample changes segment (or enters/leaves a causal run) and no sample's segment continues
    across it, so each chunk holds whole segments of every sample. ``segment_ids`` [B, >= end].

    Returns:
        list of absolute positions, first ``start``, last ``end``.
    """
    ids = segment_ids[:, start:end]
    if ids.shape[1] <= 1:
        return [start, end]
    change = (ids[:, 1:] != ids[:, :-1]).any(0)
    split = segment_continues(ids)[:, 1:].any(0)
    cuts = (change & ~split).nonzero().flatten() + start + 1
    return [start, *cuts.tolist(), end]
