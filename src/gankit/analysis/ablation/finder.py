"""Which channels of a layer draw a region or drive an attribute (the channel finder)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import UserError
from ..attributes import Attribute
from .hooks import _forward_with_maps, render
from .layers import GLayer, get_layer


@dataclass
class ChannelScores:
    """A channel ranking of one layer: the top channels first, with every channel's score."""

    layer: int
    method: str
    channels: list[int]  # the top-k, best first
    scores: list[float]  # their scores
    all_scores: list[float]  # one per channel of the layer

    def describe(self) -> dict[str, Any]:
        return asdict(self)


def _rank(scores: torch.Tensor, top: int, layer: int, method: str) -> ChannelScores:
    scores = torch.nan_to_num(scores.double(), nan=float("-inf"))
    order = torch.argsort(scores, descending=True, stable=True)[: max(0, top)]
    return ChannelScores(
        layer=layer,
        method=method,
        channels=[int(c) for c in order],
        scores=[float(scores[c]) for c in order],
        all_scores=[float(s) for s in scores],
    )


def rect_mask(rect: Sequence[int], height: int, width: int) -> torch.Tensor:
    """A bool [H, W] mask of the rectangle x0,y0,x1,y1 in pixels (x1, y1 exclusive).

    Raises:
        UserError: the rectangle is empty, outside the image, or covers all of it.
    """
    if len(rect) != 4:
        raise UserError(f"a region is x0,y0,x1,y1 in pixels (got {list(rect)})")
    x0, y0, x1, y1 = (int(v) for v in rect)
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise UserError(
            f"region {x0},{y0},{x1},{y1} must satisfy 0 <= x0 < x1 <= {width} and "
            f"0 <= y0 < y1 <= {height} (the image is {width}x{height} pixels)"
        )
    m = torch.zeros(height, width, dtype=torch.bool)
    m[y0:y1, x0:x1] = True
    if bool(m.all()):
        raise UserError("the region covers the whole image; mark a part of it")
    return m


@torch.no_grad()
def find_region_channels(
    G: nn.Module,
    layer: int | GLayer,
    z: torch.Tensor,
    masks: torch.Tensor,
    y: torch.Tensor | None = None,
    top: int = 10,
    batch_size: int = 128,
) -> ChannelScores:
    """Rank a layer's channels by how much more they fire inside a region than outside it.

    Each channel's map is upsampled (bilinear) to the image size and its magnitude |a| averaged
    over the pixels inside the masks and over those outside, pooled over all N samples. The
    score is (mean inside - mean outside) divided by the layer's mean magnitude (one number for
    all its channels, so scores compare across layers and channels keep their relative size).

    Why a contrast and not the paper's logistic regression: with one rectangle for all samples
    (the CLI's case) a regression on locations only relearns the rectangle, needs a
    regularisation strength to be chosen, and spreads weight between correlated channels; the
    contrast needs no fitting and ranks a channel by the very thing ablation removes - its
    activation inside the region - so a strong channel that draws there beats a faint one that
    merely happens to be localised.

    Args:
        G: the generator (run in eval mode, restored afterwards).
        layer: layer index or GLayer.
        z: latents [N, nz].
        masks: bool [H, W] (one region for all samples) or [N, H, W] at the image's size.
        y: class labels for a conditional G.
        top: how many channels to return.
    """
    lay = get_layer(G, layer)
    masks = masks.bool()
    C = lay.channels
    in_sum = torch.zeros(C, dtype=torch.float64)
    out_sum = torch.zeros(C, dtype=torch.float64)
    counts = torch.zeros(2, dtype=torch.float64)  # pixels inside, outside (summed over samples)
    total = torch.zeros((), dtype=torch.float64)
    n_maps = torch.zeros((), dtype=torch.float64)

    def each(a: torch.Tensor, img: torch.Tensor, sl: slice) -> None:
        nonlocal total, n_maps
        H, W = img.shape[-2:]
        m = masks if masks.dim() == 2 else masks[sl]
        if m.shape[-2:] != (H, W):
            raise ValueError(f"masks are {tuple(m.shape[-2:])}, the images {H}x{W}")
        m = m.to(a.device).expand(a.shape[0], H, W).unsqueeze(1).to(a.dtype)
        up = F.interpolate(a.abs(), size=(H, W), mode="bilinear", align_corners=False)
        in_sum.add_((up * m).sum((0, 2, 3)).double().cpu())
        out_sum.add_((up * (1 - m)).sum((0, 2, 3)).double().cpu())
        inside = float(m.sum())
        counts.add_(torch.tensor([inside, a.shape[0] * H * W - inside], dtype=torch.float64))
        total = total + a.abs().double().sum().cpu()
        n_maps = n_maps + a.numel()

    _forward_with_maps(G, lay, z, y, batch_size, each)
    if counts[0] == 0 or counts[1] == 0:
        raise UserError("the region must cover part of the image, neither none nor all of it")
    scale = (total / n_maps).clamp_min(1e-12)
    scores = (in_sum / counts[0] - out_sum / counts[1]) / scale
    return _rank(scores, top, lay.index, "region contrast")


def _pearson(x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """Correlation of each column of x [N, C] with a [N]; 0 where either does not vary."""
    x = x.double() - x.double().mean(0)
    a = a.double() - a.double().mean()
    den = x.norm(dim=0) * a.norm()
    return torch.where(den > 0, (x * a[:, None]).sum(0) / den.clamp_min(1e-300), 0.0)


@torch.no_grad()
def find_attribute_channels(
    G: nn.Module,
    layer: int | GLayer,
    z: torch.Tensor,
    attribute: Attribute,
    y: torch.Tensor | None = None,
    top: int = 10,
    causal: bool = False,
    batch_size: int = 128,
) -> ChannelScores:
    """Rank a layer's channels by how they drive an attribute of the image.

    Correlational (default): the Pearson correlation, over the N samples, between each
    channel's spatially averaged activation and `attribute(images)`. Highest first: channels
    whose activity goes with the attribute, so ablating them should lower it. Cheap (one pass).

    Causal (`causal=True`): each channel is ablated alone and scored by the mean drop of the
    attribute, mean(attribute before - attribute after); this sees what the network does with a
    channel rather than what merely co-occurs with it, at one pass over N per channel.

    Args:
        attribute: images [N, C, H, W] in [-1, 1] -> scores [N] (e.g. p(class) of a classifier).
    """
    lay = get_layer(G, layer)
    means = torch.empty(z.shape[0], lay.channels, dtype=torch.float64)
    images = []

    def each(a: torch.Tensor, img: torch.Tensor, sl: slice) -> None:
        means[sl] = a.mean((2, 3)).double().cpu()
        images.append(img.cpu())

    _forward_with_maps(G, lay, z, y, batch_size, each)
    base = _attr(attribute, torch.cat(images))
    if not causal:
        return _rank(_pearson(means, base), top, lay.index, "correlation")
    drops = torch.empty(lay.channels, dtype=torch.float64)
    for c in range(lay.channels):
        after = _attr(attribute, render(G, z, y, lay, [c], batch_size))
        drops[c] = (base - after).mean()
    return _rank(drops, top, lay.index, "causal drop")


def _attr(attribute: Attribute, images: torch.Tensor) -> torch.Tensor:
    a = torch.as_tensor(attribute(images)).detach().double().cpu().flatten()
    if a.numel() != images.shape[0]:
        raise ValueError(f"attribute gave {a.numel()} values for {images.shape[0]} images")
    return a


def random_channels(n_channels: int, k: int, exclude: Sequence[int], seed: int) -> list[int]:
    """k channels drawn at random (seeded) from those not in `exclude`: the control."""
    pool = torch.tensor([c for c in range(n_channels) if c not in set(exclude)], dtype=torch.long)
    if pool.numel() < k:  # fewer left than asked for: draw from all channels instead
        pool = torch.arange(n_channels)
    g = torch.Generator().manual_seed(int(seed))
    return sorted(int(c) for c in pool[torch.randperm(pool.numel(), generator=g)[:k]])
