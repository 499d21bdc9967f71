"""Where the analyses of a saved run write their files when the user names no `--out`."""

from __future__ import annotations

import os
from pathlib import Path

from ..checkpoint import run_folder


def figure_prefix(run: str | os.PathLike, out: str | os.PathLike | None, default: str) -> Path:
    """The path, without suffix, that a figure command adds its suffixes to.

    Args:
        run: the run folder or checkpoint file the user gave.
        out: the user's `--out` (a trailing .png or .gif is dropped), or None.
        default: the name inside the run folder (that of a checkpoint file's run) otherwise.
    """
    if out:
        return Path(out).with_suffix("") if Path(out).suffix in (".png", ".gif") else Path(out)
    return run_folder(run) / default


def probe_path(run: str | os.PathLike, out: str | os.PathLike | None) -> Path:
    """The probe's JSON report: `out`, CKPT.probe.json beside a checkpoint file, or
    RUN/probe.json (its figure is the same path with .png)."""
    if out:
        return Path(out)
    if Path(run).suffix == ".safetensors":
        return Path(run).with_suffix(".probe.json")
    return Path(run) / "probe.json"
