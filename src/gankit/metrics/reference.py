"""The real images a metric compares against, and the on-disk cache of their features.

Real-data features are cached by a hash of the image bytes, the data spec and the extractor's
checksum, and written atomically, so an edited dataset never reuses stale statistics.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import torch
from safetensors.torch import load_file, save

from ..config import RunConfig
from ..data import load_dataset
from ..files import atomic_write_bytes
from .classifier.storage import cache_root
from .features import FeatureExtractor, Features


@dataclass
class Reference:
    """The real images a metric compares against."""

    data: str
    root: str | None
    split: str  # "train" or "test"
    resolution: int
    channels: int
    folder_labels: bool = False
    download: bool = False
    # a run trained on the first N training images (--max-images) is compared with those N:
    # its FID reference and the "nearest training image" of its memorisation check
    max_images: int | None = None

    def load(self, split: str | None = None) -> Any:
        train = (split or self.split) == "train"
        return load_dataset(
            self.data,
            resolution=self.resolution,
            channels=self.channels,
            root=self.root,
            train=train,
            download=self.download,
            folder_labels=self.folder_labels,
            max_images=self.max_images if train else None,
        )

    @property
    def described(self) -> str:
        """'mnist train split' (', first 500 images' for a subset), for records."""
        text = f"{self.data} {self.split} split"
        if self.max_images is not None and self.split == "train":
            text += f", first {self.max_images:,} images"
        return text

    @classmethod
    def for_run(
        cls,
        rc: RunConfig,
        *,
        data: str | None = None,  # other reference data than the run's own
        data_root: str | None = None,
        split: str = "train",
        download: bool | None = None,  # None: as the run was trained
    ) -> Reference:
        """A run's own training data, at its model's resolution and channels."""
        train = rc.train
        return cls(
            data=data or train.data,
            root=data_root if data_root is not None else train.data_root,
            split=split,
            resolution=rc.resolution,
            channels=rc.channels,
            folder_labels=train.folder_labels and data is None,
            download=train.download if download is None else download,
            max_images=train.max_images if data is None else None,
        )


def subset(n_total: int, n: int, seed: int) -> torch.Tensor:
    """The first n of a seeded permutation (all, in order, when n covers the split)."""
    if n >= n_total:
        return torch.arange(n_total)
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(n_total, generator=g)[:n].sort().values


def real_features(
    images: torch.Tensor,
    extractor: FeatureExtractor,
    key: dict[str, Any],
    *,
    use_cache: bool = True,
) -> Features:
    """Features of real images, cached on disk by a hash of the data, its spec and the network.

    The hash covers the image bytes themselves, so an edited dataset never reuses stale
    statistics. Files are safetensors, written atomically.
    """
    h = hashlib.sha256()
    h.update(json.dumps(key, sort_keys=True).encode())
    h.update(extractor.checksum.encode())
    h.update(images.contiguous().numpy().tobytes())
    digest = h.hexdigest()[:24]
    path = cache_root() / "stats" / f"{extractor.name}-{digest}.safetensors"
    if use_cache and path.is_file():
        try:
            t = load_file(str(path))
            return Features(features=t["features"], logits=t.get("logits"))
        except Exception:  # a damaged cache entry is recomputed, never trusted
            pass
    feats = extractor(images)
    if use_cache:
        tensors = {"features": feats.features.contiguous()}
        if feats.logits is not None:
            tensors["logits"] = feats.logits.contiguous()
        meta = {"gankit": json.dumps({**key, "extractor_checksum": extractor.checksum})}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, save(tensors, metadata=meta))
        except OSError:
            pass  # a read-only cache only costs time
    return feats
