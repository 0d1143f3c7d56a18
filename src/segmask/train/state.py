"""What a training run folder holds that a later run reads back, checked as data before any model loads:
``loss_curve.json`` (extended by the next run) and, under ``--resume``, the checkpoint's ``trainer_state.json``.

    >>> check_run_folder(Path("runs/mas"), resume=True)     # ValueError naming the file that is not ours

Checkpoint tensors are loaded by transformers' Trainer with ``torch.load(weights_only=True)``: data, never code.
"""

from __future__ import annotations

from pathlib import Path

from ..core.files import read_json

LOSS_CURVE = "loss_curve.json"


def read_loss_curve(path: Path) -> list[dict]:
    """The rows of a ``loss_curve.json`` (none when it does not exist); ``ValueError`` naming it when it is not one."""
    rows = read_json(path, expect=list) if path.exists() else []
    if not all(isinstance(r, dict) and isinstance(r.get("step"), int) for r in rows):
        raise ValueError(f"{path}: not a loss curve written by segmask (a list of rows with an integer 'step'); "
                         "move it away or use another --out")
    return rows


def check_run_folder(out: Path, resume: bool | str) -> None:
    """Before any model is loaded: refuse (``ValueError`` naming the file) a ``loss_curve.json`` the run would
    extend, or a checkpoint's ``trainer_state.json`` that ``resume`` would read, that segmask/Trainer did not write.
    Checkpoints' tensors are loaded by Trainer with ``torch.load(weights_only=True)``: data, never code."""
    read_loss_curve(out / LOSS_CURVE)
    if not resume:
        return
    if isinstance(resume, str):
        folder = Path(resume)
    else:
        steps = [p for p in out.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
        if not steps:
            return  # Trainer itself says there is no checkpoint to resume from
        folder = max(steps, key=lambda p: int(p.name.split("-")[-1]))
    state = read_json(folder / "trainer_state.json", expect=dict)
    if not isinstance(state.get("global_step"), int) or not isinstance(state.get("log_history", []), list):
        raise ValueError(f"{folder / 'trainer_state.json'}: not a Trainer state (no integer global_step)")
