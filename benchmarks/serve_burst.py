"""Throughput of ``segmask serve`` under a burst of concurrent clients vs the same requests one at a time.

    python benchmarks/serve_burst.py --clients 8 --max-tokens 32             # embedded SmolLM2, MAS, CPU

Starts the server in-process on a free localhost port, sends the requests with the official ``openai`` client and
prints wall time, completion tokens and tokens/s for each mode, plus the server's prefix-cache statistics. Every
request shares one system prompt, so all but the first reuse its KV.
"""

from __future__ import annotations

import argparse
import socket
import threading
import time


def ask(client, model: str, i: int, max_tokens: int) -> int:
    messages = [{"role": "system", "content": "You are a concise assistant. Answer in one sentence."},
                {"role": "user", "content": f"Give one fact about the number {i + 3}."}]
    resp = client.chat.completions.create(model=model, messages=messages, temperature=0, max_tokens=max_tokens)
    return resp.usage.completion_tokens


def main() -> None:
    import httpx
    import uvicorn
    from openai import OpenAI

    from segmask.hf.models import load_model
    from segmask.serve import ServeConfig, create_app

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--causal", action="store_true")
    args = parser.parse_args()

    model, tokenizer = load_model(args.model)
    config = ServeConfig(model_name=args.model, mas=not args.causal, max_batch_size=args.clients, batch_wait_s=0.05)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(model, tokenizer, config), host="127.0.0.1", port=port,
                                           log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    client = OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=600)
    ask(client, args.model, 0, 4)  # warm-up: first forward, and stores the shared system prompt

    start = time.perf_counter()
    tokens = sum(ask(client, args.model, i, args.max_tokens) for i in range(args.clients))
    sequential = time.perf_counter() - start
    print(f"sequential: {args.clients} requests, {tokens} tokens in {sequential:.2f} s "
          f"= {tokens / sequential:.1f} tok/s", flush=True)

    counts: list[int] = [0] * args.clients

    def one(i: int) -> None:
        counts[i] = ask(client, args.model, 100 + i, args.max_tokens)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(args.clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    burst = time.perf_counter() - start
    print(f"burst:      {args.clients} concurrent clients, {sum(counts)} tokens in {burst:.2f} s "
          f"= {sum(counts) / burst:.1f} tok/s", flush=True)
    print(f"health: {httpx.get(url + '/health').json()}")
    server.should_exit = True


if __name__ == "__main__":
    main()
