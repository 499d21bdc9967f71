"""The generators shipped in gankit/pretrained: listed, read by the one checked loader, sampled,
served and evaluated with no training, never written to, and drawing the digits they claim."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from gankit.checkpoint import load_checkpoint
from gankit.cli import main
from gankit.errors import UserError
from gankit.metrics import evaluate_run
from gankit.pretrained import PRETRAINED, folder, list_pretrained, pretrained_path
from gankit.sampling import generate, load
from gankit.serve import create_app
from gankit.training import train

NAMES = list(PRETRAINED)


def _digest() -> tuple[dict[str, str], list[str]]:
    files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder().glob("*.*")}
    return files, sorted(p.name for p in folder().parent.iterdir())  # gankit/ itself too


@pytest.fixture(autouse=True)
def _package_untouched() -> Iterator[None]:
    """Nothing a command does to a shipped generator writes into the installed package."""
    before = _digest()
    yield
    assert _digest() == before


@pytest.mark.parametrize("name", NAMES)
def test_each_is_a_small_checked_checkpoint_of_the_digits(name: str) -> None:
    path = pretrained_path(f"pretrained:{name}")
    assert path == folder() / f"{name}.safetensors" and path.stat().st_size < 3 * 2**20
    ck = load_checkpoint(f"pretrained:{name}")  # the loader every command uses
    assert ck.path == path and ck.meta["pretrained"]["name"] == name
    assert ck.run_config.train.data == "digits"
    assert ck.meta["data"]["revision"] == 2 and ck.meta["data"]["images"] == 4000
    assert not any(k.startswith(("optim.", "rng.")) for k in ck.tensors)
    run = load(f"pretrained:{name}")
    assert run.used_ema
    labels = [0, 7] if run.num_classes else None
    x = generate(run, [0, 1], labels)
    assert x.shape == (2, 1, 32, 32) and torch.isfinite(x).all()
    torch.testing.assert_close(generate(run, [0, 1], labels), x)


def test_they_keep_g_ema_only_and_no_ema_is_a_clear_error() -> None:
    """G itself is left out of the shipped files (sampling uses G_ema), to keep them small."""
    for name in NAMES:
        ck = load_checkpoint(f"pretrained:{name}")
        assert ck.has("G_ema") and ck.has("D") and not ck.has("G")
        with pytest.raises(UserError, match="holds G_ema only.*drop --no-ema"):
            load(f"pretrained:{name}", ema=False)


def test_only_a_shipped_file_may_leave_out_g(tmp_path: Path) -> None:
    """The same tensors without the `pretrained` record are an ordinary checkpoint missing G."""
    from gankit.checkpoint import save_checkpoint

    ck = load_checkpoint("pretrained:dcgan-digits")
    meta = {k: v for k, v in ck.meta.items() if k not in ("format", "format_version", "sha256")}
    del meta["pretrained"]
    out = save_checkpoint(tmp_path / "no-g.safetensors", dict(ck.tensors), meta)
    with pytest.raises(UserError, match="holds no G weights"):
        load_checkpoint(out)
    meta["pretrained"] = ck.meta["pretrained"]  # a shipped file still needs G_ema and D
    tensors = {k: v for k, v in ck.tensors.items() if not k.startswith("G_ema.")}
    out = save_checkpoint(tmp_path / "no-g-ema.safetensors", tensors, meta)
    with pytest.raises(UserError, match="holds no G weights"):
        load_checkpoint(out)


def test_all_of_them_fit_in_a_few_megabytes() -> None:
    assert sum((folder() / f"{n}.safetensors").stat().st_size for n in NAMES) < 6 * 2**20


def test_models_lists_them_and_an_unknown_name_is_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split(None, 1)[1] for line in out.splitlines() if line.strip()}
    for name, text in list_pretrained():
        assert rows[name] == text
    with pytest.raises(UserError, match="unknown pretrained generator 'nosuch'.*cgan-digits"):
        load_checkpoint("pretrained:nosuch")


def test_sample_a_class_from_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sevens.png"
    argv = ["sample", "pretrained:cgan-digits", "--class", "7", "--seeds", "0-3", "--out"]
    assert main([*argv, str(out)]) == 0
    assert "cgan-digits.safetensors" in capsys.readouterr().out
    with Image.open(out) as im:  # 4 samples of 32 px with 2 px padding, shown twice their size
        assert im.size == (2 * (2 + 2 * 34), 2 * (2 + 2 * 34))


def test_serve_answers_for_a_shipped_generator() -> None:
    client = TestClient(create_app("pretrained:cgan-digits"), base_url="http://localhost:8000")
    info = client.get("/api/info").json()
    assert info["model"] == "cdcgan" and info["dataset"] == "digits" and info["num_classes"] == 10
    assert info["metrics"] == []  # it has no eval.jsonl, and none is read from elsewhere
    grid = client.get("/api/grid.png?seed=0&n=4&cls=7")
    assert grid.status_code == 200 and grid.headers["content-type"] == "image/png"


def test_eval_writes_its_record_to_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (rec,) = evaluate_run("pretrained:dcgan-digits", "fd100_pixel")
    assert rec["run"] == "pretrained:dcgan-digits" and rec["model"] == "dcgan"
    assert rec["protocol"]["reference"] == "digits train split"
    assert (tmp_path / "eval.jsonl").is_file()


def test_a_shipped_generator_cannot_be_resumed() -> None:
    with pytest.raises(UserError, match="not resumed"):
        train(resume="pretrained:dcgan-digits", kimg=1, progress=False, tensorboard=False)


def test_they_draw_the_digits_they_claim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A digit classifier (89% on the 1,000 test digits) reads the CGAN's samples as the class
    asked for (94% of 200, measured) and the DCGAN's as every digit (32-66 of 500 each)."""
    from gankit.data.base import to_uint8
    from gankit.metrics.classifier import load_classifier, train_classifier

    monkeypatch.setenv("GANKIT_CACHE", str(tmp_path))
    out = tmp_path / "clf.safetensors"
    train_classifier("digits", epochs=2, batch_size=32, max_images=1000, out=out, progress=False)
    clf = load_classifier(out)
    labels = [c for c in range(10) for _ in range(20)]
    fakes = to_uint8(generate(load("pretrained:cgan-digits"), list(range(200)), labels))
    agree = (clf.classify(fakes).argmax(1) == torch.tensor(labels)).float().mean().item()
    assert agree >= 0.8, agree
    fakes = to_uint8(generate(load("pretrained:dcgan-digits"), list(range(500))))
    counts = torch.bincount(clf.classify(fakes).argmax(1), minlength=10)
    assert int(counts.min()) >= 10, counts.tolist()
