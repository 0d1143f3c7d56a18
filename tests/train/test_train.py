"""Training: answer-only loss, both arms learn and differ only in the mask, checkpoints, --resume, the CLI.

CPU only, no network: a tiny random Llama with the SmolLM2 tokenizer's vocabulary; the last test uses the embedded
SmolLM2-135M-Instruct (marked real_model).
"""

from __future__ import annotations

import json

import pytest
import torch

from segmask.core.recipe import load_adapter_config
from segmask.core.segments import IGNORE_INDEX
from segmask.train import LOSS_CURVE, TrainConfig, train
from segmask.train.data import SegmentCollator, encode_record
from segmask.train.lora import LoraSettings

from ..hf_models import tiny_model

QUESTIONS = ["is water wet", "is fire cold", "do birds fly", "is ice hot", "can fish swim", "is the sun dark"]
RECORDS = [{"instruction": f"Please answer the following question with true or false, question: {q}?\n\n"
                           "Answer format: true/false", "input": "",
            "output": f"the correct answer is {'true' if i % 2 == 0 else 'false'}"} for i, q in enumerate(QUESTIONS)]


@pytest.fixture()
def train_file(tmp_path):
    path = tmp_path / "task" / "train.json"
    path.parent.mkdir()
    path.write_text(json.dumps(RECORDS))
    return path



def batch_of(tok, with_segments=True):
    rows = [encode_record(tok, r) for r in RECORDS]
    return SegmentCollator(tok.pad_token_id, with_segments=with_segments)(rows)


def mean_answer_loss(model, batch) -> float:
    """Reference: mean next-token cross-entropy over positions whose target is an answer token."""
    with torch.no_grad():
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits.float()
    targets = batch["labels"][:, 1:]
    logp = torch.log_softmax(logits[:, :-1], -1)
    keep = targets != IGNORE_INDEX
    picked = logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return float(-(picked * keep).sum() / keep.sum())


def test_model_loss_is_the_answer_only_loss(tok):
    from segmask import disable, enable

    model = tiny_model(tokenizer=tok).eval()
    enable(model)
    batch = batch_of(tok)
    with torch.no_grad():
        loss = model(**batch).loss
    assert abs(float(loss) - mean_answer_loss(model, batch)) < 1e-5
    disable(model)


def run_arm(tok, train_file, out, mask, **kw):
    model = tiny_model(tokenizer=tok)
    cfg = TrainConfig(data=[str(train_file.parent)], output_dir=str(out), mask=mask, max_steps=kw.pop("steps", 6),
                      batch_size=3, grad_accum=2, lr=1e-2, logging_steps=1, save_steps=3, progress=False,
                      lora=LoraSettings(r=8, dropout=0.0), **kw)
    return model, train(cfg, model=model, tokenizer=tok)


@pytest.mark.slow
def test_both_arms_lower_the_loss_and_differ_only_in_the_mask(tok, train_file, tmp_path):
    from segmask import enable

    curves = {}
    for mask in ("causal", "mas"):
        before_model = tiny_model(tokenizer=tok).eval()
        batch = batch_of(tok, with_segments=mask == "mas")
        if mask == "mas":
            enable(before_model)
        before = mean_answer_loss(before_model, batch)
        model, summary = run_arm(tok, train_file, tmp_path / mask, mask)
        model.eval()
        assert summary["steps"] == 6 and summary["data"]["kept"] == len(RECORDS)
        assert mean_answer_loss(model, batch) < before - 0.05, mask
        curves[mask] = json.loads((tmp_path / mask / LOSS_CURVE).read_text())
        assert load_adapter_config(tmp_path / mask / "adapter")["mask"] == mask
        assert load_adapter_config(tmp_path / mask / "checkpoint-3")["mask"] == mask
    # same batches in the same order, but the mask changes the loss from the very first step
    assert [r["tokens_seen"] for r in curves["mas"]] == [r["tokens_seen"] for r in curves["causal"]]
    assert curves["mas"][0]["loss"] != curves["causal"][0]["loss"]


@pytest.mark.slow
def test_resume_continues_from_the_last_checkpoint(tok, train_file, tmp_path):
    _, first = run_arm(tok, train_file, tmp_path / "run", "mas", steps=3)
    assert first["steps"] == 3 and (tmp_path / "run" / "checkpoint-3").is_dir()
    _, resumed = run_arm(tok, train_file, tmp_path / "run", "mas", steps=6, resume=True)
    assert resumed["steps"] == 6
    steps = [r["step"] for r in json.loads((tmp_path / "run" / LOSS_CURVE).read_text())]
    assert steps == sorted(set(steps)) and steps[0] == 1 and steps[-1] == 6


@pytest.mark.slow
@pytest.mark.real_model
def test_segmask_train_cli_end_to_end(tmp_path, train_file, smollm2):
    from segmask.cli import main
    from segmask.train.lora import load_adapter

    out = tmp_path / "out"
    rc = main(["train", str(train_file), "--out", str(out), "--mask", "mas", "--max-examples", "4", "--max-steps",
               "2", "--batch-size", "2", "--grad-accum", "1", "--logging-steps", "1", "--save-dtype", "float16",
               "--quiet"])
    assert rc == 0
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["steps"] == 2 and summary["tokens_seen"] > 0
    assert len(json.loads((out / LOSS_CURVE).read_text())) == 2
    model, tok, cfg = load_adapter(out / "adapter")
    assert cfg["mask"] == "mas" and cfg["base_model"] == "smollm2-135m-instruct"
    from segmask import is_enabled

    assert is_enabled(model)


def test_answer_form_and_layout_reach_the_data(tok, tmp_path):
    from segmask.cli.train import add_parser, config_from_args
    from segmask.train import build_data

    with pytest.raises(ValueError, match="answer_form must be one of .* got 'letter'"):
        TrainConfig(data=["x"], output_dir="y", answer_form="letter")
    with pytest.raises(ValueError, match="layout must be one of .* got 'middle'"):
        TrainConfig(data=["x"], output_dir="y", layout="middle")
    path = tmp_path / "arc.json"
    path.write_text(json.dumps([{"instruction": "Please choose the correct answer to the question: Where do fish "
                                                "live?\n\nAnswer1: in trees Answer2: in water\n\nAnswer format: "
                                                "answer1/answer2", "input": "", "output": "the correct answer is "
                                                "answer2", "answer": "answer2"}]))
    import argparse

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["train", str(path), "--out", str(tmp_path / "out"), "--answer-form", "text",
                              "--layout", "before"])
    cfg = config_from_args(args)
    assert (cfg.recipe()["answer_form"], cfg.recipe()["layout"]) == ("text", "oq")
    (example,), _ = build_data(cfg, tok)
    answer = tok.decode([t for t, lab in zip(example.input_ids, example.labels) if lab != IGNORE_INDEX])
    assert answer == "the correct answer is in water" + tok.eos_token
    assert "### Instruction:\nAnswer1: in trees" in tok.decode(example.input_ids)
