"""MAS attention masks in pure torch: segment ids in, boolean masks (or mask_mod closures) out.

Shapes in the notation declared in ``segmask.core`` (B batch, T sequence, Q queries, K keys).
One convention everywhere: ``torch.bool``, True at ``[b, 0, q, k]`` means query q may attend key k.

``segment_ids`` [B, T] (int): value s >= 0 marks a bidirectional prompt segment, -1 a causal token (answer,
generation header, padding). Query q may attend key k iff k is a real token and (k <= q, or
segment_ids[q] == segment_ids[k] >= 0).

    >>> ids = torch.tensor([[0, 0, 1, 1, -1]])
    >>> segment_mask(ids)[0, 0].int()
    tensor([[1, 1, 0, 0, 0],
            [1, 1, 0, 0, 0],
            [1, 1, 1, 1, 0],
            [1, 1, 1, 1, 0],
            [1, 1, 1, 1, 1]], dtype=torch.int32)

This module imports nothing from transformers; ``segmask.hf`` turns these pieces into each backend's format.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .runs import CAUSAL, segment_run_starts

MaskMod = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def as_segment_ids(segment_ids: Any) -> torch.Tensor:
    """``segment_ids`` as a LongTensor: a tensor of any integer dtype, a NumPy array or nested Python lists of ints.

    Raises ``ValueError`` for bool, floating or complex values and for lists that are not a rectangle of integers
    that fit in int64 (no check of the MAS contract here: see ``validate_segment_ids``).
    """
    if not isinstance(segment_ids, torch.Tensor):
        try:
            segment_ids = torch.as_tensor(segment_ids)
        except (TypeError, ValueError, RuntimeError, OverflowError) as err:
            raise ValueError(f"segment_ids must be a tensor or a rectangle of integers: {err}") from None
        if segment_ids.numel() == 0:
            segment_ids = segment_ids.long()
    if segment_ids.dtype == torch.bool or segment_ids.is_floating_point() or segment_ids.is_complex():
        raise ValueError(f"segment_ids must hold integers, got dtype {segment_ids.dtype}")
    return segment_ids.long()


def validate_segment_ids(segment_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> None:
    """Raise ``ValueError`` naming the sample and segment if ``segment_ids`` [B, T] breaks the contract.

    Checked: integer values (any integer dtype; bool and float are refused), 2-D shape equal to ``attention_mask``
    [B, T] (1 = real token), values >= -1, every segment id forms one contiguous run per sample, and no segment
    covers a padding position. Time and memory are O(B * T), whatever the magnitude of the ids.
    """
    segment_ids = as_segment_ids(segment_ids)
    if segment_ids.ndim != 2:
        raise ValueError(f"segment_ids must be 2-D [batch, seq_len], got shape {tuple(segment_ids.shape)}")
    if attention_mask is not None and attention_mask.shape != segment_ids.shape:
        raise ValueError(
            f"segment_ids shape {tuple(segment_ids.shape)} does not match attention_mask shape "
            f"{tuple(attention_mask.shape)}"
        )
    if segment_ids.numel() == 0:
        return
    low = segment_ids.min()
    if low < CAUSAL:
        b, t = (segment_ids == low).nonzero()[0].tolist()
        raise ValueError(f"sample {b}: segment id {int(low)} at position {t} is invalid (use -1 for causal tokens)")
    # A run starts where the id changes; an id that starts two runs of one sample is not contiguous. Sorting the
    # ids at run starts puts such repeats next to each other.
    first_ids = torch.where(segment_run_starts(segment_ids), segment_ids, CAUSAL).sort(dim=-1).values
    repeated = (first_ids[:, 1:] == first_ids[:, :-1]) & (first_ids[:, 1:] >= 0)
    if repeated.any():
        b, t = repeated.nonzero()[0].tolist()
        raise ValueError(f"sample {b}: segment {int(first_ids[b, t + 1])} is not one contiguous run of positions")
    if attention_mask is not None:
        bad = ((segment_ids >= 0) & (attention_mask == 0)).nonzero()
        if len(bad):
            b, t = bad[0].tolist()
            raise ValueError(
                f"sample {b}: segment {int(segment_ids[b, t])} spans padding (position {t} has attention_mask 0)"
            )


def renumber_segments(segment_ids: torch.Tensor) -> torch.Tensor:
    """Valid ``segment_ids`` [B, T] with each sample's segments renumbered 0, 1, ... in order; -1 stays.

    The mask depends only on which positions share a segment, so this changes no mask; it keeps every id small
    whatever ids the caller chose.
    """
    rank = segment_run_starts(segment_ids).long().cumsum(-1) - 1
    return torch.where(segment_ids >= 0, rank, CAUSAL)


def normalize_segment_ids(segment_ids: Any, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """``as_segment_ids``, ``validate_segment_ids`` and ``renumber_segments`` in one call: LongTensor [B, T]."""
    segment_ids = as_segment_ids(segment_ids)
    validate_segment_ids(segment_ids, attention_mask)
    return renumber_segments(segment_ids)


def segment_mask(segment_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Dense MAS mask, the reference every fast path is tested against.

    Args:
        segment_ids: [B, T] integers (a tensor of any integer dtype, or nested lists), -1 = causal token,
            s >= 0 = bidirectional segment s. Only equality of ids matters: they are renumbered 0, 1, ... first.
        attention_mask: optional [B, T], 1 = real token, 0 = padding (never attended).

    Returns:
        BoolTensor [B, 1, T, T] on the input's device; True at [b, 0, q, k]: query q may attend key k.
    """
    if attention_mask is not None:
        attention_mask = torch.as_tensor(attention_mask)
    segment_ids = normalize_segment_ids(segment_ids, attention_mask)
    t = segment_ids.shape[-1]
    pos = torch.arange(t, device=segment_ids.device)
    causal = pos[None, :] <= pos[:, None]  # [T, T], k <= q
    same = (segment_ids[:, :, None] == segment_ids[:, None, :]) & (segment_ids[:, :, None] >= 0)
    mask = causal[None] | same
    if attention_mask is not None:
        mask = mask & attention_mask.bool()[:, None, :]
    return mask[:, None]


def segment_mask_rows(segment_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, *, start: int = 0,
                      end: int | None = None, kv_length: int | None = None) -> torch.Tensor:
    """Rows [start, end) of the MAS mask over keys [0, kv_length), without building the full T x T mask.

    The fast builder for one forward call (queries = positions [start, end), keys = cache + call); tensor ops
    only, no validation (``validate_segment_ids`` first).

    Args:
        segment_ids: [B, L] integer, -1 = causal; positions >= L are causal.
        attention_mask: [B, M] 1 = real token, or None (all real); keys >= M count as padding.
        start, end: query positions (default: all of ``segment_ids``).
        kv_length: number of keys (default ``end``).

    Returns:
        BoolTensor [B, 1, end - start, kv_length]; equal to ``segment_mask(...)[:, :, start:end, :kv_length]``.
    """
    end = segment_ids.shape[-1] if end is None else end
    kv_length = end if kv_length is None else kv_length
    ids = pad_segment_ids(segment_ids, max(end, kv_length))
    keys = torch.arange(kv_length, device=ids.device)
    queries = torch.arange(start, end, device=ids.device)
    q_ids = ids[:, start:end, None]
    mask = (keys[None, None, :] <= queries[None, :, None]) | ((q_ids == ids[:, None, :kv_length]) & (q_ids >= 0))
    if attention_mask is not None:
        real = attention_mask[:, :kv_length].bool()
        if real.shape[-1] < kv_length:
            real = torch.nn.functional.pad(real, (0, kv_length - real.shape[-1]), value=False)
        mask = mask & real[:, None, :]
    return mask[:, None]


def pad_segment_ids(segment_ids: torch.Tensor, length: int) -> torch.Tensor:
    """Right-pad ``segment_ids`` [B, T] with -1 (causal) to [B, length]; positions past the end are causal."""
    extra = length - segment_ids.shape[-1]
    if extra <= 0:
        return segment_ids
    return torch.nn.functional.pad(segment_ids, (0, extra), value=CAUSAL)


def same_segment_mod(segment_ids: torch.Tensor) -> MaskMod:
    """mask_mod that is True where query and key lie in the same bidirectional segment.

    ``segment_ids`` [B, K] must cover every absolute key index the mask will be asked about (see
    ``pad_segment_ids``). OR it with a causal mask to obtain MAS.
    """

    def same_segment(b, h, q_idx, kv_idx):
        q_seg = segment_ids[b, q_idx]
        return (q_seg == segment_ids[b, kv_idx]) & (q_seg >= 0)

    return same_segment


def causal_mod(b, h, q_idx, kv_idx):
    """mask_mod of plain causal attention: key k <= query q."""
    return kv_idx <= q_idx


def window_mod(window: int) -> MaskMod:
    """mask_mod of a sliding window looking back ``window`` tokens: ``kv_idx > q_idx - window``.

    AND it with MAS for sliding-window layers: keys further back than the window are dropped, as in the model's
    own sliding layers, while a segment's later tokens stay visible (the same composition transformers uses for
    Gemma 3's bidirectional image tokens).
    """

    def sliding_window(b, h, q_idx, kv_idx):
        return kv_idx > q_idx - window

    sliding_window.__name__ = f"sliding_window_{window}"
    return sliding_window


def mas_mod(segment_ids: torch.Tensor, window: int | None = None) -> MaskMod:
    """mask_mod of MAS: causal OR same segment, ANDed with a sliding window when ``window`` is given.

    Padding is not part of a mask_mod; combine with the padding mask of the backend.
    """
    same = same_segment_mod(segment_ids)
    in_window = window_mod(window) if window is not None else None

    def mas(b, h, q_idx, kv_idx):
        allowed = causal_mod(b, h, q_idx, kv_idx) | same(b, h, q_idx, kv_idx)
        return allowed & in_window(b, h, q_idx, kv_idx) if in_window is not None else allowed

    mas.__name__ = "mas" if window is None else f"mas_sliding_window_{window}"
    return mas


def document_ids(position_ids: torch.Tensor) -> torch.Tensor:
    """LongTensor [B, T]: which packed sequence (document) each token of ``position_ids`` [B, T] belongs to, counted
    from 0 in each row. A sequence starts wherever a position does not follow the one before it (position ids restart
    at 0 for each packed example), as in transformers' ``find_packed_sequence_indices``."""
    previous = torch.cat([position_ids[:, :1] - 1, position_ids[:, :-1]], dim=-1)
    return (position_ids != previous + 1).long().cumsum(-1)


def packed_document_ids(position_ids: torch.Tensor, batch_size: int | None = None) -> torch.Tensor | None:
    """``document_ids`` of ``position_ids`` [B or 1, T] (expanded to ``batch_size`` rows), or None when every row
    holds a single sequence."""
    if batch_size is not None:
        position_ids = position_ids.expand(batch_size, -1)
    documents = document_ids(position_ids)
    return documents if bool((documents[:, -1] > 0).any()) else None


def validate_documents(segment_ids: torch.Tensor, documents: torch.Tensor) -> None:
    """Raise ``ValueError`` naming the sample if a segment of ``segment_ids`` [B, T] crosses the start of a packed
    sequence in ``documents`` [B, T] (``document_ids``): a segment belongs to one example."""
    crossing = ((segment_ids[:, 1:] >= 0) & (segment_ids[:, 1:] == segment_ids[:, :-1])
                & (documents[:, 1:] != documents[:, :-1]))
    if crossing.any():
        b, t = crossing.nonzero()[0].tolist()
        raise ValueError(f"sample {b}: segment {int(segment_ids[b, t])} crosses the start of a packed sequence at "
                         f"position {t + 1} (position_ids restart there)")


def same_document_mod(documents: torch.Tensor) -> MaskMod:
    """mask_mod that is True where query and key lie in the same packed sequence; ``documents`` [B, T] from
    ``document_ids``. AND it with MAS for packed rows."""

    def same_document(b, h, q_idx, kv_idx):
        return documents[b, q_idx] == documents[b, kv_idx]

    return same_document


def packed_segment_mask(segment_ids: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
    """Dense reference mask of a packed batch: MAS (``segment_mask``) AND same packed sequence.

    Args:
        segment_ids: [B, T], unique within each row (see ``segmask.core.packing``).
        position_ids: [B, T], restarting at 0 for each packed example.

    Returns:
        BoolTensor [B, 1, T, T]; True at [b, 0, q, k]: query q may attend key k.
    """
    documents = document_ids(torch.as_tensor(position_ids))
    same = documents[:, :, None] == documents[:, None, :]
    return segment_mask(segment_ids) & same[:, None]
