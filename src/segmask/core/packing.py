"""Packed training rows: several examples in one row, no example attending to another, MAS inside each.

    >>> rows = segmask.pack(examples, max_tokens=512)            # list[PackedRow], best fit decreasing
    >>> batch = collate_packed(rows[:4], pad_token_id=0)         # input_ids, position_ids, segment_ids, labels [B, T]
    >>> loss = model(**batch).loss                               # after segmask.enable(model); no attention_mask

Rules of a packed row:

* ``position_ids`` restart at 0 for each example. They are what marks the example boundaries: transformers detects
  packed sequences from them (a position that does not follow the previous one starts a new sequence), and the
  segmask hook builds the block-diagonal (document) mask from them, ANDed with MAS.
* Segment ids are renumbered to be unique within the row (the hook, like transformers' ``block_sequence_ids``,
  needs each segment to be one run of the row).
* Labels are the examples' own (answer-only) labels, with the first token of each example ignored: it would be
  predicted from the last token of the previous example.
* ``collate_packed`` pads rows to the longest with a padding "example" of its own (positions 0, 1, ..., causal, no
  labels), so a batch needs no ``attention_mask``: real tokens never attend the padding, whatever the backend.

The causal arm drops ``segment_ids`` (``with_segments=False``); the model then runs transformers' own packed-sequence
mask. Call it with ``use_cache=False`` (as training does): transformers detects packed sequences only without a cache.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from .masks import CAUSAL
from .recipe import check_choice
from .segments import IGNORE_INDEX, Batch, Example

STRATEGIES = ("bfd", "in_order")


@dataclass
class PackedRow:
    """One packed row: equal-length lists of ints, plus the packed examples' lengths and indices (in row order)."""

    input_ids: list[int]
    segment_ids: list[int]
    labels: list[int]
    position_ids: list[int]
    lengths: list[int] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.input_ids)


def unique_segment_ids(parts: Sequence[Sequence[int]]) -> list[int]:
    """Concatenate per-example segment ids, renumbering each example's segments after the previous example's.

    Within one example only equality matters (ids may be any non-negative ints); -1 stays causal. Example: parts
    ``[[0, 0, 1, -1], [0, -1]]`` give ``[0, 0, 1, -1, 2, -1]``.
    """
    out: list[int] = []
    offset = 0
    for part in parts:
        local: dict[int, int] = {}
        for s in part:
            if s == CAUSAL:
                out.append(CAUSAL)
                continue
            if s not in local:
                local[s] = offset + len(local)
            out.append(local[s])
        offset += len(local)
    return out


def concat_examples(examples: Sequence[Example], indices: Sequence[int] | None = None) -> PackedRow:
    """One ``PackedRow`` of ``examples`` in the given order (see the module docstring for the rules)."""
    row = PackedRow([], unique_segment_ids([ex.segment_ids for ex in examples]), [], [])
    for ex in examples:
        row.input_ids += ex.input_ids
        row.labels += [IGNORE_INDEX] + list(ex.labels[1:])
        row.position_ids += list(range(len(ex)))
        row.lengths.append(len(ex))
    row.indices = list(indices) if indices is not None else list(range(len(examples)))
    return row


def pack(examples: Sequence[Example], max_tokens: int, *, strategy: str = "bfd") -> list[PackedRow]:
    """Pack ``examples`` into rows of at most ``max_tokens`` tokens.

    Args:
        examples: tokenized examples (``Example`` with answer-only labels, e.g. from ``data.prepare``).
        max_tokens: the row budget; an example longer than it raises ``ValueError`` naming it (never truncated).
        strategy: ``"bfd"`` (best fit decreasing: longest first, each into the fullest row it fits; fewest rows) or
            ``"in_order"`` (next fit: examples stay in their order, a new row starts when the next one does not fit).

    Returns:
        ``PackedRow`` list; every example appears in exactly one row (``row.indices`` index ``examples``).
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be a positive number of tokens, got {max_tokens!r}")
    check_choice("strategy", strategy, STRATEGIES)
    for i, ex in enumerate(examples):
        if len(ex) == 0:
            raise ValueError(f"sample {i} is empty")
        if len(ex) > max_tokens:
            raise ValueError(f"sample {i} has {len(ex)} tokens, more than max_tokens {max_tokens}")
    bins: list[list[int]] = []
    if strategy == "in_order":
        used = max_tokens
        for i, ex in enumerate(examples):
            if used + len(ex) > max_tokens:
                bins.append([])
                used = 0
            bins[-1].append(i)
            used += len(ex)
    else:
        free: list[tuple[int, int]] = []  # (free tokens, bin index), sorted
        for i in sorted(range(len(examples)), key=lambda i: (-len(examples[i]), i)):
            n = len(examples[i])
            k = bisect.bisect_left(free, (n, -1))
            if k < len(free):
                space, b = free.pop(k)
            else:
                space, b = max_tokens, len(bins)
                bins.append([])
            bins[b].append(i)
            if space - n > 0:
                bisect.insort(free, (space - n, b))
    return [concat_examples([examples[i] for i in b], b) for b in bins]


def collate_packed(
    rows: Sequence[PackedRow], *, pad_token_id: int, with_segments: bool = True, pad_to: int | None = None
) -> Batch:
    """Right-pad packed rows into a ``Batch`` of [B, T] LongTensors: ``input_ids``, ``position_ids``, ``labels``
    and (``with_segments``) ``segment_ids``; no ``attention_mask`` (padding is an example of its own).

    Args:
        pad_to: pad every row to this many tokens (default: the longest row).
    """
    if not rows:
        raise ValueError("no packed rows to collate")
    width = max(len(r) for r in rows) if pad_to is None else pad_to
    for i, r in enumerate(rows):
        if len(r) > width:
            raise ValueError(f"packed row {i} has {len(r)} tokens, more than pad_to {width}")
    out: dict[str, list[list[int]]] = {"input_ids": [], "position_ids": [], "labels": [], "segment_ids": []}
    for r in rows:
        extra = width - len(r)
        out["input_ids"].append(r.input_ids + [pad_token_id] * extra)
        out["position_ids"].append(r.position_ids + list(range(extra)))
        out["labels"].append(r.labels + [IGNORE_INDEX] * extra)
        out["segment_ids"].append(r.segment_ids + [CAUSAL] * extra)
    if not with_segments:
        del out["segment_ids"]
    return Batch({k: torch.tensor(v, dtype=torch.long) for k, v in out.items()})


class PackedDataset:
    """Packed rows as a map-style dataset of dicts (what HF Trainer's dataloader expects)."""

    def __init__(self, rows: Sequence[PackedRow]):
        self.rows = list(rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        r = self.rows[i]
        return {"input_ids": r.input_ids, "segment_ids": r.segment_ids, "labels": r.labels,
                "position_ids": r.position_ids}


class PackedCollator:
    """``collate_packed`` for HF Trainer: rows from ``PackedDataset`` in, a ``Batch`` out.

    ``with_segments=False`` is the causal arm (no ``segment_ids``: the model's own packed-sequence mask).
    """

    def __init__(self, pad_token_id: int, *, with_segments: bool = True):
        if pad_token_id is None:
            raise ValueError("pad_token_id is None: set tokenizer.pad_token (e.g. to the eos token)")
        self.pad_token_id, self.with_segments = pad_token_id, with_segments

    def __call__(self, items: Sequence[dict]) -> Batch:
        rows = [r if isinstance(r, PackedRow) else PackedRow(list(r["input_ids"]), list(r["segment_ids"]),
                                                             list(r["labels"]), list(r["position_ids"]))
                for r in items]
        return collate_packed(rows, pad_token_id=self.pad_token_id, with_segments=self.with_segments)
