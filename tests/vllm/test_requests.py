"""Which requests get MAS (segmask.vllm.requests): the precedence of per-request args, the environment switch and
an adapter's segmask.json; no vLLM, the embedded SmolLM2 tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from segmask import encode_chat
from segmask.vllm import MAS_ENV, request_ranges

ADAPTER = Path(__file__).resolve().parents[2] / "adapters" / "smollm2-135m-mas-chat"


@pytest.fixture(scope="module")
def prompt(tokenizer):
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"}]
    return encode_chat(tokenizer, chat)["input_ids"][0].tolist()


def test_default_is_causal_without_a_mas_folder(tokenizer, prompt, monkeypatch, tmp_path):
    monkeypatch.delenv(MAS_ENV, raising=False)
    assert request_ranges(tokenizer, prompt, None, model_path=str(tmp_path)) == []


def test_adapter_segmask_json_switches_mas_on(tokenizer, prompt, monkeypatch, tmp_path):
    monkeypatch.delenv(MAS_ENV, raising=False)
    assert request_ranges(tokenizer, prompt, None, lora_path=str(ADAPTER)) == [(0, 8), (8, 17)]
    (tmp_path / "segmask.json").write_text(json.dumps({"mask": "causal", "prompt_form": "chat"}))
    assert request_ranges(tokenizer, prompt, None, lora_path=str(tmp_path), model_path=str(ADAPTER)) == []


def test_env_switch_and_request_args(tokenizer, prompt, monkeypatch):
    monkeypatch.setenv(MAS_ENV, "on")
    assert request_ranges(tokenizer, prompt, {}) == [(0, 8), (8, 17)]
    assert request_ranges(tokenizer, prompt, {"segmask_mas": 0}) == []
    assert request_ranges(tokenizer, prompt, {"segmask_ranges": [1, 4]}) == [(1, 4)]
    monkeypatch.setenv(MAS_ENV, "off")
    assert request_ranges(tokenizer, prompt, {}) == []
    assert request_ranges(tokenizer, prompt, {"segmask_mas": True}) == [(0, 8), (8, 17)]
    monkeypatch.setenv(MAS_ENV, "sometimes")
    with pytest.raises(ValueError, match=MAS_ENV):
        request_ranges(tokenizer, prompt, {})


def test_refusals(tokenizer, prompt, monkeypatch):
    monkeypatch.setenv(MAS_ENV, "on")
    with pytest.raises(ValueError, match="more than the 8 one"):
        request_ranges(tokenizer, prompt, {}, max_segment_tokens=8)
    with pytest.raises(ValueError, match="segmask_mas"):
        request_ranges(tokenizer, prompt, {"segmask_mas": "maybe"})
    with pytest.raises(ValueError, match="segment range 0"):
        request_ranges(tokenizer, prompt, {"segmask_ranges": [5, 99]})
    with pytest.raises(ValueError, match="tokenizer"):
        request_ranges(None, prompt, {})


def test_folder_mask_reads_segmask_json_through_the_one_reader(tmp_path):
    """The recipe reader of segmask.core.recipe: a hub id or a folder without the file says nothing, a bad mask is an
    error naming the file."""
    from segmask.vllm.requests import folder_mask

    assert folder_mask(None) is None and folder_mask("HuggingFaceTB/SmolLM2-135M-Instruct") is None
    assert folder_mask(tmp_path) is None
    (tmp_path / "segmask.json").write_text(json.dumps({"mask": "mas", "prompt_form": "chat"}))
    assert folder_mask(tmp_path) == "mas"
    (tmp_path / "segmask.json").write_text(json.dumps({"mask": "sideways", "prompt_form": "chat"}))
    with pytest.raises(ValueError, match="segmask.json"):
        folder_mask(tmp_path)
