"""Seeds -> latents, shared by the trainer's fixed-noise grids and `gankit sample`.

Each seed gets its own generator, so seed 7 gives the same z whatever other seeds are drawn
with it, and the training grids show exactly what `gankit sample --seeds 0-63` shows later.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def seed_latents(seeds: Sequence[int], nz: int, truncation: float | None = None) -> torch.Tensor:
    """One z ~ N(0, I) of size `nz` per seed (CPU float32 [len(seeds), nz]).

    With `truncation` = t > 0, components with |z_i| > t are redrawn (from the same seed's
    generator) until they lie within t: a truncated normal, never a rescaled one.
    """
    out = torch.empty(len(seeds), nz)
    for i, s in enumerate(seeds):
        g = torch.Generator().manual_seed(int(s))
        z = torch.randn(nz, generator=g)
        out[i] = z if truncation is None else truncate_normal(z, truncation, g)
    return out


def truncate_normal(z: torch.Tensor, truncation: float, g: torch.Generator) -> torch.Tensor:
    """Redraw the components of N(0, 1) draws `z` that lie outside [-t, t], from `g`, until
    none does: BigGAN's truncation trick (a truncated normal, never a rescaled one)."""
    if truncation <= 0:
        raise ValueError("truncation must be > 0")
    z = z.clone()
    for _ in range(1000):
        bad = z.abs() > truncation
        if not bad.any():
            return z
        z[bad] = torch.randn(int(bad.sum()), generator=g)
    return z.clamp(-truncation, truncation)  # pragma: no cover - needs t ~ 0


def class_grid(num_classes: int, cols: int) -> tuple[list[int], torch.Tensor]:
    """Seeds 0..cols-1 in every row, row c labelled c: the per-class grid layout."""
    seeds = [s for _ in range(num_classes) for s in range(cols)]
    labels = torch.arange(num_classes).repeat_interleave(cols)
    return seeds, labels


class Prior:
    """The distribution G's input z is drawn from: N(0, I) of size `nz` unless a model says
    otherwise (InfoGAN's codes, for instance, subclass this).

    A generator network declares a non-Gaussian prior by carrying it as `G.prior`; everything
    that draws z (the trainer, sampling, evaluation) asks `prior_of(G)` rather than calling
    `torch.randn` itself, so structured latents are drawn the same way everywhere.
    """

    def __init__(self, nz: int) -> None:
        self.nz = int(nz)

    def sample(self, n: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """A training batch of latents from the global RNG (no host sync)."""
        return torch.randn(n, self.nz, device=device)

    def from_seeds(self, seeds: Sequence[int], truncation: float | None = None) -> torch.Tensor:
        """One latent per seed (CPU float32), independent of the other seeds in the call."""
        return seed_latents(seeds, self.nz, truncation)


def prior_of(G: nn.Module) -> Prior:
    """G's latent prior: `G.prior` when the network declares one, else N(0, I) of `G.z_dim`."""
    prior = getattr(G, "prior", None)
    return prior if isinstance(prior, Prior) else Prior(int(G.z_dim))
