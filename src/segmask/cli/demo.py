"""``segmask demo``: the main job on the embedded model.

1. A chat prompt's segments and ASCII mask, answered by the base model with MAS prefill and with the causal mask
   (the base model was trained causally, so MAS alone does not help it).
2. With the MAS LoRA adapter of the reproduction run (``adapters/smollm2-135m-mas-commonsense`` when run from the
   repository, or ``--tuned PATH``): a commonsense question in the paper's prompt form, answered with MAS prefill
   (as the adapter was trained) and with causal prefill (the train/serve mismatch the paper warns about).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from . import add_model_args

SYSTEM = "You are a concise assistant. Answer in one sentence."
USER = "Which is heavier, a kilogram of feathers or a kilogram of iron?"
TUNED = "adapters/smollm2-135m-mas-commonsense"
QUESTION = {  # written for the demo in the LLM-Adapters ARC form; not from the test sets
    "instruction": "Please choose the correct answer to the question: Which object is a good conductor of "
                   "electricity?\n\nAnswer1: a rubber band Answer2: a copper wire Answer3: a wooden spoon "
                   "Answer4: a plastic cup\n\nAnswer format: answer1/answer2/answer3/answer4",
    "input": "",
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="segments, ASCII mask and a MAS vs causal answer on the default model")
    add_model_args(p)
    p.add_argument("--system", default=SYSTEM)
    p.add_argument("--user", default=USER)
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--tuned", default=TUNED, help="MAS-trained segmask adapter for part 2 ('' skips it); "
                                                  f"default {TUNED} (relative to the working directory)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..chat import encode_chat
    from ..hf import enable
    from ..models import load_model
    from .show import conversation, render

    model, tokenizer = load_model(args.model, dtype=args.dtype, attn_implementation=args.attn,
                                  device=args.device, adapter=args.adapter)
    enable(model)
    batch = encode_chat(tokenizer, conversation(args.system, args.user)).to(args.device)
    print(f"model: {args.model}   attention: {args.attn}\n")
    print(render(tokenizer, batch, max_size=48))
    print("\n'#' = may attend, '.' = masked; rows are queries, columns keys; digits name segments, '-' is causal.\n")
    _answer(model, tokenizer, batch, causal_only=args.causal, max_new_tokens=args.max_new_tokens)
    if not args.tuned or args.adapter:
        return 0
    if not Path(args.tuned).is_dir():
        print(f"\n(part 2 skipped: no adapter at {args.tuned}; pass --tuned PATH)")
        return 0
    return _tuned_part(model, tokenizer, args)


def _answer(model, tokenizer, batch, *, causal_only: bool, max_new_tokens: int) -> None:
    """Greedy answers to ``batch`` (one prompt) with MAS prefill and with causal prefill."""
    import torch

    prompt_len = batch["input_ids"].shape[1]
    modes = [("causal", None)] if causal_only else [("MAS", batch["segment_ids"]), ("causal", None)]
    for name, segment_ids in modes:
        extra = {} if segment_ids is None else {"segment_ids": segment_ids}
        with torch.no_grad():
            out = model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **extra,
                                 max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
        answer = tokenizer.decode(out[0, prompt_len:], skip_special_tokens=True).strip()
        print(f"{name:>6} prefill -> {answer}")


def _tuned_part(model, tokenizer, args: argparse.Namespace) -> int:
    from peft import PeftModel

    from ..hf import enable
    from ..lora import load_adapter_config
    from ..segments import collate
    from ..templates import encode_commonsense
    from ..viz import describe_segments

    cfg = load_adapter_config(args.tuned)
    if cfg.get("prompt_form") != "commonsense":
        raise ValueError(f"--tuned {args.tuned}: part 2 asks a commonsense question; this adapter was trained "
                         f"with the {cfg.get('prompt_form')!r} prompt form")
    recipe = cfg.get("recipe", {})
    print(f"\n--- with the {cfg.get('mask', '?').upper()} LoRA adapter {args.tuned} "
          f"({recipe.get('max_examples', '?')} training examples; see docs/RESULTS.md for its accuracy) ---\n")
    model = enable(PeftModel.from_pretrained(model, args.tuned).eval())
    batch = collate([encode_commonsense(tokenizer, QUESTION)], pad_token_id=tokenizer.pad_token_id).to(args.device)
    print(describe_segments(tokenizer, batch["input_ids"][0], batch["segment_ids"][0]) + "\n")
    _answer(model, tokenizer, batch, causal_only=args.causal, max_new_tokens=16)
    print("(correct: answer2. One question proves nothing: the adapter's accuracy on the test sets, against a causal "
          "adapter trained alike, is in docs/RESULTS.md. Serve an adapter with the mask it was trained under: "
          f"{cfg.get('mask', '?').upper()} prefill here.)")
    return 0
