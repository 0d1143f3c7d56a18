"""Screenshot of the ``segmask serve`` playground page (docs/img/playground.png), taken in headless Chromium.

    python benchmarks/playground_screenshot.py                    # starts `segmask serve` (MAS-ready SmolLM2)
    python benchmarks/playground_screenshot.py --url http://127.0.0.1:8000 --out /tmp/p.png   # a running server

Starts the server with no model arguments (the default model) on a free localhost port, opens the page with a
prompt filled in through its URL parameters (``?system=...&user=...&run=1``), waits until both answers have streamed
to the end, and saves a full-page PNG. Chromium is driven over the DevTools protocol through a pipe
(``--remote-debugging-pipe``: NUL-separated JSON on file descriptors 3 and 4), so nothing beyond the standard
library is needed; ``tests/serve/test_playground_browser.py`` uses the same ``Chromium`` class.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
SYSTEM = "You are a concise assistant. Answer in one sentence."
USER = "Which is larger, a mouse or an elephant, and why?"
# What the page reports once a run is over: the token chips, both answer cards and the canvas size.
RESULT_JS = """JSON.stringify({
  state: document.body.dataset.state,
  server: document.getElementById("server").textContent,
  tokens: [...document.querySelectorAll("#tokens .tok")].map((t) => ({text: t.textContent,
                                                                        segment: Number(t.dataset.segment)})),
  spans: document.getElementById("spans").textContent,
  answers: Object.fromEntries([...document.querySelectorAll(".answer")].map((a) => [a.dataset.mask,
    {state: a.dataset.state, text: a.querySelector(".text").textContent,
     status: a.querySelector(".status").textContent}])),
  canvas: [document.getElementById("mask").width, document.getElementById("mask").height],
})"""


def find_chromium() -> str | None:
    """The Chromium (or Chrome) executable on PATH, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


_ON_FDS_3_4 = ("import os, sys; os.dup2(int(sys.argv[1]), 3); os.dup2(int(sys.argv[2]), 4); "
               "os.close(int(sys.argv[1])); os.close(int(sys.argv[2])); os.execv(sys.argv[3], sys.argv[3:])")


def _high_fd(fd: int) -> int:
    """``fd`` moved to a number >= 10 (so that putting the pipes on 3 and 4 cannot overwrite one of them)."""
    import fcntl

    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


class Chromium:
    """A headless Chromium with one page, driven over the DevTools protocol on a pipe.

        >>> with Chromium(width=1280, height=900) as browser:
        ...     browser.open(url); browser.wait_for("document.body.dataset.state === 'done'", 120)
        ...     png = browser.screenshot()
    """

    def __init__(self, width: int = 1280, height: int = 900, executable: str | None = None):
        self.width, self.height = width, height
        self.executable = executable or find_chromium()
        if self.executable is None:
            raise FileNotFoundError("no chromium on PATH (Debian: apt-get install chromium)")

    def __enter__(self) -> Chromium:
        self.profile = tempfile.TemporaryDirectory(prefix="segmask-chromium-")
        to_browser, self._write = os.pipe()  # the browser reads commands on fd 3 ...
        self._read, from_browser = os.pipe()  # ... and writes answers and events on fd 4
        to_browser, from_browser = _high_fd(to_browser), _high_fd(from_browser)  # clear of 3 and 4
        args = ["--headless", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--no-default-browser-check", "--hide-scrollbars", "--mute-audio", "--disable-extensions",
                f"--user-data-dir={self.profile.name}", f"--window-size={self.width},{self.height}", "about:blank"]
        self.proc = subprocess.Popen(  # a Python shim puts the pipe ends on fds 3 and 4, then becomes the browser
            [sys.executable, "-c", _ON_FDS_3_4, str(to_browser), str(from_browser), self.executable, *args],
            pass_fds=(to_browser, from_browser), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser)
        os.close(from_browser)
        self._next_id, self._answers, self._cond = 0, {}, threading.Condition()
        threading.Thread(target=self._reader, daemon=True).start()
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.call("Emulation.setDeviceMetricsOverride", session=True, width=self.width, height=self.height,
                  deviceScaleFactor=1, mobile=False)
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.call("Browser.close", timeout=10)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._write)
        self.profile.cleanup()

    def _reader(self) -> None:
        buffer = b""
        while True:
            try:
                data = os.read(self._read, 1 << 16)
            except OSError:
                data = b""
            if not data:
                break
            buffer += data
            *messages, buffer = buffer.split(b"\0")
            for raw in messages:
                message = json.loads(raw)
                if "id" in message:
                    with self._cond:
                        self._answers[message["id"]] = message
                        self._cond.notify_all()
        os.close(self._read)
        with self._cond:
            self._answers[None] = {"error": {"message": "chromium closed the pipe"}}
            self._cond.notify_all()

    def call(self, method: str, session: bool = False, timeout: float = 60.0, **params) -> dict:
        """Send one DevTools command (to the page with ``session``) and return its result."""
        with self._cond:
            self._next_id += 1
            ident = self._next_id
        message = {"id": ident, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        with self._cond:
            if not self._cond.wait_for(lambda: ident in self._answers or None in self._answers, timeout):
                raise TimeoutError(f"chromium did not answer {method} within {timeout} s")
            answer = self._answers.pop(ident, None) or self._answers[None]
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error'].get('message')}")
        return answer.get("result", {})

    def open(self, url: str) -> None:
        self.call("Page.navigate", session=True, url=url)

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page."""
        result = self.call("Runtime.evaluate", session=True, expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page error: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float, poll: float = 0.25) -> None:
        """Wait until ``expression`` is true in the page."""
        deadline = time.monotonic() + timeout
        while not self.evaluate(expression):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the page did not reach {expression!r} within {timeout} s")
            time.sleep(poll)

    def screenshot(self) -> bytes:
        """A PNG of the whole page (its full height, the window's width)."""
        height = int(self.evaluate("document.documentElement.scrollHeight"))
        result = self.call("Page.captureScreenshot", session=True, format="png", captureBeyondViewport=True,
                           clip={"x": 0, "y": 0, "width": self.width, "height": height, "scale": 1})
        return base64.b64decode(result["data"])


def playground_url(base: str, system: str, user: str, max_tokens: int) -> str:
    """The page with the form filled in and ``run=1`` (it runs the prompt as soon as it has loaded)."""
    query = urllib.parse.urlencode({"system": system, "user": user, "max_tokens": max_tokens, "run": 1})
    return f"{base}/?{query}"


def run_page(browser: Chromium, base: str, system: str, user: str, max_tokens: int, timeout: float) -> dict:
    """Open the playground on ``base``, run one prompt, wait for both answers; what the page shows (``RESULT_JS``)."""
    browser.open(playground_url(base, system, user, max_tokens))
    browser.wait_for("document.body && document.body.dataset.state === 'done'", timeout)
    return json.loads(browser.evaluate(RESULT_JS))


def start_server(port: int, extra: list[str]) -> subprocess.Popen:
    """``segmask serve`` (this checkout's venv) on 127.0.0.1:``port``; returns once ``/health`` answers."""
    exe = Path(sys.executable).with_name("segmask")
    proc = subprocess.Popen([str(exe), "serve", "--port", str(port), "--log-level", "warning", *extra])
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"segmask serve exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(1)
    proc.terminate()
    raise TimeoutError("segmask serve did not start within 600 s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=None, help="a running server (default: start `segmask serve`)")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--serve-args", default="", help="extra `segmask serve` arguments, e.g. '--causal'")
    parser.add_argument("--system", default=SYSTEM)
    parser.add_argument("--user", default=USER)
    parser.add_argument("--max-tokens", type=int, default=40)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for both answers")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "playground.png")
    args = parser.parse_args(argv)
    server = None if args.url else start_server(args.port, args.serve_args.split())
    base = args.url or f"http://127.0.0.1:{args.port}"
    try:
        with Chromium(width=args.width, height=900) as browser:
            shown = run_page(browser, base, args.system, args.user, args.max_tokens, args.timeout)
            png = browser.screenshot()
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=60)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(png)
    print(f"{args.out}: {len(png)} bytes; {len(shown['tokens'])} tokens; {shown['server']}")
    for mask, answer in shown["answers"].items():
        print(f"  {mask:>6} [{answer['state']}] {answer['text']!r} ({answer['status']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
