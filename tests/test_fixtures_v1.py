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
from gankit.data.identity import current_spec
from gankit.errors import UserError
from gankit.metrics import evaluate_run
from gankit.metrics.classifier import default_classifier_path, find_classifier, load_classifier
from gankit.metrics.reference import Reference
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
    # Trained on the 8x8 digits "digits" meant then, and resumed on the same images.
    assert ck.run_config.train.data == "sklearn-digits" and ck.meta["data"]["images"] == 1797
    assert [p.name for p in list_checkpoints(run)][-2:] == [
        "ckpt-000000064.safetensors",
        "ckpt-000000096.safetensors",
    ]
    assert (
        read_checkpoint(run / "checkpoints" / "ckpt-000000064.safetensors").meta["format_version"]
        == 1
    )


@pytest.mark.parametrize("name", RUNS)
def test_v1_runs_reload_the_8x8_digits_they_were_trained_on(name: str) -> None:
    """Their records say "digits" with no revision: the scikit-learn 8x8 set "digits" meant
    then, which every reloader (resume, eval's reference, memorisation, probe) now gets."""
    ck = load_checkpoint(FIXTURES / name)
    assert ck.meta["data"]["name"] == "digits" and "revision" not in ck.meta["data"]
    assert ck.run_config.train.data == "sklearn-digits"
    assert Reference.for_run(ck.run_config).data == "sklearn-digits"
    assert current_spec("digits", {"revision": 2}) == "digits"
    assert current_spec("stacked-digits", {}) == "stacked-sklearn-digits"
    with pytest.raises(UserError, match="newer than this gankit"):
        current_spec("digits", {"revision": 3})


def test_v1_classifier_is_the_8x8_digits_one_and_never_todays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found where gankit used to keep it (mnistcnn-digits) for the v1 runs' sklearn-digits,
    and refused, not silently used, for today's digits."""
    monkeypatch.setenv("GANKIT_CACHE", str(tmp_path / "cache"))
    old = FIXTURES / "classifier-digits.safetensors"
    assert load_classifier(old).data == "sklearn-digits"
    legacy = tmp_path / "cache" / "evaluators" / "mnistcnn-digits.safetensors"
    legacy.parent.mkdir(parents=True)
    shutil.copyfile(old, legacy)
    assert default_classifier_path("digits") != legacy
    assert find_classifier("sklearn-digits").path == legacy
    with pytest.raises(UserError, match="no domain classifier for digits"):
        find_classifier("digits")
    shutil.copyfile(old, default_classifier_path("digits"))
    with pytest.raises(UserError, match="trained on sklearn-digits, not digits"):
        find_classifier("digits")

    run = tmp_path / "dcgan"
    shutil.copytree(FIXTURES / "dcgan", run)
    (rec,) = evaluate_run(run, "fd100_mnistcnn", append=False)
    assert rec["protocol"]["reference"] == "sklearn-digits train split"
    assert rec["protocol"]["reference_size"] == 1797
    assert rec["protocol"]["extractor_data"] == "sklearn-digits"
