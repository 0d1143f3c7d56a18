"""LoRA glue: settings, trainable parameters, adapter save/load round trip under MAS, segmask.json, gradients.

CPU only, no network: tiny random Llama models built from a config.
"""

from __future__ import annotations

import json

import pytest
import torch

from segmask import disable, enable
from segmask.core.recipe import load_adapter_config
from segmask.train.lora import LoraSettings, add_lora, save_adapter

VOCAB = 128



def batch():
    ids = torch.randint(0, VOCAB, (2, 12))
    segs = torch.tensor([[0] * 4 + [1] * 5 + [-1] * 3, [0] * 6 + [-1] * 6])
    return ids, torch.ones_like(ids), segs


def randomize_lora(model) -> None:
    """LoRA B starts at zero (adapter = identity); give every LoRA weight random values so the test means something."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.normal_(0, 0.2)


def test_settings_defaults_and_validation(tiny_lm):
    s = LoraSettings()
    assert (s.r, s.alpha, s.dropout, s.target_modules) == (32, 64, 0.05, ("q_proj", "v_proj"))
    assert LoraSettings(target_modules="q_proj, k_proj").target_modules == ("q_proj", "k_proj")
    for bad in [dict(r=0), dict(alpha=-1), dict(dropout=1.0), dict(target_modules=())]:
        with pytest.raises(ValueError):
            LoraSettings(**bad)
    with pytest.raises(ValueError, match="not_a_module"):
        add_lora(tiny_lm(vocab_size=VOCAB), LoraSettings(target_modules=("not_a_module",)))


def test_only_lora_weights_train_with_the_expected_count(tiny_lm):
    model = add_lora(tiny_lm(vocab_size=VOCAB), LoraSettings(r=4))
    trainable = {n: p.numel() for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    # per layer: q_proj 32->32 and v_proj 32->16 (2 kv heads x 8): r * (in + out) each
    assert sum(trainable.values()) == 2 * (4 * (32 + 32) + 4 * (32 + 16))


def test_save_load_round_trip_reproduces_mas_logits(tmp_path, tiny_lm):
    from peft import PeftModel

    model = add_lora(tiny_lm(vocab_size=VOCAB), LoraSettings(r=4, dropout=0.0))
    randomize_lora(model)
    model.eval()
    enable(model)
    ids, attn, segs = batch()
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=attn, segment_ids=segs).logits
        causal = model(input_ids=ids, attention_mask=attn).logits
    assert not torch.allclose(ref, causal)  # the mask matters for this input
    save_adapter(model, tmp_path / "a", mask="mas", prompt_form="commonsense", base_model="tiny")
    save_adapter(model, tmp_path / "h", mask="mas", prompt_form="commonsense", base_model="tiny", dtype="float16")
    cfg = load_adapter_config(tmp_path / "a")
    assert (cfg["mask"], cfg["prompt_form"], cfg["base_model"]) == ("mas", "commonsense", "tiny")
    assert load_adapter_config(tmp_path / "h")["saved_dtype"] == "float16"
    from safetensors.torch import load_file

    assert {v.dtype for v in load_file(tmp_path / "h" / "adapter_model.safetensors").values()} == {torch.float16}

    def reload(folder):
        loaded = PeftModel.from_pretrained(tiny_lm(vocab_size=VOCAB), tmp_path / folder).eval()
        if load_adapter_config(tmp_path / folder)["mask"] == "mas":
            enable(loaded)
        with torch.no_grad():
            return loaded(input_ids=ids, attention_mask=attn, segment_ids=segs).logits

    assert torch.equal(reload("a"), ref)
    # float16 storage: error no larger than rounding the fp32 adapter to fp16 and back in place
    model_fp16 = add_lora(tiny_lm(vocab_size=VOCAB), LoraSettings(r=4, dropout=0.0)).eval()
    model_fp16.load_state_dict({k: v.half().float() if "lora_" in k else v for k, v in model.state_dict().items()})
    enable(model_fp16)
    with torch.no_grad():
        rounded = model_fp16(input_ids=ids, attention_mask=attn, segment_ids=segs).logits
    assert torch.equal(reload("h"), rounded)
    disable(model)


def test_adapter_config_missing_or_invalid(tmp_path, tiny_lm):
    assert load_adapter_config(tmp_path) == {}
    (tmp_path / "segmask.json").write_text(json.dumps({"mask": "bidirectional", "prompt_form": "commonsense"}))
    with pytest.raises(ValueError, match="bidirectional"):
        load_adapter_config(tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        load_adapter_config(tmp_path / "nope")
    with pytest.raises(ValueError, match="mask must be"):
        save_adapter(add_lora(tiny_lm(vocab_size=VOCAB)), tmp_path / "x", mask="full", prompt_form="commonsense")


def test_gradients_reach_lora_weights_under_mas(tiny_lm):
    model = add_lora(tiny_lm(vocab_size=VOCAB), LoraSettings(r=4, dropout=0.0))
    randomize_lora(model)  # with B = 0 the A gradient is zero by construction
    enable(model)
    model.train()
    ids, attn, segs = batch()
    labels = ids.clone()
    labels[segs >= 0] = -100
    loss_mas = model(input_ids=ids, attention_mask=attn, segment_ids=segs, labels=labels).loss
    loss_mas.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert all(g is not None and g.abs().sum() > 0 for g in grads.values()), [n for n, g in grads.items()
                                                                                if g is None or not g.abs().sum()]
    with torch.no_grad():
        loss_causal = model(input_ids=ids, attention_mask=attn, labels=labels).loss
    assert not torch.isclose(loss_mas, loss_causal)  # the MAS mask is live in the training forward
    disable(model)
