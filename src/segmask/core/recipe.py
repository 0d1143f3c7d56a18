"""The recipe vocabulary in one place: masks, prompt forms, the default model names, and what an adapter folder says
about the mask and prompt form it was trained with.

    >>> recipe = resolve_adapter("runs/mas/adapter")            # reads its segmask.json: {"mask": "mas", ...}
    >>> recipe.mask, recipe.prompt_form, recipe.base_model
    ('mas', 'commonsense', 'smollm2-135m-instruct')
    >>> recipe.choose(mask="causal").mask                       # chosen again from what was read, no second read
    'causal'
    >>> resolve_adapter(None).mask                              # no adapter: the defaults
    'mas'

An adapter folder written by ``segmask.train.lora.save_adapter`` holds ``segmask.json`` next to the PEFT files.
``load_adapter_config`` is the only reader of that file; ``resolve_adapter`` reads it once per load and the
``Recipe`` it returns travels down (``segmask.hf.models.load_model(..., recipe=)``) instead of being read again.
``choose_mask`` is the one policy of when MAS is on, used by the CLI, ``segmask serve``, ``segmask eval``, the lm-eval
adapter, ``segmask.train.lora.load_adapter`` and the vLLM plugin.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
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
    adapter's training settings (``recipe`` in its segmask.json; empty without an adapter). ``config`` is the
    adapter's segmask.json as read (``{}`` without one) and ``folder`` the adapter folder (None: no adapter)."""

    mask: str
    prompt_form: str
    base_model: str | None = None
    training: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict, repr=False)
    folder: str | None = None

    @property
    def mas(self) -> bool:
        """True when the chosen mask is MAS (``enable`` the model)."""
        return self.mask == "mas"

    @property
    def init_adapter(self) -> str | None:
        """The adapter this one was trained on top of (``recipe.init_adapter``, merged first by loaders), or None;
        ``ValueError`` naming the file when it is not a folder path."""
        init = self.training.get("init_adapter")
        if init and not isinstance(init, str):
            raise ValueError(f"{Path(self.folder or '.') / CONFIG_NAME}: recipe.init_adapter must be a folder path, "
                             f"got {init!r:.60}")
        return init or None

    def choose(self, mask: str | None = None, prompt_form: str | None = None, *, default_mask: str = "mas") -> Recipe:
        """This adapter's recipe with another choice of mask and prompt form (``resolve_adapter``'s rules), from
        the segmask.json already read."""
        return resolve_adapter(self.folder, mask, prompt_form, default_mask=default_mask, config=self.config)


def shown(value: Any) -> str:
    """``repr(value)`` cut to 60 characters: a bad value as an error message quotes it."""
    return f"{value!r:.60}"


def choice_error(name: str, value: Any, allowed: tuple, show: Callable[[Any], str] = shown) -> str | None:
    """``"NAME must be one of (...), got VALUE"`` when ``value`` is not one of ``allowed`` (None when it is): the one
    wording of a bad choice, for callers that report it in their own form (an HTTP 400); ``show`` writes the value."""
    return None if value in allowed else f"{name} must be one of {allowed}, got {show(value)}"


def check_choice(name: str, value: Any, allowed: tuple[str, ...], where: str = "") -> None:
    """Raise ``ValueError`` (prefixed by ``where``) unless ``value`` is one of ``allowed`` (``choice_error``)."""
    error = choice_error(name, value, allowed)
    if error:
        raise ValueError(where + error)


def choose_mask(asked: str | None, recorded: Iterable[Mapping[str, Any]] = (), default: str = "mas") -> str:
    """The prefill mask, one policy for every loader: ``asked`` when given (a flag, an argument, a switch); else
    the ``mask`` of the first of ``recorded`` (segmask.json contents, an adapter's before its model's; read lazily,
    in order) that names one; else ``default`` (``"mas"`` for segmask's own commands, ``"causal"`` where a model
    without a recipe is served as published: ``load_adapter``, the vLLM plugin)."""
    if asked:
        return asked
    for config in recorded:
        if config.get("mask"):
            return config["mask"]
    return default


def load_adapter_config(folder: str | Path) -> dict[str, Any]:
    """Read ``folder/segmask.json``: ``{"mask", "prompt_form", "base_model", ...}``; the only reader of that file.

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


def resolve_adapter(folder: str | Path | None, mask: str | None = None, prompt_form: str | None = None, *,
                    default_mask: str = "mas", config: Mapping[str, Any] | None = None) -> Recipe:
    """The mask and prompt form to use with the adapter in ``folder`` (None: no adapter).

    ``mask`` and ``prompt_form`` win when given; else the adapter's ``segmask.json`` decides; else ``default_mask``
    (``choose_mask``) and ``"commonsense"``. ``base_model`` is the adapter's recorded base model (None without one).
    ``config``: the folder's segmask.json as already read (``Recipe.config``), so it is not read again.
    """
    if config is None:
        config = load_adapter_config(folder) if folder else {}
    return Recipe(mask=choose_mask(mask, [config], default_mask),
                  prompt_form=prompt_form or config.get("prompt_form") or "commonsense",
                  base_model=config.get("base_model"), training=dict(config.get("recipe") or {}),
                  config=dict(config), folder=str(folder) if folder else None)
