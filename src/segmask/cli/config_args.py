"""Command-line flags generated from config dataclasses, so each option is declared once, with its help text.

    >>> add_config_args(parser, AdaptConfig, renames={"output_dir": "out"})     # --out, --prompts, --on-policy, ...
    >>> cfg = config_from_namespace(AdaptConfig, args, renames={"output_dir": "out"})

A field ``foo_bar`` becomes ``--foo-bar``; its type comes from the annotation (int, float, str, bool, optional
forms of these, ``list[str]``), its help from ``field(metadata={"help": ...})``. Bool fields default False become
``--foo``; bool fields default True become ``--no-foo``. ``LoraSettings`` becomes ``--lora-r``, ``--lora-alpha``,
``--lora-dropout`` and ``--lora-targets``; ``bool | str`` (``resume``) takes an optional value.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

_SCALARS = {"int": int, "float": float, "str": str}
LORA_FLAGS = {"r": "lora_r", "alpha": "lora_alpha", "dropout": "lora_dropout", "target_modules": "lora_targets"}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return dataclasses.MISSING


def add_config_args(parser: argparse.ArgumentParser, cls: type, *, renames: dict[str, str] | None = None,
                    skip: tuple[str, ...] = (), positional: tuple[str, ...] = ()) -> None:
    """Add one flag per field of dataclass ``cls`` (``renames`` maps a field to another flag name)."""
    renames = renames or {}
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        kind, default, help_ = str(f.type), _default(f), f.metadata.get("help", "")
        name = renames.get(f.name, f.name)
        if kind == "LoraSettings":
            for sub in dataclasses.fields(default):
                value = _default(sub)
                shown = ",".join(value) if isinstance(value, tuple) else value
                parser.add_argument(_flag(LORA_FLAGS[sub.name]), default=shown,
                                    type=str if isinstance(value, tuple) else type(value),
                                    help=f"{sub.metadata.get('help', '')} (default {shown})")
            continue
        required = default is dataclasses.MISSING
        if f.name in positional:
            parser.add_argument(name, nargs="+" if kind.startswith("list") else None, help=help_)
        elif kind == "bool":
            if default:
                parser.add_argument(_flag("no_" + name), dest=name, action="store_false", help=f"turn off: {help_}")
            else:
                parser.add_argument(_flag(name), dest=name, action="store_true", help=help_)
        elif kind == "bool | str":
            parser.add_argument(_flag(name), dest=name, nargs="?", const=True, default=default, help=help_)
        else:
            base = kind.replace(" | None", "").strip()
            if base.startswith("list"):
                parser.add_argument(_flag(name), dest=name, nargs="+", required=required, default=None
                                    if required else default, help=help_)
                continue
            if base not in _SCALARS:
                raise TypeError(f"{cls.__name__}.{f.name}: no flag for type {kind!r}")
            suffix = "" if required or default is None else f" (default {default})"
            parser.add_argument(_flag(name), dest=name, type=_SCALARS[base], required=required,
                                default=None if required else default, help=help_ + suffix)


def config_from_namespace(cls: type, args: argparse.Namespace, *, renames: dict[str, str] | None = None,
                          **overrides: Any) -> Any:
    """Build ``cls`` from the parsed flags of ``add_config_args`` (``overrides`` win)."""
    from ..train.lora import LoraSettings

    renames = renames or {}
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if str(f.type) == "LoraSettings":
            values[f.name] = LoraSettings(**{sub: getattr(args, flag) for sub, flag in LORA_FLAGS.items()})
        elif hasattr(args, renames.get(f.name, f.name)):
            values[f.name] = getattr(args, renames.get(f.name, f.name))
    values.update(overrides)
    return cls(**values)
