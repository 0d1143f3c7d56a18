"""MAS fine-tuning with TRL's ``SFTTrainer`` (``pip install segmask[trl]``), padded, padding-free or packed.

    >>> from trl import SFTConfig
    >>> from segmask.train.trl import MASSFTTrainer, mas_dataset
    >>> train = mas_dataset(tokenizer, rows)     # rows of {"messages": [...]}: input_ids, labels, segment_ids
    >>> args = SFTConfig(output_dir="out", padding_free=True, max_length=None)     # or padded, or packing=True
    >>> trainer = MASSFTTrainer(model=model, args=args, train_dataset=train, processing_class=tokenizer,
    ...                         peft_config=LoraConfig(r=32, lora_alpha=64, target_modules=["q_proj", "v_proj"]))
    >>> trainer.train()

What it adds to ``SFTTrainer`` (nothing else changes: optimiser, loss, logging, PEFT, accelerate are TRL's):

* ``mas_dataset`` encodes each conversation with segmask's chat encoder (each system / user / tool message one
  segment, found by rendering the tokenizer's own template piece by piece; labels on the final assistant answer
  only) into a pre-tokenized dataset, whose labels SFTTrainer uses as they are.
* ``SegmentIdsCollator`` wraps TRL's own collator and adds ``segment_ids`` aligned with its batch: right padding is
  causal (-1); in a padding-free row (all examples of the batch in one row, ``position_ids`` restarting at 0) and in
  TRL's packed rows (``seq_lengths``) each example's segments are renumbered to be unique in the row. TRL refuses
  custom collators in padding-free mode, so the trainer subclass wraps the collator it built.
* ``segmask.enable`` on the trained model (PEFT included): the decoder hook turns ``segment_ids`` into the MAS mask,
  ANDed with the same-example mask in padding-free and packed rows. ``mask="causal"`` trains the causal arm on the
  same data (no ``segment_ids``; TRL's own packed-sequence handling).

Packing (``packing=True``) supports the ``bfd`` and ``bfd_split`` strategies on examples no longer than
``max_length`` (a segment is never cut); ``wrapped`` cuts examples and is refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from trl import SFTTrainer
from trl.data_utils import get_dataset_column_names, pack_dataset

from ..core.masks import CAUSAL
from ..core.packing import unique_segment_ids
from ..core.recipe import MASKS, check_choice
from ..hf.hook import enable
from .data import encode_record

COLUMNS = ("input_ids", "labels", "segment_ids")


def mas_dataset(tokenizer: Any, rows: Iterable[Mapping[str, Any]], *, system: str | None = None) -> Any:
    """A ``datasets.Dataset`` with ``input_ids``, ``labels`` (answer only) and ``segment_ids`` per row.

    Args:
        rows: chat rows ``{"messages": [...]}`` whose last message is the assistant's answer, or LLM-Adapters
            records (rendered as one user message, after ``system`` if given), as ``segmask train --prompt-form chat``.
    """
    from datasets import Dataset

    columns: dict[str, list[list[int]]] = {name: [] for name in COLUMNS}
    for i, row in enumerate(rows):
        example = encode_record(tokenizer, row, form="chat", system=system, index=i)
        for name in COLUMNS:
            columns[name].append(list(getattr(example, name)))
    if not columns["input_ids"]:
        raise ValueError("no rows to encode")
    return Dataset.from_dict(columns)


class SegmentIdsCollator:
    """Wrap a TRL collator (``DataCollatorForLanguageModeling``): its batch plus ``segment_ids`` [B, T].

    Args:
        base: the collator that builds ``input_ids``, ``labels`` and ``attention_mask`` (padded, right padding) or
            ``position_ids`` (padding-free: one row).
        with_segments: False for the causal arm: ``segment_ids`` are dropped and not added.
    """

    def __init__(self, base: Any, *, with_segments: bool = True):
        self.base, self.with_segments = base, with_segments

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        for i, ex in enumerate(examples):
            if "segment_ids" not in ex:
                raise ValueError(f"sample {i} has no segment_ids (build the dataset with "
                                 "segmask.train.trl.mas_dataset)")
        batch = self.base([{k: v for k, v in ex.items() if k != "segment_ids"} for ex in examples])
        if not self.with_segments:
            return batch
        segments = [list(ex["segment_ids"]) for ex in examples]
        if "attention_mask" not in batch:  # padding-free: every example (or packed sequence) one after another
            parts = []
            for ex, ids in zip(examples, segments):
                start = 0
                for n in ex.get("seq_lengths") or [len(ids)]:
                    parts.append(ids[start:start + n])
                    start += n
            segments = [unique_segment_ids(parts)]
        width = batch["input_ids"].shape[1]
        batch["segment_ids"] = torch.tensor([ids + [CAUSAL] * (width - len(ids)) for ids in segments],
                                            dtype=torch.long)
        return batch


class MASSFTTrainer(SFTTrainer):
    """``trl.SFTTrainer`` that trains under MAS: datasets from ``mas_dataset``, ``segment_ids`` added to TRL's batches,
    MAS enabled on the model. ``mask="causal"`` runs the causal arm on the same data; other arguments are TRL's."""

    def __init__(self, *args: Any, mask: str = "mas", **kwargs: Any):
        check_choice("mask", mask, MASKS)
        self.segmask_mask = mask
        super().__init__(*args, **kwargs)
        self.data_collator = SegmentIdsCollator(self.data_collator, with_segments=mask == "mas")
        if mask == "mas":
            enable(self.model)

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        if "segment_ids" not in self._signature_columns:
            self._signature_columns = [*self._signature_columns, "segment_ids"]

    def _prepare_dataset(self, dataset, processing_class, args, packing, formatting_func, dataset_name):
        if "segment_ids" not in get_dataset_column_names(dataset):
            raise ValueError(f"the {dataset_name} dataset has no segment_ids column: build it with "
                             "segmask.train.trl.mas_dataset(tokenizer, rows)")
        if args.max_length is not None:
            for i, ids in enumerate(dataset["input_ids"]):
                if len(ids) > args.max_length:
                    raise ValueError(f"{dataset_name} sample {i} has {len(ids)} tokens, more than max_length "
                                     f"{args.max_length} (a segment is never cut: drop or shorten it)")
        if packing and args.packing_strategy == "wrapped":
            raise ValueError("packing_strategy 'wrapped' cuts examples (and their segments); use 'bfd'")
        dataset = super()._prepare_dataset(dataset, processing_class, args, False, formatting_func, dataset_name)
        if packing:
            if args.max_length is None:
                raise ValueError("When packing is enabled, `max_length` can't be `None`.")
            dataset = pack_dataset(dataset.select_columns(list(COLUMNS)), args.max_length, args.packing_strategy)
        return dataset
