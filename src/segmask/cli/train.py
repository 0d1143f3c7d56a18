"""``segmask train``: LoRA fine-tuning under MAS or the causal mask (``--mask`` is the only difference).

    segmask data && segmask train ~/.cache/segmask/data/commonsense --mask mas --out runs/mas --max-examples 2000
    segmask train my_chats.jsonl --prompt-form chat --mask mas --out runs/chat-mas --epochs 3
    segmask train my_chats.jsonl --prompt-form chat --mask mas --out runs/chat-mas --packing --cutoff 1024
    accelerate launch -m segmask train DATA --out runs/x        # multi-GPU / FSDP through Trainer

Writes ``OUT/adapter`` (PEFT adapter + segmask.json), ``OUT/loss_curve.json``, ``OUT/train_summary.json`` and
periodic ``OUT/checkpoint-N`` folders; ``--resume`` continues from the last checkpoint. Every flag but ``--threads``
and ``--quiet`` is a field of ``segmask.train.TrainConfig`` (``config_args``).
"""

from __future__ import annotations

import argparse
import json

from .config_args import add_config_args, add_run_args, config_from_namespace, set_threads

RENAMES = {"output_dir": "out"}


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ..train.trainer import TrainConfig

    p = sub.add_parser("train", help="LoRA fine-tuning under MAS or the causal mask")
    add_config_args(p, TrainConfig, renames=RENAMES, skip=("progress",), positional=("data",))
    add_run_args(p)
    p.set_defaults(run=run)


def config_from_args(args: argparse.Namespace):
    """The ``TrainConfig`` the parsed arguments describe."""
    from ..train.trainer import TrainConfig

    return config_from_namespace(TrainConfig, args, renames=RENAMES, progress=not args.quiet)


def run(args: argparse.Namespace) -> int:
    set_threads(args)
    from ..train.trainer import train

    summary = train(config_from_args(args))
    print(json.dumps({k: v for k, v in summary.items() if k != "recipe"}, indent=2))
    return 0
