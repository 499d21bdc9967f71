"""The named datasets torchvision downloads: MNIST, Fashion-MNIST and CIFAR-10.

torchvision's datasets keep their images decoded in `.data`; we take that array whole instead
of going through `__getitem__`, which would build one PIL image per sample.
"""

from __future__ import annotations

import contextlib
import gzip
import shutil
import socket
import tarfile
from collections.abc import Iterator
from pathlib import Path
from urllib.error import URLError

import numpy as np
import torch

from ..errors import UserError
from .base import ImageDataset
from .common import DATASETS, LoadRequest

# Seconds a download may stall before it is given up (offline machines must not hang).
DOWNLOAD_TIMEOUT_S = 10.0

MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_FILES = (
    *(f"data_batch_{i}" for i in range(1, 6)),
    "test_batch",
    "batches.meta",
)


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    """torchvision's urlopen has no timeout; bound it so an offline machine fails fast."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _gunzip_missing(folder: Path, names: tuple[str, ...]) -> None:
    """Unpack `NAME.gz` next to itself when only the compressed file was provided.

    torchvision looks only for the unpacked files when it does not download, and would try to
    download (and check the md5 of) a hand-copied .gz otherwise.
    """
    for name in names:
        target, packed = folder / name, folder / f"{name}.gz"
        if target.is_file() or not packed.is_file():
            continue
        partial = target.with_name(target.name + ".part")
        try:
            with gzip.open(packed, "rb") as src, open(partial, "wb") as dst:
                shutil.copyfileobj(src, dst)
            partial.replace(target)
        except (OSError, EOFError) as err:
            partial.unlink(missing_ok=True)
            raise UserError(
                f"could not unpack {packed} ({err}): check the file, or unpack it yourself "
                f"to {target}"
            ) from None


def _extract_cifar_archive(root: Path) -> None:
    """Unpack a hand-copied cifar-10-python.tar.gz so no download (and md5 check) is needed."""
    archive, folder = root / CIFAR10_ARCHIVE, root / CIFAR10_FOLDER
    if folder.is_dir() or not archive.is_file():
        return
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = [
                m
                for m in tar.getmembers()
                if m.name.startswith(CIFAR10_FOLDER + "/")
                and ".." not in m.name.split("/")
                and (m.isfile() or m.isdir())
            ]
            if hasattr(tarfile, "data_filter"):  # refuses links/paths that escape `root`
                tar.extractall(root, members=members, filter="data")
            else:  # Python < 3.10.12: the member names were checked above
                tar.extractall(root, members=members)
    except (OSError, EOFError, tarfile.TarError) as err:
        raise UserError(
            f"could not unpack {archive} ({err}): check the file, or unpack it yourself so "
            f"that {folder} exists"
        ) from None


def _prune_empty(folder: Path, existed: set[Path]) -> None:
    """Remove the empty folders a failed download created (never one that was there before),
    so that an offline attempt leaves no trace."""
    for p in (folder, *folder.parents):
        if p in existed or not p.is_dir() or any(p.iterdir()):
            return
        p.rmdir()


def _missing_files(folder: Path, names: tuple[str, ...]) -> list[str]:
    return [n for n in names if not (folder / n).is_file()]


def _open_torchvision(
    make: type, req: LoadRequest, title: str, folder: Path, files: tuple[str, ...], advice: str
) -> object:
    """Instantiate a torchvision dataset, turning every failure into an actionable UserError."""
    root = str(req.data_root)
    existed = {p for p in (folder, *folder.parents) if p.exists()}
    try:
        if req.download:
            with _socket_timeout(DOWNLOAD_TIMEOUT_S):
                return make(root, train=req.train, download=True)
        return make(root, train=req.train, download=False)
    except (RuntimeError, URLError, OSError, AssertionError, ValueError, TypeError) as err:
        missing = _missing_files(folder, files)
        if not missing:
            detail = " ".join(str(err).split())[:200]
            raise UserError(
                f"{title} files in {folder} could not be read ({detail}): they may be corrupt; "
                "replace them with fresh copies, or pass --data-root"
            ) from None
        if req.download:
            _prune_empty(folder, existed)
        why = "could not be downloaded (offline?)" if req.download else "downloading is off"
        partly = f" ({', '.join(missing)} missing)" if len(missing) < len(files) else ""
        raise UserError(
            f"{title} not found in {folder}{partly} and {why}: {advice}, or pass --data-root"
        ) from None


def _load_idx_dataset(req: LoadRequest, cls_name: str, title: str) -> ImageDataset:
    import torchvision.datasets as tvd

    make = getattr(tvd, cls_name)
    folder = req.data_root / cls_name / "raw"
    _gunzip_missing(folder, MNIST_FILES)
    advice = f"put {', '.join(MNIST_FILES)} (or their .gz) there"
    ds = _open_torchvision(make, req, title, folder, MNIST_FILES, advice)
    data = torch.as_tensor(ds.data)
    targets = torch.as_tensor(ds.targets, dtype=torch.int64)
    if data.dim() != 3 or data.dtype != torch.uint8 or len(targets) != len(data):
        raise UserError(
            f"{title} files in {folder} do not match: {tuple(data.shape)} images of "
            f"{data.dtype} and {len(targets)} labels; put matching image and label files there"
        )
    cut = req.first
    return ImageDataset(
        images=data[cut].unsqueeze(1).contiguous(),
        labels=targets[cut].clone(),
        num_classes=10,
        name=req.spec,
        class_names=[str(c) for c in range(10)] if cls_name == "MNIST" else list(ds.classes),
    )


@DATASETS.register("mnist")
def load_mnist(req: LoadRequest) -> ImageDataset:
    """MNIST handwritten digits, 28x28 grey, 60,000 train / 10,000 test (torchvision)."""
    return _load_idx_dataset(req, "MNIST", "MNIST")


@DATASETS.register("fashion-mnist")
def load_fashion_mnist(req: LoadRequest) -> ImageDataset:
    """Fashion-MNIST clothing pictures, 28x28 grey, 10 classes, 60,000 / 10,000 (torchvision)."""
    return _load_idx_dataset(req, "FashionMNIST", "Fashion-MNIST")


@DATASETS.register("cifar10")
def load_cifar10(req: LoadRequest) -> ImageDataset:
    """CIFAR-10 photos, 32x32 colour, 10 classes, 50,000 train / 10,000 test (torchvision)."""
    import torchvision.datasets as tvd

    root = req.data_root
    _extract_cifar_archive(root)
    folder = root / CIFAR10_FOLDER
    advice = f"put the folder {CIFAR10_FOLDER} or the archive {CIFAR10_ARCHIVE} in {root}"
    ds = _open_torchvision(tvd.CIFAR10, req, "CIFAR-10", folder, CIFAR10_FILES, advice)
    data = np.asarray(ds.data)  # [N, 32, 32, 3] uint8
    cut = req.first
    images = torch.from_numpy(np.ascontiguousarray(data[cut].transpose(0, 3, 1, 2)))
    return ImageDataset(
        images=images,
        labels=torch.as_tensor(np.asarray(ds.targets)[cut], dtype=torch.int64),
        num_classes=10,
        name=req.spec,
        class_names=list(ds.classes),
    )
