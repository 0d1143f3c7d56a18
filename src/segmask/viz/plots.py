"""Figures of MAS masks and of a model's attention under MAS vs causal prefill (matplotlib, for docs and
``segmask show --png``).

    >>> maps = attention_maps(model, batch, layers=[0, -1])                  # [2, T, T], heads averaged, eager model
    >>> figure = mask_and_attention_figure(tokenizer, batch, {"MAS": maps, "causal": causal_maps}, layers=[0, -1])
    >>> figure.savefig("attention.png")

Shapes in ``segmask.core``'s notation (L: the selected layers). Rows of every picture are queries, columns keys.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..core.masks import segment_mask
from ..core.runs import CAUSAL, segment_runs


def select_layers(spec: str | Sequence[int] | None, n_layers: int) -> list[int]:
    """Layer indices from ``"all"``/None, a list, or a comma string like ``"0,5,-1"`` (negative counts from the end).

    Raises ``ValueError`` naming the layer that does not exist.
    """
    if spec is None or spec == "all":
        return list(range(n_layers))
    items = [s for s in spec.split(",") if s.strip()] if isinstance(spec, str) else list(spec)
    layers = []
    for item in items:
        try:
            idx = int(item)
        except ValueError:
            raise ValueError(f"layer {item!r} is not an integer (use e.g. --layers 0,5,-1 or all)") from None
        if not -n_layers <= idx < n_layers:
            raise ValueError(f"layer {idx} does not exist: the model has {n_layers} layers")
        layers.append(idx % n_layers)
    if not layers:
        raise ValueError("no layers selected")
    return layers


@torch.no_grad()
def attention_maps(model: Any, batch: Mapping[str, torch.Tensor], layers: Sequence[int] | None = None,
                   mas: bool = True) -> torch.Tensor:
    """Attention probabilities of sample 0 of ``batch``, averaged over heads: [L, T, T] float32 on the CPU.

    Args:
        model: a causal LM loaded with ``attn_implementation="eager"`` (the only backend that returns attention
            probabilities); with ``mas`` it must be ``segmask.enable``d.
        batch: ``input_ids``, ``attention_mask``, ``segment_ids`` [1, T] without padding (``encode_chat`` etc.).
        layers: layer indices (default all).
        mas: prefill with ``segment_ids`` (MAS) or causally.
    """
    impl = getattr(model.config, "_attn_implementation", None)
    if impl != "eager":
        raise ValueError(f"attention maps need attn_implementation='eager', the model uses {impl!r}")
    if batch["input_ids"].shape[0] != 1 or not bool(batch["attention_mask"].all()):
        raise ValueError("attention maps take one sample without padding")
    device = next(model.parameters()).device
    extra = {"segment_ids": batch["segment_ids"].to(device)} if mas else {}
    out = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device),
                output_attentions=True, **extra)
    chosen = select_layers(list(layers) if layers is not None else None, len(out.attentions))
    return torch.stack([out.attentions[i][0].float().mean(0).cpu() for i in chosen])


def segment_edges(segment_ids: torch.Tensor) -> list[int]:
    """Positions where a new segment run starts in ``segment_ids`` [T] (excluding 0)."""
    return [run.start for run in segment_runs(segment_ids)[1:]]


def _panel(ax, image: torch.Tensor, segment_ids: torch.Tensor, title: str, cmap: str, norm: Any = None) -> Any:
    shown = ax.imshow(image.numpy(), cmap=cmap, norm=norm, interpolation="nearest")
    for edge in segment_edges(segment_ids):
        ax.axhline(edge - 0.5, color="tab:red", lw=0.6)
        ax.axvline(edge - 0.5, color="tab:red", lw=0.6)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("key", fontsize=8)
    ax.set_ylabel("query", fontsize=8)
    ax.tick_params(labelsize=6)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # token positions: whole numbers only
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    return shown


def _mask_legend(fig: Any) -> None:
    """The key of the mask panels: black = may attend, white = masked, red lines = segment boundaries."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [Patch(facecolor="black", edgecolor="grey", label="may attend"),
               Patch(facecolor="white", edgecolor="grey", label="masked"),
               Line2D([], [], color="tab:red", lw=1.2, label="segment boundary")]
    fig.legend(handles=handles, loc="outside lower center", ncols=3, fontsize=8, frameon=False)


def mask_and_attention_figure(tokenizer: Any, batch: Mapping[str, torch.Tensor],
                              maps: Mapping[str, torch.Tensor] | None = None, layers: Sequence[int] = ()) -> Any:
    """A figure: one row per mode (``"MAS"``, ``"causal"``), its mask first, then its attention maps per layer.

    Args:
        batch: one unpadded sample (``input_ids``, ``segment_ids`` [1, T]).
        maps: {mode: [L, T, T]} from ``attention_maps``, or None for the masks alone.
        layers: the layer index of each of the L maps (titles).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import PowerNorm

    segs = batch["segment_ids"][0]
    masks = {"MAS": segment_mask(segs[None])[0, 0], "causal": segment_mask(torch.full_like(segs, CAUSAL)[None])[0, 0]}
    modes = list(maps) if maps else list(masks)
    n_cols = 1 + (len(layers) if maps else 0)
    n_rows = len(modes) if maps else 1
    if not maps:
        n_cols, modes = 2, ["MAS", "causal"]
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(2.8 * n_cols + 0.6, 2.8 * n_rows + 0.4), squeeze=False,
                             layout="constrained")
    for r, mode in enumerate(modes):
        if maps:
            _panel(axes[r][0], masks[mode].float(), segs, f"{mode} mask", "Greys")
            for c, layer in enumerate(layers, start=1):
                shown = _panel(axes[r][c], maps[mode][c - 1], segs, f"{mode} attention, layer {layer}", "viridis",
                               PowerNorm(0.4, vmin=0.0, vmax=1.0))
            fig.colorbar(shown, ax=list(axes[r]), shrink=0.8, label="attention (heads averaged)")
        else:
            for c, name in enumerate(modes):
                _panel(axes[0][c], masks[name].float(), segs, f"{name} mask", "Greys")
    _mask_legend(fig)
    n_seg = int(segs.max()) + 1
    fig.suptitle(f"{segs.numel()} tokens, {n_seg} segment{'s' * (n_seg != 1)} (rows: queries, columns: keys)",
                 fontsize=10)
    return fig
