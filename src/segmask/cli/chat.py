"""``segmask chat``: interactive multi-turn chat with MAS prefill, streaming tokens as they are generated.

    segmask chat --system "You are terse."                 # the embedded MAS-ready SmolLM2 (smollm2-135m-mas)
    segmask chat --model Qwen/Qwen2.5-0.5B-Instruct --adapter out/lora --show-segments
    segmask chat --causal                                  # plain causal prefill, for comparison

Each turn prefills only the new user message against the conversation's KV cache. ``--show-segments`` prints
which tokens form which segment before each answer. Type ``/reset`` to start over, ``/quit`` (or end of input)
to leave.
"""

from __future__ import annotations

import argparse
import sys

from . import add_model_args, chosen_mask, chosen_recipe, load_chosen
from .generate import add_generation_args, decoding_kwargs


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("chat", help="interactive chat with MAS prefill, streamed")
    add_model_args(p)
    add_generation_args(p)
    p.add_argument("--show-segments", action="store_true", help="print the prompt's segments before each answer")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch
    from transformers import TextStreamer

    from ..generation.conversation import Conversation
    from ..viz.ascii import describe_segments

    recipe = chosen_recipe(args)
    model, tokenizer = load_chosen(args, recipe)
    causal = chosen_mask(args, recipe) == "causal"
    kwargs = decoding_kwargs(args, tokenizer)
    torch.manual_seed(args.seed)
    new_chat = lambda: Conversation(model, tokenizer, system=args.system or None, causal=causal)  # noqa: E731
    chat = new_chat()
    mode = "causal" if causal else "MAS"
    print(f"segmask chat: {args.model} ({mode} prefill). /reset starts over, /quit leaves.", flush=True)
    while True:
        print("\nyou> ", end="", flush=True)
        line = sys.stdin.readline()
        if not line or line.strip() == "/quit":
            print()
            return 0
        text = line.rstrip("\n")
        if text.strip() == "/reset":
            chat = new_chat()
            print("(conversation reset)")
            continue
        if not text.strip():
            continue
        if args.show_segments:
            chat.messages.append({"role": "user", "content": text})
            try:
                batch = chat.prompt()
            finally:
                chat.messages.pop()
            print(describe_segments(tokenizer, batch["input_ids"][0], batch["segment_ids"][0]))
        print("bot> ", end="", flush=True)
        streamer = TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        try:
            chat.send(text, streamer=streamer, **kwargs)
        except ValueError as err:
            print(f"\nsegmask chat: error: {err}", file=sys.stderr)
            continue
        print(f"[{len(chat.last_tokens)} new tokens, {chat.last_prefill} prompt tokens prefilled]", flush=True)
