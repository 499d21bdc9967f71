"""Shared by the loaders: the request object and the registry of named datasets."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..registry import Registry
from .base import ImageDataset


def default_root() -> Path:
    """Where downloadable datasets live: $GANKIT_DATA, else ./data (git-ignored)."""
    return Path(os.environ.get("GANKIT_DATA") or "data")


@dataclass(frozen=True)
class LoadRequest:
    """Options shared by every loader.

    Loaders may return images at any size and with their native channel count; `load_dataset`
    converts and resizes afterwards. A loader that must resize per image (a folder of mixed
    sizes) uses `resolution` itself, and one that can stop early uses `max_images`.
    """

    spec: str
    resolution: int
    channels: int | None = None
    root: Path | None = None
    train: bool = True
    download: bool = True
    folder_labels: bool = False
    max_images: int | None = None

    @property
    def data_root(self) -> Path:
        return self.root if self.root is not None else default_root()


Loader = Callable[[LoadRequest], ImageDataset]

# Named datasets (`gankit datasets` lists them); the first docstring line is the description.
DATASETS: Registry[Loader] = Registry("dataset")
