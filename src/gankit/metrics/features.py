"""Feature extractors: the networks whose feature space a metric measures distances in.

Every metric result names its extractor and the extractor's checksum, so two numbers are only
compared when they were measured with the same network. Extractors take uint8 images (what a
saved PNG holds), so generated and real images go through exactly the same quantisation.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class Features:
    """What an extractor returns for a batch.

    Attributes:
        features: float32 [B, D], the embedding that Frechet distance, KID and PRDC use.
        logits: float32 [B, K] class logits (Inception Score, class accuracy), or None.
    """

    features: torch.Tensor
    logits: torch.Tensor | None = None


def weights_checksum(module: nn.Module) -> str:
    """First 16 hex digits of a SHA-256 over the module's parameters and buffers, in order."""
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class FeatureExtractor(ABC):
    """A frozen network mapping uint8 images to features (and, optionally, class logits).

    Attributes:
        name: short id used in metric names, e.g. "inception" or "mnistcnn".
        resolution: the input side the network expects; `__call__` resizes to it.
        channels: the input channels it expects (1 or 3); grey is repeated to RGB for 3.
        resize_filter: how images are resized, recorded in every result's protocol.
        has_logits: whether it returns class logits (what IS and class accuracy need), known
            before any image is generated.
    """

    name: str = ""
    resolution: int = 0
    channels: int = 0
    resize_filter: str = ""
    has_logits: bool = True

    @property
    @abstractmethod
    def checksum(self) -> str:
        """Identifies the exact weights (see `weights_checksum`)."""

    @abstractmethod
    def __call__(self, images: torch.Tensor) -> Features:
        """uint8 [B, C, H, W] -> Features. Must be deterministic and run under no_grad."""

    def describe(self) -> dict[str, object]:
        """The extractor's part of a result's protocol record."""
        return {
            "extractor": self.name,
            "extractor_checksum": self.checksum,
            "extractor_resolution": self.resolution,
            "resize_filter": self.resize_filter,
        }


class PixelExtractor(FeatureExtractor):
    """Raw pixels in [0, 1], flattened: the space of the memorisation check and of baselines."""

    name = "pixel"
    resolution = 0  # any: the images are used as they are
    channels = 0
    resize_filter = "none"
    has_logits = False

    @property
    def checksum(self) -> str:
        return "none"

    def __call__(self, images: torch.Tensor) -> Features:
        return Features(features=images.flatten(1).float().div(255.0))
