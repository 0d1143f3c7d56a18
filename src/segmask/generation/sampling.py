"""Choosing the next token in the decode loop, and the log-probabilities OpenAI clients ask for.

    >>> gen = make_generator(seed=1, device="cpu")
    >>> token = pick_token(logits, temperature=0.7, top_p=0.9, generator=gen, top_k=50)   # logits [V] float32
    >>> logprob, top = token_logprobs(logits, token, k=5)                         # -1.2, [(id, logprob), ...]

Temperatures below ``MIN_TEMPERATURE`` are greedy, as in vLLM: dividing logits by them overflows float32 (1e-40
turns every probability into NaN) or leaves all the mass on the argmax anyway. Log-probabilities are those of the
model's own distribution (``log_softmax`` of the logits, before temperature and top-p).
"""

from __future__ import annotations

import torch

MIN_TEMPERATURE = 1e-5
"""Temperatures below this are greedy decoding."""
MAX_SEED = 2**64
"""Seeds are integers in [0, MAX_SEED), what ``torch.Generator.manual_seed`` takes."""
MAX_TOP_LOGPROBS = 20
"""Most alternatives per token a request may ask for (OpenAI's limit)."""


def make_generator(seed: int | None, device: torch.device | str) -> torch.Generator | None:
    """A generator seeded with ``seed`` on ``device``, or None (torch's global generator) when ``seed`` is None.

    Raises ``ValueError`` for a seed outside [0, 2**64).
    """
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < MAX_SEED:
        raise ValueError(f"seed must be an integer in [0, 2**64), got {seed!r:.60}")
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


def pick_token(logits: torch.Tensor, temperature: float, top_p: float = 1.0,
               generator: torch.Generator | None = None, top_k: int = 0) -> int:
    """Next token from ``logits`` [V]: argmax when ``temperature`` < ``MIN_TEMPERATURE``, else sampling with
    ``temperature``, then the ``top_k`` most likely tokens (0: all), then top-p (nucleus), in transformers' order.
    Raises ``ValueError`` when the logits hold NaN."""
    if torch.isnan(logits).any():
        raise ValueError("the model produced NaN logits")
    if temperature < MIN_TEMPERATURE:
        return int(logits.argmax())
    scaled = logits.float() / temperature
    if 0 < top_k < scaled.numel():
        scaled = scaled.masked_fill(scaled < scaled.topk(top_k).values[-1], float("-inf"))
    probs = torch.softmax(scaled, dim=-1)
    if top_p < 1.0:
        sorted_p, order = probs.sort(descending=True)
        keep = sorted_p.cumsum(-1) - sorted_p < top_p  # smallest prefix whose mass reaches top_p
        keep[0] = True  # the most likely token always stays (a denormal top_p rounds to 0 in float32)
        probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_p[keep])
    return int(torch.multinomial(probs, 1, generator=generator))


def token_logprobs(logits: torch.Tensor, token: int, k: int = 0) -> tuple[float, list[tuple[int, float]]]:
    """Log-probability of ``token`` under ``logits`` [V] and the ``k`` most likely tokens with theirs, best first."""
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    top = logprobs.topk(k) if k > 0 else None
    alternatives = [] if top is None else list(zip(top.indices.tolist(), top.values.tolist()))
    return float(logprobs[token]), alternatives
