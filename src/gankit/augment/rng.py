"""Random draws for the augmentations: from a given torch.Generator or the global RNG.

Values are drawn in float32 on the generator's device (the global RNG: the images' device) and
then moved and cast to the images', so the same generator gives the same augmentation whatever
the images' device and precision.
"""

from __future__ import annotations

import torch


def _where(x: torch.Tensor, gen: torch.Generator | None) -> torch.device:
    return x.device if gen is None else gen.device


def rand(shape: tuple[int, ...], x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
    """Uniform [0, 1) of `shape`, float32 on x's device."""
    out = torch.rand(shape, generator=gen, device=_where(x, gen))
    return out.to(x.device)


def randn(shape: tuple[int, ...], x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
    """Standard normal of `shape`, float32 on x's device."""
    out = torch.randn(shape, generator=gen, device=_where(x, gen))
    return out.to(x.device)


def randint(
    low: int, high: int, shape: tuple[int, ...], x: torch.Tensor, gen: torch.Generator | None
) -> torch.Tensor:
    """Integers in [low, high) of `shape`, int64 on x's device."""
    out = torch.randint(low, high, shape, generator=gen, device=_where(x, gen))
    return out.to(x.device)
