"""Stacked MNIST: the 1,000-mode data sets and the mode counter.

The counter is checked against a stub classifier whose answer is known exactly (each channel's
grey level encodes its digit), so mode counts and KL values have closed forms.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from gankit.data import ImageDataset, list_datasets, load_dataset
from gankit.data.stacked import DEFAULT_STACKED_IMAGES, stack_labels
from gankit.errors import UserError
from gankit.metrics.features import Features
from gankit.metrics.stacked import count_stacked_modes

LEVEL = 25  # the stub reads digit d from grey level 25 * d


class LevelClassifier:
    """Stub digit classifier: the digit of a 1-channel image is its mean grey level / 25."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, ...]] = []

    def __call__(self, images: torch.Tensor) -> Features:
        self.calls.append(tuple(images.shape))
        digit = (images.float().mean(dim=(1, 2, 3)) / LEVEL).round().long().clamp(0, 9)
        return Features(torch.zeros(len(images), 4), torch.eye(10)[digit] * 5.0)


def _images_for(triples: list[tuple[int, int, int]], side: int = 28) -> torch.Tensor:
    levels = torch.tensor(triples, dtype=torch.uint8) * LEVEL  # [N, 3]
    return levels[:, :, None, None].expand(-1, -1, side, side).contiguous()


def _distinct_triples(k: int, seed: int = 0) -> list[tuple[int, int, int]]:
    codes = np.random.default_rng(seed).choice(1000, size=k, replace=False)
    return [(int(c) // 100, int(c) // 10 % 10, int(c) % 10) for c in codes]


# ----------------------------------------------------------------------------- counting


@pytest.mark.parametrize("k", [1, 37, 1000])
def test_k_equally_filled_modes_count_k_with_kl_log_1000_over_k(k: int) -> None:
    triples = _distinct_triples(k) * 3  # every mode exactly 3 times
    clf = LevelClassifier()
    result = count_stacked_modes(_images_for(triples, side=4), clf, batch_size=500)
    assert result["modes"] == k
    assert result["n"] == 3 * k and result["num_modes"] == 1000
    assert result["kl"] == pytest.approx(math.log(1000 / k), abs=1e-9)
    assert all(shape[1] == 1 for shape in clf.calls)  # one channel at a time
    counts = np.array(result["channel_counts"])
    assert counts.shape == (3, 10) and (counts.sum(axis=1) == 3 * k).all()


def test_uneven_histogram_kl_and_min_count() -> None:
    triples = [(1, 2, 3)] * 6 + [(9, 9, 9)] * 3 + [(0, 0, 0)]
    images = _images_for(triples)
    p = np.array([0.6, 0.3, 0.1])
    expected = float((p * np.log(p * 1000)).sum())
    result = count_stacked_modes(images, LevelClassifier())
    assert result["modes"] == 3
    assert result["kl"] == pytest.approx(expected, abs=1e-9)
    assert result["channel_counts"][0][1] == 6 and result["channel_counts"][2][9] == 3
    assert count_stacked_modes(images, LevelClassifier(), min_count=2)["modes"] == 2


def test_channel_order_matters() -> None:
    """(1, 2, 3) and (3, 2, 1) are different modes: the label is 100*d0 + 10*d1 + d2."""
    result = count_stacked_modes(_images_for([(1, 2, 3), (3, 2, 1)]), LevelClassifier())
    assert result["modes"] == 2
    assert stack_labels(torch.tensor([[1, 2, 3], [3, 2, 1]])).tolist() == [123, 321]


def test_bad_inputs() -> None:
    with pytest.raises(UserError, match="3-channel"):
        count_stacked_modes(torch.zeros(4, 1, 28, 28, dtype=torch.uint8), LevelClassifier())
    with pytest.raises(ValueError, match="uint8"):
        count_stacked_modes(torch.zeros(4, 3, 28, 28), LevelClassifier())

    def five_classes(images: torch.Tensor) -> Features:
        return Features(torch.zeros(len(images), 4), torch.zeros(len(images), 5))

    with pytest.raises(UserError, match="10-class"):
        count_stacked_modes(torch.zeros(4, 3, 28, 28, dtype=torch.uint8), five_classes)


# ----------------------------------------------------------------------------- the data sets


def _source_labels(images: torch.Tensor, labels: torch.Tensor) -> dict[bytes, set[int]]:
    table: dict[bytes, set[int]] = {}
    for img, lab in zip(images.reshape(len(images), -1).numpy(), labels.tolist(), strict=True):
        table.setdefault(bytes(img), set()).add(lab)
    return table


def _check_against_source(stacked: ImageDataset, source: ImageDataset) -> None:
    table = _source_labels(source.images, source.labels)
    digits = torch.stack([stacked.labels // 100, stacked.labels // 10 % 10, stacked.labels % 10], 1)
    for img, ds in zip(stacked.images, digits, strict=True):
        for c in range(3):
            assert int(ds[c]) in table[bytes(img[c].reshape(-1).numpy())]


@pytest.mark.parametrize(
    "spec,source", [("stacked-digits", "digits"), ("stacked-sklearn-digits", "sklearn-digits")]
)
def test_stacked_digits_shapes_and_labels_match_the_source_digits(spec: str, source: str) -> None:
    stacked = load_dataset(spec, resolution=28, max_images=200)
    assert stacked.images.shape == (200, 3, 28, 28) and stacked.images.dtype == torch.uint8
    assert stacked.num_classes == 1000 and stacked.class_names[7] == "007"
    assert int(stacked.labels.min()) >= 0 and int(stacked.labels.max()) < 1000
    # Every channel is a digit exactly as the source loads it at 28x28, with that digit's label.
    _check_against_source(stacked, load_dataset(source, resolution=28))

    test = load_dataset(spec, resolution=28, train=False, max_images=100)
    _check_against_source(test, load_dataset(source, resolution=28, train=False))
    assert not torch.equal(test.images, stacked.images[:100])


def test_stacked_digits_default_size_and_prefix_property() -> None:
    full = load_dataset("stacked-digits", resolution=8)
    assert len(full) == DEFAULT_STACKED_IMAGES == 25_600
    assert len(full.labels.unique()) > 900  # 25,600 draws cover nearly all 1,000 triples
    few = load_dataset("stacked-digits", resolution=8, max_images=50)
    assert torch.equal(few.images, full.images[:50]) and torch.equal(few.labels, full.labels[:50])
    more = load_dataset("stacked-digits", resolution=8, max_images=30_000)
    assert len(more) == 30_000 and torch.equal(more.images[:25_600], full.images)
    again = load_dataset("stacked-digits", resolution=8, max_images=50)
    assert torch.equal(again.images, few.images)  # fixed seed, not the global RNG


def test_stacked_datasets_are_listed_with_their_size() -> None:
    listed = dict(list_datasets())
    for name in ("stacked-mnist", "stacked-digits", "stacked-sklearn-digits"):
        assert "1,000" in listed[name] and "25,600" in listed[name], listed[name]


def _write_idx(folder: Path, prefix: str, images: np.ndarray, labels: np.ndarray) -> None:
    n, h, w = images.shape
    (folder / f"{prefix}-images-idx3-ubyte").write_bytes(
        struct.pack(">IIII", 2051, n, h, w) + images.astype(np.uint8).tobytes()
    )
    (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(
        struct.pack(">II", 2049, n) + labels.astype(np.uint8).tobytes()
    )


def test_stacked_mnist_reads_the_mnist_files(tmp_path: Path) -> None:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    _write_idx(raw, "train", rng.integers(0, 256, (40, 28, 28)), np.arange(40) % 10)
    _write_idx(raw, "t10k", rng.integers(0, 256, (20, 28, 28)), np.arange(20) % 10)
    opts = dict(resolution=28, root=str(tmp_path), download=False)

    stacked = load_dataset("stacked-mnist", max_images=64, **opts)
    assert stacked.images.shape == (64, 3, 28, 28) and stacked.num_classes == 1000
    _check_against_source(stacked, load_dataset("mnist", **opts))
    test = load_dataset("stacked-mnist", max_images=16, train=False, **opts)
    _check_against_source(test, load_dataset("mnist", train=False, **opts))
    grey = load_dataset("stacked-mnist", max_images=8, channels=1, **opts)
    assert grey.images.shape == (8, 1, 28, 28)  # load_dataset converts like any RGB data

    with pytest.raises(UserError, match="MNIST"):
        load_dataset("stacked-mnist", resolution=28, root=str(tmp_path / "empty"), download=False)
