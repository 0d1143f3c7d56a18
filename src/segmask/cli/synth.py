"""``segmask synth TASK... --out DIR``: draw synthetic prompt-order tasks (``segmask.eval.synth``) from a seed.

    segmask synth reading --n 3000 --test-n 500 --seed 0 --out data/synth
    segmask synth reading name_index middle_match --length 12 --seed 7 --out data/synth-7
    segmask train data/synth/reading --layout cqo,qoc,coq --out runs/reading-mas
    segmask eval --data-dir data/synth --tasks reading --protocol loglik --layout coq --adapter runs/reading-mas/adapter

Writes ``OUT/TASK/train.json`` and ``OUT/TASK/test.json`` in the LLM-Adapters record format (instruction in layout
``cqo``, with the ``context``, ``question`` and ``options`` kept so ``--layout`` can re-order them).
"""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ..eval.synth import GENERATORS

    p = sub.add_parser("synth", help="draw synthetic prompt-order tasks (lookup, reading, name_index, middle_match)")
    p.add_argument("tasks", nargs="+", choices=sorted(GENERATORS), metavar="TASK",
                   help=f"one or more of {', '.join(GENERATORS)}")
    p.add_argument("--out", required=True, help="folder that receives TASK/train.json and TASK/test.json")
    p.add_argument("--n", type=int, default=2000, help="training records per task")
    p.add_argument("--test-n", type=int, default=500, help="test records per task")
    p.add_argument("--seed", type=int, default=0, help="seed of the draw (another seed: fresh instances)")
    p.add_argument("--length", type=int, default=None,
                   help="facts (reading) or list items (name_index, middle_match); default per task")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..eval.synth import write_task

    for task in args.tasks:
        folder = write_task(task, args.out, n_train=args.n, n_test=args.test_n, seed=args.seed, length=args.length)
        print(f"{task}: {args.n} train + {args.test_n} test records in {folder}")
    return 0
