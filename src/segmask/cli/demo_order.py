"""The part of ``segmask demo`` that shows where MAS matters: a prompt whose facts come after the question.

Three adapters from the order study (``benchmarks/order_study.py``, docs/RESULTS.md) answer the same ``lookup``
questions: one LoRA-trained under the causal mask from the published SmolLM2-135M-Instruct, served causally; one
trained under MAS from the MAS-ready model, served with MAS prefill; and, as the baseline MAS is measured against,
one trained and served causally on the user message sent twice (prompt repetition). All three had the same data,
rows, seed and 200 steps (the study's ``easy1600`` regime) and were tuned in one layout only (``cqo``: facts,
question, options). First one hand-written prompt in a layout none saw in training (``qoc``: question, options,
facts last) with each adapter's pick and its share of the probability over the four options, then each adapter on
fresh instances drawn now with a seed the study never used, in the trained layout and the unseen one. Under the
causal mask the question and options are read before the facts exist; under MAS the whole user message (one segment)
is read at once; with repetition the second copy is read after the first copy's facts, at twice the prompt tokens.
"""

from __future__ import annotations

from typing import Any

ADAPTERS = {"causal": "order-lookup-text-easy1600-causal-s42", "MAS": "order-lookup-text-easy1600-mas-ready-s42",
            "repeat": "order-lookup-text-easy1600-repeat-s42"}
"""Shipped adapters (``adapters/``) of the study's seed-42 arms trained on 1,600 rows of the easy layout only
(``cqo``)."""
TRAINED, UNSEEN = "cqo", "qoc"
EXAMPLE = {  # written for the demo (not drawn from the study's data)
    "context": "Facts: Nora has a blue kite. Sam has a brown cup. Liam has a gold bag. Ella has a white lamp. "
               "Hugo has a pink hat.",
    "question": "What color is Liam's bag?",
    "options": ["pink", "brown", "gold", "blue"],
    "answer": "answer3",
}
FRESH_SEED, FRESH_N = 2026, 40


def load_arm(name: str, args: Any) -> tuple[Any, Any, str]:
    """(model with the arm's adapter, tokenizer, mask) for ``ADAPTERS[name]``."""
    from ..core.recipe import resolve_adapter
    from ..hf.hook import enable
    from ..hf.models import load_model, shipped_adapter

    folder = shipped_adapter(ADAPTERS[name])
    recipe = resolve_adapter(folder)
    model, tokenizer = load_model(recipe.base_model, dtype=args.dtype, attn_implementation=args.attn,
                                  device=args.device, adapter=str(folder), recipe=recipe)
    return enable(model).eval(), tokenizer, recipe.mask


def picks(model: Any, tokenizer: Any, mask: str, records: list[dict], layout: str) -> list[dict]:
    """The ``choice`` protocol's rows (each option's text scored as the answer) for ``records`` in ``layout``."""
    from ..eval.protocols import run_choice
    from ..eval.tasks import TASKS

    return run_choice(model, tokenizer, TASKS["lookup"], records, mask=mask, prompt_form="commonsense",
                      system=None, layout=layout, batch_size=8)


def run_order_part(args: Any) -> None:
    """Print the hand-written question's picks and both arms' accuracy on fresh instances, per layout."""
    import torch

    from ..core.questions import rewrite_record
    from ..eval.synth import draw, make_record

    example = {**make_record("lookup", EXAMPLE, 5), "index": 0}
    fresh = [{**r, "index": i} for i, r in enumerate(draw("lookup", FRESH_N, seed=FRESH_SEED, split="demo"))]
    print("--- where MAS matters: facts that come after the question (segmask synth lookup, layout qoc) ---")
    print(rewrite_record(example, layout=UNSEEN)["instruction"])
    print("(correct: gold)")
    scores = {}
    for name in ADAPTERS:
        model, tokenizer, mask = load_arm(name, args)
        with torch.no_grad():
            row = picks(model, tokenizer, mask, [example], UNSEEN)[0]
            scores[name] = {layout: picks(model, tokenizer, mask, fresh, layout) for layout in (TRAINED, UNSEEN)}
        prefill = {"mas": "MAS prefill", "causal": "causal prefill"}.get(mask, "causal, prompt sent twice")
        share = torch.tensor(row["logprobs"]).softmax(0)[row["choices"].index(row["prediction"])].item()
        print(f"  {name:>6} ({prefill}, tuned on facts-first prompts) -> {row['picked']}"
              f"{'  right' if row['correct'] else '  wrong'} ({share:.0%} of the probability over the options)")
        del model
    print(f"\n{FRESH_N} fresh questions drawn now (seed {FRESH_SEED}), right answers of each adapter:")
    for layout, what in ((TRAINED, "facts, question, options: as trained"),
                         (UNSEEN, "question, options, facts last: never trained")):
        line = "   ".join(f"{name} {sum(r['correct'] for r in scores[name][layout])}/{FRESH_N}" for name in ADAPTERS)
        print(f"  {layout} ({what}): {line}")
    print("(Measured on the study's 600 test questions per layout: docs/RESULTS.md. All three tuned on the same 1,600\n"
          " rows. Repetition reads twice the prompt tokens; MAS reads the prompt once.)\n")
