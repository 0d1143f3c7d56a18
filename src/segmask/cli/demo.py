"""``segmask demo``: the main job on the embedded model.

1. A chat prompt's segments and its MAS mask in ASCII.
2. Where MAS matters (``demo_order``): the order study's causal and MAS adapters, both tuned on prompts whose facts
   come first, on a question whose facts come after it, and on fresh questions drawn now in both layouts
   (docs/RESULTS.md has the measurement).
3. Answers to a few chat prompts from the MAS-ready default (``smollm2-135m-mas``: SmolLM2-135M-Instruct + the shipped
   adapter made by ``segmask adapt``) with MAS prefill, next to the original model with causal prefill; once, the
   original model with MAS prefill and no adaptation, to show why adaptation is needed.
4. A multiple-choice question scored by content: each option's text is scored as the continuation of lm-eval's
   "Question: ...\nAnswer:" prompt (the ``choice`` protocol of ``segmask eval``, ``qa`` form). The prompt lists no
   options, so the pick cannot come from a label habit. The measured accuracy on held-out test questions is in
   docs/ADAPT.md.

With ``--model`` or ``--adapter`` the demo runs that model, MAS prefill next to causal prefill.
"""

from __future__ import annotations

import argparse

from . import add_model_args, load_chosen

SYSTEM = "You are a concise assistant. Answer in one sentence."
PROMPTS = [  # written for the demo; not in adaptation's prompt pool or the test sets. The first one is a question a
    # 135M model gets right with either prefill, so the unadapted row's failure is the only thing that stands out
    (SYSTEM, "Water boils at what temperature in Celsius at sea level?"),
    ("", "How many legs does a spider have?"),
    ("", "Read this notice and tell me when the meeting is now.\n\nThe meeting has been moved from 10 am to 3 pm "
         "because the room is being painted. Please bring your laptop."),
]
QUESTION = {  # the LLM-Adapters ARC form; written for the demo, not from the test sets
    "instruction": "Please choose the correct answer to the question: Which object is a good conductor of "
                   "electricity?\n\nAnswer1: a rubber band Answer2: a copper wire Answer3: a wooden spoon "
                   "Answer4: a plastic cup\n\nAnswer format: answer1/answer2/answer3/answer4",
    "input": "",
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="segments, ASCII mask, and MAS-ready vs causal answers on the default model")
    add_model_args(p)
    p.add_argument("--max-new-tokens", type=int, default=40)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..core.chat import conversation, encode_chat
    from .show import render

    custom = bool(args.model or args.adapter or args.causal)
    if custom:
        model, tokenizer = load_chosen(args)
        ways = ([] if args.causal else [("MAS prefill", {}, True)]) + [("causal prefill", {}, False)]
    else:
        model, tokenizer = _default_pair(args)
        ways = [("MAS, adapted", {"adapter": True}, True), ("causal, original", {"adapter": False}, False)]
    first = encode_chat(tokenizer, conversation(*PROMPTS[0])).to(args.device)
    print(f"model: {args.model}   attention: {args.attn}\n")
    print(render(tokenizer, first, max_size=48))
    print("\n'#' = may attend, '.' = masked; rows are queries, columns keys; digits name segments, '-' is causal.\n")
    if not custom:
        from .demo_order import run_order_part

        run_order_part(args)
    for i, (system, user) in enumerate(PROMPTS):
        print(("system: " + system + "\n" if system else "") + "user: " + user.replace("\n", "\n      "))
        batch = encode_chat(tokenizer, conversation(system, user)).to(args.device)
        rows = list(ways) + ([("MAS, NOT adapted", {"adapter": False}, True)] if i == 0 and not custom else [])
        for name, use, mas in rows:
            with torch.no_grad(), _adapter(model, use.get("adapter")):
                print(f"  {name:>16} -> {_answer(model, tokenizer, batch, mas, args.max_new_tokens)}")
        print()
    if not custom:
        print("('MAS, NOT adapted' is the original model prefilled under MAS: it was trained causally, so "
              "bidirectional prompt attention confuses it. `segmask adapt` fixes that without labelled data; "
              "docs/ADAPT.md has the measurements. Both other columns come from a 135M model, and wrong answers in "
              "both are the model's size, not MAS: docs/ADAPT.md measures how often each is right.)\n")
    _choice_part(model, tokenizer, mask="causal" if args.causal else "mas", adapter=None if custom else True)
    return 0


def _default_pair(args: argparse.Namespace):
    """The original model with the shipped MAS chat adapter attached (switchable), MAS enabled."""
    from peft import PeftModel

    from ..core.recipe import BASE_MODEL, DEFAULT_MODEL
    from ..hf.hook import enable
    from ..hf.models import MAS_READY, load_model, shipped_adapter

    base, tokenizer = load_model(BASE_MODEL, dtype=args.dtype, attn_implementation=args.attn, device=args.device)
    args.model = f"{DEFAULT_MODEL} (MAS, adapted) vs {BASE_MODEL} (causal)"
    adapter = shipped_adapter(MAS_READY[DEFAULT_MODEL][1])
    return enable(PeftModel.from_pretrained(base, str(adapter)).eval()), tokenizer


class _adapter:
    """Context: the PeftModel's adapter on (True), off (False), or untouched (None)."""

    def __init__(self, model, on: bool | None):
        self.ctx = model.disable_adapter() if on is False else None

    def __enter__(self):
        return self.ctx.__enter__() if self.ctx else None

    def __exit__(self, *exc):
        return self.ctx.__exit__(*exc) if self.ctx else False


def _answer(model, tokenizer, batch, mas: bool, max_new_tokens: int) -> str:
    from ..generation.batch import generate

    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "segment_ids") if k != "segment_ids" or mas}
    out = generate(model, inputs, tokenizer=tokenizer, max_new_tokens=max_new_tokens, do_sample=False)
    text = tokenizer.decode(out.sequences[0], skip_special_tokens=True).strip()
    return " ".join(text.split())


def _choice_part(model, tokenizer, *, mask: str, adapter: bool | None) -> None:
    """One question scored by option text (under ``mask``) in lm-eval's prompt, which lists no options: the pick can
    only come from what each option says, never from its label or position."""
    import torch

    from ..eval.choice import choice_request
    from ..eval.scoring import loglik_scores

    print(f"--- a multiple-choice question, each option's text scored after 'Question: ...\\nAnswer:' ({mask} "
          "prefill; segmask eval --protocol choice --prompt-form qa) ---")
    request = choice_request(tokenizer, QUESTION, mask=mask, prompt_form="qa")
    with torch.no_grad(), _adapter(model, adapter):
        scores = loglik_scores(model, tokenizer, [request.context], [request.continuations], skip=[request.skip])[0]
    per_byte = [s / n for s, n in zip(scores, request.norm_lengths())]
    best = max(range(len(per_byte)), key=per_byte.__getitem__)
    listing = ", ".join(f"{o!r} {v:.2f}" for o, v in zip(request.question.options, per_byte))
    print(f"  log-prob per byte: {listing}\n  -> picks {request.question.options[best]!r} (correct: a copper wire)")
    print("(One question proves nothing: docs/ADAPT.md has accuracy on held-out test questions, the MAS-ready model "
          "against the original.)")
