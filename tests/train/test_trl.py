"""segmask.train.trl: TRL's real ``SFTTrainer`` trains under MAS, padded, padding-free and packed, and its loss on a
equals segmask's own (the loss ``segmask train`` optimises on the same examples). Also runs examples/trl_sft_mas.py.
CPU only, offline: a tiny random Llama with the SmolLM2 tokenizer."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from segmask.train.data import SegmentCollator, encode_record

from ..hf_models import tiny_model

pytestmark = pytest.mark.skipif(importlib.util.find_spec("trl") is None, reason="needs trl (pip install segmask[trl])")

ROOT = Path(__file__).resolve().parents[2]
TOPICS = ["the moon", "rivers", "bread", "owls"]
ROWS = [{"messages": ([{"role": "system", "content": "Answer in one short sentence."}] if i % 2 == 0 else [])
         + [{"role": "user", "content": f"Tell me one fact about {t}." + " Please be precise." * i},
            {"role": "assistant", "content": f"Here is a fact about {t}: it is interesting."}]}
        for i, t in enumerate(TOPICS)]
MODES = {"padded": dict(), "padding_free": dict(padding_free=True, max_length=None),
         "packed": dict(packing=True, max_length=256)}


def segmask_loss(tok, mas: bool) -> float:
    """The loss segmask's own trainer computes on all ROWS as one padded batch (before any update)."""
    import segmask

    model = tiny_model(tokenizer=tok)
    if mas:
        segmask.enable(model)
    batch = SegmentCollator(tok.pad_token_id, with_segments=mas)([encode_record(tok, r, form="chat") for r in ROWS])
    with torch.no_grad():
        return float(model(**batch).loss)


def run_sft(tok, tmp_path, mode: str, mask: str = "mas"):
    """Train 3 steps with MASSFTTrainer over one batch of all ROWS; returns (trainer, first-step loss, batch)."""
    from peft import LoraConfig
    from trl import SFTConfig

    from segmask.train.trl import MASSFTTrainer, mas_dataset

    seen = []

    class Recording(MASSFTTrainer):
        def compute_loss(self, model, inputs, *args, **kwargs):
            loss = super().compute_loss(model, inputs, *args, **kwargs)
            seen.append((float(loss.detach()), {k: v for k, v in inputs.items() if isinstance(v, torch.Tensor)}))
            return loss

    args = SFTConfig(output_dir=str(tmp_path / mode), max_steps=3, per_device_train_batch_size=len(ROWS),
                     learning_rate=1e-2, logging_steps=1, save_strategy="no", report_to=[], use_cpu=True,
                     seed=0, bf16=False, **MODES[mode])  # TRL's default bf16 autocasts on CPU too
    lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"])
    trainer = Recording(model=tiny_model(tokenizer=tok), args=args, train_dataset=mas_dataset(tok, ROWS),
                        processing_class=tok, peft_config=lora, mask=mask)
    trainer.train()
    return trainer, seen[0][0], seen[0][1], [loss for loss, _ in seen]


@pytest.mark.slow
@pytest.mark.parametrize("mode", list(MODES))
def test_sft_trainer_loss_equals_segmask_loss(tok, tmp_path, mode):
    import segmask

    trainer, first, batch, losses = run_sft(tok, tmp_path, mode)
    assert segmask.is_enabled(trainer.model)
    assert "segment_ids" in batch and (batch["segment_ids"] >= 0).any()
    if mode == "padded":
        assert "attention_mask" in batch and batch["input_ids"].shape[0] == len(ROWS)
    else:  # one row, positions restarting at 0 for each example
        assert "attention_mask" not in batch and batch["input_ids"].shape[0] == 1
        assert int((batch["position_ids"][0] == 0).sum()) == len(ROWS)
    # LoRA starts as the identity, so step 1 is the base model's loss on all rows
    assert abs(first - segmask_loss(tok, mas=True)) < 1e-5
    assert abs(first - segmask_loss(tok, mas=False)) > 1e-4, "MAS must change the loss (by 5e-4 here)"
    assert losses[-1] < losses[0]


def test_causal_arm_through_sft_trainer(tok, tmp_path):
    import segmask

    trainer, first, batch, _ = run_sft(tok, tmp_path, "padding_free", mask="causal")
    assert "segment_ids" not in batch and not segmask.is_enabled(trainer.model)
    assert abs(first - segmask_loss(tok, mas=False)) < 1e-5


def test_bad_datasets_are_refused(tok, tmp_path):
    from datasets import Dataset
    from trl import SFTConfig

    from segmask.train.trl import MASSFTTrainer, mas_dataset

    args = SFTConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True, bf16=False, max_length=8)
    with pytest.raises(ValueError, match="train sample 0 has .* tokens, more than max_length 8"):
        MASSFTTrainer(model=tiny_model(tokenizer=tok), args=args, train_dataset=mas_dataset(tok, ROWS),
                      processing_class=tok)
    plain = Dataset.from_dict({"input_ids": [[1, 2, 3]], "labels": [[-100, 2, 3]]})
    with pytest.raises(ValueError, match="no segment_ids column"):
        MASSFTTrainer(model=tiny_model(tokenizer=tok), args=args, train_dataset=plain, processing_class=tok)
    with pytest.raises(ValueError, match="mask must be one of"):
        MASSFTTrainer(model=tiny_model(tokenizer=tok), args=args, train_dataset=plain, processing_class=tok,
                      mask="bidi")


@pytest.mark.parametrize("mode", ["padded", "padding-free"])
def test_example_script_runs_offline(tok, tmp_path, mode):
    model_dir = tmp_path / "tiny"
    tiny_model(tokenizer=tok).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import trl_sft_mas
    finally:
        sys.path.pop(0)
    argv = ["--model", str(model_dir), "--out", str(tmp_path / "out"), "--max-steps", "2", "--batch-size", "2"]
    assert trl_sft_mas.main(argv + (["--padding-free"] if mode == "padding-free" else [])) == 0
    assert (tmp_path / "out" / "adapter" / "segmask.json").exists()
