"""segmask.generation.sampling against plain definitions: greedy below MIN_TEMPERATURE, seeds in [0, 2**64),
log_softmax.
CPU only, no network."""

from __future__ import annotations

import pytest
import torch

from segmask.generation.sampling import MIN_TEMPERATURE, make_generator, pick_token, token_logprobs


@pytest.mark.parametrize("temperature", [0.0, 5e-324, 1e-40, 1e-38, MIN_TEMPERATURE / 2])
def test_tiny_temperatures_are_greedy(temperature):
    logits = torch.tensor([1.0, 30.0, 29.9, -4.0])
    assert pick_token(logits, temperature, 1.0, make_generator(1, "cpu")) == 1


def test_sampling_follows_the_seed_and_top_p():
    logits = torch.tensor([2.0, 1.9, 1.8, -9.0])

    def draws(seed):
        gen = make_generator(seed, "cpu")
        return [pick_token(logits, 1.0, 1.0, gen) for _ in range(20)]

    assert draws(7) == draws(7) and len(set(draws(7))) > 1
    gen = make_generator(3, "cpu")
    assert {pick_token(logits, 1.0, 0.3, gen) for _ in range(50)} == {0}  # the top token alone holds >= 0.3
    assert {pick_token(logits, 1.0, 1.0, gen, top_k=2) for _ in range(100)} == {0, 1}  # never the third or fourth
    assert {pick_token(logits, 5.0, 1.0, gen, top_k=1) for _ in range(20)} == {0}


@pytest.mark.parametrize("seed", [-1, 2**64, 2**70, 1.0, True])
def test_seeds_outside_the_range_are_refused(seed):
    with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 2\*\*64\)"):
        make_generator(seed, "cpu")
    make_generator(2**64 - 1, "cpu")


def test_nan_logits_are_an_error():
    with pytest.raises(ValueError, match="NaN"):
        pick_token(torch.tensor([0.0, float("nan")]), 0.0)


def test_token_logprobs_equal_log_softmax():
    logits = torch.tensor([0.5, 3.0, -1.0, 2.0])
    want = torch.log_softmax(logits, -1)
    chosen, top = token_logprobs(logits, 2, k=2)
    assert chosen == pytest.approx(float(want[2]))
    assert [i for i, _ in top] == [1, 3] and [lp for _, lp in top] == pytest.approx(want[[1, 3]].tolist())
    assert token_logprobs(logits, 0)[1] == []
