"""Every model-loading and prompt command declares its flags once, in option dataclasses (``config_args``): the flag
names stay those the commands always had, and parsing no flags gives each dataclass's defaults. No model."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from segmask.cli import ModelOptions, build_parser
from segmask.cli.config_args import config_from_namespace
from segmask.cli.eval import EvalOptions
from segmask.cli.generate import DecodingOptions, GenerateOptions
from segmask.cli.show import ShowOptions

MODEL = ["--adapter", "--attn", "--causal", "--device", "--dtype", "--model"]
DECODING = ["--max-new-tokens", "--num-beams", "--seed", "--stop", "--system", "--temperature", "--top-p"]
FLAGS = {  # as the commands declared them by hand before
    "eval": [*MODEL, "--batch-size", "--data-dir", "--layout", "--limit", "--mask", "--max-new-tokens", "--no-progress",
             "--num-beams", "--out", "--prompt-form", "--protocol", "--resume", "--seed", "--system", "--tasks"],
    "generate": [*MODEL, *DECODING, "--batch-size", "--file", "--no-prefix-cache", "--num-return-sequences",
                 "--output", "prompts"],
    "chat": [*MODEL, *DECODING, "--show-segments"],
    "show": ["--adapter", "--attention", "--data", "--device", "--dtype", "--index", "--layers", "--max-size",
             "--model", "--png", "--system", "--user"],
}
OPTIONS = {"eval": (ModelOptions, EvalOptions), "generate": (ModelOptions, DecodingOptions, GenerateOptions),
           "chat": (ModelOptions, DecodingOptions), "show": (ShowOptions,), "serve": (ModelOptions,)}


def subparser(command: str) -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]


@pytest.mark.parametrize("command", sorted(FLAGS))
def test_flag_names_are_kept(command):
    names = {o for a in subparser(command)._actions for o in (a.option_strings or [a.dest])} - {"-h", "--help"}
    assert names == set(FLAGS[command])


@pytest.mark.parametrize("command", sorted(OPTIONS))
def test_no_flags_give_the_dataclass_defaults(command):
    args = subparser(command).parse_args([])
    for cls in OPTIONS[command]:
        assert config_from_namespace(cls, args) == cls()


def test_flags_set_their_fields():
    args = subparser("generate").parse_args(["a", "b", "--stop", "x", "--stop", "y", "--no-prefix-cache", "--causal",
                                             "--file", "in.jsonl", "--temperature", "0.5"])
    assert config_from_namespace(GenerateOptions, args) == GenerateOptions(
        prompts=["a", "b"], file=Path("in.jsonl"), prefix_cache=False)
    assert (args.stop, args.temperature, args.causal) == (["x", "y"], 0.5, True)
    assert subparser("eval").parse_args(["--no-progress", "--protocol", "choice"]).progress is False
    with pytest.raises(SystemExit):
        subparser("eval").parse_args(["--protocol", "vote"])
