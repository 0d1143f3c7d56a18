"""vLLM's CPU attention backend with MAS: the stock kernel, fed segment pieces (see ``segmask.vllm.pieces``).

``SegmentCPUAttentionBackend`` replaces ``CPU_ATTN`` (registered by ``segmask.vllm.plugin.register``). Its metadata
builder is the stock one, except that when the batch holds a MAS request being prefilled it first cuts that
request's queries into pieces: per-piece ``query_start_loc``, ``seq_lens``, the request's block-table row repeated
and a per-piece ``causal`` tensor (the kernel's ``dynamic_causal``). Causal-only batches build exactly as before.

The builder learns the batch's ranges from ``batch_ranges``, set by the model runner hook around
``_build_attention_metadata`` (the builder itself only sees tensors, not requests).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend, CPUAttentionMetadataBuilder

from .pieces import split_pieces
from .requests import ranges_of

Range = tuple[int, int]


@dataclasses.dataclass
class _Batch:
    ranges: Mapping[int, Sequence[Range]]
    taken: bool = False  # a SegmentCPUAttentionMetadataBuilder read the ranges


_BATCH: contextvars.ContextVar[_Batch | None] = contextvars.ContextVar("segmask_batch", default=None)


@contextlib.contextmanager
def batch_ranges(ranges: Mapping[int, Sequence[Range]]) -> Iterator[None]:
    """Within this block, attention metadata is built with these segment ranges (request row -> ranges).

    Raises ``RuntimeError`` at the end of the block if the batch holds MAS requests but no
    ``SegmentCPUAttentionMetadataBuilder`` read their ranges: their attention would have been built causally.
    """
    batch = _Batch(ranges)
    token = _BATCH.set(batch)
    try:
        yield
    finally:
        _BATCH.reset(token)
    if ranges and not batch.taken:
        raise RuntimeError(f"segmask: the batch holds MAS requests (rows {sorted(ranges)}) but no segment-aware "
                           "attention metadata builder read their segments; refusing to prefill them causally")


def take_batch_ranges() -> Mapping[int, Sequence[Range]] | None:
    """The ranges ``batch_ranges`` set (row -> segments), marked as read; None outside a ``batch_ranges`` block.
    The range route (``segmask.vllm.range_route``) reads them here instead of a segment-aware CPU builder."""
    batch = _BATCH.get()
    if batch is None:
        return None
    batch.taken = True
    return batch.ranges


def runner_ranges(runner: Any) -> dict[int, list[Range]]:
    """Row -> segment ranges of the MAS requests in a model runner's current batch (rows in ``req_ids`` order)."""
    out = {}
    for row, req_id in enumerate(runner.input_batch.req_ids):
        state = runner.requests.get(req_id)
        params = getattr(state, "sampling_params", None)
        if params is not None and params.extra_args:
            ranges = ranges_of(params.extra_args)
            if ranges:
                out[row] = ranges
    return out


class SegmentCPUAttentionMetadataBuilder(CPUAttentionMetadataBuilder):
    """``CPUAttentionMetadataBuilder`` that cuts MAS prefill requests into segment pieces."""

    def build(self, common_prefix_len: int, common_attn_metadata: Any, fast_build: bool = False) -> Any:
        ranges = take_batch_ranges() or {}
        if ranges and not isinstance(common_attn_metadata.causal, torch.Tensor):
            common_attn_metadata = piece_metadata(common_attn_metadata, ranges) or common_attn_metadata
        return super().build(common_prefix_len, common_attn_metadata, fast_build)


def piece_metadata(common: Any, ranges: Mapping[int, Sequence[Range]]) -> Any | None:
    """``common`` (vLLM's ``CommonAttentionMetadata``) with its requests cut into pieces; None if nothing to cut."""
    num_reqs = common.num_reqs
    plan = split_pieces(common.query_start_loc_cpu[: num_reqs + 1].tolist(),
                        common.seq_lens[:num_reqs].tolist(), ranges)
    if plan is None:
        return None
    device = common.query_start_loc.device
    query_start_loc_cpu = torch.tensor(plan.query_start_loc, dtype=common.query_start_loc_cpu.dtype)
    seq_lens = torch.tensor(plan.seq_lens, dtype=common.seq_lens.dtype)
    rows = torch.tensor(plan.rows, dtype=torch.long)
    query_lens = query_start_loc_cpu[1:] - query_start_loc_cpu[:-1]
    return dataclasses.replace(
        common,
        query_start_loc=query_start_loc_cpu.to(device),
        query_start_loc_cpu=query_start_loc_cpu,
        seq_lens=seq_lens.to(device),
        num_reqs=plan.num_pieces,
        max_query_len=int(query_lens.max()),
        max_seq_len=int(seq_lens.max()),
        block_table_tensor=common.block_table_tensor[rows.to(common.block_table_tensor.device)],
        causal=torch.tensor(plan.causal, dtype=torch.int32, device=device),
        seq_lens_cpu_upper_bound=None,
        is_prefilling=None,
        req_idx=None,
        mm_req_doc_ranges=None,
    )


class SegmentCPUAttentionBackend(CPUAttentionBackend):
    """``CPU_ATTN`` with MAS pieces (same kernel, same KV layout)."""

    @staticmethod
    def get_builder_cls() -> type[SegmentCPUAttentionMetadataBuilder]:
        return SegmentCPUAttentionMetadataBuilder
