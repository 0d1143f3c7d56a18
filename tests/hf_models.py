"""Tiny random causal LMs of each supported family, built locally from configs (no downloads; ``tiny_model``, the one
factory of the suite), and an independent
reference forward: the model run on the eager backend with dense additive 4D masks written from the MAS
definition in plain Python loops."""

from __future__ import annotations

import importlib
from typing import Any

import torch

VOCAB = 97
SMALL = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=64)

# family -> (config class, model class, config kwargs, {layer kind: sliding window or None})
FAMILIES = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", {}, {"full_attention": None}),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM",
              dict(use_sliding_window=True, sliding_window=4, max_window_layers=1),
              {"full_attention": None, "sliding_attention": 4}),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", dict(head_dim=8), {"full_attention": None}),
    "mistral": ("MistralConfig", "MistralForCausalLM", dict(sliding_window=5), {"sliding_attention": 5}),
    "phi3": ("Phi3Config", "Phi3ForCausalLM", dict(pad_token_id=0, bos_token_id=1, eos_token_id=2),
             {"full_attention": None}),
    "gemma3": ("Gemma3TextConfig", "Gemma3ForCausalLM",
               dict(head_dim=8, sliding_window=4, layer_types=["sliding_attention", "full_attention"]),
               {"full_attention": None, "sliding_attention": 4}),
    "gpt2": ("GPT2Config", "GPT2LMHeadModel", dict(n_embd=32, n_layer=2, n_head=4, n_positions=64,
                                                    bos_token_id=1, eos_token_id=2), {"full_attention": None}),
}


def tiny_model(family: str = "llama", attn: str = "sdpa", *, tokenizer: Any = None, seed: int = 0,
               **config: Any) -> torch.nn.Module:
    """The suite's one tiny-model factory (also the ``tiny_lm`` fixture): a random model of ``family`` seeded with
    ``seed``, on backend ``attn``, in eval mode.

    With ``tokenizer`` (chat tests) it takes the tokenizer's vocabulary and special ids and 512 positions; ``config``
    overrides any config field (``hidden_size=64``, ``initializer_range=0.3``, ...).
    """
    transformers = importlib.import_module("transformers")
    config_name, model_name, extra, _ = FAMILIES[family]
    kwargs = dict(SMALL, **extra)
    if tokenizer is not None:
        kwargs.update(vocab_size=len(tokenizer), max_position_embeddings=512, eos_token_id=tokenizer.eos_token_id,
                      pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id)
    kwargs.update(config)
    if family == "gpt2":
        kwargs = {k: v for k, v in kwargs.items() if k not in ("hidden_size", "intermediate_size",
                  "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "max_position_embeddings")}
    torch.manual_seed(seed)
    model = getattr(transformers, model_name)(getattr(transformers, config_name)(**kwargs))
    model.set_attn_implementation(attn)
    return model.eval()


def loop_mask(seg: list[int], real: list[int], window: int | None) -> list[list[bool]]:
    """[T][T]: query q may attend key k iff k real and (k <= q or same segment >= 0) and within the window."""
    t = len(seg)
    return [
        [bool(real[k]) and (k <= q or (seg[q] == seg[k] >= 0)) and (window is None or k > q - window)
         for k in range(t)]
        for q in range(t)
    ]


def reference_logits(model, family, input_ids, attention_mask, segment_ids, position_ids=None, full=False):
    """Logits [B, T, V] of ``model`` on the eager backend with dense additive masks built by ``loop_mask``.

    ``full=True`` replaces the MAS rule by full bidirectional attention among real tokens.
    """
    kinds = FAMILIES[family][3]
    masks = {}
    for kind, window in kinds.items():
        rows = []
        for seg, real in zip(segment_ids.tolist(), attention_mask.tolist()):
            allowed = loop_mask(seg, real, window) if not full else [[bool(r) for r in real] for _ in seg]
            rows.append([allowed])
        allowed = torch.tensor(rows, dtype=torch.bool)
        masks[kind] = torch.zeros(allowed.shape).masked_fill(~allowed, torch.finfo(torch.float32).min)
    previous = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        mask_arg = masks if len(masks) > 1 else next(iter(masks.values()))
        with torch.no_grad():
            return model(input_ids=input_ids, attention_mask=mask_arg, position_ids=position_ids).logits
    finally:
        model.set_attn_implementation(previous)


def left_padded(rows):
    """rows: list of (token ids, segment ids) -> batch dict of [B, T] tensors, left padded with causal pad."""
    width = max(len(ids) for ids, _ in rows)
    pad = lambda xs, v: [v] * (width - len(xs)) + list(xs)  # noqa: E731
    return {"input_ids": torch.tensor([pad(ids, 0) for ids, _ in rows]),
            "attention_mask": torch.tensor([pad([1] * len(ids), 0) for ids, _ in rows]),
            "segment_ids": torch.tensor([pad(segs, -1) for _, segs in rows])}
