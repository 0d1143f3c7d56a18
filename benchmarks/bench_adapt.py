"""Measure a MAS adaptation (``segmask adapt``) on held-out chat prompts and commonsense tasks -> docs/ADAPT.md.

    python benchmarks/bench_adapt.py --adapter adapters/smollm2-135m-mas-chat --run runs/adapt-smollm2 \\
        --data-dir ../shared/data --n 200 --eval-limit 100

On ``n`` held-out prompts (``prompt_pool(split="heldout")``: fillers adaptation never saw; facts, how-to,
explanations, creative, advice, rewriting, math, commonsense instructions, and multi-turn follow-ups, about half
with a system message) it compares three ways to answer, greedy, ``--max-new-tokens`` tokens:

* causal: the base model with causal prefill (the teacher, the reference);
* MAS, untuned: the base model with MAS prefill;
* MAS, adapted: base + adapter with MAS prefill.

Metrics: KL(teacher || student) per answer token along the causal answers (all tokens, and the first 8); fluency
= NLL per token of each greedy answer under the causal base model (median, share > 4 nats = degenerate); agreement
= share of prompts whose first 16 greedy tokens equal the causal answer's; commonsense accuracy (loglik and choice
protocols, ``--eval-limit`` seeded examples per task) of the adapted model under MAS against the base under causal
prefill, with paired bootstrap CIs and McNemar; the adaptation's cost from ``RUN/adapt_summary.json``. Writes
``docs/ADAPT.md``'s measured section, ``docs/adapt_kl.png`` and ``RUN/bench_adapt.json`` (every answer).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "ADAPT.md"
DEGENERATE_NLL = 4.0


def heldout_prompts(tokenizer, model, n: int, data_dir: str | None, seed: int, max_new: int,
                    exclude: set[str]) -> list[dict]:
    """``n`` held-out conversations: 85% single-turn, 15% second turns after the causal model's first answer; no
    user message in ``exclude`` (the run's actual training prompts)."""
    from segmask.train.prompt_pool import follow_up, prompt_pool

    n_multi = max(1, int(0.15 * n))
    single = prompt_pool(n - n_multi + len(exclude), seed=seed, split="heldout", data_dir=data_dir)
    single = [p for p in single if p["messages"][-1]["content"] not in exclude][: n - n_multi]
    rng = random.Random(seed)
    firsts = rng.sample([p for p in single if p["category"] != "math"], n_multi)
    answers = greedy(model, tokenizer, [p["messages"] for p in firsts], max_new, mas=False)
    multi = [{"category": f"multi_turn/{p['category']}",
              "messages": follow_up(p["messages"], tokenizer.decode(a, skip_special_tokens=True).strip(), rng)}
             for p, a in zip(firsts, answers)]
    return single + multi


@torch.no_grad()
def greedy(model, tokenizer, conversations: list[list[dict]], max_new: int, *, mas: bool, batch: int = 32):
    """Greedy answer token ids (cut after the first end-of-turn token) for each conversation."""
    from segmask.core.chat import encode_chat
    from segmask.hf.backend import eos_token_ids
    from segmask.train.adapt import teacher_answers
    from segmask.train.distill import cut_after_eos

    if not mas:
        return [a["answer_ids"] for a in teacher_answers(model, tokenizer, conversations, max_new_tokens=max_new,
                                                         top_k=1, batch_size=batch)]
    eos = eos_token_ids(model, tokenizer)
    out = []
    for start in range(0, len(conversations), batch):
        enc = encode_chat(tokenizer, conversations[start: start + batch])
        seq = model.generate(**enc, max_new_tokens=max_new, do_sample=False, temperature=None, top_p=None,
                             top_k=None, pad_token_id=tokenizer.pad_token_id)[:, enc["input_ids"].shape[1]:]
        out += [cut_after_eos(row, eos) for row in seq.tolist()]
    return out


@torch.no_grad()
def answer_stats(model, tokenizer, conversations, answers, *, student_mas: bool | None, batch: int = 16):
    """Per conversation: NLL per token of ``answers`` under the causal base, and (``student_mas`` set) the KL of
    the student (adapter as is, MAS) from the teacher (adapter off, causal) per token along them."""
    from segmask.train.distill import DistillCollator, answer_logprobs, distill_example, full_kl

    collator = DistillCollator(tokenizer.pad_token_id, 0.0, 1.0)
    nll, kl = [], []
    for start in range(0, len(conversations), batch):
        recs = [{"messages": c, "answer_ids": a or [tokenizer.eos_token_id]}
                for c, a in zip(conversations[start: start + batch], answers[start: start + batch])]
        examples = [distill_example(tokenizer, r, i) for i, r in enumerate(recs)]
        b = collator([{"input_ids": e.input_ids, "segment_ids": e.segment_ids, "labels": e.labels,
                       "prompt_len": e.meta["prompt_len"]} for e in examples])
        with model.disable_adapter():
            teacher = answer_logprobs(model, b, mas=False)
        targets = b["labels"][:, 1:][b["labels"][:, 1:] != -100]
        tok_nll = -teacher.gather(-1, targets[:, None])[:, 0]
        tok_kl = full_kl(teacher, answer_logprobs(model, b, mas=True)) if student_mas is not None else None
        counts = [len(r["answer_ids"]) for r in recs]
        for i, part in enumerate(torch.split(tok_nll, counts)):
            nll.append(part.mean().item())
            if tok_kl is not None:
                kl.append(torch.split(tok_kl, counts)[i].tolist())
    return nll, kl


def trained_prompts(run: str | None) -> set[str]:
    """Every user message the adaptation run trained on (from its ``teacher.pt``), to keep them out."""
    if not run or not (Path(run) / "teacher.pt").exists():
        return set()
    from segmask.train.adapt import read_teacher_cache

    records = read_teacher_cache(Path(run) / "teacher.pt")
    return {m["content"] for r in records for m in r["messages"] if m["role"] == "user"}


def agreement(a: list[list[int]], b: list[list[int]], k: int = 16) -> float:
    return sum(x[:k] == y[:k] for x, y in zip(a, b)) / len(a)


def commonsense(model, tokenizer, data_dir: str, limit: int, out: Path,
                conditions: str = "loglik/commonsense,choice/commonsense,choice/qa") -> dict:
    """Adapted model under MAS vs base under causal prefill, per protocol/prompt form in ``conditions``."""
    from segmask.eval.run import compare_runs, evaluate, format_picks

    results = {}
    for protocol, form in (c.split("/") for c in conditions.split(",")):
        key = f"{protocol}/{form}"
        runs = {}
        for name, mask in (("causal", "causal"), ("adapted", "mas")):
            folder = out / f"cs-{protocol}-{form}-{name}"
            if name == "causal":
                with model.disable_adapter():
                    s = evaluate(model, tokenizer, "all", data_dir, protocol=protocol, mask=mask, limit=limit,
                                 prompt_form=form, out_dir=folder, progress=False)
            else:
                s = evaluate(model, tokenizer, "all", data_dir, protocol=protocol, mask=mask, limit=limit,
                             prompt_form=form, out_dir=folder, progress=False)
            runs[name] = folder
            results.setdefault(key, {})[name] = {"mean": s["mean"]["acc"], "n": s["n_examples"],
                                                 "picks": format_picks(s)}
        results[key]["paired"] = compare_runs(runs["causal"], runs["adapted"])
        print(key, {k: v["mean"] for k, v in results[key].items() if k != "paired"}, flush=True)
    return results


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--adapter", default=str(ROOT / "adapters" / "smollm2-135m-mas-chat"))
    p.add_argument("--run", default=None, help="the adapt output folder (adapt_summary.json, loss_curve.json)")
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--data-dir", default=None, help="../shared/data (prompts/ and commonsense/)")
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--eval-limit", type=int, default=100, help="examples per commonsense task (0 skips)")
    p.add_argument("--seed", type=int, default=123)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="runs/bench_adapt")
    p.add_argument("--protocols", default="loglik/commonsense,choice/commonsense,choice/qa",
                   help="commonsense conditions: protocol/prompt-form pairs")
    p.add_argument("--part", choices=["all", "answers", "commonsense", "report"], default="all",
                   help="run one part (two processes can run the two parts side by side); report merges OUT's "
                        "answers.json and commonsense.json into docs/ADAPT.md")
    p.add_argument("--no-doc", action="store_true", help="do not rewrite docs/ADAPT.md")
    args = p.parse_args(argv)
    parts = ["answers"] + (["commonsense"] if args.data_dir and args.eval_limit else []) + \
        ([] if args.no_doc else ["report"]) if args.part == "all" else [args.part]
    for part in parts:
        args.part = part
        run_part(args)
    return 0


def run_part(args) -> int:
    """One part of the benchmark, written to OUT/answers.json or OUT/commonsense.json; or the report of both."""
    from peft import PeftModel

    import segmask

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.part == "report":
        result = json.loads((out / "answers.json").read_text())
        if (out / "commonsense.json").exists():
            result["commonsense"] = json.loads((out / "commonsense.json").read_text())
        if args.run:
            plot_kl(Path(args.run) / "loss_curve.json", ROOT / "docs" / "adapt_kl.png")
        from bench_adapt_report import write_doc

        write_doc(result, DOC)
        return 0
    start = time.perf_counter()
    base, tokenizer = segmask.load_model(args.model)
    model = segmask.enable(PeftModel.from_pretrained(base, args.adapter).eval())
    if args.part == "commonsense":
        cs = commonsense(model, tokenizer, f"{args.data_dir}/commonsense", args.eval_limit, out, args.protocols)
        for r in cs.values():
            r["seconds"] = round(time.perf_counter() - start)
        (out / "commonsense.json").write_text(json.dumps(cs, indent=1, default=str) + "\n")
        return 0
    with model.disable_adapter():
        prompts = heldout_prompts(tokenizer, model, args.n, args.data_dir, args.seed, args.max_new_tokens,
                                  trained_prompts(args.run))
        convs = [p["messages"] for p in prompts]
        causal = greedy(model, tokenizer, convs, args.max_new_tokens, mas=False)
        untuned = greedy(model, tokenizer, convs, args.max_new_tokens, mas=True)
        nll_c, kl_before = answer_stats(model, tokenizer, convs, causal, student_mas=True)
        nll_u, _ = answer_stats(model, tokenizer, convs, untuned, student_mas=None)
    adapted = greedy(model, tokenizer, convs, args.max_new_tokens, mas=True)
    _, kl_after = answer_stats(model, tokenizer, convs, causal, student_mas=True)
    nll_a, _ = answer_stats(model, tokenizer, convs, adapted, student_mas=None)
    result = summarize(prompts, tokenizer, causal, untuned, adapted, nll_c, nll_u, nll_a, kl_before, kl_after)
    result.update(cost=cost(args.run), seconds=round(time.perf_counter() - start), n=len(prompts),
                  command="python " + " ".join(sys.argv), max_new_tokens=args.max_new_tokens)
    (out / "answers.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    return 0


def summarize(prompts, tokenizer, causal, untuned, adapted, nll_c, nll_u, nll_a, kl_before, kl_after) -> dict:
    """Headline numbers overall and per category, plus every answer."""
    def mean_kl(kls, first=None):
        toks = [x for row in kls for x in (row[:first] if first else row)]
        return sum(toks) / len(toks)

    def block(idx):
        pick = lambda xs: [xs[i] for i in idx]  # noqa: E731
        return {"n": len(idx),
                "kl_before": mean_kl(pick(kl_before)), "kl_after": mean_kl(pick(kl_after)),
                "kl_before_first8": mean_kl(pick(kl_before), 8), "kl_after_first8": mean_kl(pick(kl_after), 8),
                "nll_median": {"causal": statistics.median(pick(nll_c)), "untuned": statistics.median(pick(nll_u)),
                               "adapted": statistics.median(pick(nll_a))},
                "degenerate": {"causal": sum(x > DEGENERATE_NLL for x in pick(nll_c)) / len(idx),
                               "untuned": sum(x > DEGENERATE_NLL for x in pick(nll_u)) / len(idx),
                               "adapted": sum(x > DEGENERATE_NLL for x in pick(nll_a)) / len(idx)},
                "agree16": {"untuned": agreement(pick(untuned), pick(causal)),
                            "adapted": agreement(pick(adapted), pick(causal))}}

    cats: dict[str, list[int]] = {}
    for i, p in enumerate(prompts):
        cats.setdefault(p["category"].split("/")[0], []).append(i)
    with_system = [i for i, p in enumerate(prompts) if p["messages"][0]["role"] == "system"]
    no_system = [i for i, p in enumerate(prompts) if p["messages"][0]["role"] != "system"]
    text = lambda ids: tokenizer.decode(ids, skip_special_tokens=True).strip()  # noqa: E731
    examples = [{"category": p["category"], "messages": p["messages"], "causal": text(c), "untuned": text(u),
                 "adapted": text(a), "nll": [nc, nu, na]}
                for p, c, u, a, nc, nu, na in zip(prompts, causal, untuned, adapted, nll_c, nll_u, nll_a)]
    return {"all": block(list(range(len(prompts)))), "by_category": {k: block(v) for k, v in sorted(cats.items())},
            "with_system": block(with_system), "without_system": block(no_system), "examples": examples}


def cost(run: str | None) -> dict:
    if not run or not (Path(run) / "adapt_summary.json").exists():
        return {}
    s = json.loads((Path(run) / "adapt_summary.json").read_text())
    return {k: s.get(k) for k in ("prompts", "categories", "teacher_s", "steps", "wall_s", "tokens_seen",
                                  "tokens_per_s")}


def plot_kl(curve: Path, png: Path) -> None:
    """Training KL per answer token (and the weighted loss) against adaptation steps."""
    if not curve.exists():
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in json.loads(curve.read_text()) if "kl" in r]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot([r["step"] for r in rows], [r["kl"] for r in rows], label="mean KL per answer token")
    ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], label="loss (early-weighted KL)", alpha=0.6)
    ax.set_yscale("log")
    ax.set_xlabel("adaptation step (batch 8)")
    ax.set_ylabel("nats")
    ax.set_title("segmask adapt: KL(teacher || MAS student) on training prompts")
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=110)


if __name__ == "__main__":
    raise SystemExit(main())
