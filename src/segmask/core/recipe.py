"""The recipe vocabulary in one place: masks, prompt forms, the default model names, and what an adapter folder says
about the mask and prompt form it was trained with.

    >>> resolve_adapter("runs/mas/adapter")                     # its segmask.json: {"mask": "mas", ...}
    Recipe(mask='mas', prompt_form='commonsense', base_model='smollm2-135m-instruct', training={...})
    >>> resolve_adapter(None, mask="causal").mask               # no adapter: the given values, else the defaults
    'causal'

An adapter folder written by ``segmask.train.lora.save_adapter`` holds ``segmask.json`` next to the PEFT files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .files import read_json

VERSION = "0.1.0"
"""segmask's version (``segmask.__version__``), recorded in every ``segmask.json``."""
MASKS = ("mas", "causal")
"""Prefill masks a model is trained and served with."""
PROMPT_FORMS = ("commonsense", "chat")
"""How an LLM-Adapters record becomes a prompt: the paper's template or the model's chat template."""
EVAL_MASKS = (*MASKS, "causal-repeat")
"""Prefill masks of ``segmask eval``: ``causal-repeat`` reads the question part twice, causally (a baseline)."""
CHOICE_PROMPT_FORMS = (*PROMPT_FORMS, "qa")
"""Prompt forms of the choice protocol: ``qa`` is lm-eval's ``"Question: ...\nAnswer:"``, which lists no options."""
BASE_MODEL = "smollm2-135m-instruct"
"""The embedded SmolLM2-135M-Instruct as published (causally trained)."""
MAS_MODEL = "smollm2-135m-mas"
"""The same model with the shipped MAS chat adapter merged in."""
DEFAULT_MODEL = MAS_MODEL
"""What commands load by default (MAS prefill); ``BASE_MODEL`` with causal prefill and as the base for training."""
GEMMA3_MODEL = "gemma3-270m"
"""The embedded Gemma-3-270M base model (``make gemma``)."""
CONFIG_NAME = "segmask.json"
"""The file in an adapter folder that records its mask, prompt form, base model and training recipe."""


@dataclass(frozen=True)
class Recipe:
    """How to load and prompt a model: its mask, prompt form, base model (None: the caller's default) and the
    adapter's training settings (``recipe`` in its segmask.json; empty without an adapter)."""

    mask: str
    prompt_form: str
    base_model: str | None = None
    training: dict[str, Any] = field(default_factory=dict)


def check_choice(name: str, value: Any, allowed: tuple[str, ...], where: str = "") -> None:
    """Raise ``ValueError`` (prefixed by ``where``) unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        raise ValueError(f"{where}{name} must be one of {allowed}, got {value!r}")


def load_adapter_config(folder: str | Path) -> dict[str, Any]:
    """Read ``folder/segmask.json``: ``{"mask", "prompt_form", "base_model", ...}``.

    An adapter without the file (a plain PEFT adapter) gives ``{}``: the caller keeps its own defaults.
    Raises ``ValueError`` naming the file when the folder does not exist, the file is not a JSON object, names an
    unknown mask or prompt form, or holds a ``recipe`` that is not an object.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"adapter folder {folder} does not exist")
    path = folder / CONFIG_NAME
    if not path.exists():
        return {}
    config = read_json(path, expect=dict)
    if not isinstance(config.get("recipe", {}) or {}, dict):
        raise ValueError(f"{path}: 'recipe' must be an object, got {config['recipe']!r:.60}")
    if config.get("base_model") is not None and not isinstance(config["base_model"], str):
        raise ValueError(f"{path}: 'base_model' must be a string, got {config['base_model']!r:.60}")
    check_choice("mask", config.get("mask"), EVAL_MASKS, f"{path}: ")
    check_choice("prompt_form", config.get("prompt_form"), PROMPT_FORMS, f"{path}: ")
    return config


def resolve_adapter(folder: str | Path | None, mask: str | None = None, prompt_form: str | None = None) -> Recipe:
    """The mask and prompt form to use with the adapter in ``folder`` (None: no adapter).

    ``mask`` and ``prompt_form`` win when given; else the adapter's ``segmask.json`` decides; else ``"mas"`` and
    ``"commonsense"``. ``base_model`` is the adapter's recorded base model (None without one).
    """
    config = load_adapter_config(folder) if folder else {}
    return Recipe(mask=mask or config.get("mask") or "mas",
                  prompt_form=prompt_form or config.get("prompt_form") or "commonsense",
                  base_model=config.get("base_model"), training=dict(config.get("recipe") or {}))
