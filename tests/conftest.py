"""Shared helpers: tiny model configs and small seeded data, so every test runs in seconds."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from gankit.data.base import ImageDataset
from gankit.models import MODELS

from . import variant

REPO = Path(__file__).resolve().parents[1]  # the checkout
FIXTURES_V1 = REPO / "tests" / "fixtures" / "v1"  # runs written before issue 17 (format 1)

# A model only the test suite registers, before any test module is collected: the registry-wide
# tests, the CLI, sampling and the web page must take it up with no edit (see variant.py). A
# process that imports this module for its helpers (benchmarks/serve.py) is not the suite and
# does not register it; the suite's spawned workers (DDP ranks) inherit the variable and do.
VARIANT_ENV = "GANKIT_TEST_VARIANT"
if os.environ.get(VARIANT_ENV) == "1":
    variant.register()


def pytest_configure(config: pytest.Config) -> None:
    """Register the test-only variant in the pytest process and in processes it spawns."""
    os.environ[VARIANT_ENV] = "1"
    variant.register()


# Classifiers and cached real-data statistics go to a throw-away folder, never ~/.cache.
os.environ["GANKIT_CACHE"] = tempfile.mkdtemp(prefix="gankit-test-cache-")


def tiny_overrides(
    name: str, resolution: int = 16, channels: int = 1, num_classes: int = 3
) -> dict[str, Any]:
    """The smallest sensible config of a registered model (only fields it has)."""
    fields = MODELS.get(name).config_cls.__dataclass_fields__
    out: dict[str, Any] = {"resolution": resolution, "channels": channels}
    small = {"nz": 8, "ngf": 8, "ndf": 8, "hidden": 16, "embed_dim": 4}
    out.update({k: v for k, v in small.items() if k in fields})
    if MODELS.get(name).conditional:
        out["num_classes"] = num_classes
    return out


def synthetic_dataset(
    n: int = 64, resolution: int = 16, channels: int = 1, num_classes: int = 3, seed: int = 0
) -> ImageDataset:
    """Random blobs with labels: enough for a GAN step, no files needed."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(
        0, 256, (n, channels, resolution, resolution), generator=g, dtype=torch.uint8
    )
    labels = torch.arange(n) % num_classes
    return ImageDataset(
        images=images,
        labels=labels,
        num_classes=num_classes,
        name="synthetic",
        class_names=[str(i) for i in range(num_classes)],
    )


@pytest.fixture
def tiny_data() -> ImageDataset:
    return synthetic_dataset()


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A dcgan trained for 4 steps on the bundled digits at 16x16 (quality is irrelevant).
    Shared by the analysis tests; they may write figures into it, never change its weights."""
    from gankit.training import train

    run = tmp_path_factory.mktemp("digits") / "run"
    train(
        "dcgan",
        "digits",
        run_dir=run,
        model_overrides=tiny_overrides("dcgan"),
        kimg=0.064,
        batch_size=16,
        log_every=1,
        progress=False,
        tensorboard=False,
    )
    return run


class SignD(nn.Module):
    """A stand-in D that returns given outputs: `real` for a batch with a positive sum (the
    tests' real batches are positive), `fake` otherwise. Objectives' maths is checked against
    it by hand: logits for the GAN losses, reconstructions for BEGAN's autoencoder."""

    def __init__(self, real: torch.Tensor, fake: torch.Tensor) -> None:
        super().__init__()
        self.real, self.fake = real, fake

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.real if x.sum() > 0 else self.fake
