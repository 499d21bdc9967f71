"""DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN
Training"): cheap augmentations that are differentiable in the images, so that the same ones
can be applied to G's samples in G's update and G learns through them.

The ops follow the authors' DiffAugment_pytorch.py on NCHW images in [-1, 1]: colour
(brightness, saturation, contrast), translation by up to 1/8 of the image with zero padding,
and cutout of a square half the image's side (zeros, i.e. mid-grey in [-1, 1]). `strength`
scales every op's range; at 0 each op is the identity.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .rng import rand, randint

Gen = torch.Generator | None


def brightness(x: torch.Tensor, gen: Gen = None, strength: float = 1.0) -> torch.Tensor:
    """Add U(-0.5, 0.5) per image."""
    return x + ((rand((x.size(0), 1, 1, 1), x, gen) - 0.5) * strength).to(x.dtype)


def saturation(x: torch.Tensor, gen: Gen = None, strength: float = 1.0) -> torch.Tensor:
    """Scale the distance from the per-pixel channel mean by U(0, 2) per image; 1-channel
    images have no colour to saturate and are returned as they are (no draw is made)."""
    if x.size(1) == 1:
        return x
    factor = 1.0 + (rand((x.size(0), 1, 1, 1), x, gen) * 2.0 - 1.0) * strength
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * factor.to(x.dtype) + mean


def contrast(x: torch.Tensor, gen: Gen = None, strength: float = 1.0) -> torch.Tensor:
    """Scale the distance from the image's mean by U(0.5, 1.5) per image."""
    factor = 1.0 + (rand((x.size(0), 1, 1, 1), x, gen) - 0.5) * strength
    mean = x.mean(dim=[1, 2, 3], keepdim=True)
    return (x - mean) * factor.to(x.dtype) + mean


def translation(
    x: torch.Tensor, gen: Gen = None, strength: float = 1.0, ratio: float = 0.125
) -> torch.Tensor:
    """Shift each image by whole pixels, up to `ratio` of its size each way, padding zeros."""
    n, c, h, w = x.shape
    sh, sw = int(h * ratio * strength + 0.5), int(w * ratio * strength + 0.5)
    ty = randint(-sh, sh + 1, (n, 1, 1), x, gen)
    tx = randint(-sw, sw + 1, (n, 1, 1), x, gen)
    # out[i, j] = x[i + ty, j + tx] where that is inside the image, else 0. A gather (whose
    # backward is a scatter-add) rather than the original's advanced indexing of a padded
    # copy, whose backward is many times slower on a CPU; the values are the same.
    rows = torch.arange(h, device=x.device).view(1, h, 1) + ty
    cols = torch.arange(w, device=x.device).view(1, 1, w) + tx
    inside = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
    index = (rows.clamp(0, h - 1) * w + cols.clamp(0, w - 1)).view(n, 1, h * w)
    out = x.reshape(n, c, h * w).gather(2, index.expand(n, c, h * w)).view(n, c, h, w)
    return out * inside.unsqueeze(1).to(x.dtype)


def cutout(
    x: torch.Tensor, gen: Gen = None, strength: float = 1.0, ratio: float = 0.5
) -> torch.Tensor:
    """Zero a square of `ratio` times the image's side at a random place in each image."""
    n, _, h, w = x.shape
    ch, cw = int(h * ratio * strength + 0.5), int(w * ratio * strength + 0.5)
    oy = randint(0, h + (1 - ch % 2), (n, 1, 1), x, gen)
    ox = randint(0, w + (1 - cw % 2), (n, 1, 1), x, gen)
    # rows oy - ch//2 ... + ch - 1 and the like columns, cut at the edges (the original's
    # clamped indices mark no other pixel)
    rows = torch.arange(h, device=x.device).view(1, h, 1) - (oy - ch // 2)
    cols = torch.arange(w, device=x.device).view(1, 1, w) - (ox - cw // 2)
    hole = (rows >= 0) & (rows < ch) & (cols >= 0) & (cols < cw)
    return x * (~hole).unsqueeze(1).to(x.dtype)


Op = Callable[..., torch.Tensor]
# The policy's names, as in the paper: "color" is brightness, saturation and contrast.
POLICY: dict[str, tuple[Op, ...]] = {
    "color": (brightness, saturation, contrast),
    "translation": (translation,),
    "cutout": (cutout,),
}


def diff_augment(
    x: torch.Tensor, policy: tuple[str, ...], gen: Gen = None, strength: float = 1.0
) -> torch.Tensor:
    """`x` through every op of `policy` in turn (names of POLICY)."""
    for name in policy:
        for op in POLICY[name]:
            x = op(x, gen, strength)
    return x
