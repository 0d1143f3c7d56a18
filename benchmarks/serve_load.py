"""``segmask serve`` under the hostile loads of issue 26 (rows 2-4): how long ``/health`` and a 1-token request take
while abandoned rows, silent connections or large bodies load the server. Bounded loops, 127.0.0.1 only.

    python benchmarks/serve_load.py                      # embedded MAS-ready SmolLM2, writes docs/SERVING.md's table
    python benchmarks/serve_load.py --silent 200 --no-doc   # a quicker run

Loads, each measured on its own after the server is idle again:
  abandoned  4 non-streaming clients asking max_tokens 1024 that give up after 2 s (their rows are cancelled)
  silent     N connections that send half a request header and nothing more (closed after header_timeout_s,
             refused beyond max_connections)
  large      5 legal bodies of about 1 MB sent at once (prepared on the large-body thread)
then, for each: the latency of ``/health`` and of a 1-token chat request sent right after the load starts.
"""

from __future__ import annotations

import argparse
import socket
import threading
import time
from pathlib import Path

import httpx

from segmask.bench import write_section

DOC = Path(__file__).resolve().parents[1] / "docs" / "SERVING.md"


def one_token(url: str, model: str) -> tuple[float, int]:
    start = time.perf_counter()
    r = httpx.post(url + "/v1/chat/completions", json={"model": model, "max_tokens": 1, "temperature": 0,
                                                         "messages": [{"role": "user", "content": "Hi"}]},
                   timeout=300)
    return time.perf_counter() - start, r.status_code


def health(url: str) -> float:
    start = time.perf_counter()
    httpx.get(url + "/health", timeout=300).raise_for_status()
    return time.perf_counter() - start


def abandoned(url: str, model: str) -> None:
    def give_up(i: int) -> None:
        try:
            httpx.post(url + "/v1/chat/completions", timeout=2.0, json={
                "model": model, "max_tokens": 1024, "temperature": 0,
                "messages": [{"role": "user", "content": f"Write a long story about the number {i}."}]})
        except httpx.TimeoutException:
            pass
    threads = [threading.Thread(target=give_up, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def silent(url: str, n: int) -> list[socket.socket]:
    host, port = url.removeprefix("http://").split(":")
    socks = []
    for _ in range(n):
        try:
            s = socket.create_connection((host, int(port)), timeout=5)
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
            socks.append(s)
        except OSError:
            break
    return socks


def large(url: str, model: str) -> list[threading.Thread]:
    content = "word " * 200_000  # ~1 MB of JSON
    body = {"model": model, "max_tokens": 1, "messages": [{"role": "user", "content": content}]}
    threads = [threading.Thread(target=lambda: httpx.post(url + "/v1/chat/completions", json=body, timeout=300))
               for _ in range(5)]
    for t in threads:
        t.start()
    time.sleep(0.5)  # the bodies are being received and prepared
    return threads


def main() -> None:
    import uvicorn

    from segmask.hf.models import load_model
    from segmask.serve import ServeConfig, create_app
    from segmask.serve.front import front_options

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m-mas")
    p.add_argument("--silent", type=int, default=2000, help="silent connections opened")
    p.add_argument("--no-doc", action="store_true")
    a = p.parse_args()
    model, tokenizer = load_model(a.model)
    config = ServeConfig(model_name=a.model, max_tokens=1024, max_prompt_tokens=8192, max_body_bytes=2 << 20,
                         max_connections=512)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(model, tokenizer, config), host="127.0.0.1", port=port,
                                           log_level="error", **front_options(config)))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    one_token(url, a.model)  # warm up
    rows = [("idle", f"{1000 * health(url):.0f} ms", "{:.2f} s ({})".format(*one_token(url, a.model)))]

    abandoned(url, a.model)
    h, (t, code) = health(url), one_token(url, a.model)
    rows.append(("4 clients, max_tokens 1024, gone after 2 s", f"{1000 * h:.0f} ms", f"{t:.2f} s ({code})"))

    socks = silent(url, a.silent)
    h, (t, code) = health(url), one_token(url, a.model)
    answers = {"408": 0, "503": 0, "closed": 0}
    for s in socks:
        try:
            s.settimeout(config.header_timeout_s + 5)
            reply = s.recv(32)
            answers["408" if reply.startswith(b"HTTP/1.1 408") else "503" if reply.startswith(b"HTTP/1.1 503")
                    else "closed"] += 1
        except OSError:
            answers["closed"] += 1
        s.close()
    rows.append((f"{len(socks)} connections that never finish their headers (408: {answers['408']}, evicted by "
                 f"newer ones or timed out after {config.header_timeout_s:g} s; 503: {answers['503']})",
                 f"{1000 * h:.0f} ms", f"{t:.2f} s ({code})"))

    threads = large(url, a.model)
    h, (t, code) = health(url), one_token(url, a.model)
    for th in threads:
        th.join()
    rows.append(("5 bodies of 1 MB at once", f"{1000 * h:.0f} ms", f"{t:.2f} s ({code})"))
    server.should_exit = True

    table = ["| load | `/health` | 1-token request (status) |", "|---|---:|---:|"]
    table += [f"| {load} | {h} | {t} |" for load, h, t in rows]
    print("\n".join(table))
    if not a.no_doc:
        write_section(DOC, "serve_load", "\n".join([
            f"`python benchmarks/serve_load.py` ({a.model}, float32, this 2-core CPU, {time.strftime('%Y-%m-%d')}):",
            "", *table]))
        print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
