"""A trained domain classifier as a frozen feature extractor, and where to find one."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ...data.transforms import convert_channels, resize_square
from ...errors import UserError
from ..features import FeatureExtractor, Features, weights_checksum
from .network import NAME, RESOLUTION, ClassifierConfig, DigitCNN
from .storage import (
    canonical_spec,
    classifier_data,
    default_classifier_path,
    legacy_classifier_path,
    read_classifier_meta,
    trained_on,
)

# What `__call__` does to images of another size (the same resize the data loaders use).
RESIZE_FILTER = "bilinear-antialias"


def load_classifier(
    path: str | os.PathLike, *, device: str | torch.device = "cpu", batch_size: int = 500
) -> ClassifierExtractor:
    """Load a classifier file as a feature extractor (checksum verified, never unpickled).

    Args:
        path: a file written by `train_classifier` / `gankit evaluator train`.
        device: where the network runs.
        batch_size: images per forward pass.
    Raises:
        UserError: the file is missing, damaged or not a gankit domain classifier.
    """
    meta, tensors = read_classifier_meta(path)
    try:
        net = DigitCNN(ClassifierConfig.from_json(meta["config"]))
        net.load_state_dict(tensors, strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        detail = " ".join(str(exc).split())[:120]
        raise UserError(
            f"{path} does not hold a network this gankit can build ({detail})"
        ) from None
    return ClassifierExtractor(net, meta, path=Path(path), device=device, batch_size=batch_size)


def find_classifier(
    data: str, path: str | os.PathLike | None = None, *, device: str | torch.device = "cpu"
) -> ClassifierExtractor:
    """The classifier for `data`: the file at `path` if given, else the default location.

    Stacked MNIST specs find the classifier of their source digits (see `classifier_data`).
    A file at the default location must have been trained on `data` as it is loaded today
    (its record's data and revision say so): the classifier of the 8x8 digits that "digits"
    once meant measures sklearn-digits, and never today's digits.

    Raises:
        UserError: no such file (saying how to train one), a damaged one, or one trained on
            other data.
    """
    if path is not None:
        return load_classifier(path, device=device)
    source = classifier_data(data)
    where = default_classifier_path(data)
    legacy = legacy_classifier_path(data)
    if not where.is_file() and legacy is not None and legacy.is_file():
        where = legacy  # written before file names were keyed by the data's identity
    if not where.is_file():
        raise UserError(
            f"no domain classifier for {source} at {where}; train one with "
            f"`gankit evaluator train --data {source}`"
        )
    found = load_classifier(where, device=device)
    if found.data != canonical_spec(source):
        raise UserError(
            f"{where} was trained on {found.data or 'unnamed data'}, not {source}: train one "
            f"for {source} with `gankit evaluator train --data {source}`"
        )
    return found


class ClassifierExtractor(FeatureExtractor):
    """A trained `DigitCNN` as a frozen feature extractor for 28x28 grey images.

    Takes uint8 [B, 1 or 3, H, W]: RGB becomes grey by luminance (BT.601, as the data loaders
    do) and other sizes are resized to 28x28 (bilinear, antialiased, centre-cropped if not
    square). Returns features [B, 128] (post-ReLU penultimate layer) and logits [B, K], float32
    on the CPU.
    """

    name = NAME
    resolution = RESOLUTION
    channels = 1
    resize_filter = RESIZE_FILTER

    def __init__(
        self,
        net: DigitCNN,
        meta: dict[str, Any],
        *,
        path: Path | None = None,
        device: str | torch.device = "cpu",
        batch_size: int = 500,
    ) -> None:
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.meta = meta
        self.path = path
        self.batch_size = batch_size
        self._checksum = weights_checksum(self.net)

    @property
    def checksum(self) -> str:
        return self._checksum

    @property
    def num_classes(self) -> int:
        return self.net.cfg.num_classes

    @property
    def class_names(self) -> list[str]:
        names = self.meta.get("class_names")
        return list(names) if names else [str(i) for i in range(self.num_classes)]

    @property
    def accuracy(self) -> float | None:
        """Held-out accuracy measured when the classifier was trained."""
        acc = self.meta.get("accuracy")
        return None if acc is None else float(acc)

    @property
    def data(self) -> str:
        """The data spec the classifier was trained on, by its name today (a classifier of
        the 8x8 digits that "digits" once meant says sklearn-digits)."""
        return trained_on(self.meta)

    def describe(self) -> dict[str, object]:
        out = super().describe()
        out.update(extractor_data=self.data, extractor_accuracy=self.accuracy)
        return out

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [B, 1|3, H, W] -> float [B, 1, 28, 28] in [-1, 1] on the extractor's device."""
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] not in (1, 3):
            raise ValueError(
                f"expected uint8 images [B, 1 or 3, H, W], got {images.dtype} {tuple(images.shape)}"
            )
        x = resize_square(convert_channels(images.cpu(), 1), RESOLUTION)
        return x.to(self.device).float().div_(127.5).sub_(1.0)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> Features:
        feats, logits = [], []
        for start in range(0, images.shape[0], self.batch_size):
            f, lg = self.net.forward_features(self.prepare(images[start : start + self.batch_size]))
            feats.append(f.float().cpu())
            logits.append(lg.float().cpu())
        if not feats:  # an empty batch still has the right shapes
            k, d = self.num_classes, self.net.cfg.features
            return Features(torch.zeros(0, d), torch.zeros(0, k))
        return Features(torch.cat(feats), torch.cat(logits))

    def classify(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images -> logits [B, K] (float32, CPU)."""
        logits = self(images).logits
        assert logits is not None
        return logits
