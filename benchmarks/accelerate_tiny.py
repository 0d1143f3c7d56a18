"""Smoke test of MAS LoRA training under ``accelerate launch`` (data parallel), on CPU with a tiny random Llama.

    accelerate launch --num_processes 2 --cpu benchmarks/accelerate_tiny.py --out /tmp/segmask-ddp
    python benchmarks/accelerate_tiny.py --out /tmp/segmask-single            # the same run in one process

Each process prints its rank, the world size, the steps run, the examples it saw and the final training loss, so a
two-process run can be checked against the single-process one (see docs/SCALING.md).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "commonsense" / "boolq" / "train.json"


def main() -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from segmask.hf.models import load_tokenizer
    from segmask.train import TrainConfig, train

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()

    tokenizer = load_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    model = LlamaForCausalLM(config)
    cfg = TrainConfig(data=[args.data], output_dir=args.out, mask="mas", max_examples=64, max_steps=args.steps,
                      batch_size=2, grad_accum=1, logging_steps=1, save_steps=1000, progress=False)
    summary = train(cfg, model=model, tokenizer=tokenizer)
    rank = int(os.environ.get("RANK", 0))
    world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    print(json.dumps({"rank": rank, "world_size": world, "steps": summary["steps"],
                      "train_loss": round(summary["train_loss"], 4), "tokens_seen": summary["tokens_seen"]}),
          flush=True)


if __name__ == "__main__":
    main()
