"""``segmask adapt``: make a causal chat model MAS-ready by self-distillation (no labelled data; see
``segmask.train.adapt``).

    segmask adapt --out runs/adapt                                  # embedded SmolLM2-135M-Instruct, shipped prompts
    segmask adapt --out runs/adapt --data-dir ~/.cache/segmask/data --budget 60m --threads 1  # after segmask data
    segmask adapt --out runs/adapt --resume                         # continue from the last checkpoint
    segmask adapt --model Qwen/Qwen2.5-0.5B-Instruct --out runs/qwen-adapt --prompts 4000

Writes ``OUT/teacher.pt`` (teacher answers, reused by ``--resume``), ``OUT/checkpoint-N``, ``OUT/loss_curve.json``
(loss = weighted KL, ``kl`` = mean KL per answer token), ``OUT/adapt_summary.json`` and ``OUT/adapter`` (LoRA +
``segmask.json`` with ``mask: mas``). Every command that takes ``--adapter`` then serves it with MAS prefill.
"""

from __future__ import annotations

import argparse
import json

from .config_args import add_config_args, add_run_args, config_from_namespace, set_threads

RENAMES = {"output_dir": "out"}


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ..train.adapt import AdaptConfig

    p = sub.add_parser("adapt", help="MAS-ready chat model by self-distillation from the causal model (no labels)")
    add_config_args(p, AdaptConfig, renames=RENAMES, skip=("progress",))
    add_run_args(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..train.adapt import AdaptConfig, adapt

    cfg = config_from_namespace(AdaptConfig, args, renames=RENAMES, progress=not args.quiet)
    set_threads(args)
    summary = adapt(cfg)
    print(json.dumps({k: v for k, v in summary.items() if k != "recipe"}, indent=2))
    return 0
