"""Truncation sweeps: the same seeds at several truncation levels, to see the trade between
fidelity and variety (BigGAN's truncation trick in z; StyleGAN's psi in w).

Lower truncation pulls every sample towards the "average" image: cleaner, less varied. The
sweep puts a number on the variety: the mean pixel standard deviation across the row's seeds.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import UserError
from ..files import atomic_write_json
from ..sampling import LoadedRun, check_class, generate, load, parse_seeds
from ..viz import save_labelled_rows
from .paths import figure_prefix


@dataclass
class TruncationSweep:
    """Images [values, seeds, C, H, W] in [-1, 1], the truncation values (None: none) and the
    variety of each row (mean per-pixel standard deviation across its seeds)."""

    images: torch.Tensor
    values: list[float | None]
    variety: list[float]
    space: str  # "z" (threshold, resampled) or "w" (psi)


def truncation_sweep(
    run: LoadedRun,
    values: Sequence[float | None],
    seeds: Sequence[int],
    label: int | None = None,
) -> TruncationSweep:
    """Generate `seeds` at each truncation value (None = no truncation).

    Args:
        run: a loaded run.
        values: thresholds for z (e.g. 0.5, 1, 2), or psi in (0, 1] for a model truncated in w.
        seeds: one column per seed; at least two, so that variety can be measured.
        label: the class for a conditional model (default 0).
    """
    if len(seeds) < 2:
        raise UserError("a truncation sweep needs at least two seeds")
    if not values:
        raise UserError("give at least one truncation value")
    labels = None
    if run.num_classes:
        labels = [0 if label is None else label] * len(seeds)
    rows, variety = [], []
    for v in values:
        imgs = generate(run, seeds, labels, v)
        rows.append(imgs)
        variety.append(float(imgs.std(0).mean()))
    return TruncationSweep(torch.stack(rows), list(values), variety, run.model.spec.truncation)


def save_truncation_figure(sweep: TruncationSweep, path: str | os.PathLike, title: str) -> Path:
    """One row per truncation value, labelled with the value and the row's variety."""
    name = "psi" if sweep.space == "w" else "trunc"
    labels = [
        f"{'none' if v is None else f'{name} {v:g}'}  var {var:.3f}"
        for v, var in zip(sweep.values, sweep.variety, strict=True)
    ]
    return save_labelled_rows(list(sweep.images), labels, path, title)


def parse_values(text: str) -> list[float | None]:
    """ "none,2,1,0.5" -> [None, 2.0, 1.0, 0.5] (none, or nothing, is no truncation)."""
    try:
        return [None if v in ("none", "") else float(v) for v in text.split(",")]
    except ValueError:
        raise UserError(f"bad --values {text!r}; use e.g. 0.5,1,2,none") from None


@dataclass
class TruncationRun:
    """What `truncation_run` drew and wrote."""

    sweep: TruncationSweep
    figure: Path
    report: dict[str, Any]  # as written to `report_path`
    report_path: Path

    def lines(self) -> list[str]:
        """What `gankit truncation` prints."""
        out = [
            f"  {'none' if v is None else v:>6}: variety (mean pixel std) {var:.4f}"
            for v, var in zip(self.sweep.values, self.sweep.variety, strict=True)
        ]
        return [*out, f"figure: {self.figure}"]


def truncation_run(
    run: str | os.PathLike,
    *,
    values: str | Sequence[float | None] = "none,2,1,0.5,0.25",  # see `parse_values`
    seeds: str | Sequence[int] = "0-9",  # one column per seed
    label: int | None = None,  # the class of a conditional model (default 0)
    out: str | os.PathLike | None = None,  # path without suffix; default RUN/truncation
    ema: bool = True,
    device: str = "cpu",
) -> TruncationRun:
    """A truncation sweep of a saved run: PREFIX.png and PREFIX.json."""
    loaded = load(run, device=device, ema=ema)
    check_class(loaded, label)
    values = parse_values(values) if isinstance(values, str) else list(values)
    sweep = truncation_sweep(loaded, values, parse_seeds(seeds), label)
    prefix = figure_prefix(run, out, "truncation")
    what = "psi in w" if sweep.space == "w" else "threshold in z"
    fig = save_truncation_figure(
        sweep, prefix.with_name(prefix.name + ".png"), f"{loaded.model.name}: truncation ({what})"
    )
    report = {"run": str(run), "nimg": loaded.checkpoint.nimg, "space": sweep.space,
              "values": sweep.values, "variety": sweep.variety, "figure": str(fig)}  # fmt: skip
    report_path = prefix.with_name(prefix.name + ".json")
    atomic_write_json(report_path, report)
    return TruncationRun(sweep, fig, report, report_path)
