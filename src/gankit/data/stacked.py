"""Stacked MNIST: three digits as the three channels of one image, 1,000 modes.

The mode-collapse benchmark of VEEGAN (Srivastava et al., 2017) and PacGAN (Lin et al., 2018):
each channel holds an independently drawn digit, so the data has 10^3 equally likely classes
and a generator's coverage can be counted with an ordinary digit classifier applied to each
channel (`gankit.metrics.stacked.count_stacked_modes`). The digits are drawn with a fixed
seeded generator, so a spec always means the same images; `max_images` keeps the first N of
that same sequence.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from ..errors import UserError
from .base import ImageDataset
from .builtin import load_mnist
from .common import DATASETS, Loader, LoadRequest
from .digits import load_digits, load_sklearn_digits

# The literature's size for the training set (VEEGAN / PacGAN both use 25,600 stacked images).
DEFAULT_STACKED_IMAGES = 25_600
NUM_MODES = 1000
# Seeds of the digit draws; different per split so train and test stacks are unrelated.
_SEEDS = {True: 0, False: 1}

# Stacked spec -> the single-digit data set it is built from (whose classifier measures it).
STACKED_SOURCES = {
    "stacked-mnist": "mnist",
    "stacked-digits": "digits",
    "stacked-sklearn-digits": "sklearn-digits",
}


def stack_labels(digits: torch.Tensor) -> torch.Tensor:
    """[N, 3] per-channel digits -> [N] labels 100*d0 + 10*d1 + d2."""
    return digits[:, 0] * 100 + digits[:, 1] * 10 + digits[:, 2]


def _stack(req: LoadRequest, load_source: Loader) -> ImageDataset:
    """Draw N digit triples from the source split and stack them as channels."""
    source = load_source(replace(req, spec=STACKED_SOURCES[req.spec], max_images=None))
    if source.labels is None or source.channels != 1 or len(source) == 0:
        raise UserError(f"{req.spec} needs labelled grey digits from {source.name}")
    n = req.max_images if req.max_images is not None else DEFAULT_STACKED_IMAGES
    # One draw of shape [n, 3] from a fresh PCG64 stream: the first N rows do not depend on n,
    # so max_images keeps a prefix of the default data set.
    rng = np.random.default_rng(_SEEDS[req.train])
    index = torch.from_numpy(rng.integers(0, len(source), size=(n, 3), dtype=np.int64))
    images = source.images[:, 0][index]  # [n, 3, H, W]
    labels = stack_labels(source.labels[index])
    split = "train" if req.train else "test"
    return ImageDataset(
        images=images.contiguous(),
        labels=labels,
        num_classes=NUM_MODES,
        name=req.spec,
        class_names=[f"{i:03d}" for i in range(NUM_MODES)],
        notes=[f"{n} stacks of 3 digits drawn (seed {_SEEDS[req.train]}) from the {split} split"],
    )


@DATASETS.register("stacked-mnist")
def load_stacked_mnist(req: LoadRequest) -> ImageDataset:
    """Stacked MNIST: 3 MNIST digits as RGB, 1,000 classes; 25,600 images (or --max-images).

    Built from the same files as "mnist" (ROOT/MNIST/raw), from its train or test split; the
    label is 100 * d0 + 10 * d1 + d2 for the digits in channels 0, 1, 2.
    """
    return _stack(req, load_mnist)


@DATASETS.register("stacked-digits")
def load_stacked_digits(req: LoadRequest) -> ImageDataset:
    """Stacked digits: 3 embedded digits as RGB, 1,000 classes; 25,600 images (or --max-images).

    The same construction as stacked-mnist from the embedded 28x28 "digits" (no download),
    from its train split or its disjoint test split.
    """
    return _stack(req, load_digits)


@DATASETS.register("stacked-sklearn-digits")
def load_stacked_sklearn_digits(req: LoadRequest) -> ImageDataset:
    """Stacked sklearn digits: 3 8x8 sklearn digits as RGB, 1,000 classes; 25,600 images.

    What stacked-digits was before the digits became MNIST's (its old runs reload this).
    train=False draws from the sklearn-digits held-out subset, which the train split contains.
    """
    return _stack(req, load_sklearn_digits)
