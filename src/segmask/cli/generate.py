"""``segmask generate``: batched generation with MAS prefill for prompts from arguments or a JSONL file, written as
JSONL.

    segmask generate "Name a colour." "Name a fruit." --system "Be terse." --max-new-tokens 32
    segmask generate --file prompts.jsonl --output answers.jsonl --batch-size 8 --num-beams 4
    segmask generate --file prompts.jsonl --causal                     # plain causal prefill, for comparison

Input lines are objects with ``messages`` (a chat, list of ``{"role", "content"}``) or ``prompt`` (a user message,
with an optional ``system``). Each output line repeats the input fields and adds ``completion`` (one string, or a
list with ``--num-return-sequences`` > 1), ``new_tokens`` and ``prefix_tokens_reused``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import add_model_args, chosen_mask, chosen_recipe, load_chosen
from .config_args import add_config_args


@dataclass
class DecodingOptions:
    """How ``segmask generate`` and ``segmask chat`` decode: one flag per field (``add_generation_args``)."""

    system: str = field(default="", metadata={"help": "system message ('' for none)"})
    max_new_tokens: int = field(default=128, metadata={"help": "most new tokens per answer"})
    temperature: float = field(default=0.0, metadata={"help": "0 = greedy; > 0 samples"})
    top_p: float = field(default=1.0, metadata={"help": "nucleus sampling: keep the smallest set of tokens with this "
                                                        "much probability (with --temperature > 0)"})
    num_beams: int = field(default=1, metadata={"help": "beam search with this many beams (1: none)"})
    stop: list[str] = field(default_factory=list, metadata={"help": "stop string (repeatable)", "repeat": True})
    seed: int = field(default=0, metadata={"help": "torch seed for sampling"})


@dataclass
class GenerateOptions:
    """What ``segmask generate`` reads and writes, besides the model and the decoding: one flag per field."""

    prompts: list[str] = field(default_factory=list, metadata={"help": "user messages (or use --file)"})
    file: Path | None = field(default=None, metadata={
        "help": "JSONL with 'messages' or 'prompt' (+ optional 'system') per line"})
    output: Path | None = field(default=None, metadata={"help": "JSONL output (default: stdout)"})
    batch_size: int = field(default=8, metadata={"help": "prompts generated together"})
    num_return_sequences: int = field(default=1, metadata={"help": "answers per prompt"})
    prefix_cache: bool = field(default=True, metadata={"help": "reuse the KV of shared system prompts",
                                                       "off_help": "do not reuse the KV of shared system prompts"})


def add_generation_args(p: argparse.ArgumentParser) -> None:
    """The ``DecodingOptions`` flags, shared by ``generate`` and ``chat``."""
    add_config_args(p, DecodingOptions)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="batched generation with MAS prefill: prompts in, JSONL out")
    add_model_args(p)
    add_generation_args(p)
    add_config_args(p, GenerateOptions, positional=("prompts",))
    p.set_defaults(run=run)


def decoding_kwargs(args: argparse.Namespace, tokenizer: Any) -> dict[str, Any]:
    """``generate`` keyword arguments from the shared decoding options."""
    if args.max_new_tokens < 1:
        raise ValueError(f"--max-new-tokens must be at least 1, got {args.max_new_tokens}")
    kwargs: dict[str, Any] = dict(max_new_tokens=args.max_new_tokens, num_beams=args.num_beams,
                                  pad_token_id=tokenizer.pad_token_id)
    if args.temperature > 0:
        kwargs.update(do_sample=True, temperature=args.temperature, top_p=args.top_p)
    else:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    if any(not s for s in args.stop):
        raise ValueError("--stop needs a non-empty string")
    if args.stop:
        kwargs.update(stop_strings=list(args.stop), tokenizer=tokenizer)
    return kwargs


def read_requests(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Requests from ``--file`` and positional prompts, each with a ``messages`` list; ValueError names the file and
    line (or the prompt) of a bad one."""
    from ..core.chat import conversation, validate_messages

    records = [({"prompt": p}, f"prompt {i}") for i, p in enumerate(args.prompts)]
    if args.file is not None:
        try:
            text = args.file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise ValueError(f"{args.file}: cannot read ({getattr(err, 'strerror', None) or err})") from None
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except (ValueError, RecursionError) as err:
                raise ValueError(f"{args.file}:{n}: not JSON ({getattr(err, 'msg', None) or err})") from None
            if not isinstance(record, dict) or not ("messages" in record or "prompt" in record):
                raise ValueError(f"{args.file}:{n}: expected an object with 'messages' or 'prompt'")
            records.append((record, f"{args.file}:{n}"))
    if not records:
        raise ValueError("no prompts: give them as arguments or with --file")
    for record, where in records:
        if "messages" not in record:
            if not isinstance(record["prompt"], str) or not record["prompt"]:
                raise ValueError(f"{where}: empty prompt")
            record["messages"] = conversation(record.get("system", args.system), record["prompt"])
        validate_messages(record["messages"], where)
    return [record for record, _ in records]


def run(args: argparse.Namespace) -> int:
    import torch

    from ..core.chat import encode_chat
    from ..generation.batch import generate
    from ..generation.prefix_cache import PrefixCache

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
    requests = read_requests(args)
    if any(not s for s in args.stop):
        raise ValueError("--stop needs a non-empty string")
    recipe = chosen_recipe(args)
    model, tokenizer = load_chosen(args, recipe)
    causal = chosen_mask(args, recipe) == "causal"
    kwargs = decoding_kwargs(args, tokenizer)
    kwargs.pop("tokenizer", None)  # generate takes it as its own argument below
    kwargs["num_return_sequences"] = args.num_return_sequences
    cache = None if causal or not args.prefix_cache else PrefixCache.for_model(model, tokenizer)
    torch.manual_seed(args.seed)
    out = open(args.output, "w") if args.output else sys.stdout
    try:
        for start in range(0, len(requests), args.batch_size):
            chunk = requests[start: start + args.batch_size]
            batch = encode_chat(tokenizer, [r["messages"] for r in chunk]).to(args.device)
            if causal:
                batch.pop("segment_ids")
            result = generate(model, batch, prefix_cache=cache, tokenizer=tokenizer, **kwargs)
            n = args.num_return_sequences
            for i, record in enumerate(chunk):
                rows = result.sequences[i * n: (i + 1) * n]
                texts = [tokenizer.decode(r, skip_special_tokens=True) for r in rows]
                lengths = [int((r != tokenizer.pad_token_id).sum()) for r in rows]
                line = {**record, "completion": texts[0] if n == 1 else texts,
                        "new_tokens": lengths[0] if n == 1 else lengths,
                        "prefix_tokens_reused": result.reused[i]}
                out.write(json.dumps(line, ensure_ascii=False) + "\n")
            out.flush()
    finally:
        if out is not sys.stdout:
            out.close()
    return 0
