"""``segmask train``: LoRA fine-tuning under MAS or the causal mask (``--mask`` is the only difference).

    segmask train ../shared/data/commonsense --mask mas --out runs/mas --max-examples 2000
    segmask train my_chats.jsonl --prompt-form chat --mask mas --out runs/chat-mas --epochs 3
    segmask train my_chats.jsonl --prompt-form chat --mask mas --out runs/chat-mas --packing --cutoff 1024
    accelerate launch -m segmask train DATA --out runs/x        # multi-GPU / FSDP through Trainer

Writes ``OUT/adapter`` (PEFT adapter + segmask.json), ``OUT/loss_curve.json``, ``OUT/train_summary.json`` and
periodic ``OUT/checkpoint-N`` folders; ``--resume`` continues from the last checkpoint.
"""

from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="LoRA fine-tuning under MAS or the causal mask")
    p.add_argument("data", nargs="+", help="LLM-Adapters .json files/folders or chat .jsonl files (mixed, shuffled)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--mask", default="mas", choices=["mas", "causal"], help="the only difference between arms")
    p.add_argument("--model", default="smollm2-135m-instruct",
                   help="embedded name, HF id or local path (smollm2-135m-mas: start from the MAS-ready model)")
    p.add_argument("--init-adapter", default=None,
                   help="start from this LoRA adapter merged into --model (e.g. a segmask adapt output)")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--attn", default="sdpa", choices=["sdpa", "eager", "flex_attention"])
    p.add_argument("--prompt-form", default="commonsense", choices=["commonsense", "chat"])
    p.add_argument("--system", default=None, help="system message for LLM-Adapters rows in the chat form")
    p.add_argument("--answer-form", default="label", choices=["label", "text"],
                   help="train 'the correct answer is answer3' (label) or the option's text (text: what eval's "
                        "choice protocol scores)")
    p.add_argument("--option-order", default="after", choices=["after", "before"],
                   help="list commonsense options after the question (the data's layout) or before it")
    p.add_argument("--cutoff", type=int, default=256, help="max tokens per example; segments are never cut")
    p.add_argument("--max-examples", type=int, default=None, help="keep this many mixed rows")
    p.add_argument("--packing", action="store_true",
                   help="pack examples into rows of at most --cutoff tokens (no padding; each example attends only "
                        "to itself, MAS inside it); --batch-size then counts rows")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--max-steps", type=int, default=-1, help="optimizer steps (overrides --epochs)")
    p.add_argument("--batch-size", type=int, default=4, help="micro batch per device")
    p.add_argument("--grad-accum", type=int, default=4)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--warmup-steps", type=int, default=0)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--lora-r", type=int, default=32)
    p.add_argument("--lora-alpha", type=int, default=64)
    p.add_argument("--lora-dropout", type=float, default=0.05)
    p.add_argument("--lora-targets", default="q_proj,v_proj", help="comma-separated module names")
    p.add_argument("--logging-steps", type=int, default=5)
    p.add_argument("--save-steps", type=int, default=100)
    p.add_argument("--save-dtype", default=None, help="store the final adapter in this dtype, e.g. float16")
    p.add_argument("--no-group-by-length", action="store_true", help="batch in random order, not by length")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 is fastest on a busy CPU)")
    p.add_argument("--resume", nargs="?", const=True, default=False,
                   help="continue from the last checkpoint in --out (or from the given checkpoint folder)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def config_from_args(args: argparse.Namespace):
    """The ``TrainConfig`` the parsed arguments describe."""
    from ..train.lora import LoraSettings
    from ..train.trainer import TrainConfig

    lora = LoraSettings(r=args.lora_r, alpha=args.lora_alpha, dropout=args.lora_dropout,
                        target_modules=args.lora_targets)
    return TrainConfig(
        data=args.data, output_dir=args.out, mask=args.mask, model=args.model, init_adapter=args.init_adapter,
        prompt_form=args.prompt_form,
        system=args.system, answer_form=args.answer_form, option_order=args.option_order, cutoff=args.cutoff,
        max_examples=args.max_examples, packing=args.packing, epochs=args.epochs,
        max_steps=args.max_steps, batch_size=args.batch_size, grad_accum=args.grad_accum, lr=args.lr,
        warmup_steps=args.warmup_steps, seed=args.seed, lora=lora, dtype=args.dtype, attn=args.attn,
        logging_steps=args.logging_steps, save_steps=args.save_steps, resume=args.resume,
        save_dtype=args.save_dtype, group_by_length=not args.no_group_by_length, progress=not args.quiet,
    )


def run(args: argparse.Namespace) -> int:
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from ..train.trainer import train

    summary = train(config_from_args(args))
    print(json.dumps({k: v for k, v in summary.items() if k != "recipe"}, indent=2))
    return 0
