"""Command-line flags generated from config dataclasses, so each option is declared once, with its help text.

    >>> add_config_args(parser, AdaptConfig, renames={"output_dir": "out"})     # --out, --prompts, --on-policy, ...
    >>> cfg = config_from_namespace(AdaptConfig, args, renames={"output_dir": "out"})

A field ``foo_bar`` becomes ``--foo-bar``; its type comes from the annotation (int, float, str, Path, bool,
optional forms of these, ``list[str]``), its help from ``field(metadata={"help": ...})`` and its allowed values from
``metadata={"choices": ...}``. Bool fields default False become ``--foo``; bool fields default True become
``--no-foo`` (help: ``metadata["off_help"]``, else "turn off: " + help). A ``list[str]`` flag takes several values
(``--data a b``), or with ``metadata={"repeat": True}`` one value per use (``--stop a --stop b``); a positional
``list[str]`` with a default may be left out. ``LoraSettings`` becomes ``--lora-r``, ``--lora-alpha``,
``--lora-dropout`` and ``--lora-targets``; ``bool | str`` (``resume``) takes an optional value. ``units`` shows a
field in another unit on the command line, e.g. ``{"batch_wait_s": ("batch_wait_ms", 1000)}`` (flag units per field
unit): ``--batch-wait-ms 10`` sets ``batch_wait_s=0.01``.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

_SCALARS = {"int": int, "float": float, "str": str, "Path": Path}
LORA_FLAGS = {"r": "lora_r", "alpha": "lora_alpha", "dropout": "lora_dropout", "target_modules": "lora_targets"}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _kind(f: dataclasses.Field) -> str:
    """The field's annotation as text, ``"int"`` or ``"str | None"`` (postponed annotations are text already)."""
    return f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return dataclasses.MISSING


def _add_lora_args(parser: argparse.ArgumentParser, settings: Any) -> None:
    for sub in dataclasses.fields(settings):
        value = _default(sub)
        shown = ",".join(value) if isinstance(value, tuple) else value
        parser.add_argument(_flag(LORA_FLAGS[sub.name]), default=shown,
                            type=str if isinstance(value, tuple) else type(value),
                            help=f"{sub.metadata.get('help', '')} (default {shown})")


def _add_field(parser: argparse.ArgumentParser, cls: type, f: dataclasses.Field, name: str, scale: float | None,
               positional: bool) -> None:
    kind, default, help_ = _kind(f), _default(f), f.metadata.get("help", "")
    required, choices = default is dataclasses.MISSING, f.metadata.get("choices")
    if positional:
        optional = kind.startswith("list") and not required
        parser.add_argument(name, nargs=("*" if optional else "+") if kind.startswith("list") else None, help=help_,
                            **({"default": default} if optional else {}))
    elif kind == "bool":
        if default:
            parser.add_argument(_flag("no_" + name), dest=name, action="store_false",
                                help=f.metadata.get("off_help", f"turn off: {help_}"))
        else:
            parser.add_argument(_flag(name), dest=name, action="store_true", help=help_)
    elif kind == "bool | str":
        parser.add_argument(_flag(name), dest=name, nargs="?", const=True, default=default, help=help_)
    else:
        base = kind.replace(" | None", "").strip()
        if base.startswith("list"):
            repeat = {"action": "append"} if f.metadata.get("repeat") else {"nargs": "+"}
            parser.add_argument(_flag(name), dest=name, required=required, default=None if required else default,
                                help=help_, **repeat)
            return
        if base not in _SCALARS:
            raise TypeError(f"{cls.__name__}.{f.name}: no flag for type {kind!r}")
        if scale is not None:
            base, default = "float", default * scale
        suffix = "" if required or default is None or default == "" else f" (default {default:g})" if scale else \
            f" (default {default})"
        parser.add_argument(_flag(name), dest=name, type=_SCALARS[base], required=required, choices=choices,
                            default=None if required else default, help=help_ + suffix)


def add_config_args(parser: argparse.ArgumentParser, cls: type, *, renames: dict[str, str] | None = None,
                    skip: tuple[str, ...] = (), positional: tuple[str, ...] = (),
                    units: dict[str, tuple[str, float]] | None = None) -> None:
    """Add one flag per field of dataclass ``cls`` (``renames`` maps a field to another flag name, ``units`` to a
    flag in another unit: ``{field: (flag name, flag units per field unit)}``)."""
    renames, units = renames or {}, units or {}
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        if _kind(f) == "LoraSettings":
            _add_lora_args(parser, _default(f))
            continue
        name, scale = units.get(f.name, (renames.get(f.name, f.name), None))
        _add_field(parser, cls, f, name, scale, f.name in positional)


def add_run_args(parser: argparse.ArgumentParser) -> None:
    """``--threads`` and ``--quiet``, the options of the long-running commands (train, adapt) outside their config."""
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 is fastest on a busy CPU)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def set_threads(args: argparse.Namespace) -> None:
    """Apply ``--threads`` (``add_run_args``) to torch."""
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)


def config_from_namespace(cls: type, args: argparse.Namespace, *, renames: dict[str, str] | None = None,
                          units: dict[str, tuple[str, float]] | None = None, **overrides: Any) -> Any:
    """Build ``cls`` from the parsed flags of ``add_config_args`` (``overrides`` win)."""
    from ..train.lora import LoraSettings

    renames, units = renames or {}, units or {}
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if _kind(f) == "LoraSettings":
            values[f.name] = LoraSettings(**{sub: getattr(args, flag) for sub, flag in LORA_FLAGS.items()})
        elif f.name in units and hasattr(args, units[f.name][0]):
            flag, scale = units[f.name]
            value = getattr(args, flag) / scale
            values[f.name] = int(value) if _kind(f) == "int" else value
        elif hasattr(args, renames.get(f.name, f.name)):
            values[f.name] = getattr(args, renames.get(f.name, f.name))
    values.update(overrides)
    return cls(**values)
