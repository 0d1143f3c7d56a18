"""Segment specs -> token ids, segment ids and labels; batching with padding.

A prompt is a list of ``Piece`` (text, whether it is a bidirectional segment, whether it is trained on). The text
of all pieces is tokenized in one go and each token takes the piece its last character falls in (so " Context",
whose space ends the previous piece, belongs to the piece that holds the word), the ids are exactly those of the
whole text, and no token id is ever hard-coded.

    >>> pieces = [Piece("You are terse.", segment=True), Piece(" Q: 2+2?", segment=True), Piece(" A:")]
    >>> example = encode_pieces(tokenizer, pieces)              # one Example
    >>> batch = collate([example, other], pad_token_id=0)        # Batch of [B, T] tensors, left padded

Segment ids count from 0 within each sample, in order; -1 marks causal tokens and padding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .recipe import check_choice
from .runs import CAUSAL

IGNORE_INDEX = -100
"""Label of a token that carries no loss."""


@dataclass(frozen=True)
class Piece:
    """A run of prompt text: ``segment=True`` makes it one bidirectional segment, ``label=True`` trains on it."""

    text: str
    segment: bool = False
    label: bool = False

    def __post_init__(self):
        if self.segment and self.label:
            raise ValueError(f"piece {self.text[:40]!r}: a bidirectional segment cannot carry labels (loss leaks)")


@dataclass
class Example:
    """One tokenized sample: ``input_ids``, ``segment_ids`` and ``labels`` are equal-length lists of ints."""

    input_ids: list[int]
    segment_ids: list[int]
    labels: list[int]
    text: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.input_ids)


class Batch(dict):
    """A dict of [B, T] tensors (``input_ids``, ``attention_mask``, ``segment_ids``, optional ``labels``).

    Pass it straight to a segmask-enabled model: ``model(**batch)``, ``segmask.generate(model, batch)``
    or transformers' ``generate`` with ``**batch``.
    """

    def to(self, device: torch.device | str) -> Batch:
        """Move every tensor to ``device``; returns self."""
        for key, value in self.items():
            if isinstance(value, torch.Tensor):
                self[key] = value.to(device)
        return self

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError as err:
            raise AttributeError(name) from err


def encode_pieces(tokenizer: Any, pieces: Sequence[Piece], *, add_special_tokens: bool = False) -> Example:
    """Tokenize ``pieces`` as one text and give each token its piece's segment id and label.

    Args:
        tokenizer: a Hugging Face tokenizer. Fast tokenizers are used with offset mappings; slow ones piece by piece.
        pieces: the prompt (and optionally the answer) in order. Empty pieces are skipped.
        add_special_tokens: let the tokenizer add its own BOS/EOS; they are causal tokens without labels.

    Returns:
        ``Example`` whose ``segment_ids`` number the non-empty segment pieces 0, 1, ... in order.
    """
    pieces = [p for p in pieces if p.text]
    if not pieces:
        raise ValueError("empty prompt: no text to encode")
    seg_of_piece, next_seg = [], 0
    for piece in pieces:
        seg_of_piece.append(next_seg if piece.segment else CAUSAL)
        next_seg += piece.segment
    text = "".join(p.text for p in pieces)
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(text, add_special_tokens=add_special_tokens, return_offsets_mapping=True)
        ends, end = [], 0
        for piece in pieces:
            end += len(piece.text)
            ends.append(end)
        input_ids, segment_ids, labels = list(enc["input_ids"]), [], []
        for tok, (start, stop) in zip(input_ids, enc["offset_mapping"]):
            k = _piece_index(ends, max(stop - 1, start))
            segment_ids.append(seg_of_piece[k])
            labels.append(tok if pieces[k].label else IGNORE_INDEX)
        if add_special_tokens:
            _mark_added_specials(input_ids, enc["offset_mapping"], segment_ids, labels)
    else:
        input_ids, segment_ids, labels = [], [], []
        for piece, seg in zip(pieces, seg_of_piece):
            ids = tokenizer(piece.text, add_special_tokens=False)["input_ids"]
            input_ids += ids
            segment_ids += [seg] * len(ids)
            labels += list(ids) if piece.label else [IGNORE_INDEX] * len(ids)
    _check_every_segment_has_tokens(pieces, seg_of_piece, segment_ids)
    return Example(input_ids=input_ids, segment_ids=segment_ids, labels=labels, text=text)


def _piece_index(ends: list[int], char: int) -> int:
    for k, end in enumerate(ends):
        if char < end:
            return k
    return len(ends) - 1


def _mark_added_specials(input_ids, offsets, segment_ids, labels) -> None:
    """Tokens the tokenizer added itself (empty offsets at the ends) are causal and carry no labels."""
    for i, (start, stop) in enumerate(offsets):
        if start == stop and (i == 0 or i == len(offsets) - 1):
            segment_ids[i] = CAUSAL
            labels[i] = IGNORE_INDEX


def _check_every_segment_has_tokens(pieces, seg_of_piece, segment_ids) -> None:
    present = set(segment_ids)
    for piece, seg in zip(pieces, seg_of_piece):
        if seg != CAUSAL and seg not in present:
            raise ValueError(f"segment {seg} ({piece.text[:40]!r}) produced no tokens of its own")


def encode_spans(tokenizer: Any, spans: Sequence[tuple[str, bool]], **kwargs: Any) -> Example:
    """Encode explicit text spans: a list of ``(text, bidirectional)``; each bidirectional span is one segment."""
    for i, span in enumerate(spans):
        if not (isinstance(span, (tuple, list)) and len(span) == 2 and isinstance(span[0], str)):
            raise ValueError(f"span {i} must be a (text, bidirectional) pair, got {span!r}")
    return encode_pieces(tokenizer, [Piece(text, segment=bool(bi)) for text, bi in spans], **kwargs)


def pad_token_id(tokenizer: Any = None, generation_config: Any = None) -> int:
    """The id to pad with: the tokenizer's pad token, else its EOS token, else the generation config's pad token,
    else its (first) EOS token. Raises ``ValueError`` when none is set."""
    eos = getattr(generation_config, "eos_token_id", None)
    eos = eos[0] if isinstance(eos, list) and eos else eos
    for candidate in (getattr(tokenizer, "pad_token_id", None), getattr(tokenizer, "eos_token_id", None),
                      getattr(generation_config, "pad_token_id", None), eos):
        if candidate is not None:
            return int(candidate)
    raise ValueError("tokenizer has neither a pad token nor an eos token to pad with")


def from_segment_ids(input_ids: Sequence[int], segment_ids: Sequence[int]) -> Example:
    """Wrap raw ``input_ids`` and user-given ``segment_ids`` (same length) as an ``Example`` without labels."""
    if len(input_ids) != len(segment_ids):
        raise ValueError(f"input_ids has {len(input_ids)} tokens but segment_ids {len(segment_ids)}")
    return Example(list(input_ids), list(segment_ids), [IGNORE_INDEX] * len(input_ids))


def collate(
    examples: Sequence[Example],
    *,
    pad_token_id: int,
    padding_side: str = "left",
    max_length: int | None = None,
    with_labels: bool | None = None,
) -> Batch:
    """Pad ``examples`` into a ``Batch`` of [B, T] tensors; padding is causal (-1) and carries no labels.

    Args:
        padding_side: ``"left"`` for generation, ``"right"`` for training.
        max_length: raise ``ValueError`` naming the sample if any example is longer (never truncates silently).
        with_labels: include ``labels``; by default, when any example has a label.
    """
    if not examples:
        raise ValueError("no examples to collate")
    check_choice("padding_side", padding_side, ("left", "right"))
    for i, ex in enumerate(examples):
        if len(ex) == 0:
            raise ValueError(f"sample {i} is empty")
        if max_length is not None and len(ex) > max_length:
            raise ValueError(f"sample {i} has {len(ex)} tokens, more than max_length {max_length}")
    if with_labels is None:
        with_labels = any(lab != IGNORE_INDEX for ex in examples for lab in ex.labels)
    width = max(len(ex) for ex in examples)
    fields = {"input_ids": pad_token_id, "attention_mask": 0, "segment_ids": CAUSAL}
    if with_labels:
        fields["labels"] = IGNORE_INDEX
    rows: dict[str, list[list[int]]] = {k: [] for k in fields}
    for ex in examples:
        values = {
            "input_ids": ex.input_ids,
            "attention_mask": [1] * len(ex),
            "segment_ids": ex.segment_ids,
            "labels": ex.labels,
        }
        for key, pad in fields.items():
            fill = [pad] * (width - len(ex))
            rows[key].append(fill + values[key] if padding_side == "left" else values[key] + fill)
    return Batch({k: torch.tensor(v, dtype=torch.long) for k, v in rows.items()})


def position_ids_from_attention_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions [B, T] counted over real tokens from 0 at each sample's first one (padding gets 0), as ``generate``
    does for left padding; padding inside a row (``[prefix | pad | new]``) is skipped by the count."""
    positions = attention_mask.long().cumsum(-1) - 1
    return positions.masked_fill(attention_mask == 0, 0)
