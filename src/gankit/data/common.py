"""Shared by the loaders: the request object and the registry of named datasets."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..registry import Registry
from .base import ImageDataset


def memory_budget() -> int:
    """Bytes a loader may fill: half of this machine's physical memory (at least 1 GiB)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not a POSIX system: assume a small one
        total = 16 * 2**30
    return max(int(total) // 2, 2**30)


def check_fits(nbytes: int, what: str, advice: str) -> None:
    """A UserError (before anything is allocated) when `what` needs more than `memory_budget`.

    A forged header or an absurd --resolution would otherwise make the loader allocate, and
    the machine swap or kill the process, instead of saying what is wrong.
    """
    budget = memory_budget()
    if nbytes > budget:
        raise UserError(
            f"{what} needs about {_gib(nbytes)} of memory, more than the {_gib(budget)} (half "
            f"of this machine's memory) a dataset may take: {advice}"
        )


def _gib(nbytes: int) -> str:
    return f"{nbytes / 2**30:.3g} GiB"


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

    @property
    def first(self) -> slice:
        """The part of a fixed-order dataset that `max_images` keeps."""
        return slice(None) if self.max_images is None else slice(0, self.max_images)


Loader = Callable[[LoadRequest], ImageDataset]

# Named datasets (`gankit datasets` lists them); the first docstring line is the description.
DATASETS: Registry[Loader] = Registry("dataset")
