"""MAS generation against the full-recompute reference (tests/mas_reference.py), on tiny random models, CPU only."""

from __future__ import annotations

import pytest
import torch

import segmask
from segmask.generation import generate

from ..hf_models import left_padded, tiny_model
from ..mas_reference import reference_greedy, tolerance

IDS = dict(vocab_size=128, pad_token_id=0, bos_token_id=2, eos_token_id=1)
GREEDY = dict(max_new_tokens=6, do_sample=False, eos_token_id=None)

def tiny(family: str = "llama", attn: str = "sdpa"):
    """The shared tiny model, full attention only (prefix caching needs it), MAS enabled."""
    extra = {"use_sliding_window": False} if family == "qwen2" else {}
    return segmask.enable(tiny_model(family, attn, **IDS, **extra))


# Prompts of different lengths: one ending inside a bidirectional segment (its first new token comes from the
# prefill logits of a segment token), one ending in a causal header, one starting causal.
ROWS = [
    ([5, 6, 7, 8, 9, 10, 11], [0, 0, 0, 1, 1, 1, 1]),
    ([12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22], [0, 0, 0, 0, 1, 1, 1, 2, 2, -1, -1]),
    ([23, 24, 25, 26, 27], [-1, 0, 0, -1, -1]),
]


@pytest.mark.parametrize("family", ["llama", "qwen2"])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_greedy_batch_matches_full_recompute(family, attn):
    model = tiny(family, attn)
    batch = left_padded(ROWS)
    out = generate(model, batch, output_logits=True, **GREEDY)
    tokens, logits = reference_greedy(model, batch["input_ids"], batch["attention_mask"], batch["segment_ids"], 6)
    assert torch.equal(out.sequences, tokens)
    for got, want in zip(out.logits, logits):
        torch.testing.assert_close(got, want, atol=tolerance(torch.float32), rtol=0)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_segment_route_in_generate_matches_full_recompute(attn):
    """prefill_route="segment": chunks before the last are prefilled segment-wise, generate prefills the rest."""
    model = tiny("llama", attn)
    batch = left_padded(ROWS)
    calls = []
    handle = model.model.register_forward_pre_hook(lambda m, a, kw: calls.append(kw["input_ids"].shape[1]),
                                                   with_kwargs=True)
    try:
        out = generate(model, batch, output_logits=True, prefill_route="segment", **GREEDY)
    finally:
        handle.remove()
    width = batch["input_ids"].shape[1]
    assert len(calls) > 2 and sum(calls[:-GREEDY["max_new_tokens"] + 1]) == width  # chunked prefill, then decode
    tokens, logits = reference_greedy(model, batch["input_ids"], batch["attention_mask"], batch["segment_ids"], 6)
    assert torch.equal(out.sequences, tokens)
    for got, want in zip(out.logits, logits):
        torch.testing.assert_close(got, want, atol=tolerance(torch.float32), rtol=0)


def test_segment_route_with_beams_and_route_errors():
    model = tiny("qwen2")
    beams = dict(max_new_tokens=5, num_beams=4, num_return_sequences=2, do_sample=False, eos_token_id=None)
    dense = generate(model, left_padded(ROWS), prefill_route="dense", **beams).sequences
    chunked = generate(model, left_padded(ROWS), prefill_route="segment", **beams).sequences
    assert torch.equal(chunked, dense)
    with pytest.raises(ValueError, match="cache_implementation"):
        generate(model, left_padded(ROWS), prefill_route="segment", cache_implementation="static", **GREEDY)
    with pytest.raises(ValueError, match="unknown prefill_route 'fast'"):
        generate(model, left_padded(ROWS), prefill_route="fast", **GREEDY)
    batch = left_padded(ROWS)  # left padding with pad id 0 and no attention_mask: generate infers the mask itself
    unmasked = dict(input_ids=batch["input_ids"], segment_ids=batch["segment_ids"], pad_token_id=0, **GREEDY)
    with pytest.raises(ValueError, match="pad tokens without an attention_mask"):
        model.generate(**unmasked, prefill_route="segment")
    assert torch.equal(model.generate(**unmasked), model.generate(**unmasked, prefill_route="dense"))


def test_mas_changes_the_prefill():
    """Guard against a vacuous pass: the reference with MAS differs from plain causal logits here."""
    model = tiny()
    batch = left_padded(ROWS[:1])
    mas = generate(model, batch, output_logits=True, **GREEDY).logits[0]
    causal = generate(model, {k: batch[k] for k in ("input_ids", "attention_mask")}, output_logits=True,
                      **GREEDY).logits[0]
    assert (mas - causal).abs().max() > 1e-3


def test_static_cache_matches_reference():
    model = tiny()
    batch = left_padded(ROWS)
    out = generate(model, batch, cache_implementation="static", **GREEDY)
    tokens, _ = reference_greedy(model, batch["input_ids"], batch["attention_mask"], batch["segment_ids"], 6)
    assert torch.equal(out.sequences, tokens)


def test_sampling_top_k_1_is_greedy_and_seeded_sampling_repeats():
    model = tiny()
    batch = left_padded(ROWS)
    tokens, _ = reference_greedy(model, batch["input_ids"], batch["attention_mask"], batch["segment_ids"], 6)
    top1 = generate(model, batch, max_new_tokens=6, do_sample=True, top_k=1, eos_token_id=None)
    assert torch.equal(top1.sequences, tokens)
    runs = []
    for _ in range(2):
        torch.manual_seed(7)
        runs.append(generate(model, batch, max_new_tokens=6, do_sample=True, num_return_sequences=2,
                             eos_token_id=None).sequences)
    assert runs[0].shape == (6, 6) and torch.equal(runs[0], runs[1])


def test_beam_search_batch_equals_single_sequence_runs():
    model = tiny("qwen2")
    beams = dict(max_new_tokens=5, num_beams=4, num_return_sequences=2, do_sample=False, eos_token_id=None)
    batched = generate(model, left_padded(ROWS), **beams).sequences
    singles = torch.cat([generate(model, left_padded([row]), **beams).sequences for row in ROWS])
    assert torch.equal(batched, singles)


def test_without_segment_ids_is_vanilla_generate():
    model = tiny()
    batch = left_padded(ROWS)
    plain = {k: batch[k] for k in ("input_ids", "attention_mask")}
    enabled = generate(model, plain, output_logits=True, **GREEDY)
    segmask.disable(model)
    with torch.no_grad():
        stock = model.generate(**plain, output_logits=True, return_dict_in_generate=True, **GREEDY)
    assert torch.equal(enabled.sequences, stock.sequences[:, plain["input_ids"].shape[1]:])
    for got, want in zip(enabled.logits, stock.logits):
        assert torch.equal(got, want)


@pytest.mark.parametrize("route", ["auto", "segment"])
def test_peft_model_generates_with_mas(route):
    from peft import LoraConfig, get_peft_model

    base = tiny_model("llama", "sdpa", **IDS)
    model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    segmask.enable(model.eval())
    batch = left_padded(ROWS)
    out = generate(model, batch, prefill_route=route, **GREEDY)
    tokens, _ = reference_greedy(model, batch["input_ids"], batch["attention_mask"], batch["segment_ids"], 6)
    assert torch.equal(out.sequences, tokens)


def test_bad_prompts_raise_clear_errors():
    model = tiny()
    empty = {"input_ids": torch.zeros(1, 0, dtype=torch.long), "attention_mask": torch.zeros(1, 0, dtype=torch.long)}
    with pytest.raises(ValueError, match="empty prompt"):
        generate(model, empty, max_new_tokens=2)
    batch = left_padded(ROWS[:2])
    batch["attention_mask"][1] = 0
    batch["segment_ids"][1] = -1
    with pytest.raises(ValueError, match="sample 1: empty prompt"):
        generate(model, batch, max_new_tokens=2)
    long = left_padded([(list(range(3, 63)), [0] * 60)])
    with pytest.raises(ValueError, match="sample 0: prompt of 60 tokens \\+ 8 new tokens exceeds the model's 64"):
        generate(model, long, max_new_tokens=8)
    segmask.disable(model)
    with pytest.raises(ValueError, match="not enabled"):
        generate(model, left_padded(ROWS), max_new_tokens=2)


@pytest.mark.real_model
def test_real_model_batch_and_prefix_reuse_match_full_recompute(smollm2):
    from segmask.generation.prefix_cache import PrefixCache

    model, tokenizer = smollm2
    system = {"role": "system", "content": "You are a concise assistant. Answer in one short sentence."}
    batch = segmask.encode_chat(tokenizer, [[system, {"role": "user", "content": "Is the sky blue?"}],
                                            [system, {"role": "user", "content": "Name two primary colours."}]])
    segmask.enable(model)
    try:
        cache = PrefixCache(model, tokenizer)
        greedy = dict(tokenizer=tokenizer, max_new_tokens=2, do_sample=False, output_logits=True)
        cold = generate(model, batch, prefix_cache=cache, **greedy)  # prefills the shared system turn once
        warm = generate(model, batch, prefix_cache=cache, **greedy)
        tokens, logits = reference_greedy(model, batch["input_ids"], batch["attention_mask"], batch["segment_ids"], 2)
    finally:
        segmask.disable(model)
    assert cold.reused == warm.reused and warm.reused[0] == warm.reused[1] > 10
    assert torch.equal(cold.sequences, tokens) and torch.equal(warm.sequences, tokens)
    for c, w, r in zip(cold.logits, warm.logits, logits):
        torch.testing.assert_close(c, r, atol=1e-3, rtol=0)
        torch.testing.assert_close(w, r, atol=1e-3, rtol=0)


def test_generate_runs_the_decode_loop_unless_an_option_needs_transformers(monkeypatch):
    """Greedy, sampling and stop strings run segmask's decode loop; beam search and logits processors (also from the
    model's generation config) run transformers' generate."""
    from segmask.generation import decode

    model = tiny()
    runs = []
    monkeypatch.setattr(decode.DecodeLoop, "run", lambda self, reqs, _run=decode.DecodeLoop.run: runs.append(
        len(reqs)) or _run(self, reqs))
    batch = left_padded(ROWS)
    generate(model, batch, **GREEDY)
    generate(model, batch, max_new_tokens=3, do_sample=True, top_k=5, num_return_sequences=2)
    assert runs == [3, 6]
    generate(model, batch, max_new_tokens=3, num_beams=2)
    generate(model, batch, max_new_tokens=3, repetition_penalty=1.3)
    model.generation_config.no_repeat_ngram_size = 2
    generate(model, batch, max_new_tokens=3)
    assert runs == [3, 6]


def test_loop_ends_rows_at_eos_and_keeps_it_like_transformers():
    """A row that samples EOS keeps it and is padded after it; the batch equals transformers' own greedy generate."""
    model = tiny()
    batch = left_padded(ROWS)
    free = generate(model, batch, **GREEDY).sequences
    eos = int(free[1, 2])  # make the third token of row 1 the EOS id
    ours = generate(model, batch, max_new_tokens=6, do_sample=False, eos_token_id=eos, pad_token_id=0)
    with torch.no_grad():
        stock = model.generate(**batch, max_new_tokens=6, do_sample=False, eos_token_id=eos, pad_token_id=0)
    assert torch.equal(ours.sequences, stock[:, batch["input_ids"].shape[1]:])
    assert ours.sequences[1, 2] == eos and (ours.sequences[1, 3:] == 0).all()
    ours = generate(model, batch, max_new_tokens=6, min_new_tokens=5, do_sample=False, eos_token_id=eos,
                    pad_token_id=0, output_logits=True)
    with torch.no_grad():
        stock = model.generate(**batch, max_new_tokens=6, min_new_tokens=5, do_sample=False, eos_token_id=eos,
                               pad_token_id=0, output_logits=True, return_dict_in_generate=True)
    assert torch.equal(ours.sequences, stock.sequences[:, batch["input_ids"].shape[1]:])
    assert (ours.sequences[:, :4] != eos).all()
    for got, want in zip(ours.logits, stock.logits):  # raw logits, before EOS is held back
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_stop_strings_on_the_loop_match_transformers(tokenizer):
    model = segmask.enable(tiny_model("llama", "sdpa", vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                                      eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id))
    batch = left_padded([([100 + i for i in range(8)], [0] * 4 + [-1] * 4), ([300, 301, 302], [0, 0, -1])])
    free = generate(model, batch, max_new_tokens=8, do_sample=False, tokenizer=tokenizer)
    stop = tokenizer.decode(free.sequences[0, 2:4])[1:3]  # a piece of row 0's third and fourth tokens
    ours = generate(model, batch, max_new_tokens=8, do_sample=False, tokenizer=tokenizer, stop_strings=[stop])
    with torch.no_grad():
        stock = model.generate(**batch, max_new_tokens=8, do_sample=False, tokenizer=tokenizer, stop_strings=[stop])
    assert torch.equal(ours.sequences, stock[:, batch["input_ids"].shape[1]:])
    assert stop in tokenizer.decode(ours.sequences[0])


def test_without_max_new_tokens_the_loop_uses_transformers_default_length():
    """No max_new_tokens or max_length anywhere: the loop stops where transformers' generate does (20 new tokens);
    max_length counts the prompt."""
    model = tiny()
    model.generation_config.max_length = None
    batch = left_padded(ROWS[:1])
    ours = generate(model, batch, do_sample=False, eos_token_id=None)
    with torch.no_grad():
        stock = model.generate(**{k: batch[k] for k in ("input_ids", "attention_mask")}, do_sample=False,
                               eos_token_id=None)
    assert ours.sequences.shape[1] == stock.shape[1] - batch["input_ids"].shape[1] == 20
    ours = generate(model, batch, do_sample=False, eos_token_id=None, max_length=10)
    assert ours.sequences.shape[1] == 10 - len(ROWS[0][0])
