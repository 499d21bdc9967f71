"""Files written before issue 17 (checkpoint and classifier format 1, commit d67c53e) keep
loading, sampling and resuming.

The fixtures in tests/fixtures/v1 (see its README) are never written to: a resume runs on a
copy, and every test checks that the fixture files are byte for byte what they were.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from gankit.checkpoint import FORMAT_VERSION, list_checkpoints, load_checkpoint, read_checkpoint
from gankit.cli import main
from gankit.metrics.classifier import load_classifier
from gankit.sampling import generate, load
from gankit.training import train

FIXTURES = Path(__file__).parent / "fixtures" / "v1"
RUNS = ["dcgan", "cdcgan", "stylegan"]  # trained on --data digits at resolution 16, 64 images


def _digest() -> dict[str, str]:
    return {
        str(p.relative_to(FIXTURES)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(FIXTURES.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(autouse=True)
def _fixtures_untouched() -> Iterator[None]:
    before = _digest()
    yield
    assert _digest() == before, "a test changed tests/fixtures/v1"


@pytest.mark.parametrize("name", RUNS)
def test_v1_checkpoints_load(name: str) -> None:
    run = FIXTURES / name
    files = list_checkpoints(run)
    assert [p.name for p in files] == ["ckpt-000000032.safetensors", "ckpt-000000064.safetensors"]
    for p in files:
        ck = read_checkpoint(p)
        assert ck.meta["format_version"] == 1 < FORMAT_VERSION
        assert ck.config is not None and ck.config.model == name
    ck = load_checkpoint(run)
    assert ck.nimg == 64 and ck.run_config.model_config["resolution"] == 16


@pytest.mark.parametrize("name", RUNS)
def test_v1_runs_sample(name: str) -> None:
    run = load(FIXTURES / name)
    assert run.used_ema and run.checkpoint.nimg == 64
    labels = [0, 1, 2, 9] if run.num_classes else None
    images = generate(run, [0, 1, 2, 3], labels=labels)
    assert images.shape == (4, 1, 16, 16)
    assert torch.isfinite(images).all() and images.abs().max() <= 1
    torch.testing.assert_close(generate(run, [0, 1, 2, 3], labels=labels), images)
    assert not torch.equal(images[0], images[1])


def test_v1_run_samples_from_the_cli(tmp_path: Path) -> None:
    out = tmp_path / "s.png"
    assert main(["sample", str(FIXTURES / "dcgan"), "--out", str(out), "--seeds", "0-3"]) == 0
    assert out.is_file()


def test_v1_classifier_loads_and_classifies() -> None:
    clf = load_classifier(FIXTURES / "classifier-digits.safetensors")
    assert clf.meta["format_version"] == 1 and clf.num_classes == 10
    images = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8)
    out = clf(images)
    assert out.features.shape == (5, 128) and out.logits.shape == (5, 10)


@pytest.mark.parametrize("name", RUNS)
def test_v1_run_resumes(tmp_path: Path, name: str) -> None:
    """Two more steps (batch 16) on a copy; the new checkpoint is format 2, and the copy's
    older format-1 one still sits beside it and loads."""
    run = tmp_path / name
    shutil.copytree(FIXTURES / name, run)
    result = train(resume=run, kimg=0.096, progress=False, tensorboard=False)
    assert result.nimg == 96
    ck = load_checkpoint(run)
    assert ck.nimg == 96 and ck.meta["format_version"] == FORMAT_VERSION
    assert ck.meta["step"] == 6 and ck.run_config.model == name
    assert [p.name for p in list_checkpoints(run)][-2:] == [
        "ckpt-000000064.safetensors",
        "ckpt-000000096.safetensors",
    ]
    assert (
        read_checkpoint(run / "checkpoints" / "ckpt-000000064.safetensors").meta["format_version"]
        == 1
    )
