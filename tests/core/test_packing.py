"""segmask.core.packing: packed rows of tiny random models equal each example run alone, padded, under MAS (logits and
loss), on eager and sdpa for Llama, Qwen2 (sliding layers) and Gemma 3, and on flex_attention for Llama; the causal
arm gets the document mask only. The reference is hf_models' eager forward with dense masks from plain loops.
CPU only, no network."""

from __future__ import annotations

import time

import pytest
import torch

import segmask
from segmask.core.masks import document_ids, packed_segment_mask, segment_mask
from segmask.core.packing import PackedCollator, PackedDataset, collate_packed, pack, unique_segment_ids
from segmask.core.segments import IGNORE_INDEX, Example, collate, position_ids_from_attention_mask

from ..hf_models import VOCAB, reference_logits, tiny_model

FAMILIES = ["llama", "qwen2", "gemma3"]
CASES = [(f, b) for f in FAMILIES for b in ("eager", "sdpa")]
# (segment ids, number of answer tokens at the end): segments longer than the sliding window (4), arbitrary ids, an
# example without segments, one that is a single segment plus its answer
SHAPES = [([0, 0, 0, 1, 1, -1, -1], 2),
          ([-1, 0, 0, 0, 0, 0, 0, -1, -1, -1], 3),
          ([9, 9, -1, -1, -1], 2),
          ([-1, -1, -1, -1], 2),
          ([5, 5, 5, 7, 7, 7, 7, -1], 1),
          ([0, 0, 0, 0, 0, 0, 0, 0, 0, -1, -1, -1], 2)]


def make_examples(shapes=SHAPES, seed=3) -> list[Example]:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for seg, answer in shapes:
        ids = torch.randint(3, VOCAB, (len(seg),), generator=gen).tolist()
        labels = [IGNORE_INDEX] * (len(seg) - answer) + ids[len(seg) - answer:]
        out.append(Example(ids, list(seg), labels))
    return out


def alone(examples):
    """The examples as one right-padded batch (each row is an example alone) with generate-style positions."""
    batch = collate(examples, pad_token_id=0, padding_side="right", with_labels=True)
    batch["position_ids"] = position_ids_from_attention_mask(batch["attention_mask"])
    return batch


def loss_from(logits, labels):
    """Mean next-token cross-entropy over labelled targets (what the model's loss computes)."""
    logp = torch.log_softmax(logits[:, :-1].float(), -1)
    targets = labels[:, 1:]
    keep = targets != IGNORE_INDEX
    picked = logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return -(picked * keep).sum() / keep.sum()


def check_packed_equals_alone(model, family, examples, rows, packed_logits, packed_loss, atol=2e-5):
    ref_batch = alone(examples)
    ref = reference_logits(model, family, ref_batch["input_ids"], ref_batch["attention_mask"],
                           ref_batch["segment_ids"], ref_batch["position_ids"])
    for r, row in enumerate(rows):
        start = 0
        for i, n in zip(row.indices, row.lengths):
            got = packed_logits[r, start:start + n]
            assert torch.allclose(got, ref[i, :n], atol=atol, rtol=1e-4), (family, r, i)
            start += n
    ref_loss = loss_from(ref, ref_batch["labels"])
    assert abs(float(packed_loss) - float(ref_loss)) < 1e-5


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}")
def test_packed_row_equals_each_example_alone_under_mas(case):
    family, backend = case
    model = segmask.enable(tiny_model(family, backend))
    examples = make_examples()
    rows = pack(examples, max_tokens=24)
    assert len(rows) < len(examples) and any(len(r.lengths) > 1 for r in rows)
    batch = collate_packed(rows, pad_token_id=0)
    assert "attention_mask" not in batch
    with torch.no_grad():
        out = model(**batch)
    check_packed_equals_alone(model, family, examples, rows, out.logits, out.loss)
    # segmask's own padded batch (what `segmask train` feeds without --packing) gives the same loss
    with torch.no_grad():
        padded = model(**collate(examples, pad_token_id=0, padding_side="right", with_labels=True)).loss
    assert abs(float(out.loss) - float(padded)) < 1e-5
    segmask.disable(model)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}")
def test_causal_arm_packing_is_the_document_mask_only(case):
    family, backend = case
    model = tiny_model(family, backend)
    examples = make_examples()
    rows = pack(examples, max_tokens=24)
    batch = collate_packed(rows, pad_token_id=0, with_segments=False)
    with torch.no_grad():
        got = model(**batch, use_cache=False).logits
    causal = [Example(ex.input_ids, [-1] * len(ex), ex.labels) for ex in examples]
    check_packed_equals_alone(model, family, causal, rows, got, loss_from(got, batch["labels"]))
    # through an enabled model with all-causal segment ids the hook builds the document mask itself (even when the
    # model would create a KV cache, where transformers stops detecting packed rows)
    segmask.enable(model)
    with torch.no_grad():
        hooked = model(**batch, segment_ids=torch.full_like(batch["input_ids"], -1)).logits
    assert torch.allclose(hooked, got, atol=2e-5, rtol=1e-4)
    segmask.disable(model)


@pytest.mark.slow
@pytest.mark.slow  # flex_attention compiles for ~50 s on a cold CPU cache (a few seconds warm)
def test_flex_attention_packed_row_equals_each_example_alone():
    model = segmask.enable(tiny_model("llama", "flex_attention"))
    examples = make_examples()
    rows = pack(examples, max_tokens=24)
    # 32 columns: stock flex_attention on CPU (torch 2.13) gives sporadic NaN rows at 24, even without segmask
    batch = collate_packed(rows, pad_token_id=0, pad_to=32)
    start = time.perf_counter()
    with torch.no_grad():
        out = model(**batch)
    check_packed_equals_alone(model, "llama", examples, rows, out.logits, out.loss)
    seconds = time.perf_counter() - start
    print(f"flex packed forward incl. compile: {seconds:.1f} s")


def test_gradients_of_a_packed_row_equal_the_padded_batch():
    torch.manual_seed(0)
    model = segmask.enable(tiny_model("llama", "sdpa")).train()
    examples = make_examples()
    losses, grads = [], []
    for batch in (collate_packed(pack(examples, 24), pad_token_id=0),
                  collate(examples, pad_token_id=0, padding_side="right", with_labels=True)):
        model.zero_grad()
        loss = model(**batch).loss
        loss.backward()
        losses.append(float(loss))
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert abs(losses[0] - losses[1]) < 1e-5
    assert torch.allclose(grads[0], grads[1], atol=1e-5, rtol=1e-4)
    segmask.disable(model)


def test_pack_rules():
    examples = make_examples()
    rows = pack(examples, max_tokens=24)
    assert sorted(i for r in rows for i in r.indices) == list(range(len(examples)))
    for r in rows:
        assert len(r) <= 24 and sum(r.lengths) == len(r)
        assert r.position_ids == [p for n in r.lengths for p in range(n)]
        segs = [s for s in r.segment_ids if s >= 0]
        runs = [s for k, s in enumerate(segs) if k == 0 or s != segs[k - 1]]
        assert len(runs) == len(set(runs)), "segment ids unique within a row"
        start = 0
        for i, n in zip(r.indices, r.lengths):
            assert r.input_ids[start:start + n] == examples[i].input_ids
            assert r.labels[start] == IGNORE_INDEX and r.labels[start + 1:start + n] == examples[i].labels[1:]
            assert [s >= 0 for s in r.segment_ids[start:start + n]] == [s >= 0 for s in examples[i].segment_ids]
            start += n
    in_order = pack(examples, max_tokens=24, strategy="in_order")
    assert [i for r in in_order for i in r.indices] == list(range(len(examples)))
    assert len(rows) <= len(in_order)


def test_pack_bfd_fills_rows_best_fit():
    lengths = [10, 7, 6, 5, 3, 1]
    examples = [Example([1] * n, [-1] * n, [IGNORE_INDEX] * n) for n in lengths]
    rows = pack(examples, max_tokens=11)
    assert sorted(sorted(lengths[i] for i in r.indices) for r in rows) == [[1, 10], [3, 7], [5, 6]]


def test_pack_and_collate_errors_name_the_sample():
    examples = make_examples()
    with pytest.raises(ValueError, match="sample 5 has 12 tokens, more than max_tokens 11"):
        pack(examples, max_tokens=11)
    with pytest.raises(ValueError, match="strategy"):
        pack(examples, max_tokens=24, strategy="wrapped")
    with pytest.raises(ValueError, match="packed row 0"):
        collate_packed(pack(examples, 24), pad_token_id=0, pad_to=5)


def test_unique_segment_ids_and_collate_padding():
    assert unique_segment_ids([[0, 0, 1, -1], [0, -1], [7, 7, 3]]) == [0, 0, 1, -1, 2, -1, 3, 3, 4]
    rows = pack(make_examples(SHAPES[:3]), max_tokens=12, strategy="in_order")
    batch = PackedCollator(0)(PackedDataset(rows))  # via the Trainer dataset/collator pair
    width = batch["input_ids"].shape[1]
    short = min(range(len(rows)), key=lambda r: len(rows[r]))
    n = len(rows[short])
    assert batch["position_ids"][short, n:].tolist() == list(range(width - n))
    assert (batch["labels"][short, n:] == IGNORE_INDEX).all() and (batch["segment_ids"][short, n:] == -1).all()
    assert "segment_ids" not in PackedCollator(0, with_segments=False)(PackedDataset(rows))


def test_document_ids_match_transformers_packed_detection():
    from transformers.masking_utils import find_packed_sequence_indices

    pos = torch.tensor([[0, 1, 2, 0, 1, 0, 0, 1], [0, 1, 2, 3, 4, 5, 0, 1]])
    assert torch.equal(document_ids(pos), find_packed_sequence_indices(pos))


def test_packed_segment_mask_equals_loops():
    seg = torch.tensor([[0, 0, -1, 1, 1, -1, -1, 2]])
    pos = torch.tensor([[0, 1, 2, 0, 1, 2, 0, 1]])
    doc = [0, 0, 0, 1, 1, 1, 2, 2]
    s = seg[0].tolist()
    loops = [[doc[q] == doc[k] and (k <= q or s[q] == s[k] >= 0) for k in range(8)] for q in range(8)]
    assert torch.equal(packed_segment_mask(seg, pos)[0, 0], torch.tensor(loops))
    assert torch.equal(packed_segment_mask(seg, torch.arange(8)[None]), segment_mask(seg))


def test_hook_refuses_segments_that_cross_or_repeat_across_packed_sequences():
    model = segmask.enable(tiny_model("llama", "sdpa"))
    ids = torch.randint(3, VOCAB, (1, 6))
    pos = torch.tensor([[0, 1, 2, 0, 1, 2]])
    with pytest.raises(ValueError, match="crosses the start of a packed sequence at position 3"):
        model(input_ids=ids, position_ids=pos, segment_ids=torch.tensor([[-1, 0, 0, 0, -1, -1]]))
    with pytest.raises(ValueError, match="unique across its sequences"):
        model(input_ids=ids, position_ids=pos, segment_ids=torch.tensor([[0, 0, -1, 0, 0, -1]]))
    segmask.disable(model)
