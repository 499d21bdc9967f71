"""Datasets: one call, `load_dataset(spec, resolution=...)`, gives decoded uint8 images in memory.

A spec is a registered name (`gankit datasets` lists them), `folder:PATH` or `npz:PATH`. Every
loader returns its images at any size and with their own channel count; this module converts
the channels and resizes to a square once, here, so the training loop only ever indexes a
ready tensor.

Images more than twice as long as they are wide (or the reverse) are first centre-cropped to
2:1; the square crop that follows is the same, but a 1 x 1,000,000 strip is never scaled to a
gigabyte-sized intermediate. A conversion whose result would not fit in the memory a dataset
may take (`common.memory_budget`, half the machine's) is a UserError, raised before allocating.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..errors import UserError

# The order of registration is the order `gankit datasets` lists them in.
# isort: off
from . import digits as _digits  # noqa: F401  (registers digits and sklearn-digits)
from . import builtin as _builtin  # noqa: F401  (registers the torchvision datasets)
from . import mixtures as _mixtures  # noqa: F401  (registers ring8 and grid25)
from . import stacked as _stacked  # noqa: F401  (registers the stacked-* datasets)

# isort: on
from .base import ImageDataset, to_uint8, to_unit_range
from .common import DATASETS, LoadRequest, check_fits, default_root
from .folder import IMAGE_EXTENSIONS, load_folder
from .mixtures import MIXTURES, PointDataset
from .npz import load_npz
from .transforms import (
    check_channels,
    chunk_images,
    convert_channels,
    cover_size,
    resize_square,
)

__all__ = [
    "DATASETS",
    "IMAGE_EXTENSIONS",
    "ImageDataset",
    "default_root",
    "list_datasets",
    "load_dataset",
    "to_uint8",
    "to_unit_range",
]

_PATH_SPECS = {
    "folder:PATH": "every image under a directory (png, jpg, bmp, gif, webp, tif; recursive)",
    "npz:PATH": "a NumPy .npz with images under 'x' or 'images', labels under 'y' or 'labels'",
}


def list_datasets() -> list[tuple[str, str]]:
    """(name, one-line description) of every dataset spec, for `gankit datasets`."""
    named = []
    for name, loader in DATASETS.items():
        doc = (loader.__doc__ or "").strip().splitlines()
        named.append((name, doc[0].strip() if doc else ""))
    return named + list(_PATH_SPECS.items())


def _unknown_spec(spec: str, err: UserError) -> UserError:
    message = f"{err}, {', '.join(_PATH_SPECS)}"
    if os.path.isdir(spec):
        message += f" (to read the images in that folder, use folder:{spec})"
    elif os.path.isfile(spec) and spec.lower().endswith(".npz"):
        message += f" (to read that file, use npz:{spec})"
    return UserError(message)


def _check_options(resolution: int, max_images: int | None) -> None:
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
        raise UserError(f"resolution must be a positive whole number of pixels, not {resolution}")
    if max_images is not None and (isinstance(max_images, bool) or max_images < 1):
        raise UserError(f"max_images must be at least 1 (or left out for all), not {max_images}")


def load_dataset(
    spec: str,
    *,
    resolution: int,
    channels: int | None = None,
    root: str | None = None,
    train: bool = True,
    download: bool = True,
    folder_labels: bool = False,
    max_images: int | None = None,
) -> ImageDataset | PointDataset:
    """Load `spec` as uint8 images [N, channels, resolution, resolution] (and labels).

    Args:
        spec: a registered name ("digits", "sklearn-digits", "mnist", ...; `list_datasets`),
            "folder:PATH" or "npz:PATH".
        resolution: side of the square output; non-square images are scaled so the shorter
            side fits, then centre-cropped.
        channels: 1 or 3; None keeps the data's own (1 -> 3 repeats, 3 -> 1 takes luminance).
        root: where downloadable datasets live (default $GANKIT_DATA or ./data).
        train: training split if True, else the test split.
        download: let torchvision download missing files.
        folder_labels: for folder:PATH, label images by their first-level sub-folder.
        max_images: keep only the first N images (in the dataset's fixed order).

    The 2D mixtures ring8 and grid25 come back as a `PointDataset` of float points (1x1
    images with 2 channels), untouched by the image conversions.

    Raises:
        UserError: for anything the user can fix (unknown spec, missing files, bad data).
    """
    _check_options(resolution, max_images)
    if spec not in MIXTURES:  # points take 2 channels; their loader checks that
        check_channels(channels)
    request = LoadRequest(
        spec=spec,
        resolution=resolution,
        channels=channels,
        root=Path(root).expanduser() if root is not None else None,
        train=train,
        download=download,
        folder_labels=folder_labels,
        max_images=max_images,
    )
    kind, _, path = spec.partition(":")
    if folder_labels and kind != "folder":
        raise UserError(
            f"--folder-labels only applies to folder:PATH datasets, not {spec!r}: drop it"
        )
    if kind in ("folder", "npz") and path:
        dataset = load_folder(path, request) if kind == "folder" else load_npz(path, request)
    elif kind in ("folder", "npz"):
        raise UserError(f"{spec!r} names no path: write {kind}:PATH")
    else:
        try:
            loader = DATASETS.get(spec)
        except UserError as err:
            raise _unknown_spec(spec, err) from None
        dataset = loader(request)
    if isinstance(dataset, PointDataset):  # 2D points, not images: nothing to convert
        return dataset
    return _finish(dataset, request)


# Longest side / shortest side kept before resizing (see the module docstring).
_MAX_RATIO = 2


def _crop_to_ratio(images: torch.Tensor, ratio: int) -> torch.Tensor:
    """Centre-crop the long side of [N, C, H, W] images to at most `ratio` times the short."""
    height, width = int(images.shape[2]), int(images.shape[3])
    if width > ratio * height:
        left = (width - ratio * height) // 2
        return images[:, :, :, left : left + ratio * height]
    if height > ratio * width:
        top = (height - ratio * width) // 2
        return images[:, :, top : top + ratio * width, :]
    return images


def _check_conversion_fits(images: torch.Tensor, request: LoadRequest) -> None:
    """Refuse (before allocating) a resize whose result or float intermediate is too big."""
    n, c, height, width = (int(d) for d in images.shape)
    size = request.resolution
    out_c = max(c, request.channels or c)
    needed = n * out_c * size * size  # the uint8 result
    if (height, width) != (size, size):
        new_h, new_w = cover_size(height, width, size)
        step = chunk_images(c, max(height, new_h), max(width, new_w))
        needed += min(n, step) * c * new_h * new_w * 4  # one float32 chunk, scaled
    check_fits(
        needed,
        f"{request.spec}: {n} images at {size}x{size}",
        "use a smaller --resolution or fewer images (--max-images)",
    )


def _finish(dataset: ImageDataset, request: LoadRequest) -> ImageDataset:
    """Apply max_images, the channel conversion and the square resize every loader shares."""
    images, labels = dataset.images, dataset.labels
    notes = list(dataset.notes)
    if request.max_images is not None and len(images) > request.max_images:
        images = images[: request.max_images]
        labels = None if labels is None else labels[: request.max_images]
    native = int(images.shape[1])
    if native not in (1, 3):
        raise UserError(f"{request.spec} has {native}-channel images; gankit supports 1 or 3")
    height, width = int(images.shape[2]), int(images.shape[3])
    images = _crop_to_ratio(images, _MAX_RATIO)
    _check_conversion_fits(images, request)
    # Resize while there are fewest channels: grey -> RGB after, RGB -> grey before.
    if native == 1:
        images = convert_channels(resize_square(images, request.resolution), request.channels)
    else:
        images = resize_square(convert_channels(images, request.channels), request.resolution)
    if images.shape[1] != native:
        how = "repeated grey to RGB" if native == 1 else "took luminance of RGB"
        notes.append(f"converted {native} to {images.shape[1]} channels ({how})")
    size = request.resolution
    if (height, width) != (size, size):
        notes.append(f"resized from {height}x{width} to {size}x{size}")
    return ImageDataset(
        images=images.contiguous(),
        labels=labels,
        num_classes=dataset.num_classes,
        name=dataset.name,
        class_names=dataset.class_names,
        notes=notes,
    )
