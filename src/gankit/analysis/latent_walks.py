"""Walks and arithmetic in G's latent space (the DCGAN paper's sections 6.1 and 6.3).

A walk between seeds shows whether the latent space is smooth (no sudden jumps between
neighbouring frames, which would suggest memorisation); arithmetic on averaged latents
(a - b + c) shows whether concepts add up. Latents come from `prior_of(G)`, so seed s is the
same z as in `gankit sample --seeds s`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..latent import prior_of


def lerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Straight-line interpolation; `t` [T] -> [T, D]."""
    return a[None] + t[:, None] * (b - a)[None]


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation: the direction moves along the great circle from a to b and
    the norm linearly from |a| to |b| (so it is kept when |a| = |b|). A straight line between
    two Gaussian samples passes through norms the prior almost never draws; this does not."""
    na, nb = a.norm(), b.norm()
    ua, ub = a / na, b / nb
    omega = torch.arccos((ua * ub).sum().clamp(-1.0, 1.0))
    if omega.abs() < 1e-6:  # (anti)parallel within rounding: nothing to rotate
        direction = lerp(ua, ub, t)
        direction = direction / direction.norm(dim=1, keepdim=True)
    else:
        s = torch.sin(omega)
        direction = (
            torch.sin((1 - t) * omega)[:, None] * ua[None]
            + torch.sin(t * omega)[:, None] * ub[None]
        ) / s
    return direction * (na + t * (nb - na))[:, None]


def walk_latents(
    G: nn.Module, seeds: Sequence[int], steps: int, spherical: bool = False
) -> torch.Tensor:
    """[(len(seeds) - 1) * (steps - 1) + 1, nz]: the path through the seeds' latents, each leg
    `steps` frames long (the shared endpoints are not repeated)."""
    if len(seeds) < 2 or steps < 2:
        raise ValueError("a walk needs at least two seeds and two steps")
    z = prior_of(G).from_seeds(list(seeds))
    t = torch.linspace(0, 1, steps)
    legs = [(slerp if spherical else lerp)(z[i], z[i + 1], t) for i in range(len(seeds) - 1)]
    return torch.cat([legs[0]] + [leg[1:] for leg in legs[1:]])


@dataclass
class Smoothness:
    """How far apart neighbouring frames of a walk are (mean squared pixel difference)."""

    mean: float
    max: float
    max_over_mean: float  # a jump stands out as a large ratio


def smoothness(frames: torch.Tensor) -> Smoothness:
    """Step sizes between consecutive frames [T, C, H, W] of a walk."""
    steps = (frames[1:] - frames[:-1]).float().pow(2).flatten(1).mean(1)
    mean, top = float(steps.mean()), float(steps.max())
    return Smoothness(mean, top, top / mean if mean > 0 else float("nan"))


def arithmetic(G: nn.Module, a: Sequence[int], b: Sequence[int], c: Sequence[int]) -> torch.Tensor:
    """mean z(a) - mean z(b) + mean z(c): the DCGAN paper averages three seeds per concept."""
    prior = prior_of(G)
    mean = [prior.from_seeds(list(group)).mean(0) for group in (a, b, c)]
    return mean[0] - mean[1] + mean[2]
