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

import torch

from ..errors import UserError
from ..sampling import LoadedRun, generate


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
    from ..viz import save_labelled_rows

    name = "psi" if sweep.space == "w" else "trunc"
    labels = [
        f"{'none' if v is None else f'{name} {v:g}'}  var {var:.3f}"
        for v, var in zip(sweep.values, sweep.variety, strict=True)
    ]
    return save_labelled_rows(list(sweep.images), labels, path, title)
