"""Fine-tune a LoRA adapter under MAS with TRL's ``SFTTrainer``, padded, padding-free or packed, and save it with its
``segmask.json`` so ``segmask chat / generate / eval / serve`` apply the mask it was trained under.

    python examples/trl_sft_mas.py --out runs/trl-mas                       # built-in chats, embedded SmolLM2, offline
    python examples/trl_sft_mas.py --data chats.jsonl --out runs/trl-mas --padding-free --max-steps 200
    D=~/.cache/segmask/data/commonsense                                      # filled by `segmask data`
    python examples/trl_sft_mas.py --data $D/commonsense_170k/train.json --out runs/trl-commonsense --packing

``--data`` takes chat JSONL (``{"messages": [...]}`` per line, the last message the assistant's answer) or
LLM-Adapters records (each rendered as one user message). Needs ``pip install segmask[trl]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

CHATS = [
    [{"role": "system", "content": "Answer in one short sentence."},
     {"role": "user", "content": "Why is the sky blue?"},
     {"role": "assistant", "content": "Air scatters blue sunlight more than red, so the sky looks blue."}],
    [{"role": "user", "content": "Name a mammal that can fly."},
     {"role": "assistant", "content": "The bat is a mammal that can fly."}],
    [{"role": "system", "content": "You are a careful maths tutor."},
     {"role": "user", "content": "What is 12 times 12?"},
     {"role": "assistant", "content": "12 times 12 is 144."}],
    [{"role": "user", "content": "Is ice lighter than liquid water? Answer true or false."},
     {"role": "assistant", "content": "true"}],
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct", help="embedded name, HF id or local path")
    parser.add_argument("--data", default=None, help="chat JSONL or LLM-Adapters JSON (default: 4 built-in chats)")
    parser.add_argument("--out", required=True, help="output folder; the adapter goes to OUT/adapter")
    parser.add_argument("--mask", default="mas", choices=["mas", "causal"])
    parser.add_argument("--padding-free", action="store_true", help="all examples of a batch in one row")
    parser.add_argument("--packing", action="store_true", help="TRL's bfd packing into rows of --max-length")
    parser.add_argument("--max-length", type=int, default=512, help="longest example (packed row with --packing)")
    parser.add_argument("--max-steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=2e-4)
    args = parser.parse_args(argv)

    import torch
    from peft import LoraConfig
    from trl import SFTConfig

    from segmask import load_model
    from segmask.core.records import load_records
    from segmask.train.lora import save_adapter
    from segmask.train.trl import MASSFTTrainer, mas_dataset

    model, tokenizer = load_model(args.model)
    rows = load_records(args.data) if args.data else [{"messages": m} for m in CHATS]
    config = SFTConfig(
        output_dir=args.out, max_steps=args.max_steps, per_device_train_batch_size=args.batch_size,
        learning_rate=args.lr, logging_steps=1, save_strategy="no", report_to=[], padding_free=args.padding_free,
        packing=args.packing, max_length=None if args.padding_free and not args.packing else args.max_length,
        bf16=torch.cuda.is_available(),  # TRL's default (bf16 autocast) is slow on CPU
    )
    lora = LoraConfig(r=32, lora_alpha=64, lora_dropout=0.05, target_modules=["q_proj", "v_proj"])
    trainer = MASSFTTrainer(model=model, args=config, train_dataset=mas_dataset(tokenizer, rows),
                            processing_class=tokenizer, peft_config=lora, mask=args.mask)
    trainer.train()
    adapter = save_adapter(trainer.model, Path(args.out) / "adapter", mask=args.mask, prompt_form="chat",
                           base_model=args.model, recipe={"trainer": "trl.SFTTrainer", "padding_free":
                                                          args.padding_free, "packing": args.packing})
    print(f"adapter: {adapter}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
