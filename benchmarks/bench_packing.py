"""Packed vs padded LoRA training on real data, under MAS and causal: useful tokens/s and the loss reached.

    python benchmarks/bench_train.py --packing --write        # same as: python benchmarks/bench_packing.py --write

Two mixes, tokenized with SmolLM2's tokenizer: the commonsense training mix (LLM-Adapters, the paper's prompt,
cutoff 256) and a chat mix with mixed lengths (half maths word problems with worked solutions, half commonsense rows
as chats with a system prompt; cutoff 512). Three layouts of the same examples, one epoch each:

* ``grouped``: padded batches of ``--batch`` examples, length-grouped as HF Trainer's ``group_by_length`` does
  (megabatches of 50 batches sorted by length), the default of ``segmask train``;
* ``random``: padded batches in random order (``--no-group-by-length``);
* ``packed``: ``segmask.pack`` rows of at most the cutoff, as many rows per step as hold at least the tokens of a
  padded batch (so packed runs take at most as many optimizer steps as padded ones).

Every arm (layout x mask) has its own copy of the same model, LoRA init and AdamW; one round runs the next step of
every arm back to back, in a rotating order, so all arms share the machine's load. Useful tokens are the examples'
own tokens (not padding). The loss columns: the training loss curve (answer-token mean over each quarter of the
epoch's examples) and the held-out loss after the epoch (``--eval`` examples not trained on, each arm under its own
mask), which packing must not move.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import random
import statistics
import time
from pathlib import Path

import torch

from segmask.bench import machine, smollm2_shaped, write_section
from segmask.bench.docs import DOCS as DOCS_DIR
from segmask.core.cost import attention_flops, linear_flops

DOCS = DOCS_DIR / "PERFORMANCE.md"

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SYSTEM = "You are a helpful assistant. Answer briefly."


def mixes(tokenizer, n: int, seed: int) -> dict[str, tuple[list, int]]:
    """{mix name: (examples, cutoff)}, ``n`` examples each (training + held-out)."""
    from segmask.core.records import load_records, record_messages
    from segmask.train.data import mix, prepare

    common = mix([load_records(DATA / "commonsense")], seed=seed, limit=n)
    commonsense, _ = prepare(tokenizer, common, form="commonsense", cutoff=256)
    maths = json.loads((DATA / "prompts" / "math_solutions.json").read_text())
    maths = random.Random(seed).sample(maths, n // 2)
    rows = ([{"messages": record_messages(r, answer=True)} for r in maths]
            + [{"messages": record_messages(r, SYSTEM, answer=True)}
               for r in mix([common], seed=seed + 1, limit=n - n // 2)])
    random.Random(seed).shuffle(rows)
    chat, _ = prepare(tokenizer, rows, form="chat", cutoff=512)
    return {"commonsense": (commonsense, 256), "chat": (chat, 512)}


def grouped_order(lengths: list[int], batch: int, seed: int) -> list[list[int]]:
    """Batches of indices as HF's LengthGroupedSampler: random megabatches of 50 batches, each sorted by length."""
    order = list(range(len(lengths)))
    random.Random(seed).shuffle(order)
    mega = 50 * batch
    out = []
    for k in range(0, len(order), mega):
        chunk = sorted(order[k:k + mega], key=lambda i: -lengths[i])
        out += [chunk[j:j + batch] for j in range(0, len(chunk), batch)]
    return out


def layouts(examples, cutoff: int, batch: int, pad_id: int, seed: int) -> dict[str, list[tuple[dict, int]]]:
    """{layout: list of (batch of tensors with segment_ids, number of examples in it)} over the same examples."""
    from segmask import collate, collate_packed, pack

    lengths = [len(e) for e in examples]
    padded = lambda idx: (collate([examples[i] for i in idx], pad_token_id=pad_id, padding_side="right",  # noqa
                                  with_labels=True), len(idx))
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    rows = pack(examples, cutoff)
    random.Random(seed).shuffle(rows)
    per_step = math.ceil(batch * statistics.mean(lengths) / cutoff)
    return {
        "grouped": [padded(b) for b in grouped_order(lengths, batch, seed)],
        "random": [padded(order[k:k + batch]) for k in range(0, len(order), batch)],
        "packed": [(collate_packed(rows[k:k + per_step], pad_token_id=pad_id),
                    sum(len(r.lengths) for r in rows[k:k + per_step])) for k in range(0, len(rows), per_step)],
    }


def step_inputs(batch: dict, mas: bool) -> dict:
    inputs = {k: v for k, v in batch.items() if mas or k != "segment_ids"}
    return {**inputs, "use_cache": False}


def packed_floor(config, batches: list[dict]) -> tuple[float, float]:
    """(MAS/causal FLOP floor, dense-kernel/causal FLOPs) of the packed steps: projections and LM head on every
    token; attention pairs causal within each example (+ the segments' upper triangles for MAS), or T² per row."""
    from segmask.core.masks import document_ids

    tokens = causal = mas = dense = 0
    for b, _ in batches:
        docs, segs = document_ids(b["position_ids"]), b["segment_ids"]
        rows, width = docs.shape
        tokens += rows * width
        dense += rows * width * width
        for r in range(rows):
            for d in docs[r].unique():
                n = int((docs[r] == d).sum())
                causal += n * (n + 1) // 2
            ids, counts = segs[r][segs[r] >= 0].unique(return_counts=True)
            mas += sum(int(c) * (int(c) - 1) // 2 for c in counts)
    lin = linear_flops(config, tokens, tokens)
    base = lin + attention_flops(config, causal)
    return (lin + attention_flops(config, causal + mas)) / base, (lin + attention_flops(config, dense)) / base


def held_out_loss(model, examples, mas: bool, pad_id: int) -> float:
    from segmask import collate

    batch = collate(examples, pad_token_id=pad_id, padding_side="right", with_labels=True)
    with torch.no_grad():
        return float(model(**step_inputs(batch, mas)).loss)


def run_mix(base, examples, held_out, cutoff: int, args, pad_id: int) -> dict:
    from peft import LoraConfig, get_peft_model

    import segmask

    batches = layouts(examples, cutoff, args.batch, pad_id, args.seed)
    arms = {}
    for layout in batches:
        for mask in ("causal", "mas"):
            torch.manual_seed(args.seed)
            model = get_peft_model(copy.deepcopy(base), LoraConfig(r=32, lora_alpha=64, lora_dropout=0.0,
                                                                   target_modules=["q_proj", "v_proj"]))
            if mask == "mas":
                segmask.enable(model)
            model.train()
            opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr)
            arms[(layout, mask)] = dict(model=model, opt=opt, cpu=[], curve=[[0.0, 0] for _ in range(4)], seen=0,
                                        width=0)
    names = list(arms)
    for r in range(max(len(b) for b in batches.values())):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            layout, mask = name
            if r >= len(batches[layout]):
                continue
            arm, (batch, n_examples) = arms[name], batches[layout][r]
            c = time.process_time()
            arm["opt"].zero_grad(set_to_none=True)
            loss = arm["model"](**step_inputs(batch, mask == "mas")).loss
            loss.backward()
            arm["opt"].step()
            arm["cpu"].append(time.process_time() - c)
            answers = int((batch["labels"][:, 1:] != -100).sum())
            arm["seen"] += n_examples
            quarter = arm["curve"][min(3, (4 * arm["seen"] - 1) // len(examples))]
            quarter[0] += float(loss.detach()) * answers
            quarter[1] += answers
            arm["width"] += batch["input_ids"].numel()
    useful = sum(len(e) for e in examples)
    out = {}
    for (layout, mask), arm in arms.items():
        arm["model"].eval()
        out[(layout, mask)] = dict(steps=len(arm["cpu"]), cpu=sum(arm["cpu"]), tokens_per_s=useful / sum(arm["cpu"]),
                                   pad_share=1 - useful / arm["width"],
                                   curve=[s / n if n else float("nan") for s, n in arm["curve"]],
                                   held_out=held_out_loss(arm["model"], held_out, mask == "mas", pad_id),
                                   step_cpu=arm["cpu"])
    packed_steps = zip(out[("packed", "mas")]["step_cpu"], out[("packed", "causal")]["step_cpu"])
    floor, dense = packed_floor(base.config, batches["packed"])
    return dict(arms=out, examples=len(examples), useful=useful, rows=sum(b["input_ids"].shape[0]
                for b, _ in batches["packed"]), mas_ratio=[m / c for m, c in packed_steps], floor=floor, dense=dense)


def report(results: dict, args) -> str:
    lines = [
        f"Machine: {machine()}; timed beside another long CPU job (a LoRA training run), so read the ratios measured "
        f"side by side in one run, not the absolute rates. Model: SmolLM2-135M-shaped Llama ({args.layers} layers, "
        f"random init, float32, sdpa) + LoRA r=32 on q_proj/v_proj, AdamW lr {args.lr}; one epoch of {args.n} "
        f"examples per mix ({args.eval} more held out), padded batches of {args.batch}.",
        "",
        f"Command: `OMP_NUM_THREADS=1 nice -n 10 python benchmarks/bench_train.py --packing --n {args.n} "
        f"--eval {args.eval} --layers {args.layers} --batch {args.batch} --write`",
        "",
        "Useful tokens/s: the examples' own tokens over the arm's total CPU time (padding excluded); speed-up over "
        "the grouped (and the random) layout of the same mask. Training loss by quarter of the epoch's examples "
        "(answer-token mean), then the held-out loss after the epoch.",
        "",
        "| mix | layout | mask | steps | padding | useful tokens/s | vs grouped | vs random | training loss by quarter "
        "| held-out |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for mix, res in results.items():
        arms = res["arms"]
        for (layout, mask), a in arms.items():
            grouped, rnd = arms[("grouped", mask)]["tokens_per_s"], arms[("random", mask)]["tokens_per_s"]
            lines.append(f"| {mix} | {layout} | {mask} | {a['steps']} | {100 * a['pad_share']:.1f}% | "
                         f"{a['tokens_per_s']:.0f} | {a['tokens_per_s'] / grouped:.2f}x | "
                         f"{a['tokens_per_s'] / rnd:.2f}x | {' / '.join(f'{v:.3f}' for v in a['curve'])} | "
                         f"{a['held_out']:.4f} |")
    lines += ["", "Packed steps, MAS / causal (same rows, CPU time of the same round, min / median / max) against "
              "the FLOP floor (pairs MAS allows inside each example) and the dense-kernel FLOPs (T² per row, what "
              "sdpa with a bool mask computes in both arms):", ""]
    for mix, res in results.items():
        r = res["mas_ratio"]
        lines.append(f"- {mix}: {res['examples']} examples in {res['rows']} packed rows; MAS / causal "
                     f"{min(r):.3f} / {statistics.median(r):.3f} / {max(r):.3f}; floor {res['floor']:.3f}; "
                     f"dense {res['dense']:.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=64, help="training examples per mix")
    parser.add_argument("--eval", type=int, default=16, help="held-out examples per mix")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--mixes", nargs="+", default=["commonsense", "chat"])
    parser.add_argument("--write", action="store_true", help="rewrite the bench_packing section of PERFORMANCE.md")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one repetition, nothing written "
                       "(checks that the script runs; the slow test tier runs it)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.n, args.eval, args.layers, args.mixes, args.write = 8, 4, 1, ["chat"], False
    from segmask.hf.models import load_tokenizer

    torch.set_num_threads(args.threads)
    tokenizer = load_tokenizer()
    base = smollm2_shaped(args.layers)
    results = {}
    for name, (examples, cutoff) in mixes(tokenizer, args.n + args.eval, args.seed).items():
        if name in args.mixes:
            start = time.perf_counter()
            results[name] = run_mix(base, examples[:args.n], examples[args.n:], cutoff, args, tokenizer.pad_token_id)
            print(f"{name}: {time.perf_counter() - start:.0f} s", flush=True)
    text = report(results, args)
    print(text)
    if args.write:
        write_section(DOCS, "bench_packing", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
