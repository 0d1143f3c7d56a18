"""``segmask train --packing``: packed rows give the same first-step loss as padded batches of the same examples, in
both arms, and both arms learn. CPU only, no network: a tiny random Llama with the SmolLM2 tokenizer."""

from __future__ import annotations

import argparse
import json

import pytest

from segmask.train import LOSS_CURVE, TrainConfig, train
from segmask.train.lora import LoraSettings

from ..hf_models import tiny_model
from .test_train import RECORDS


def run(tok, path, out, mask, packing, steps=4):
    # one optimizer step covers all 6 examples: 6 padded rows, or the (2) packed rows of <= 256 tokens
    cfg = TrainConfig(data=[str(path)], output_dir=str(out), mask=mask, packing=packing, max_steps=steps,
                      batch_size=6, grad_accum=1, lr=1e-2, logging_steps=1, save_steps=100, progress=False,
                      lora=LoraSettings(r=8, dropout=0.0))
    summary = train(cfg, model=tiny_model(tokenizer=tok), tokenizer=tok)
    return summary, json.loads((out / LOSS_CURVE).read_text())


@pytest.mark.slow
@pytest.mark.parametrize("mask", ["mas", "causal"])
def test_packed_training_has_the_loss_of_padded_training(tok, tmp_path, mask):
    path = tmp_path / "train.json"
    path.write_text(json.dumps(RECORDS))
    padded, padded_curve = run(tok, path, tmp_path / "padded", mask, packing=False)
    packed, packed_curve = run(tok, path, tmp_path / "packed", mask, packing=True)
    assert packed["packed_rows"] < packed["data"]["kept"] == len(RECORDS) and padded["packed_rows"] is None
    assert packed["recipe"]["packing"] is True
    # step 1 sees the same examples with the same weights: the same answer-token mean loss
    assert abs(packed_curve[0]["loss"] - padded_curve[0]["loss"]) < 1e-4
    assert packed_curve[-1]["loss"] < packed_curve[0]["loss"] - 0.05


def test_packing_flag_reaches_the_config(tmp_path):
    from segmask.cli.train import add_parser, config_from_args

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["train", "data.json", "--out", str(tmp_path), "--packing"])
    assert config_from_args(args).packing is True
    assert config_from_args(parser.parse_args(["train", "d.json", "--out", str(tmp_path)])).packing is False
