"""PEFT glue: LoRA settings with the paper's defaults, and adapters that remember their mask and prompt form.

An adapter folder written by ``save_adapter`` is a standard PEFT adapter plus ``segmask.json``::

    {"mask": "mas", "prompt_form": "commonsense", "base_model": "smollm2-135m-instruct", ...}

so whoever loads it (``segmask eval``, ``chat``, ``generate``, ``serve``) applies the mask it was trained with:

    >>> model = add_lora(model, LoraSettings())                  # r=32, alpha=64, dropout 0.05, q_proj + v_proj
    >>> save_adapter(model, "adapters/mas", mask="mas", prompt_form="commonsense", base_model="smollm2-135m-instruct")
    >>> load_adapter_config("adapters/mas")["mask"]              # segmask.core.recipe
    'mas'
    >>> model, tokenizer, cfg = load_adapter("adapters/mas")     # base model + adapter, MAS enabled when cfg says so
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..core.recipe import CONFIG_NAME, EVAL_MASKS, PROMPT_FORMS, VERSION, check_choice, resolve_adapter

ADAPTER_WEIGHTS = "adapter_model.safetensors"


@dataclass
class LoraSettings:
    """LoRA hyper-parameters (defaults: the MAS paper's recipe)."""

    r: int = field(default=32, metadata={"help": "LoRA rank"})
    alpha: int = field(default=64, metadata={"help": "LoRA alpha (scale = alpha / r)"})
    dropout: float = field(default=0.05, metadata={"help": "dropout on the LoRA input"})
    target_modules: tuple[str, ...] = field(default=("q_proj", "v_proj"), metadata={"help": "module names to adapt"})

    def __post_init__(self):
        if not isinstance(self.r, int) or self.r < 1:
            raise ValueError(f"LoRA rank r must be a positive int, got {self.r!r}")
        if self.alpha <= 0:
            raise ValueError(f"LoRA alpha must be positive, got {self.alpha!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"LoRA dropout must be in [0, 1), got {self.dropout!r}")
        if isinstance(self.target_modules, str):
            self.target_modules = tuple(m.strip() for m in self.target_modules.split(",") if m.strip())
        self.target_modules = tuple(self.target_modules)
        if not self.target_modules:
            raise ValueError("LoRA target_modules is empty")

    def to_peft(self):
        """The equivalent ``peft.LoraConfig`` for a causal LM."""
        from peft import LoraConfig

        return LoraConfig(r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout,
                          target_modules=list(self.target_modules), bias="none", task_type="CAUSAL_LM")


def add_lora(model: torch.nn.Module, settings: LoraSettings | None = None) -> torch.nn.Module:
    """Wrap ``model`` in a PeftModel with fresh LoRA weights (only those are trainable)."""
    from peft import get_peft_model

    settings = settings or LoraSettings()
    missing = [m for m in settings.target_modules if not any(n.endswith(m) for n, _ in model.named_modules())]
    if missing:
        raise ValueError(f"LoRA target modules {missing} not found in {type(model).__name__}")
    return get_peft_model(model, settings.to_peft())


def segmask_config(*, mask: str, prompt_form: str, base_model: str | None, **extra: Any) -> dict[str, Any]:
    """The ``segmask.json`` content, validated."""
    check_choice("mask", mask, EVAL_MASKS)
    check_choice("prompt_form", prompt_form, PROMPT_FORMS)
    return {"mask": mask, "prompt_form": prompt_form, "base_model": base_model, "segmask_version": VERSION,
            **extra}


def write_segmask_config(folder: str | Path, config: dict[str, Any]) -> None:
    """Write ``config`` as ``folder/segmask.json``."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    (Path(folder) / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")


def save_adapter(
    model: torch.nn.Module,
    folder: str | Path,
    *,
    mask: str,
    prompt_form: str,
    base_model: str | None = None,
    dtype: str | torch.dtype | None = None,
    **extra: Any,
) -> Path:
    """Save the PEFT adapter of ``model`` and ``segmask.json`` into ``folder``; returns the folder.

    Args:
        dtype: store the adapter weights in this dtype (e.g. ``"float16"`` halves the file); None keeps them as
            trained. They are cast back to the model's dtype on load.
        extra: more keys for ``segmask.json`` (e.g. the training recipe).
    """
    config = segmask_config(mask=mask, prompt_form=prompt_form, base_model=base_model, **extra)
    folder = Path(folder)
    model.save_pretrained(folder)
    if dtype is not None:
        from safetensors.torch import load_file, save_file

        target = getattr(torch, dtype) if isinstance(dtype, str) else dtype
        weights = folder / ADAPTER_WEIGHTS
        tensors = {k: v.to(target).contiguous() for k, v in load_file(weights).items()}
        save_file(tensors, weights, metadata={"format": "pt"})
        config["saved_dtype"] = str(target).removeprefix("torch.")
    write_segmask_config(folder, config)
    return folder


def load_adapter(
    folder: str | Path,
    *,
    base_model: str | None = None,
    dtype: str = "float32",
    attn_implementation: str = "sdpa",
    device: str = "cpu",
) -> tuple[torch.nn.Module, Any, dict[str, Any]]:
    """Load base model + adapter; enable MAS when the adapter was trained with it. Returns (model, tokenizer, cfg).

    ``base_model`` defaults to the one recorded in ``segmask.json`` (else the PEFT config's base model path).
    An adapter without a recorded mask (a plain PEFT adapter) is loaded causal, as published
    (``choose_mask``'s ``default="causal"``); ``cfg`` is its segmask.json (``{}`` without one), read once.
    """
    from ..hf.hook import enable
    from ..hf.models import load_model

    recipe = resolve_adapter(folder, default_mask="causal")
    base = base_model or recipe.base_model or _peft_base(folder)
    model, tokenizer = load_model(base, dtype=dtype, attn_implementation=attn_implementation, device=device,
                                  adapter=str(folder), recipe=recipe)
    if recipe.mas:
        enable(model)
    return model, tokenizer, recipe.config


def _peft_base(folder: str | Path) -> str:
    path = Path(folder) / "adapter_config.json"
    name = json.loads(path.read_text()).get("base_model_name_or_path") if path.exists() else None
    if not name:
        raise ValueError(f"{folder}: no base model recorded; pass base_model")
    return name


def settings_dict(settings: LoraSettings) -> dict[str, Any]:
    """``settings`` as a JSON-ready dict (for ``segmask.json``)."""
    d = asdict(settings)
    d["target_modules"] = list(d["target_modules"])
    return d
