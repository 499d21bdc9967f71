"""Per chosen channel, its top units as real patches and guided-backprop maps."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ...errors import UserError
from .gradients import receptive_field, unit_gradient
from .layers import conv_layers
from .top import TopActivations, choose_channels, top_activations


@dataclass
class UnitView:
    """One of a channel's top units: where it is, what it sees, and its guided gradient."""

    channel: int
    rank: int
    image_index: int  # into the images given to `layer_view`
    y: int
    x: int
    activation: float
    box: tuple[int, int, int, int]  # (top, left, bottom, right) in input pixels, clipped
    patch: torch.Tensor  # [C, fh, fw] the input over the full field, zero beyond the image
    guided: torch.Tensor  # [C, fh, fw] the guided-backprop gradient over the same window


@dataclass
class ChannelView:
    channel: int
    top_mean: float  # mean of the top-k activations
    mean: float  # mean activation over all units of the channel
    std: float
    units: list[UnitView]

    @property
    def z(self) -> float:
        """How many standard deviations the top-k stand out from the channel's typical unit."""
        return (self.top_mean - self.mean) / self.std if self.std > 0 else float("nan")


@dataclass
class LayerView:
    layer: int
    module: str  # the activation module's name, e.g. LeakyReLU
    shape: tuple[int, int, int]  # (C, H, W) of the layer's output
    field: tuple[int, int]  # the full receptive field (rows, cols) of a central unit
    k: int
    top: TopActivations
    channels: list[ChannelView]

    @property
    def z_all(self) -> torch.Tensor:
        """Every channel's z (see ChannelView.z), for a layer-wide comparison."""
        t = self.top
        return (t.values.mean(1) - t.mean) / t.std.clamp(min=1e-12)


def _anchor(lo: int, hi: int, full: int, size: int) -> int:
    """The first row (or column) of a full-size window around the clipped span [lo, hi)."""
    if hi - lo >= full:
        return lo
    if lo == 0 and hi == size:
        return -((full - size) // 2)  # clipped on both sides: centre the image
    return hi - full if lo == 0 else lo


def _window(img: torch.Tensor, top: int, left: int, fh: int, fw: int) -> torch.Tensor:
    """img[:, top:top + fh, left:left + fw], zeros where the window leaves the image (which
    is what D's zero padding sees, and mid-grey in [-1, 1])."""
    c, h, w = img.shape
    out = img.new_zeros(c, fh, fw)
    t0, l0 = max(top, 0), max(left, 0)
    t1, l1 = min(top + fh, h), min(left + fw, w)
    if t1 > t0 and l1 > l0:
        out[:, t0 - top : t1 - top, l0 - left : l1 - left] = img[:, t0:t1, l0:l1]
    return out


def layer_view(
    D: nn.Module,
    images: torch.Tensor,  # [N, C, H, W] in [-1, 1]
    layer: int,
    channels: Sequence[int] | None = None,  # default: choose_channels(top, count)
    k: int = 9,
    labels: torch.Tensor | None = None,  # true labels, for a conditional D
    *,
    count: int = 8,
    one_per_image: bool = False,
    batch_size: int = 256,
) -> LayerView:
    """Top-k real patches and their guided-backprop maps for channels of `layer`."""
    top = top_activations(
        D, images, layer, k, labels, batch_size=batch_size, one_per_image=one_per_image
    )
    c_all, h_map, w_map = top.shape
    chosen = list(channels) if channels is not None else choose_channels(top, count)
    bad = [c for c in chosen if not 0 <= c < c_all]
    if bad:
        raise UserError(
            f"channel {bad[0]} does not exist: layer {layer} has channels 0-{c_all - 1}"
        )
    _, h_img, w_img = images.shape[1:]

    def label_of(i: int) -> torch.Tensor | None:
        return None if labels is None else labels[i]

    c0, i0 = chosen[0], int(top.image[chosen[0], 0])
    t, left, b, r = receptive_field(D, images[i0], layer, h_map // 2, w_map // 2, c0, label_of(i0))
    fh, fw = b - t, r - left
    views = []
    for c in chosen:
        units = []
        for j in range(k):
            i, y, x = int(top.image[c, j]), int(top.y[c, j]), int(top.x[c, j])
            box = receptive_field(D, images[i], layer, y, x, c, label_of(i))
            top_row = _anchor(box[0], box[2], fh, h_img)
            left_col = _anchor(box[1], box[3], fw, w_img)
            guided = unit_gradient(D, images[i], layer, c, y, x, label_of(i), rule="guided")
            units.append(
                UnitView(
                    channel=c,
                    rank=j,
                    image_index=i,
                    y=y,
                    x=x,
                    activation=float(top.values[c, j]),
                    box=box,
                    patch=_window(images[i].float().cpu(), top_row, left_col, fh, fw),
                    guided=_window(guided, top_row, left_col, fh, fw),
                )
            )
        views.append(
            ChannelView(
                channel=c,
                top_mean=float(top.values[c].mean()),
                mean=float(top.mean[c]),
                std=float(top.std[c]),
                units=units,
            )
        )
    module = conv_layers(D)[layer]
    return LayerView(layer, type(module).__name__, top.shape, (fh, fw), k, top, views)
