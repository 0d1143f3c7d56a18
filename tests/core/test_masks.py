"""segmask.core.masks against a loop-by-loop reference written from the MAS definition. CPU only, no network."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from segmask.core.masks import mas_mod, pad_segment_ids, segment_mask, validate_segment_ids


def loop_reference(segment_ids: list[list[int]], attention_mask: list[list[int]]) -> torch.Tensor:
    """Query q may attend key k iff k is real and (k <= q or both lie in the same segment >= 0)."""
    out = []
    for seg, real in zip(segment_ids, attention_mask):
        t = len(seg)
        rows = [[bool(real[k]) and (k <= q or (seg[q] == seg[k] and seg[q] >= 0)) for k in range(t)] for q in range(t)]
        out.append([rows])
    return torch.tensor(out, dtype=torch.bool)


@st.composite
def segmented_batches(draw, max_batch=3, max_len=24):
    """Random valid batches: each sample = causal/segment runs, then left or right padding."""
    batch = draw(st.integers(1, max_batch))
    width = draw(st.integers(1, max_len))
    left = draw(st.booleans())
    segs, masks = [], []
    for _ in range(batch):
        length = draw(st.integers(1, width))
        ids, next_id = [], 0
        while len(ids) < length:
            run = draw(st.integers(1, length - len(ids)))
            if draw(st.booleans()):
                ids += [next_id] * run
                next_id += 1
            else:
                ids += [-1] * run
        pad = width - length
        segs.append([-1] * pad + ids if left else ids + [-1] * pad)
        masks.append([0] * pad + [1] * length if left else [1] * length + [0] * pad)
    return segs, masks


@settings(max_examples=150, deadline=None)
@given(segmented_batches())
def test_segment_mask_equals_loop_reference(batch):
    segs, masks = batch
    got = segment_mask(torch.tensor(segs), torch.tensor(masks))
    assert got.dtype == torch.bool and got.shape == (len(segs), 1, len(segs[0]), len(segs[0]))
    assert torch.equal(got, loop_reference(segs, masks))


@settings(max_examples=60, deadline=None)
@given(segmented_batches())
def test_mas_mod_on_index_grids_equals_dense(batch):
    segs, _ = batch
    seg = torch.tensor(segs)
    b, t = seg.shape
    mod = mas_mod(seg)
    bi, qi, ki = torch.meshgrid(torch.arange(b), torch.arange(t), torch.arange(t), indexing="ij")
    got = mod(bi, torch.zeros_like(bi), qi, ki)
    assert torch.equal(got, segment_mask(seg)[:, 0])


def test_mas_mod_with_window_is_and_of_window_and_mas():
    seg = torch.tensor([[0, 0, 0, 0, 0, 0, -1, -1, -1, -1]])
    q, k = torch.meshgrid(torch.arange(10), torch.arange(10), indexing="ij")
    got = mas_mod(seg, window=3)(torch.zeros_like(q), 0, q, k)
    expected = segment_mask(seg)[0, 0] & (k > q - 3)
    assert torch.equal(got, expected)
    assert mas_mod(seg, window=3).__name__ == "mas_sliding_window_3"


def test_all_causal_is_lower_triangle_and_one_segment_is_full():
    t = 7
    causal = segment_mask(torch.full((1, t), -1))[0, 0]
    assert torch.equal(causal, torch.ones(t, t, dtype=torch.bool).tril())
    full = segment_mask(torch.zeros((1, t), dtype=torch.long))[0, 0]
    assert full.all()


def test_padding_is_never_attended():
    seg = torch.tensor([[-1, -1, 0, 0, -1]])
    am = torch.tensor([[0, 0, 1, 1, 1]])
    mask = segment_mask(seg, am)[0, 0]
    assert not mask[:, :2].any()


def test_pad_segment_ids_appends_causal():
    assert pad_segment_ids(torch.tensor([[0, 1]]), 4).tolist() == [[0, 1, -1, -1]]
    assert pad_segment_ids(torch.tensor([[0, 1]]), 1).tolist() == [[0, 1]]


@pytest.mark.parametrize(
    "seg, am, message",
    [
        ([[0, 0, -1, 0]], None, "sample 0: segment 0 is not one contiguous run"),
        ([[-1, 0, 0]], [[0, 1, 1]], None),
        ([[0, 0, 1]], [[0, 1, 1]], "sample 0: segment 0 spans padding"),
        ([[-2, 0]], None, "sample 0: segment id -2"),
    ],
)
def test_validation_names_sample_and_segment(seg, am, message):
    seg_t = torch.tensor(seg)
    am_t = None if am is None else torch.tensor(am)
    if message is None:
        validate_segment_ids(seg_t, am_t)
    else:
        with pytest.raises(ValueError, match=message):
            validate_segment_ids(seg_t, am_t)


def test_validation_names_the_second_sample():
    seg = torch.tensor([[0, 0, 1, 1], [0, 1, 0, -1]])
    with pytest.raises(ValueError, match="sample 1: segment 0 is not one contiguous run"):
        segment_mask(seg)


def test_validation_rejects_shape_mismatch_float_and_3d():
    with pytest.raises(ValueError, match="does not match attention_mask shape"):
        validate_segment_ids(torch.tensor([[0, 0]]), torch.ones(2, 2))
    with pytest.raises(ValueError, match="integer"):
        validate_segment_ids(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="2-D"):
        validate_segment_ids(torch.zeros(1, 1, 3, dtype=torch.long))


def test_mask_stays_on_input_device_and_is_vectorised():
    seg = torch.randint(-1, 3, (2, 512)).sort(dim=1).values  # sorted ids are contiguous runs
    mask = segment_mask(seg)
    assert mask.device == seg.device and mask.shape == (2, 1, 512, 512)


@pytest.mark.parametrize("dtype", [torch.int8, torch.int16, torch.int32, torch.int64])
def test_any_signed_integer_dtype_gives_the_same_mask(dtype):
    segs = [[-1, 0, 0, 1, 1, -1], [2, 2, 2, -1, 0, 0]]
    masks = [[0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]]
    assert torch.equal(segment_mask(torch.tensor(segs).to(dtype), torch.tensor(masks)), loop_reference(segs, masks))


def test_unsigned_ids_are_read_as_values():
    """uint8 cannot hold -1, but a prompt made of segments only is valid (before: 'segment 0' was blamed)."""
    ids = torch.tensor([[0, 0, 1]], dtype=torch.uint8)
    assert torch.equal(segment_mask(ids), loop_reference([[0, 0, 1]], [[1, 1, 1]]))


def test_mask_memory_does_not_depend_on_id_magnitude():
    """Ids are only compared for equality: 1e11 and 2**62 behave as 0 and 1 (no table sized by the largest id)."""
    big = torch.tensor([[10**11, 10**11, 2**62, 2**62, -1]])
    assert torch.equal(segment_mask(big), loop_reference([[0, 0, 1, 1, -1]], [[1] * 5]))
    with pytest.raises(ValueError, match=f"sample 0: segment {10**11} is not one contiguous run"):
        segment_mask(torch.tensor([[10**11, -1, 10**11]]))


def test_renumber_segments_keeps_order_and_causal():
    from segmask.core.masks import renumber_segments

    ids = torch.tensor([[-1, 7, 7, 3, -1, 10**9], [5, 5, 5, -1, -1, -1]])
    assert renumber_segments(ids).tolist() == [[-1, 0, 0, 1, -1, 2], [0, 0, 0, -1, -1, -1]]


def test_python_lists_are_accepted_and_bad_values_refused():
    assert torch.equal(segment_mask([[0, 0, -1]]), loop_reference([[0, 0, -1]], [[1, 1, 1]]))
    assert torch.equal(segment_mask([[-1, 0, 0]], [[0, 1, 1]]), loop_reference([[-1, 0, 0]], [[0, 1, 1]]))
    for bad, message in [([[True, False]], "integers, got dtype torch.bool"),
                         ([[0.0, 1.0]], "integers, got dtype torch.float"),
                         (torch.tensor([[0, 1]]).bool(), "integers, got dtype torch.bool"),
                         ([[0, 1], [0]], "rectangle of integers"),
                         ([[0, 2**70]], "rectangle of integers")]:
        with pytest.raises(ValueError, match=message):
            segment_mask(bad)
