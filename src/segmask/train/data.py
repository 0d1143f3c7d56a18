"""Training data: dataset rows -> segmented ``Example``s, mixing, the cutoff rule, and the training collator.

Two row formats are read (``segmask.core.records.load_records``):

* LLM-Adapters records ``{"instruction", "input", "output", "answer"}`` from JSON lists (``.json``) or JSON lines
  (``.jsonl``), e.g. the ``*/train.json`` files ``segmask data`` writes (the commonsense_170k mixture);
* chat rows ``{"messages": [{"role", "content"}, ...]}`` (JSONL), whose final assistant message is the answer.

LLM-Adapters records are rendered in one of two prompt forms: ``"commonsense"`` (the paper's prompt: system
sentence segment, instruction segment, causal ``### Response:`` tail, see ``templates``) or ``"chat"`` (the model's
chat template: the instruction as one user segment, the output as the assistant answer). Chat rows always use the
chat template. For commonsense multiple-choice records, ``answer_form="text"`` trains the answer by content ("the
correct answer is {option text}", winogrande: the filled-in sentence) instead of its label, as the ``choice``
eval protocol scores it, and ``layout`` orders the record's context, question and options (``questions.LAYOUTS``)
(``questions.rewrite_record``); chat rows are used as they are. Labels cover the answer only (prompt labels are
``IGNORE_INDEX``: under MAS, loss on prompt tokens would leak the segment's future).

Cutoff rule (``cutoff`` tokens per example): a segment is never cut. An example longer than the cutoff keeps its
first ``cutoff`` tokens only if everything cut off is causal (the answer tail, or the causal header before it) and
at least one answer token survives; otherwise it is dropped. ``prepare`` returns the counts of both.

    >>> data = segmask.eval.tasks.default_data_dir()    # the folder `segmask data` fills
    >>> records = mix([load_records(data / "commonsense_170k" / "train.json")], seed=0, limit=1000)  # core.records
    >>> examples, stats = prepare(tokenizer, records, form="commonsense", cutoff=256)
    >>> batch = SegmentCollator(tokenizer.pad_token_id)(examples[:8])    # right padded, keeps segment_ids
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..core.chat import chat_example
from ..core.masks import CAUSAL
from ..core.questions import ANSWER_FORMS, layout_mix, normalize_layout, rewrite_record
from ..core.recipe import PROMPT_FORMS, check_choice
from ..core.records import record_messages
from ..core.segments import IGNORE_INDEX, Batch, Example, collate
from ..core.templates import encode_commonsense


def mix(sources: Sequence[Sequence[dict]], *, seed: int, limit: int | None = None) -> list[dict]:
    """Concatenate row lists, shuffle with ``random.Random(seed)``, keep the first ``limit`` rows (all if None)."""
    rows = [row for rows in sources for row in rows]
    random.Random(seed).shuffle(rows)
    return rows if limit is None else rows[:limit]


def encode_record(
    tokenizer: Any, record: Mapping[str, Any], *, form: str = "commonsense", system: str | None = None, index: int = 0,
    answer_form: str = "label", layout: str = "data", mask: str = "mas",
) -> Example:
    """One training row -> ``Example`` with answer-only labels (see the module docstring for the forms, the answer
    form and the layout); ``mask="causal-repeat"`` reads the prompt's question part twice (``mask_pieces``)."""
    check_choice("prompt_form", form, PROMPT_FORMS)
    check_choice("answer_form", answer_form, ANSWER_FORMS)
    normalize_layout(layout)
    try:
        if "messages" not in record:
            record = rewrite_record(record, layout=layout, answer_form=answer_form)
        if mask == "causal-repeat" and (form != "commonsense" or "messages" in record):
            raise ValueError("mask causal-repeat (the prompt read twice) is built for the commonsense prompt form only")
        if "messages" in record:
            messages = record["messages"]
            if not isinstance(messages, list) or not all(
                    isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                    for m in messages):
                raise ValueError("'messages' must be a list of {\"role\": str, \"content\": str} objects")
            if not messages or messages[-1].get("role") != "assistant":
                raise ValueError("the last message must be the assistant's answer to train on")
            example = chat_example(tokenizer, messages, add_generation_prompt=False, index=index)
        elif form == "chat":
            example = chat_example(tokenizer, record_messages(record, system, answer=True), False, index=index)
        else:
            example = encode_commonsense(tokenizer, record, with_answer=True, mask=mask)
    except ValueError as err:
        raise ValueError(f"sample {index} ({record.get('_source', 'rows')}): {err}") from err
    if all(lab == IGNORE_INDEX for lab in example.labels):
        raise ValueError(f"sample {index} ({record.get('_source', 'rows')}): no answer tokens to train on")
    example.meta["source"] = record.get("_source")
    return example


def fit_cutoff(example: Example, cutoff: int) -> Example | None:
    """Apply the cutoff rule: the example itself, its first ``cutoff`` tokens, or None (drop).

    Truncation is allowed only when every removed token is causal (segment id -1) and at least one label remains,
    so no bidirectional segment ever loses tokens.
    """
    if len(example) <= cutoff:
        return example
    if any(s != CAUSAL for s in example.segment_ids[cutoff:]):
        return None
    labels = example.labels[:cutoff]
    if all(lab == IGNORE_INDEX for lab in labels):
        return None
    return Example(example.input_ids[:cutoff], example.segment_ids[:cutoff], labels, example.text,
                   {**example.meta, "truncated_from": len(example)})


@dataclass
class PrepareStats:
    """What ``prepare`` did: rows seen, examples kept, truncated (answer tail cut) and dropped (over cutoff)."""

    rows: int = 0
    kept: int = 0
    truncated: int = 0
    dropped: int = 0
    tokens: int = 0
    answer_tokens: int = 0

    def summary(self) -> str:
        return (f"{self.kept} examples from {self.rows} rows ({self.truncated} answer tails truncated, "
                f"{self.dropped} dropped over the cutoff); {self.tokens} tokens, {self.answer_tokens} answer tokens")


def prepare(
    tokenizer: Any,
    records: Iterable[Mapping[str, Any]],
    *,
    form: str = "commonsense",
    cutoff: int = 256,
    system: str | None = None,
    answer_form: str = "label",
    layout: str = "data",
    mask: str = "mas",
) -> tuple[list[Example], PrepareStats]:
    """Encode rows (``encode_record``) and apply the cutoff rule; returns the kept examples and the counts.

    ``layout`` may be a comma-separated mix (``questions.layout_mix``): row ``i`` then takes layout ``i mod n``
    (rows come shuffled by ``mix``, so every arm of a seed sees the same row in the same layout).
    """
    if cutoff < 1:
        raise ValueError(f"cutoff must be a positive number of tokens, got {cutoff}")
    layouts = layout_mix(layout)
    stats, kept = PrepareStats(), []
    for i, record in enumerate(records):
        stats.rows += 1
        example = encode_record(tokenizer, record, form=form, system=system, index=i, answer_form=answer_form,
                                layout=layouts[i % len(layouts)], mask=mask)
        example = fit_cutoff(example, cutoff)
        if example is None:
            stats.dropped += 1
            continue
        stats.truncated += "truncated_from" in example.meta
        stats.kept += 1
        stats.tokens += len(example)
        stats.answer_tokens += sum(lab != IGNORE_INDEX for lab in example.labels)
        kept.append(example)
    if not kept:
        raise ValueError(f"no example fits the cutoff of {cutoff} tokens ({stats.dropped} dropped)")
    return kept, stats


class ExampleDataset:
    """A list of ``Example``s as a map-style dataset of dicts (what HF Trainer's dataloader expects)."""

    def __init__(self, examples: Sequence[Example]):
        self.examples = list(examples)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        ex = self.examples[i]
        return {"input_ids": ex.input_ids, "segment_ids": ex.segment_ids, "labels": ex.labels}


class SegmentCollator:
    """Right-pad training rows into a ``Batch`` [B, T] that keeps ``segment_ids`` aligned with ``input_ids``.

    Args:
        pad_token_id: id used for padding (padding is never attended: ``attention_mask`` 0, segment -1, label -100).
        with_segments: False for the causal arm: the batch then has no ``segment_ids`` and the model runs its
            stock causal mask. This is the only difference between the two arms.
        max_length: ``ValueError`` naming the sample when one is longer (``prepare`` has already applied the cutoff).
    """

    def __init__(self, pad_token_id: int, *, with_segments: bool = True, max_length: int | None = None):
        if pad_token_id is None:
            raise ValueError("pad_token_id is None: set tokenizer.pad_token (e.g. to the eos token)")
        self.pad_token_id, self.with_segments, self.max_length = pad_token_id, with_segments, max_length

    def __call__(self, rows: Sequence[Mapping[str, Any] | Example]) -> Batch:
        examples = [r if isinstance(r, Example) else Example(list(r["input_ids"]), list(r["segment_ids"]),
                                                              list(r["labels"])) for r in rows]
        batch = collate(examples, pad_token_id=self.pad_token_id, padding_side="right", max_length=self.max_length,
                        with_labels=True)
        if not self.with_segments:
            del batch["segment_ids"]
        return batch
