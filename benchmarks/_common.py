"""Shared pieces of the benchmark scripts: the SmolLM2-135M-shaped model, chat-shaped prompts, the FLOP model,
interleaved timing, and writing a marked section of docs/PERFORMANCE.md.

Timing on a shared CPU: every route of one repetition runs back to back, in a rotating order, and each route's time
is divided by the causal time of the same repetition. Ratios use process CPU time with one torch thread (wall time
of a one-thread process inflates with every other process on the machine; its CPU time much less so), and wall
ratios are reported next to them.
"""

from __future__ import annotations

import platform
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

DOCS = Path(__file__).resolve().parents[1] / "docs" / "PERFORMANCE.md"

SMOLLM2_135M = dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                    num_key_value_heads=3, head_dim=64, vocab_size=49152, max_position_embeddings=8192,
                    tie_word_embeddings=True, rope_theta=100000.0, rms_norm_eps=1e-5)


def smollm2_shaped(layers: int = 30, attn: str = "sdpa", seed: int = 0) -> torch.nn.Module:
    """Random-init Llama with SmolLM2-135M-Instruct's shapes (``layers`` decoder layers), float32, eval mode."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(**{**SMOLLM2_135M, "num_hidden_layers": layers}, attn_implementation=attn)
    return LlamaForCausalLM(config).eval()


def chat_segments(length: int, tail: int, user_segments: int = 1) -> tuple[list[int], torch.Tensor]:
    """Chat-shaped segment ids [1, length]: system segment = a quarter, the user part (split into
    ``user_segments`` equal segments, e.g. retrieved passages), then ``tail`` causal tokens.

    Returns (segment lengths, segment_ids).
    """
    system = length // 4
    user = length - system - tail
    sizes = [system] + [user // user_segments + (i < user % user_segments) for i in range(user_segments)]
    ids = [s for s, n in enumerate(sizes) for _ in range(n)] + [-1] * tail
    return sizes, torch.tensor([ids])


def linear_flops(config, tokens: int, lm_head_tokens: int) -> float:
    """FLOPs of the projections and MLPs of ``tokens`` tokens plus the LM head on ``lm_head_tokens``."""
    h, i = config.hidden_size, config.intermediate_size
    kv = config.num_key_value_heads * config.head_dim
    q = config.num_attention_heads * config.head_dim
    per_layer = h * q + 2 * h * kv + q * h + 3 * h * i
    return 2.0 * (per_layer * config.num_hidden_layers * tokens + h * config.vocab_size * lm_head_tokens)


def attention_flops(config, pairs: float) -> float:
    """FLOPs of QK^T and PV over ``pairs`` query-key pairs in every layer and head."""
    return 4.0 * config.num_attention_heads * config.head_dim * config.num_hidden_layers * pairs


def causal_pairs(length: int) -> int:
    return length * (length + 1) // 2


def mas_pairs(length: int, segment_lengths: list[int]) -> int:
    """The MAS floor: causal pairs plus the strict upper triangle inside each segment."""
    return causal_pairs(length) + sum(n * (n - 1) // 2 for n in segment_lengths)


def interleaved(fns: dict[str, Callable[[], object]], reps: int, base: str) -> dict[str, dict[str, list[float]]]:
    """Run every fn ``reps`` times, rotating the order each repetition.

    Returns {name: {"cpu": [s], "wall": [s], "cpu_ratio": [time / base time of the same rep], "wall_ratio": [...]}}.
    """
    names = list(fns)
    out = {n: {"cpu": [], "wall": []} for n in names}
    for r in range(reps):
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            c, w = time.process_time(), time.perf_counter()
            fns[n]()
            out[n]["cpu"].append(time.process_time() - c)
            out[n]["wall"].append(time.perf_counter() - w)
    for n in names:
        for kind in ("cpu", "wall"):
            out[n][f"{kind}_ratio"] = [t / b for t, b in zip(out[n][kind], out[base][kind])]
    return out


def mmm(values: list[float], fmt: str = "{:.3f}") -> str:
    """'min / median / max' of ``values``."""
    return " / ".join(fmt.format(v) for v in (min(values), statistics.median(values), max(values)))


def machine() -> str:
    """One line about where the numbers come from."""
    import transformers

    return (f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch thread(s) "
            f"(os.cpu_count()={__import__('os').cpu_count()}), torch {torch.__version__}, "
            f"transformers {transformers.__version__}, Python {platform.python_version()}")


def write_section(name: str, body: str, path: Path = DOCS) -> None:
    """Replace the text between ``<!-- name:start -->`` and ``<!-- name:end -->`` in ``path`` with ``body``."""
    text = path.read_text()
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if start not in text or end not in text:
        raise ValueError(f"{path} has no {start} ... {end} section")
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    path.write_text(pattern.sub(lambda _: f"{start}\n{body.strip()}\n{end}", text))
