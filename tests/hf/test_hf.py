"""segmask.hf on tiny random models of every family and backend, against the dense reference of hf_models.
CPU only, no network."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import segmask
from segmask.core.segments import position_ids_from_attention_mask
from segmask.hf.backend import check_backend, layer_kinds

from ..hf_models import FAMILIES, VOCAB, reference_logits, tiny_model

BACKENDS = ["eager", "sdpa"]
CASES = [(f, b) for f in FAMILIES for b in BACKENDS]

SEG = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 1, -1, -1, -1, -1],
                    [-1, -1, -1, 0, 0, 0, 0, 1, 1, 1, -1, -1]])
AM = torch.tensor([[1] * 12, [0, 0, 0] + [1] * 9])


def inputs(batch=2, length=12):
    torch.manual_seed(1)
    return torch.randint(3, VOCAB, (batch, length))


def close(a, b, real):
    return torch.allclose(a[real.bool()], b[real.bool()], atol=2e-5, rtol=1e-4)


@pytest.fixture(scope="module")
def models():
    return {case: tiny_model(*case) for case in CASES}


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}")
def test_mas_logits_equal_dense_reference(models, case):
    model = segmask.enable(models[case])
    ids = inputs()
    pos = position_ids_from_attention_mask(AM)
    with torch.no_grad():
        got = model(input_ids=ids, attention_mask=AM, segment_ids=SEG, position_ids=pos).logits
    ref = reference_logits(model, case[0], ids, AM, SEG, pos)
    assert close(got, ref, AM)
    assert torch.isfinite(got).all(), "fully masked padding rows must not turn into NaN"
    with torch.no_grad():
        vanilla = model(input_ids=ids, attention_mask=AM, position_ids=pos).logits
    assert not close(got, vanilla, AM), "MAS must change the logits of this segmentation"


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}")
def test_causal_segment_ids_reproduce_vanilla_exactly(models, case):
    model = segmask.enable(models[case])
    ids = inputs()
    with torch.no_grad():
        vanilla = model(input_ids=ids, attention_mask=AM).logits
        causal = model(input_ids=ids, attention_mask=AM, segment_ids=torch.full_like(SEG, -1)).logits
    assert torch.equal(causal, vanilla)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}")
def test_singleton_segments_take_the_mask_path_and_equal_vanilla(models, case):
    """A one-token segment adds nothing to causal attention, so this checks the masks (incl. sliding windows)
    that segmask builds per layer kind against the model's own."""
    model = segmask.enable(models[case])
    ids = inputs()
    seg = torch.tensor([[-1, -1, -1, 0, -1, 1, -1, 2, -1, -1, 3, -1]] * 2)
    with torch.no_grad():
        vanilla = model(input_ids=ids, attention_mask=AM).logits
        got = model(input_ids=ids, attention_mask=AM, segment_ids=seg).logits
    assert close(got, vanilla, AM)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}")
def test_reference_with_causal_ids_matches_vanilla(models, case):
    """Guards the reference itself: its per-kind windows must be the model's own."""
    model = models[case]
    ids = inputs()
    causal = torch.full_like(SEG, -1)
    with torch.no_grad():
        vanilla = model(input_ids=ids, attention_mask=AM).logits
    assert close(reference_logits(model, case[0], ids, AM, causal), vanilla, AM)


@pytest.mark.parametrize("family", ["llama", "gemma3"])
def test_one_segment_over_whole_prompt_is_full_bidirectional(models, family):
    model = segmask.enable(models[(family, "sdpa")])
    ids = inputs(1, 9)
    am = torch.ones(1, 9, dtype=torch.long)
    seg = torch.zeros(1, 9, dtype=torch.long)
    with torch.no_grad():
        got = model(input_ids=ids, attention_mask=am, segment_ids=seg).logits
    if family == "llama":  # no sliding layers: exactly full attention
        ref = reference_logits(model, family, ids, am, seg, full=True)
    else:  # sliding layers keep their look-back window
        ref = reference_logits(model, family, ids, am, seg)
    assert close(got, ref, am)


@st.composite
def random_batch(draw):
    batch, width = draw(st.integers(1, 3)), draw(st.integers(2, 16))
    left = draw(st.booleans())
    segs, masks = [], []
    for _ in range(batch):
        length = draw(st.integers(1, width))
        ids, nxt = [], 0
        while len(ids) < length:
            run = draw(st.integers(1, length - len(ids)))
            seg = draw(st.booleans())
            ids += [nxt if seg else -1] * run
            nxt += seg
        pad = width - length
        segs.append([-1] * pad + ids if left else ids + [-1] * pad)
        masks.append([0] * pad + [1] * length if left else [1] * length + [0] * pad)
    return torch.tensor(segs), torch.tensor(masks)


@pytest.mark.parametrize("case", [("llama", "sdpa"), ("gemma3", "eager"), ("mistral", "sdpa"), ("gpt2", "eager")],
                         ids=lambda c: f"{c[0]}-{c[1]}")
def test_random_segmentations_property(models, case):
    model = segmask.enable(models[case])

    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    @given(random_batch())
    def check(batch):
        seg, am = batch
        ids = torch.randint(3, VOCAB, seg.shape)
        pos = position_ids_from_attention_mask(am)
        with torch.no_grad():
            got = model(input_ids=ids, attention_mask=am, segment_ids=seg, position_ids=pos).logits
        assert close(got, reference_logits(model, case[0], ids, am, seg, pos), am)

    check()


@pytest.mark.slow
def test_flex_attention_equals_reference():
    model = segmask.enable(tiny_model("llama", "flex_attention"))
    ids = inputs()
    pos = position_ids_from_attention_mask(AM)
    with torch.no_grad():
        got = model(input_ids=ids, attention_mask=AM, segment_ids=SEG, position_ids=pos).logits
    assert close(got, reference_logits(model, "llama", ids, AM, SEG, pos), AM)


def test_backward_reaches_lora_weights_and_matches_reference_gradients():
    from peft import LoraConfig, get_peft_model

    def lora_model():
        model = get_peft_model(tiny_model("llama", "sdpa"),
                               LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
        for name, p in model.named_parameters():  # LoRA B starts at zero; make it non-zero so A gets gradients too
            if "lora_B" in name:
                torch.nn.init.normal_(p, std=0.1)
        return model

    ids = inputs()
    # A label is predicted from the previous position: drop those whose predictor is padding (left padding).
    predictor_real = torch.nn.functional.pad(AM, (1, 0))[:, :-1]
    labels = ids.masked_fill((AM == 0) | (predictor_real == 0), -100)
    mas = segmask.enable(lora_model())
    mas.train()
    loss = mas(input_ids=ids, attention_mask=AM, segment_ids=SEG, labels=labels).loss
    loss.backward()
    grads = {n: p.grad for n, p in mas.named_parameters() if p.requires_grad}
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads.values())

    ref = lora_model()
    ref.train()
    ref.base_model.model.set_attn_implementation("eager")
    from ..hf_models import loop_mask
    dense = torch.tensor([[loop_mask(s, r, None)] for s, r in zip(SEG.tolist(), AM.tolist())])
    additive = torch.zeros(dense.shape).masked_fill(~dense, torch.finfo(torch.float32).min)
    ref(input_ids=ids, attention_mask=additive, labels=labels).loss.backward()
    for name, p in ref.named_parameters():
        if p.requires_grad:
            assert torch.allclose(p.grad, grads[name], atol=1e-5), name


def test_peft_model_logits_equal_reference():
    from peft import LoraConfig, get_peft_model

    base = tiny_model("qwen2", "sdpa")
    model = segmask.enable(get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"])))
    assert segmask.is_enabled(model) and segmask.is_enabled(base)
    ids = inputs()
    pos = position_ids_from_attention_mask(AM)
    with torch.no_grad():
        got = model(input_ids=ids, attention_mask=AM, segment_ids=SEG, position_ids=pos).logits
    assert close(got, reference_logits(base, "qwen2", ids, AM, SEG, pos), AM)
    segmask.disable(model)


def test_disable_restores_the_stock_model_and_leaves_others_alone():
    model, other = tiny_model("llama"), tiny_model("llama")
    ids = inputs()
    with torch.no_grad():
        before = model(input_ids=ids, attention_mask=AM).logits
    segmask.enable(model)
    segmask.enable(model)  # idempotent
    assert len(model.model._forward_pre_hooks) == 1
    assert not segmask.is_enabled(other) and not other.model._forward_pre_hooks
    with pytest.raises(ValueError, match="not used by the model"):
        other.generate(input_ids=ids, attention_mask=AM, segment_ids=SEG, max_new_tokens=1)
    segmask.disable(model)
    assert not segmask.is_enabled(model) and not model.model._forward_pre_hooks
    assert "_validate_model_kwargs" not in model.__dict__
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids, attention_mask=AM).logits, before)


def test_backends_without_masks_are_refused():
    with pytest.raises(ValueError, match="flash_attention_2"):
        check_backend(SimpleNamespace(_attn_implementation="flash_attention_2"))
    model = tiny_model("llama")
    model.config._attn_implementation = "flash_attention_2"
    with pytest.raises(ValueError, match="cannot apply a MAS mask"):
        segmask.enable(model)


def test_layer_kinds_follow_config():
    assert layer_kinds(tiny_model("gemma3").config) == {"sliding_attention": 0, "full_attention": 1}
    assert layer_kinds(tiny_model("mistral").config) == {"sliding_attention": 0}
    assert layer_kinds(tiny_model("llama").config) == {"full_attention": 0}


def test_bad_inputs_raise_clear_errors(models):
    model = segmask.enable(models[("llama", "sdpa")])
    ids = inputs()
    with pytest.raises(ValueError, match="does not match the batch"):
        model(input_ids=ids, attention_mask=AM, segment_ids=SEG[:1])
    with pytest.raises(ValueError, match="sample 1: segment 0 spans padding"):
        model(input_ids=ids, attention_mask=AM, segment_ids=torch.zeros_like(SEG))
    with pytest.raises(ValueError, match="sample 0: segment 1 is not one contiguous run"):
        model(input_ids=ids, attention_mask=AM, segment_ids=torch.tensor([[1, 1, 0, 1] + [-1] * 8] * 2))
    long_ids = torch.randint(3, VOCAB, (1, 80))
    with pytest.raises(ValueError, match="exceeds the model's max_position_embeddings 64"):
        model(input_ids=long_ids, segment_ids=torch.zeros_like(long_ids))


def test_segment_split_across_forward_calls_raises(models):
    from transformers import DynamicCache

    model = segmask.enable(models[("llama", "sdpa")])
    ids = inputs(1, 8)
    seg = torch.tensor([[0, 0, 0, 0, 0, 1, 1, -1]])
    cache = DynamicCache(config=model.config)
    with pytest.raises(ValueError, match="sample 0: segment 0 continues past the tokens of this forward call"):
        model(input_ids=ids[:, :3], segment_ids=seg, past_key_values=cache, use_cache=True)
    cache = DynamicCache(config=model.config)
    with torch.no_grad():
        model(input_ids=ids[:, :6], past_key_values=cache, use_cache=True)  # cache filled without MAS
        with pytest.raises(ValueError, match="segment 1 begins in the KV cache"):
            model(input_ids=ids[:, 6:], segment_ids=seg, past_key_values=cache, use_cache=True)


def test_segment_by_segment_prefill_over_cache_equals_one_shot(models):
    """Whole segments prefilled call by call over the cache give the one-shot MAS logits."""
    from transformers import DynamicCache

    model = segmask.enable(models[("llama", "sdpa")])
    ids = inputs(1, 9)
    seg = torch.tensor([[0, 0, 0, 1, 1, 1, 1, -1, -1]])
    with torch.no_grad():
        one_shot = model(input_ids=ids, segment_ids=seg).logits
        cache, parts = DynamicCache(config=model.config), []
        for start, end in [(0, 3), (3, 7), (7, 9)]:
            parts.append(model(input_ids=ids[:, start:end], segment_ids=seg, past_key_values=cache,
                               use_cache=True).logits)
    assert torch.allclose(torch.cat(parts, 1), one_shot, atol=1e-5)


def test_segment_ids_of_any_integer_dtype_and_magnitude_give_the_same_logits(models):
    model = segmask.enable(models[("llama", "sdpa")])
    ids = inputs()
    big = torch.where(SEG >= 0, SEG + 10**11, SEG)
    with torch.no_grad():
        want = model(input_ids=ids, attention_mask=AM, segment_ids=SEG).logits
        for seg in (SEG.to(torch.int8), SEG.to(torch.int16), SEG.to(torch.int32), big, SEG.tolist()):
            got = model(input_ids=ids, attention_mask=AM, segment_ids=seg).logits
            assert torch.equal(got[AM.bool()], want[AM.bool()])
