"""Whole-tensor conversions applied once at load time: channel count and square resizing.

They work on uint8 [N, C, H, W] tensors in chunks, so that a 50,000-image dataset never needs a
full float copy in memory (the machines gankit targets may have little RAM).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import UserError

# How many images are converted to float at a time.
_CHUNK = 2048  # images per float32 chunk at most ...
_CHUNK_BYTES = 256 * 2**20  # ... and at most this much float32 per chunk (large images)


def chunk_images(channels: int, height: int, width: int) -> int:
    """How many images of this size one float32 working chunk holds (1 to _CHUNK)."""
    return max(1, min(_CHUNK, _CHUNK_BYTES // max(1, 4 * channels * height * width)))


# ITU-R BT.601 luma weights, the same ones PIL uses for RGB -> L.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)

SUPPORTED_CHANNELS = (1, 3)


def check_channels(channels: int | None) -> None:
    """Fail early (before any slow loading) if the requested channel count is unsupported."""
    if channels is not None and channels not in SUPPORTED_CHANNELS:
        raise UserError(
            f"cannot produce {channels}-channel images: gankit supports 1 (grayscale) or "
            "3 (RGB) channels; pass --channels 1 or 3, or leave it out to keep the data's own"
        )


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    return x.round_().clamp_(0, 255).to(torch.uint8)


def convert_channels(images: torch.Tensor, channels: int | None) -> torch.Tensor:
    """Return `images` with `channels` channels (None keeps them as they are).

    1 -> 3 repeats the grey channel; 3 -> 1 takes the luminance 0.299 R + 0.587 G + 0.114 B.
    Any other conversion is refused rather than guessed.
    """
    have = int(images.shape[1])
    if channels is None or channels == have:
        return images
    if have == 1 and channels == 3:
        return images.repeat(1, 3, 1, 1)
    if have == 3 and channels == 1:
        weights = torch.tensor(LUMA_WEIGHTS, dtype=torch.float32).view(1, 3, 1, 1)
        out = torch.empty((images.shape[0], 1, *images.shape[2:]), dtype=torch.uint8)
        step = chunk_images(3, *images.shape[2:])
        for start in range(0, images.shape[0], step):
            chunk = images[start : start + step].float()
            out[start : start + step] = _to_uint8((chunk * weights).sum(dim=1, keepdim=True))
        return out
    raise UserError(
        f"cannot convert {have}-channel images to {channels} channels: gankit converts only "
        "between 1 (grayscale) and 3 (RGB); pass --channels 1 or 3"
    )


def cover_size(height: int, width: int, resolution: int) -> tuple[int, int]:
    """(h, w) scaled so that the shorter side equals `resolution` (the longer side rounded)."""
    if height <= width:
        return resolution, max(resolution, round(width * resolution / height))
    return max(resolution, round(height * resolution / width)), resolution


def resize_square(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """Resize uint8 [N, C, H, W] to [N, C, resolution, resolution].

    The shorter side is scaled to `resolution` (bilinear, antialiased when shrinking) and the
    longer side is centre-cropped, so non-square data is never squashed. Images that already
    have the right size are returned untouched (no rounding loss).
    """
    n, c, h, w = images.shape
    if h == resolution and w == resolution:
        return images
    new_h, new_w = cover_size(h, w, resolution)
    top = (new_h - resolution) // 2
    left = (new_w - resolution) // 2
    out = torch.empty((n, c, resolution, resolution), dtype=torch.uint8)
    step = chunk_images(c, max(h, new_h), max(w, new_w))
    for start in range(0, n, step):
        chunk = images[start : start + step].float()
        if (new_h, new_w) != (h, w):
            chunk = F.interpolate(
                chunk, size=(new_h, new_w), mode="bilinear", antialias=True, align_corners=False
            )
        chunk = chunk[:, :, top : top + resolution, left : left + resolution]
        out[start : start + step] = _to_uint8(chunk)
    return out
