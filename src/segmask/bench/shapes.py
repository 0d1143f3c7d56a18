"""Random-init models of real shapes and chat-shaped segment ids, for speed and memory measurements without weights.

    >>> sizes, ids = chat_segments(16, tail=4)
    >>> sizes, ids.tolist()[0][:6], ids.tolist()[0][-4:]
    ([4, 8], [0, 0, 0, 0, 1, 1], [-1, -1, -1, -1])
"""

from __future__ import annotations

import torch

SMOLLM2_135M = dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                    num_key_value_heads=3, head_dim=64, vocab_size=49152, max_position_embeddings=8192,
                    tie_word_embeddings=True, rope_theta=100000.0, rms_norm_eps=1e-5)
"""SmolLM2-135M-Instruct's Llama config."""


def smollm2_shaped(layers: int = 30, attn: str = "sdpa", seed: int = 0) -> torch.nn.Module:
    """Random-init Llama with SmolLM2-135M-Instruct's shapes (``layers`` decoder layers), float32, eval mode."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(**{**SMOLLM2_135M, "num_hidden_layers": layers}, attn_implementation=attn)
    return LlamaForCausalLM(config).eval()


def chat_segments(length: int, tail: int, user_segments: int = 1) -> tuple[list[int], torch.Tensor]:
    """Chat-shaped segment ids [1, length]: a system segment of a quarter of the tokens, the user part (split into
    ``user_segments`` equal segments, e.g. retrieved passages), then ``tail`` causal tokens.

    Returns:
        (segment lengths, segment_ids).
    """
    system = length // 4
    user = length - system - tail
    if user < user_segments or tail < 0:
        raise ValueError(f"length {length} with tail {tail} leaves no room for {user_segments} user segment(s)")
    sizes = [system] + [user // user_segments + (i < user % user_segments) for i in range(user_segments)]
    ids = [s for s, n in enumerate(sizes) for _ in range(n)] + [-1] * tail
    return sizes, torch.tensor([ids])
