"""The in-memory image dataset every loader returns.

Images are kept decoded, resized and as uint8 in memory so that a training batch is cut by
indexing one tensor (no per-sample PIL work in the hot loop); they become floats in [-1, 1]
only when a batch is taken.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

import torch

GRID_REALS = 64  # real images in a run's reals.png


class Painter(Protocol):
    """The picture writers a dataset draws with (gankit.viz is one). Passed in rather than
    imported, so that the data layer needs nothing above it."""

    def save_grid(
        self,
        images: torch.Tensor,
        path: str | os.PathLike,
        nrow: int | None = ...,
        scale: int = ...,
    ) -> Path: ...

    def save_scatter(
        self,
        points: torch.Tensor,
        path: str | os.PathLike,
        reference: torch.Tensor | None = ...,
        limit: float | None = ...,
        title: str | None = ...,
        label: str = ...,
    ) -> Path: ...


@dataclass
class ImageDataset:
    """Decoded images and optional labels.

    Attributes:
        images: uint8 tensor [N, C, H, W] with values 0..255.
        labels: int64 tensor [N] with values in [0, num_classes), or None when unlabelled.
        num_classes: number of classes (0 when unlabelled).
        name: the spec the data was loaded from, e.g. "digits" or "folder:/data/faces".
        class_names: optional readable name per class.
        notes: things the loader did that a user should know (skipped files, conversions).
    """

    images: torch.Tensor
    labels: torch.Tensor | None
    num_classes: int
    name: str
    class_names: list[str] | None = None
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError("images must be a uint8 tensor [N, C, H, W]")
        if self.labels is not None:
            if self.labels.shape != (self.images.shape[0],):
                raise ValueError("labels must have one entry per image")
            self.labels = self.labels.to(torch.int64)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def resolution(self) -> int:
        return int(self.images.shape[-1])

    def to(self, device: torch.device | str) -> ImageDataset:
        """The same dataset with its tensors on `device` (still uint8)."""
        labels = None if self.labels is None else self.labels.to(device)
        return replace(self, images=self.images.to(device), labels=labels)

    def batch(
        self, index: torch.Tensor, device: torch.device | str = "cpu"
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Images scaled to [-1, 1] (float32) and labels for the given indices, on `device`."""
        index = index.to(self.images.device)
        x = self.images[index].to(device, non_blocking=True)
        x = x.float().div_(127.5).sub_(1.0)
        y = None if self.labels is None else self.labels[index.to(self.labels.device)]
        y = None if y is None else y.to(device, non_blocking=True)
        return x, y

    def preview_size(self, n: int) -> int:
        """How many generated samples a progress picture shows when `n` are asked for."""
        return n

    def draw(
        self,
        samples: torch.Tensor | None,
        path: str | os.PathLike,
        painter: Painter,
        *,
        title: str = "",
        nrow: int | None = None,
    ) -> Path:
        """A progress picture: generated `samples` (in [-1, 1]) as a grid of `nrow` per row,
        or with None the first real images; small images are shown at twice their size.
        Images need no `title` (the 2D points' scatter has one)."""
        if samples is None:
            samples, _ = self.batch(torch.arange(min(len(self), GRID_REALS)))
        scale = 2 if samples.shape[-1] <= 32 else 1
        return painter.save_grid(samples, path, nrow=nrow, scale=scale)


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1]."""
    return images.float().div(127.5).sub(1.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255], clamping what lies outside."""
    return images.detach().float().add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8).cpu()
