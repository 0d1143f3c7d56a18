"""Text pictures of segments and masks, for terminals, docs and the ``show``/``demo`` commands.

    >>> print(ascii_mask(segment_mask(torch.tensor([[0, 0, 1, 1, -1]]))[0, 0]))
"""

from __future__ import annotations

from typing import Any

import torch

from ..core.runs import CAUSAL, segment_runs


def ascii_mask(mask: torch.Tensor, segment_ids: torch.Tensor | None = None, max_size: int = 64) -> str:
    """Render a [Q, K] boolean mask as rows of ``#`` (may attend) and ``.`` (masked).

    With ``segment_ids`` [K] a header row labels each column with its segment (``-`` = causal). Masks larger than
    ``max_size`` are shown by their top-left ``max_size`` corner.
    """
    mask = mask[:max_size, :max_size].bool()
    lines = []
    if segment_ids is not None:
        ids = segment_ids[: mask.shape[-1]].tolist()
        lines.append("seg    " + "".join("-" if s == CAUSAL else _digit(s) for s in ids))
    for q, row in enumerate(mask.tolist()):
        label = "-" if segment_ids is None or segment_ids[q] == CAUSAL else _digit(int(segment_ids[q]))
        lines.append(f"{q:>4} {label} " + "".join("#" if v else "." for v in row))
    return "\n".join(lines)


def _digit(s: int) -> str:
    return "0123456789abcdefghijklmnopqrstuvwxyz"[s % 36]


def describe_segments(tokenizer: Any, input_ids: torch.Tensor, segment_ids: torch.Tensor) -> str:
    """One line per segment run of one sample (``input_ids``, ``segment_ids``: [T]): its id, length and text."""
    ids, lines = input_ids.tolist(), []
    for run in segment_runs(segment_ids):
        name = "causal" if run.segment == CAUSAL else f"segment {run.segment}"
        lines.append(f"[{name:>10}] {run.end - run.start:>4} tok  {tokenizer.decode(ids[run.start:run.end])!r}")
    return "\n".join(lines)
