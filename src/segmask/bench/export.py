"""Keeping a study's trained adapter in the repository: float16 weights, no machine-specific paths.

A training run folder lives on the machine that made it; ``export_adapter`` copies its ``adapter/`` to a committed
folder with the weights in float16 (half the bytes; cast back to the model's dtype on load), the PEFT config naming
the base model rather than a local path, and every path in ``segmask.json`` (the recipe's data files and output
folder) rewritten by ``paths`` (e.g. the data folder to ``$DATA/``), so the copy loads anywhere and says how it was
made.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..core.recipe import CONFIG_NAME, load_adapter_config


def export_adapter(src: str | Path, dst: str | Path, *, paths: dict[str, str] | None = None,
                   extra: dict[str, Any] | None = None) -> Path:
    """Copy the adapter folder ``src`` to ``dst`` in float16.

    Args:
        paths: {local folder: replacement prefix} applied to the recipe's paths (``data``, ``output_dir``), the
            longest folder first: ``{data_dir: "$DATA/"}`` makes ``data_dir/boolq/train.json`` ``$DATA/boolq/
            train.json``; ``{repo: ""}`` makes paths relative to ``repo``.
        extra: more keys for the copy's ``segmask.json`` (e.g. the command that made it, the study's settings).
    """
    import torch
    from safetensors.torch import load_file, save_file

    src, dst = Path(src), Path(dst)
    config = load_adapter_config(src)
    if not config:
        raise ValueError(f"{src} has no {CONFIG_NAME}: not a segmask adapter folder")
    dst.mkdir(parents=True, exist_ok=True)
    peft = json.loads((src / "adapter_config.json").read_text())
    if config.get("base_model"):
        peft["base_model_name_or_path"] = config["base_model"]  # a name, not this machine's path
    (dst / "adapter_config.json").write_text(json.dumps(peft, indent=2) + "\n")
    weights = {k: v.to(torch.float16).contiguous() for k, v in load_file(src / "adapter_model.safetensors").items()}
    save_file(weights, dst / "adapter_model.safetensors", metadata={"format": "pt"})

    def rel(path: str) -> str:
        full = str(Path(path).resolve())
        for prefix, to in sorted((paths or {}).items(), key=lambda kv: -len(kv[0])):
            prefix = str(Path(prefix).resolve())
            if full == prefix:
                return to.rstrip("/") or "."
            if full.startswith(prefix + "/"):
                return to + full[len(prefix) + 1:]
        return path

    recipe = config.get("recipe") or {}
    if recipe:
        recipe["data"] = [rel(d) for d in recipe.get("data", [])]
        if "output_dir" in recipe:
            recipe["output_dir"] = rel(recipe["output_dir"])
    config.update(saved_dtype="float16", **(extra or {}))
    (dst / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    return dst
