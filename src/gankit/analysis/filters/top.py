"""What a layer's channels respond to most: first-layer filters and top-k activations."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ...errors import UserError
from ...modes import eval_mode
from .layers import _run_to, conv_layers, first_conv


def first_layer_filters(D: nn.Module, image_channels: int | None = None) -> torch.Tensor:
    """D's first-layer filters as images: [out, in, k, k] in [0, 1].

    Each filter is scaled by its own largest |weight| so that 0.5 (mid-grey) is a zero weight:
    the sign of each tap stays readable. `image_channels` keeps only the first input channels
    (a conditional DCGAN's extra input is a label plane, not part of the image). Three
    channels are drawn in colour, one in grey.
    """
    w = first_conv(D).weight.detach().float().cpu()
    if image_channels is not None:
        w = w[:, :image_channels]
    scale = w.abs().flatten(1).amax(1).clamp(min=1e-12).view(-1, 1, 1, 1)
    return (w / scale * 0.5 + 0.5).clamp(0, 1)


@dataclass
class TopActivations:
    """Per channel, the k strongest units of a layer over a set of images."""

    values: torch.Tensor  # [C, k] float32, strongest first
    image: torch.Tensor  # [C, k] index into the images given
    y: torch.Tensor  # [C, k] position in the layer's map
    x: torch.Tensor  # [C, k]
    mean: torch.Tensor  # [C] mean activation over all images and positions
    std: torch.Tensor  # [C] its standard deviation
    shape: tuple[int, int, int]  # the layer's output (C, H, W)
    n_images: int


@torch.no_grad()
def top_activations(
    D: nn.Module,
    images: torch.Tensor,  # [N, C, H, W] in [-1, 1]
    layer: int,
    k: int = 9,
    labels: torch.Tensor | None = None,  # for a conditional D
    *,
    batch_size: int = 256,
    one_per_image: bool = False,  # at most one unit (the image's strongest) per image
) -> TopActivations:
    """The k highest activations of every channel of `layer` over all images and positions.

    Only a running top-k per channel is kept, so N is bounded by time, not memory.
    """
    if k < 1:
        raise UserError(f"top must be at least 1 (got {k})")
    module = conv_layers(D)[layer]
    device = next(D.parameters()).device
    best_v = best_i = None
    s1 = s2 = None
    count = 0
    shape: tuple[int, int, int] = (0, 0, 0)
    with eval_mode(D):
        for start in range(0, images.shape[0], batch_size):
            xb = images[start : start + batch_size].to(device).float()
            yb = None if labels is None else labels[start : start + batch_size].to(device)
            a = _run_to(D, module, xb, yb).float()
            if a.dim() != 4:
                raise UserError(f"layer {layer} is not convolutional (output {list(a.shape)})")
            b, c, h, w = a.shape
            shape = (c, h, w)
            flat = a.permute(1, 0, 2, 3).reshape(c, b, h * w)
            s1 = flat.double().sum((1, 2)) + (0 if s1 is None else s1)
            s2 = flat.double().square().sum((1, 2)) + (0 if s2 is None else s2)
            count += b * h * w
            if one_per_image:
                v, pos = flat.max(2)
                idx = (torch.arange(b, device=device) + start).view(1, b) * (h * w) + pos
            else:
                v = flat.reshape(c, b * h * w)
                idx = (torch.arange(b * h * w, device=device) + start * h * w).expand(c, -1)
            if best_v is not None:
                v, idx = torch.cat([best_v, v], 1), torch.cat([best_i, idx], 1)
            best_v, order = v.topk(min(k, v.shape[1]), dim=1)
            best_i = idx.gather(1, order)
    if best_v is None:
        raise UserError("no images to look at")
    if best_v.shape[1] < k:
        raise UserError(
            f"only {best_v.shape[1]} units per channel in {images.shape[0]} images; "
            f"lower --top to {best_v.shape[1]} or use more images"
        )
    _, h, w = shape
    mean = s1 / count
    std = (s2 / count - mean.square()).clamp(min=0).sqrt()
    best_i = best_i.cpu()
    return TopActivations(
        values=best_v.cpu(),
        image=best_i // (h * w),
        y=(best_i % (h * w)) // w,
        x=best_i % w,
        mean=mean.float().cpu(),
        std=std.float().cpu(),
        shape=shape,
        n_images=int(images.shape[0]),
    )


def choose_channels(top: TopActivations, count: int = 8) -> list[int]:
    """The `count` channels with the highest mean top-k activation, strongest first.

    The channels whose best responses are strongest are the ones D relies on most; a dead
    channel (never positive) can never be chosen ahead of a live one.
    """
    score = top.values.double().mean(1)
    order = torch.argsort(score, descending=True, stable=True)
    return [int(c) for c in order[: max(1, count)]]


def parse_channels(text: str) -> list[int]:
    """ "3,7,12" or "0-7" (or a mix) -> channel numbers, in the order given."""
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                a, b = part.split("-", 1)
                lo, hi = int(a), int(b)
                if hi < lo:
                    raise ValueError
                out.extend(range(lo, hi + 1))
            else:
                out.append(int(part))
        except ValueError:
            raise UserError(f"--channels takes numbers like 3,7,12 or 0-7 (got {text!r})") from None
    if len(set(out)) != len(out):
        raise UserError(f"--channels lists a channel twice ({text!r})")
    return out
