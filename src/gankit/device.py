"""Device selection shared by training, evaluation and the classifier."""

from __future__ import annotations

import torch

from .errors import UserError


def resolve_device(name: str | torch.device) -> torch.device:
    """'auto' picks CUDA when present, else the CPU; anything else is checked."""
    if str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}; use auto, cpu or cuda[:N]") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name} asked for but CUDA is not available; use --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise UserError(
            f"device {name} does not exist: this machine has {torch.cuda.device_count()} GPU(s)"
        )
    if dev.type == "mps" and torch.backends.mps.is_available():
        return dev
    if dev.type not in ("cpu", "cuda"):
        raise UserError(
            f"gankit does not run on device type {dev.type!r}; use auto, cpu or cuda[:N]"
        )
    return dev
