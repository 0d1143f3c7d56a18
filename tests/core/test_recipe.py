"""``segmask.core.recipe``: the one reader of an adapter's segmask.json, read once per load, and the one policy of
when MAS is on (``choose_mask``), as every loader applies it. No model, CPU only."""

from __future__ import annotations

import argparse
import json

import pytest

import segmask.core.recipe as recipe_module
from segmask.core.recipe import check_choice, choice_error, choose_mask, resolve_adapter


@pytest.fixture
def reads(monkeypatch):
    """The folders ``load_adapter_config`` reads, in order (the real reader runs)."""
    seen, real = [], recipe_module.load_adapter_config

    def counting(folder):
        seen.append(str(folder))
        return real(folder)

    monkeypatch.setattr(recipe_module, "load_adapter_config", counting)
    return seen


def write(folder, **config):
    folder.mkdir(exist_ok=True)
    (folder / "segmask.json").write_text(json.dumps({"prompt_form": "chat", **config}))
    return folder


def test_choose_mask_asked_then_recorded_then_default():
    assert choose_mask("causal", [{"mask": "mas"}]) == "causal"
    assert choose_mask(None, [{}, {"mask": "causal-repeat"}, {"mask": "mas"}]) == "causal-repeat"
    assert choose_mask(None, [{}, {}]) == "mas" and choose_mask(None, [], default="causal") == "causal"

    def lazily():
        yield {"mask": "mas"}
        raise AssertionError("read past the first recorded mask")

    assert choose_mask(None, lazily(), default="causal") == "mas"


def test_a_cli_load_reads_segmask_json_once(tmp_path, reads):
    from segmask.cli import chosen_mask, chosen_model, chosen_recipe
    from segmask.hf.models import init_adapter_of

    write(tmp_path / "init")
    adapter = write(tmp_path / "a", mask="causal-repeat", base_model="org/base",
                    recipe={"init_adapter": str(tmp_path / "init")})
    args = argparse.Namespace(model=None, adapter=str(adapter), causal=False)
    recipe = chosen_recipe(args)
    assert (chosen_model(args, recipe), chosen_mask(args, recipe)) == ("org/base", "causal")
    assert init_adapter_of(adapter, recipe) == tmp_path / "init"
    assert reads == [str(adapter)]
    assert recipe.choose(mask="mas").mask == "mas" and recipe.choose().mask == "causal-repeat"
    assert reads == [str(adapter)]  # chosen again from what was read
    assert chosen_mask(argparse.Namespace(model=None, adapter=str(adapter), causal=True)) == "causal"


def test_every_loader_follows_the_one_policy(tmp_path, monkeypatch):
    """The CLI and lm-eval default to MAS without a recorded mask; load_adapter and the vLLM plugin serve a model
    without a recipe as published (causal); a recorded mask wins over both defaults, an asked one over everything."""
    from segmask.cli import chosen_mask
    from segmask.vllm.requests import MAS_ENV, mas_default

    plain, mas, causal = tmp_path / "plain", write(tmp_path / "mas", mask="mas"), write(tmp_path / "c", mask="causal")
    plain.mkdir()
    ns = lambda folder, c=False: argparse.Namespace(model=None, adapter=str(folder), causal=c)  # noqa: E731
    assert [chosen_mask(ns(f)) for f in (plain, mas, causal)] == ["mas", "mas", "causal"]
    assert chosen_mask(ns(mas, True)) == "causal"
    assert [resolve_adapter(f, default_mask="causal").mask for f in (plain, mas, causal)] == ["causal", "mas", "causal"]
    monkeypatch.delenv(MAS_ENV, raising=False)
    assert [mas_default(str(f), None) for f in (plain, mas, causal)] == [False, True, False]
    assert mas_default(str(mas), str(causal)) is False  # the request's LoRA adapter before the served model
    monkeypatch.setenv(MAS_ENV, "on")
    assert mas_default(str(causal), None) is True
    monkeypatch.setenv(MAS_ENV, "sometimes")
    with pytest.raises(ValueError, match="expected on, off or auto"):
        mas_default(None, None)


def test_init_adapter_must_be_a_folder_path(tmp_path):
    adapter = write(tmp_path / "a", mask="mas", recipe={"init_adapter": 5})
    recipe = resolve_adapter(adapter)  # reading is fine: only a loader needs the init adapter
    with pytest.raises(ValueError, match=r"a/segmask.json: recipe.init_adapter must be a folder path, got 5"):
        _ = recipe.init_adapter


def test_one_wording_for_a_bad_choice():
    assert choice_error("mask", "mas", ("mas", "causal")) is None
    assert choice_error("'mask'", ["x"], ("mas",), show=lambda v: "<list>") == \
        "'mask' must be one of ('mas',), got <list>"
    with pytest.raises(ValueError, match=r"^f.json: mask must be one of \('mas',\), got 'x'$"):
        check_choice("mask", "x", ("mas",), "f.json: ")
