"""The ``segmask`` command line: one module per subcommand, heavy imports inside each command.

    segmask demo                      show a chat prompt's segments and mask, answer it with MAS prefill
    segmask show --system S --user U  print segments and the ASCII mask of a chat prompt
    segmask serve                     OpenAI-compatible chat server with MAS prefill
    segmask chat                      interactive multi-turn chat with MAS prefill, streamed
    segmask generate PROMPT...        batched generation (prompts or --file JSONL) -> JSONL
    segmask train DATA... --out DIR   LoRA fine-tuning under MAS or the causal mask
    segmask adapt --out DIR           MAS-ready chat model by self-distillation (no labelled data)
    segmask data                      get the commonsense benchmark data (LLM-Adapters) into ~/.cache/segmask/data
    segmask eval [--data-dir D]       commonsense benchmarks (generate or loglik) under MAS or causal prefill
    segmask compare RUN_A RUN_B       paired comparison of two eval runs (bootstrap CI, McNemar)
    segmask synth TASK --out DIR      draw synthetic prompt-order tasks (lookup, reading, name_index, middle_match)
"""

from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass, field

from ..core.recipe import BASE_MODEL, DEFAULT_MODEL, Recipe

COMMANDS = {
    "demo": "segmask.cli.demo",
    "show": "segmask.cli.show",
    "serve": "segmask.cli.serve",
    "chat": "segmask.cli.chat",
    "generate": "segmask.cli.generate",
    "train": "segmask.cli.train",
    "adapt": "segmask.cli.adapt",
    "data": "segmask.cli.data",
    "eval": "segmask.cli.eval",
    "compare": "segmask.cli.compare",
    "synth": "segmask.cli.synth",
}


def build_parser() -> argparse.ArgumentParser:
    """The ``segmask`` parser with every subcommand (parsing runs nothing: ``args.run(args)`` does)."""
    parser = argparse.ArgumentParser(prog="segmask", description="Masked Attention by Segment (MAS) for causal LMs")
    parser.add_argument("--verbose", action="store_true",
                        help="show the libraries' progress bars (weight loading) and warnings")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMANDS.values():
        importlib.import_module(module).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the subcommand and return its exit code."""
    args = build_parser().parse_args(argv)
    if not args.verbose:
        quiet_libraries()
    try:
        return int(args.run(args) or 0)
    except (ValueError, OSError) as err:  # a user's mistake (bad value, bad or missing file): one line, no traceback
        print(f"segmask {args.command}: error: {describe_error(err)}", file=sys.stderr)
        return 2


def quiet_libraries() -> None:
    """No weight-loading bars, library log messages below errors, or deprecation warnings on the command line (the
    long jobs' own progress bars, train/adapt/eval, stay). ``segmask --verbose CMD`` keeps them all."""
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # pragma: no cover - transformers is a dependency
        return
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def describe_error(err: BaseException) -> str:
    """``err`` as one line: an OSError as ``FILE: reason``, any message with its newlines folded."""
    if isinstance(err, OSError) and err.filename is not None:
        text = f"{err.filename}: {err.strerror or err}"
    else:
        text = str(err) or type(err).__name__
    return " ".join(text.split())


@dataclass
class ModelOptions:
    """The options of every command that loads a model (flags by ``add_model_args``; resolve them with
    ``chosen_recipe``, ``chosen_model`` and ``chosen_mask``)."""

    model: str | None = field(default=None, metadata={"help": (
        f"embedded name, HF id or local path (default: {DEFAULT_MODEL}, SmolLM2-135M-Instruct made MAS-ready by "
        f"segmask adapt; with --causal: {BASE_MODEL} as published; with --adapter: the adapter's base model)")})
    adapter: str | None = field(default=None, metadata={"help": "folder of a LoRA adapter to load on top"})
    dtype: str = field(default="float32", metadata={"help": "float32, bfloat16 or float16"})
    attn: str = field(default="sdpa", metadata={"help": "attention backend",
                                                "choices": ("sdpa", "eager", "flex_attention")})
    device: str = field(default="cpu", metadata={"help": "torch device: cpu, cuda, cuda:1, mps"})
    causal: bool = field(default=False, metadata={
        "help": "plain causal prefill (and, without --model, the causally trained base model)"})


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """The ``ModelOptions`` flags: ``--model``, ``--adapter``, ``--dtype``, ``--attn``, ``--device``, ``--causal``."""
    from .config_args import add_config_args

    add_config_args(parser, ModelOptions)


def chosen_recipe(args: argparse.Namespace) -> Recipe:
    """The recipe of a model-loading command, its ``--adapter``'s segmask.json read once: mask ``"causal"`` with
    ``--causal``, else the adapter's trained mask, else ``"mas"`` (``segmask.core.recipe.choose_mask``). Pass it to
    ``chosen_model``, ``chosen_mask`` and ``load_chosen`` so the file is not read again."""
    from ..core.recipe import resolve_adapter

    return resolve_adapter(getattr(args, "adapter", None), "causal" if getattr(args, "causal", False) else None)


def chosen_model(args: argparse.Namespace, recipe: Recipe | None = None) -> str:
    """The model a command loads: ``--model``; else the ``--adapter``'s recorded base model; else the causal base
    with ``--causal``; else the MAS-ready default. ``recipe``: ``chosen_recipe(args)`` when already read."""
    if args.model:
        return args.model
    if getattr(args, "adapter", None):
        return (recipe or chosen_recipe(args)).base_model or BASE_MODEL
    return BASE_MODEL if getattr(args, "causal", False) else DEFAULT_MODEL


def chosen_mask(args: argparse.Namespace, recipe: Recipe | None = None) -> str:
    """``"causal"`` with ``--causal``; else the ``--adapter``'s trained mask (its ``segmask.json``); else ``"mas"``.
    ``recipe``: ``chosen_recipe(args)`` when already read."""
    mask = (recipe or chosen_recipe(args)).mask
    return "causal" if mask == "causal-repeat" else mask  # a repeat-trained adapter generates causally (no repeat)


def load_chosen(args: argparse.Namespace, recipe: Recipe | None = None) -> tuple:
    """``(model, tokenizer)`` of ``chosen_model(args)`` (+ ``--adapter``) with MAS enabled; sets ``args.model``.
    ``recipe``: ``chosen_recipe(args)`` when already read (the adapter's segmask.json is then not read again)."""
    from ..hf.hook import enable
    from ..hf.models import load_model

    recipe = recipe or chosen_recipe(args)
    args.model = chosen_model(args, recipe)
    model, tokenizer = load_model(args.model, dtype=args.dtype, attn_implementation=args.attn, device=args.device,
                                  adapter=args.adapter, recipe=recipe)
    return enable(model), tokenizer
