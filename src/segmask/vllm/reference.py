"""The independent reference the plugin is checked against: greedy decoding by full recomputation in transformers
under an explicit additive 4-D MAS mask built by ``segmask.segment_mask``. No KV cache, no segmask hook, no vLLM.

    >>> model, tokenizer = segmask.load_model("smollm2-135m-instruct")
    >>> tokens, logprobs = reference_greedy(model, prompt_ids, [(0, 21), (21, 28)], steps=16)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from segmask import segment_mask

from .segments import Range, segment_ids_from_ranges


def reference_greedy(model: torch.nn.Module, prompt: Sequence[int], ranges: Sequence[Range],
                     steps: int) -> tuple[list[int], list[float]]:
    """Greedy tokens [steps] and their log-probabilities [steps] for one prompt (``prompt`` [T] token ids, segments
    ``ranges``); generated tokens are causal. Costs ``steps`` full forwards."""
    segments = segment_ids_from_ranges(ranges, len(prompt))
    ids, logprobs = list(prompt), []
    dtype = next(model.parameters()).dtype
    for _ in range(steps):
        allowed = segment_mask(torch.tensor([segments + [-1] * (len(ids) - len(prompt))]))
        additive = torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids]), attention_mask=additive).logits[0, -1].float()
        ids.append(int(logits.argmax()))
        logprobs.append(float(logits.log_softmax(-1).max()))
    return ids[len(prompt):], logprobs
