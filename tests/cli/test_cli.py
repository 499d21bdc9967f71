"""The `gankit` command end to end on tiny settings, and every bad input of the CLI spec.

Every bad input must end with exactly one line on stderr that says what is wrong, exit code 2,
no traceback, and nothing already on disk changed. Most cases call `gankit.cli.main` in-process
(fast); a few run the real `python -m gankit` in a subprocess to prove the same end to end.
Shared runs are trained once per module on the embedded digits at 16x16 with 8-wide networks.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from gankit.cli import main
from tests.conftest import REPO

SRC = REPO / "src"
TINY = ["--resolution", "16", "--no-progress", "--set", "log_every=1"]
TINY_CONV = [*TINY, "--set", "ngf=8", "--set", "ndf=8"]
SHORT_DCGAN = ["dcgan", *TINY_CONV, "--kimg", "0.032", "--batch-size", "16"]
MODELS = ("gan", "dcgan", "cdcgan", "cgan")
# Only a safety net against a hang: a subprocess here takes seconds, even on a loaded machine.
HANG_S = 600


# ----------------------------------------------------------------------------- helpers


def cli(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    """Run `gankit ARGV` in-process; (exit code, stdout, stderr). argparse's exit counts too."""
    capsys.readouterr()  # drop anything printed before
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse reports usage errors by exiting
        rc = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return rc, out, err


def cli_subprocess(cwd: Path, *argv: str | Path) -> tuple[int, str, str]:
    """Run the real console entry point, `python -m gankit ARGV`."""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.run(
        [sys.executable, "-m", "gankit", *map(str, argv)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=HANG_S,
    )
    return proc.returncode, proc.stdout, proc.stderr


def assert_user_error(result: tuple[int, str, str], *fragments: str) -> str:
    """Exit code 2, one non-empty stderr line starting with 'gankit', naming what is wrong."""
    rc, out, err = result
    assert "Traceback" not in out + err, err
    assert rc == 2, (rc, out, err)
    line = err.rstrip("\n")
    assert line and "\n" not in line, f"expected one line on stderr, got {err!r}"
    assert line.startswith("gankit"), line
    for fragment in fragments:
        assert fragment.lower() in line.lower(), f"{fragment!r} not in {line!r}"
    return line


def snapshot(root: Path) -> dict[str, str]:
    """relative path -> SHA-256 of every file under `root` (to prove nothing changed)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def checkpoints(run: Path) -> list[Path]:
    return sorted((run / "checkpoints").glob("ckpt-*.safetensors"))


def png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        return im.size


def grid_px(count: int, side: int = 16, scale: int = 2) -> int:
    """Pixels along one axis of a sample grid with `count` images (2 px padding, scaled)."""
    return (count * (side + 2) + 2) * scale


def write_png(path: Path, value: int, size: int = 16) -> None:
    arr = np.full((size, size), value, dtype=np.uint8)
    arr[size // 4 : size // 2, size // 4 : size // 2] = 255 - value
    Image.fromarray(arr, mode="L").save(path)


def train_run(run_dir: Path, model: str, *extra: str) -> str:
    """Train a tiny run in-process (outside any test's capsys); return its stdout."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["train", model, "--data", "digits", *TINY, "--run-dir", str(run_dir), *extra])
    assert rc == 0, err.getvalue()
    return out.getvalue()


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Anything a command writes by default (runs/, samples.png) lands in the test's tmp."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def dcgan_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A finished dcgan run (256 images) and what `gankit train` printed. Never modified."""
    run = tmp_path_factory.mktemp("dcgan") / "run"
    out = train_run(
        run, "dcgan", "--set", "ngf=8", "--set", "ndf=8", "--kimg", "0.256", "--batch-size", "32"
    )
    return run, out


@pytest.fixture(scope="module")
def cond_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Finished 10-class cgan and cdcgan runs (128 images each). Never modified."""
    base = tmp_path_factory.mktemp("cond")
    cgan = base / "cgan"
    train_run(cgan, "cgan", "--kimg", "0.128", "--batch-size", "32", "--max-images", "200")
    cdcgan = base / "cdcgan"
    train_run(
        cdcgan,
        "cdcgan",
        *("--set", "ngf=8", "--set", "ndf=8", "--set", "embed_dim=4"),
        *("--kimg", "0.128", "--batch-size", "32", "--max-images", "200"),
    )
    return {"cgan": cgan, "cdcgan": cdcgan}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folders and .npz files, good and bad."""
    d = tmp_path_factory.mktemp("data")
    (d / "empty").mkdir()
    junk = d / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("not an image")
    (junk / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(64))
    (junk / "fake.jpg").write_text("hello")
    text_only = d / "text_only"
    text_only.mkdir()
    (text_only / "readme.md").write_text("# nothing to see")
    mixed = d / "mixed"
    mixed.mkdir()
    for i in range(20):
        write_png(mixed / f"img{i:02d}.png", 10 * i)
    (mixed / "readme.txt").write_text("a text file among the images")
    good = (mixed / "img00.png").read_bytes()
    (mixed / "zz_truncated.png").write_bytes(good[: len(good) // 2])
    rng = np.random.default_rng(0)
    np.savez(d / "c2.npz", x=rng.integers(0, 256, (20, 16, 16, 2), dtype=np.uint8))
    np.savez(d / "c4.npz", x=rng.integers(0, 256, (20, 16, 16, 4), dtype=np.uint8))
    np.savez(
        d / "labels5.npz",
        x=rng.integers(0, 256, (50, 16, 16, 1), dtype=np.uint8),
        y=np.arange(50) % 5,
    )
    return d


# ----------------------------------------------------------------------------- listings


def test_models_lists_every_model_with_a_description(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = cli(capsys, "models")
    assert rc == 0, err
    rows = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    for name in MODELS:
        assert name in rows, out
        description = rows[name][len(name) :].strip()
        assert len(description) > 15, rows[name]
    assert "[conditional]" in rows["cgan"] and "[conditional]" in rows["cdcgan"]
    assert "[conditional]" not in rows["dcgan"] and "[conditional]" not in rows["gan"]


def test_a_variant_only_the_tests_register_trains_samples_and_is_listed(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A model file plus its registry entry is all the CLI needs (tests/variant.py); a normal
    process, which never imports tests/, does not list it."""
    from tests.variant import NAME

    run = tmp_path / "variant"
    train_run(run, NAME, "--kimg", "0.032", "--batch-size", "16")
    assert checkpoints(run)
    rc, _, err = cli(capsys, "sample", run, "--seeds", "0-3", "--out", tmp_path / "grid.png")
    assert rc == 0, err
    assert png_size(tmp_path / "grid.png") == (grid_px(4), grid_px(10))  # conditional: a row
    rc, _, err = cli(  # per class; the registry's truncation range and --class hold for it
        capsys, "sample", run, "--seeds", "0-3", "--class", "2", "--trunc", "1.5",
        "--out", tmp_path / "c2.png",
    )  # fmt: skip
    assert rc == 0, err
    assert png_size(tmp_path / "c2.png") == (grid_px(2), grid_px(2))
    assert_user_error(cli(capsys, "sample", run, "--trunc", "3"), "threshold in (0, 2]")
    assert_user_error(cli(capsys, "codes", run), "no latent codes")  # declared, not probed
    assert_user_error(cli(capsys, "mixing", run), "no style inputs")
    rc, out, _ = cli(capsys, "models")
    assert rc == 0 and any(line.split()[0] == NAME for line in out.splitlines() if line.strip())
    rc, out, err = cli_subprocess(tmp_path, "models")
    assert rc == 0, err
    assert NAME not in out and "dcgan" in out


def test_datasets_and_objectives_are_listed(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = cli(capsys, "datasets")
    assert rc == 0, err
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    for name in ("digits", "mnist", "fashion-mnist", "cifar10", "folder:PATH", "npz:PATH"):
        assert name in names, out
    rc, out, err = cli(capsys, "objectives")
    assert rc == 0, err
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    assert {"nonsaturating", "minimax"} <= set(names), out


# ----------------------------------------------------------------------------- train: happy


def test_train_writes_a_complete_run_folder(dcgan_run: tuple[Path, str]) -> None:
    run, out = dcgan_run
    for rel in ("config.json", "metrics.jsonl", "samples/reals.png", "losses.png"):
        assert (run / rel).is_file(), rel
    assert (run / "progress.gif").is_file()
    fakes = sorted((run / "samples").glob("fakes*.png"))
    assert [f.name for f in fakes] == ["fakes000000000.png", "fakes000000256.png"]
    assert [c.name for c in checkpoints(run)] == ["ckpt-000000256.safetensors"]
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["run_config"]["model"] == "dcgan"
    mc = cfg["run_config"]["model_config"]
    assert (mc["resolution"], mc["channels"], mc["ngf"], mc["ndf"]) == (16, 1, 8, 8)
    assert cfg["run_config"]["train"]["batch_size"] == 32
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["nimg"] for r in records] == list(range(32, 257, 32))  # log_every=1: every step
    assert all(np.isfinite(r["loss_d"]) and np.isfinite(r["loss_g"]) for r in records)
    assert "done: 256 images" in out and str(run) in out
    assert "data: resized from 28x28 to 16x16" in out  # the loader's notes reach the user


def test_a_small_set_without_augmentation_gets_the_hint(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    common = ["train", "dcgan", "--resolution", "16", "--set", "ngf=8", "--set", "ndf=8"]
    common += ["--kimg", "0.032", "--batch-size", "16", "--max-images", "64", "--overwrite"]
    rc, out, err = cli(capsys, *common, "--run-dir", tmp_path / "plain")
    assert rc == 0, err
    assert "64 training images is a small set" in out and "--augment diffaug" in out
    rc, out, err = cli(capsys, *common, "--run-dir", tmp_path / "aug", "--augment", "diffaug")
    assert rc == 0, err
    assert "small set" not in out  # it asked for augmentation already


def test_the_small_data_hint_fires_only_below_the_threshold() -> None:
    from gankit.training.run import SMALL_DATA, small_data_hint

    assert small_data_hint(SMALL_DATA - 1, None) is not None
    assert small_data_hint(SMALL_DATA, None) is None
    assert small_data_hint(10, "ada") is None


def test_dry_run_prints_the_config_and_creates_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    before = sorted(tmp_path.iterdir())
    rc, out, err = cli(
        capsys,
        *("train", "dcgan", *TINY_CONV, "--kimg", "0.1", "--batch-size", "16"),
        *("--run-dir", tmp_path / "run", "--outdir", tmp_path / "runs", "--dry-run"),
    )
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["model"] == "dcgan"
    assert doc["model_config"]["ngf"] == 8 and doc["model_config"]["resolution"] == 16
    assert doc["train"]["kimg"] == 0.1 and doc["train"]["batch_size"] == 16
    assert sorted(tmp_path.iterdir()) == before


def test_folder_with_junk_trains_and_reports_what_it_skipped(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, data: Path
) -> None:
    run = tmp_path / "run"
    rc, out, err = cli(
        capsys,
        *("train", "dcgan", "--data", f"folder:{data / 'mixed'}", *TINY_CONV),
        *("--kimg", "0.016", "--batch-size", "8", "--run-dir", run),
    )
    assert rc == 0, err
    assert "skipped 1 non-image files" in out, out
    assert "skipped 1 unreadable files: zz_truncated.png" in out, out
    info = json.loads((run / "config.json").read_text())["data"]
    assert info["images"] == 20
    assert any("skipped 1 unreadable files" in n for n in info["notes"]), info["notes"]
    assert checkpoints(run)


def test_resume_with_a_longer_run_continues(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, dcgan_run: tuple[Path, str]
) -> None:
    run = tmp_path / "run"
    shutil.copytree(dcgan_run[0], run)
    # Restating a model field at its current value is not a change.
    rc, out, err = cli(
        capsys, "train", "--resume", run, "--kimg", "0.384", "--set", "ngf=8", "--no-progress"
    )
    assert rc == 0, err
    assert "128 images" in out and "384 in total" in out, out
    assert checkpoints(run)[-1].name == "ckpt-000000384.safetensors"
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["history"] == [256] and cfg["run_config"]["train"]["kimg"] == 0.384
    nimg = [json.loads(line)["nimg"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert nimg == list(range(32, 385, 32))


def test_overwrite_replaces_an_existing_run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, dcgan_run: tuple[Path, str]
) -> None:
    run = tmp_path / "run"
    shutil.copytree(dcgan_run[0], run)
    rc, out, err = cli(
        capsys,
        *("train", "dcgan", *TINY_CONV, "--kimg", "0.064", "--batch-size", "32"),
        *("--run-dir", run, "--overwrite"),
    )
    assert rc == 0, err
    assert [c.name for c in checkpoints(run)] == ["ckpt-000000064.safetensors"]
    assert json.loads((run / "config.json").read_text())["run_config"]["train"]["kimg"] == 0.064


# ----------------------------------------------------------------------------- sample: happy


def test_sample_grid_png_folder_and_npz(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, dcgan_run: tuple[Path, str]
) -> None:
    run = dcgan_run[0]
    rc, out, err = cli(capsys, "sample", run, "--seeds", "0-15", "--out", tmp_path / "grid.png")
    assert rc == 0, err
    assert png_size(tmp_path / "grid.png") == (grid_px(4), grid_px(4))  # 16 seeds: 4 x 4
    assert "wrote 16 samples from G_ema" in out

    rc, out, err = cli(capsys, "sample", run, "--seeds", "0-3,9", "--out", tmp_path / "single")
    assert rc == 0, err
    names = sorted(p.name for p in (tmp_path / "single").iterdir())
    assert names == [f"seed{s:04d}.png" for s in (0, 1, 2, 3, 9)]
    assert png_size(tmp_path / "single" / "seed0009.png") == (16, 16)

    rc, out, err = cli(capsys, "sample", run, "--seeds", "0-7", "--out", tmp_path / "s.npz")
    assert rc == 0, err
    with np.load(tmp_path / "s.npz") as z:
        assert z["x"].shape == (8, 16, 16, 1) and z["x"].dtype == np.uint8
        assert z["seeds"].tolist() == list(range(8))
        assert len({z["x"][i].tobytes() for i in range(8)}) == 8  # different seeds differ


def test_same_seed_gives_the_same_image(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, dcgan_run: tuple[Path, str]
) -> None:
    run = dcgan_run[0]
    for name, seeds in (("a.npz", "3"), ("b.npz", "3"), ("c.npz", "1-5"), ("d.npz", "7,3")):
        rc, _, err = cli(capsys, "sample", run, "--seeds", seeds, "--out", tmp_path / name)
        assert rc == 0, err
    loaded = {}
    for name in ("a", "b", "c", "d"):
        with np.load(tmp_path / f"{name}.npz") as z:
            loaded[name] = (z["x"], z["seeds"].tolist())
    alone = loaded["a"][0][0]
    assert np.array_equal(alone, loaded["b"][0][0])
    x, seeds = loaded["c"]
    assert seeds == [1, 2, 3, 4, 5]
    assert np.array_equal(alone, x[seeds.index(3)])  # drawn among other seeds
    x, seeds = loaded["d"]
    assert np.array_equal(alone, x[seeds.index(3)])
    assert not np.array_equal(alone, x[seeds.index(7)])
    for name in ("p1.png", "p2.png"):
        rc, _, err = cli(capsys, "sample", run, "--seeds", "0-8", "--out", tmp_path / name)
        assert rc == 0, err
    assert (tmp_path / "p1.png").read_bytes() == (tmp_path / "p2.png").read_bytes()


def test_sample_from_a_checkpoint_file_and_with_truncation(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, dcgan_run: tuple[Path, str]
) -> None:
    run = dcgan_run[0]
    ckpt = checkpoints(run)[-1]
    outs = {
        "run": [run],
        "file": [ckpt],
        "trunc": [run, "--trunc", "0.5"],
        "trunc2": [ckpt, "--trunc", "0.5"],
    }
    arrays = {}
    for name, args in outs.items():
        out = tmp_path / f"{name}.npz"
        rc, _, err = cli(capsys, "sample", *args, "--seeds", "0-3", "--out", out)
        assert rc == 0, err
        with np.load(out) as z:
            arrays[name] = z["x"]
    assert np.array_equal(arrays["run"], arrays["file"])
    assert np.array_equal(arrays["trunc"], arrays["trunc2"])
    assert not np.array_equal(arrays["run"], arrays["trunc"])


def test_auto_numbered_run_folder(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out_dir = tmp_path / "runs"
    (out_dir / "00004-old").mkdir(parents=True)
    rc, out, err = cli(capsys, "train", *SHORT_DCGAN, "--max-images", "64", "--outdir", out_dir)
    assert rc == 0, err
    run = out_dir / "00005-dcgan-digits"
    assert sorted(p.name for p in out_dir.iterdir()) == ["00004-old", run.name]
    assert str(run) in out and checkpoints(run)


@pytest.mark.parametrize("model", ["cgan", "cdcgan"])
def test_conditional_sampling_defaults_to_one_row_per_class(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, cond_runs: dict[str, Path], model: str
) -> None:
    run = cond_runs[model]
    rc, _, err = cli(capsys, "sample", run, "--out", tmp_path / "grid.png")
    assert rc == 0, err
    assert png_size(tmp_path / "grid.png") == (grid_px(10), grid_px(10))  # seeds 0-9 x 10 rows
    rc, _, err = cli(capsys, "sample", run, "--seeds", "0-3", "--out", tmp_path / "g4.png")
    assert rc == 0, err
    assert png_size(tmp_path / "g4.png") == (grid_px(4), grid_px(10))  # 4 columns, 10 rows

    rc, _, err = cli(capsys, "sample", run, "--seeds", "0-3", "--out", tmp_path / "all.npz")
    assert rc == 0, err
    rc, out, err = cli(
        capsys, "sample", run, "--seeds", "0-3", "--class", "7", "--out", tmp_path / "c7.npz"
    )
    assert rc == 0, err
    assert "wrote 4 samples" in out
    with np.load(tmp_path / "all.npz") as a, np.load(tmp_path / "c7.npz") as c:
        assert a["y"].tolist() == [k for k in range(10) for _ in range(4)]
        assert a["seeds"].tolist() == list(range(4)) * 10
        assert c["y"].tolist() == [7] * 4 and c["seeds"].tolist() == [0, 1, 2, 3]
        assert np.array_equal(a["x"][28:32], c["x"])  # row 7 of the grid is class 7
        assert not np.array_equal(a["x"][0:4], c["x"])

    rc, _, err = cli(capsys, "sample", run, "--class", "7", "--out", tmp_path / "single")
    assert rc == 0, err
    assert len(list((tmp_path / "single").glob("seed*-class7.png"))) == 10


# ----------------------------------------------------------------------------- train: bad input

# (extra arguments, fragments the one error line must contain); "{data}" is the data fixture.
BAD_TRAIN = {
    "unknown model": (["nosuchmodel"], ["unknown model 'nosuchmodel'", "dcgan"]),
    "no model": ([], ["name a model"]),
    "unknown dataset": (["dcgan", "--data", "nosuch"], ["unknown dataset 'nosuch'", "digits"]),
    "folder without path": (["dcgan", "--data", "folder:"], ["names no path"]),
    "unknown --set key": (["dcgan", "--set", "foo=1"], ["unknown option 'foo'", "batch_size"]),
    "--set without =": (["dcgan", "--set", "batch_size"], ["key=value"]),
    "wrong-type --set": (["dcgan", "--set", "batch_size=abc"], ["batch_size", "integer"]),
    "wrong-type flag": (["dcgan", "--batch-size", "abc"], ["--batch-size", "invalid int"]),
    "unknown objective": (["dcgan", "--objective", "nosuch"], ["unknown objective 'nosuch'"]),
    "unknown flag": (["dcgan", "--bogus-flag"], ["unrecognized arguments: --bogus-flag"]),
    "missing folder": (
        ["dcgan", "--data", "folder:/nonexistent/gankit-test"],
        ["/nonexistent/gankit-test does not exist"],
    ),
    "empty folder": (["dcgan", "--data", "folder:{data}/empty"], ["no images found"]),
    "only a text file": (
        ["dcgan", "--data", "folder:{data}/text_only"],
        ["no images found", "1 other files"],
    ),
    "only corrupt images": (
        ["dcgan", "--data", "folder:{data}/junk"],
        ["none of the 2 image files", "could be read"],
    ),
    "folder is a file": (["dcgan", "--data", "folder:{data}/c2.npz"], ["is a file"]),
    "missing npz": (["dcgan", "--data", "npz:{data}/nope.npz"], ["does not exist"]),
    "npz is not an npz": (["dcgan", "--data", "npz:{data}/junk/notes.txt"], ["not a readable"]),
    "2-channel npz": (["dcgan", "--data", "npz:{data}/c2.npz"], ["(20, 16, 16, 2)", "1 nor 3"]),
    "4-channel npz": (["dcgan", "--data", "npz:{data}/c4.npz"], ["(20, 16, 16, 4)", "1 nor 3"]),
    "--channels 2": (["dcgan", "--channels", "2"], ["2-channel", "--channels 1 or 3"]),
    "--set channels=4": (["dcgan", "--set", "channels=4"], ["4-channel"]),
    "labels beyond num_classes": (
        ["cgan", "--data", "npz:{data}/labels5.npz", "--set", "num_classes=3"],
        ["label 4", "3 classes", "num_classes=5"],
    ),
    "conditional without labels": (
        ["cgan", "--data", "folder:{data}/mixed"],
        ["class-conditional", "no labels"],
    ),
    "negative lr": (["dcgan", "--lr", "-1"], ["lr_g must be > 0", "-1"]),
    "nan lr": (["dcgan", "--lr-d", "nan"], ["lr_d must be > 0"]),
    "batch size 0": (["dcgan", "--batch-size", "0"], ["batch_size must be > 0"]),
    "epochs 0": (["dcgan", "--set", "kimg=none", "--epochs", "0"], ["epochs must be > 0"]),
    "negative kimg": (["dcgan", "--kimg", "-3"], ["kimg must be > 0"]),
    "epochs and kimg": (["dcgan", "--epochs", "1"], ["--epochs or --kimg, not both"]),
    "beta1 too big": (["dcgan", "--set", "beta1=1.5"], ["beta1 must be in [0, 1)"]),
    "max_images 0": (["dcgan", "--max-images", "0"], ["max_images must be"]),
    "batch larger than data": (
        ["dcgan", "--max-images", "10", "--batch-size", "64"],
        ["batch size 64 is larger than the dataset (10 images)", "--batch-size 10"],
    ),
    "nz 0": (["dcgan", "--set", "nz=0"], ["nz must be >= 1"]),
    "negative ngf": (["dcgan", "--set", "ngf=-1"], ["ngf must be >= 1"]),
    "gan dropout 1": (["gan", "--set", "dropout=1"], ["dropout must be in [0, 1)"]),
    "resolution 0": (["dcgan", "--resolution", "0"], ["resolution must be"]),
    "odd resolution": (["dcgan", "--resolution", "12"], ["power-of-two", "--resolution 16"]),
    "unknown device": (["dcgan", "--device", "bogus"], ["unknown device 'bogus'"]),
    "folder labels on digits": (["dcgan", "--folder-labels"], ["--folder-labels only applies"]),
}


@pytest.mark.parametrize("case", list(BAD_TRAIN), ids=list(BAD_TRAIN))
def test_bad_train_input_is_one_line_and_creates_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, data: Path, case: str
) -> None:
    extra, fragments = BAD_TRAIN[case]
    extra = [a.replace("{data}", str(data)) for a in extra]
    model = extra[:1] if extra and not extra[0].startswith("-") else []
    base = [*TINY, "--kimg", "0.032", "--batch-size", "16"]
    if model == ["dcgan"]:
        base += ["--set", "ngf=8", "--set", "ndf=8"]
    # The case's own arguments come last, so they win over the tiny defaults.
    args = ["train", *model, *base, *extra[len(model) :]]
    run = tmp_path / "run"
    before = snapshot(data)
    result = cli(capsys, *args, "--run-dir", run, "--outdir", tmp_path / "runs")
    assert_user_error(result, *fragments)
    assert not run.exists() and not (tmp_path / "runs").exists()
    assert snapshot(data) == before


# ----------------------------------------------------------------------------- run folders


def test_existing_run_folder_is_refused_and_untouched(
    capsys: pytest.CaptureFixture[str], dcgan_run: tuple[Path, str]
) -> None:
    run = dcgan_run[0]
    before = snapshot(run)
    result = cli(capsys, "train", *SHORT_DCGAN, "--run-dir", run)
    assert_user_error(result, "already exists", "--resume", "--overwrite")
    assert snapshot(run) == before


def test_overwrite_with_bad_input_keeps_the_old_run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, dcgan_run: tuple[Path, str]
) -> None:
    run = tmp_path / "run"
    shutil.copytree(dcgan_run[0], run)
    before = snapshot(run)
    for bad, fragment in (
        (["--max-images", "10", "--batch-size", "64"], "larger than the dataset"),
        (["--device", "bogus"], "unknown device"),
        (["--set", "nz=0"], "nz must be"),
    ):
        result = cli(capsys, "train", *SHORT_DCGAN, *bad, "--run-dir", run, "--overwrite")
        assert_user_error(result, fragment)
        assert snapshot(run) == before, bad


def test_overwrite_refuses_a_folder_that_is_not_a_run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    folder = tmp_path / "thesis"
    folder.mkdir()
    (folder / "chapter1.tex").write_text("precious")
    (folder / "figures").mkdir()
    (folder / "figures" / "plot.png").write_bytes(b"\x89PNG fake")
    before = snapshot(folder)
    result = cli(capsys, "train", *SHORT_DCGAN, "--run-dir", folder, "--overwrite")
    assert_user_error(result, "not a gankit run folder", "refusing")
    assert snapshot(folder) == before


def test_run_dir_that_is_a_file_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    target = tmp_path / "run"
    target.write_text("a file")
    result = cli(capsys, "train", *SHORT_DCGAN, "--run-dir", target)
    assert_user_error(result, "not a folder")
    assert target.read_text() == "a file"


BAD_RESUME = {
    "changed lr": (["--lr", "0.1"], ["cannot change lr_g when resuming"]),
    "changed batch size": (["--batch-size", "16"], ["cannot change batch_size"]),
    "changed model field": (["--set", "ngf=16"], ["cannot change ngf when resuming", "8"]),
    "changed seed": (["--set", "seed=5"], ["cannot change seed"]),
    "unknown --set key": (["--set", "foo=1"], ["unknown option 'foo'"]),
    "--set model": (["--set", "model=gan"], ["unknown option 'model'"]),
    "new --data": (["--data", "digits"], ["--data cannot change"]),
    "not longer": ([], ["already trained for 256 images", "longer --kimg"]),
    "shorter": (["--kimg", "0.1"], ["already trained for 256 images"]),
    "negative kimg": (["--kimg", "-1"], ["kimg must be > 0"]),
    "bad device": (["--device", "bogus"], ["unknown device"]),
}


@pytest.mark.parametrize("case", list(BAD_RESUME), ids=list(BAD_RESUME))
def test_bad_resume_leaves_the_run_intact(
    capsys: pytest.CaptureFixture[str], dcgan_run: tuple[Path, str], case: str
) -> None:
    run = dcgan_run[0]
    extra, fragments = BAD_RESUME[case]
    before = snapshot(run)
    assert_user_error(cli(capsys, "train", "--resume", run, "--no-progress", *extra), *fragments)
    assert snapshot(run) == before


# ----------------------------------------------------------------------------- sample: bad input


def test_class_outside_the_range_is_refused(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    dcgan_run: tuple[Path, str],
    cond_runs: dict[str, Path],
) -> None:
    out = tmp_path / "grid.png"
    for label in ("12", "10", "-1"):
        result = cli(capsys, "sample", cond_runs["cgan"], "--class", label, "--out", out)
        assert_user_error(result, f"class {label} is outside", "0..9")
    result = cli(capsys, "sample", dcgan_run[0], "--class", "3", "--out", out)
    assert_user_error(result, "not class-conditional", "drop --class")
    assert not out.exists()


BAD_SAMPLE = {
    "reversed seed range": (["--seeds", "5-1"], ["bad seed range '5-1'"]),
    "non-numeric seeds": (["--seeds", "abc"], ["bad seed list 'abc'"]),
    "negative seed": (["--seeds", "-3"], ["bad seed list"]),
    "empty seeds": (["--seeds", ","], ["no seeds given"]),
    "bad suffix": (["--out", "grid.jpgx"], ["--out must end in .png", "grid.jpgx"]),
    "negative truncation": (["--trunc", "-1"], ["truncation must be > 0"]),
    "zero truncation": (["--trunc", "0"], ["truncation must be > 0"]),
    "non-numeric class": (["--class", "seven"], ["--class", "invalid int"]),
}


@pytest.mark.parametrize("case", list(BAD_SAMPLE), ids=list(BAD_SAMPLE))
def test_bad_sample_input_is_one_line_and_writes_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, dcgan_run: tuple[Path, str], case: str
) -> None:
    run = dcgan_run[0]
    extra, fragments = BAD_SAMPLE[case]
    before = snapshot(run)
    args = ["sample", run, "--out", tmp_path / "out.png", *extra]
    assert_user_error(cli(capsys, *args), *fragments)
    assert snapshot(run) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- checkpoints


class _Payload:
    """Unpickling this would create a file: proof that a checkpoint was (never) unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.marker, "w"))


def test_truncated_checkpoint_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, dcgan_run: tuple[Path, str]
) -> None:
    good = checkpoints(dcgan_run[0])[-1]
    data = good.read_bytes()
    half = tmp_path / "half.safetensors"
    half.write_bytes(data[: len(data) // 2])
    tail = tmp_path / "tail.safetensors"
    tail.write_bytes(data[:-8])
    for ckpt in (half, tail):
        result = cli(capsys, "sample", ckpt, "--out", tmp_path / "x.png")
        assert_user_error(result, ckpt.name, "truncated")
        result = cli(capsys, "train", "--resume", ckpt, "--kimg", "1", "--no-progress")
        assert_user_error(result, ckpt.name, "truncated")
    # A run folder whose only checkpoint is damaged.
    run = tmp_path / "run"
    shutil.copytree(dcgan_run[0], run)
    ckpt = checkpoints(run)[-1]
    ckpt.write_bytes(data[: len(data) // 2])
    before = snapshot(run)
    result = cli(capsys, "sample", run, "--out", tmp_path / "x.png")
    assert_user_error(result, "no sound checkpoint")
    result = cli(capsys, "train", "--resume", run, "--kimg", "1", "--no-progress")
    assert_user_error(result, "no sound checkpoint")
    assert snapshot(run) == before
    assert not (tmp_path / "x.png").exists()


def test_pickled_checkpoint_is_refused_and_never_unpickled(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    marker = tmp_path / "UNPICKLED"
    for name in ("model.pt", "model.safetensors"):
        evil = tmp_path / name
        torch.save({"G": torch.zeros(2), "payload": _Payload(marker)}, evil)
        before = evil.read_bytes()
        result = cli(capsys, "sample", evil, "--out", tmp_path / "x.png")
        assert_user_error(result, name, "never unpickles")
        result = cli(capsys, "train", "--resume", evil, "--no-progress")
        assert_user_error(result, name, "never unpickles")
        assert evil.read_bytes() == before
    assert not marker.exists()
    # The payload does work: loading the file with pickle would have created the marker.
    torch.load(tmp_path / "model.pt", weights_only=False)
    assert marker.exists()


def test_foreign_files_are_refused_as_checkpoints(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    noise = tmp_path / "noise.safetensors"
    noise.write_bytes(np.random.default_rng(1).bytes(4096))
    result = cli(capsys, "sample", noise, "--out", tmp_path / "x.png")
    assert_user_error(result, "noise.safetensors")

    other = tmp_path / "other.safetensors"
    save_file({"weight": torch.ones(3, 3)}, str(other), metadata={"framework": "other"})
    result = cli(capsys, "sample", other, "--out", tmp_path / "x.png")
    assert_user_error(result, "not a gankit checkpoint")
    result = cli(capsys, "train", "--resume", other, "--no-progress")
    assert_user_error(result, "not a gankit checkpoint")

    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    result = cli(capsys, "sample", empty, "--out", tmp_path / "x.png")
    assert_user_error(result, "empty.safetensors")

    missing = tmp_path / "missing.safetensors"
    assert_user_error(cli(capsys, "sample", missing, "--out", tmp_path / "x.png"), "does not exist")

    no_ckpt = tmp_path / "not_a_run"
    no_ckpt.mkdir()
    assert_user_error(cli(capsys, "sample", no_ckpt, "--out", tmp_path / "x.png"), "no checkpoint")
    assert not (tmp_path / "x.png").exists()


# ----------------------------------------------------------------------------- real entry point


def test_entry_point_unknown_model_exits_2_without_traceback(tmp_path: Path) -> None:
    line = assert_user_error(
        cli_subprocess(tmp_path, "train", "nosuchmodel"), "unknown model 'nosuchmodel'"
    )
    assert line.startswith("gankit: error:")
    assert list(tmp_path.iterdir()) == []


def test_entry_point_refuses_existing_run_and_bad_checkpoint(
    tmp_path: Path, dcgan_run: tuple[Path, str]
) -> None:
    run = dcgan_run[0]
    before = snapshot(run)
    result = cli_subprocess(
        tmp_path, "train", "dcgan", "--resolution", "16", "--kimg", "0.032", "--run-dir", run
    )
    assert_user_error(result, "already exists")
    assert snapshot(run) == before

    half = tmp_path / "half.safetensors"
    data = checkpoints(run)[-1].read_bytes()
    half.write_bytes(data[: len(data) // 2])
    assert_user_error(cli_subprocess(tmp_path, "sample", half, "--out", "x.png"), "truncated")
    assert not (tmp_path / "x.png").exists()


def test_entry_point_argparse_error_is_one_line(tmp_path: Path) -> None:
    result = cli_subprocess(tmp_path, "train", "dcgan", "--batch-size", "0.5")
    assert_user_error(result, "--batch-size", "invalid int value")
    assert list(tmp_path.iterdir()) == []


def test_probe_compares_trained_random_and_pixels(dcgan_run, capsys):
    """`gankit probe` on the digits run: three rows, and a JSON report next to the run."""
    from gankit.cli import main

    run, _ = dcgan_run
    out = Path("probe.json")
    assert main(["probe", str(run), "--per-class", "5", "--test", "60", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    for row in ("trained D", "random D", "pixels"):
        assert row in text
    report = json.loads(out.read_text())
    assert [r["name"] for r in report["results"]] == ["trained D", "random D", "pixels"]
    assert all(r["train_examples"] == 50 and r["test_examples"] == 60 for r in report["results"])
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in report["results"])
    assert Path("probe.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # the bar chart


def test_impossible_shapes_and_sizes_are_refused_before_data_or_weights(capsys, monkeypatch):
    """A non-power-of-two resolution fails before the data are resized; networks too big for
    memory fail before anything is allocated (counted on the meta device)."""
    import gankit.training.run as run_mod

    def no_data(*args, **kwargs):
        raise AssertionError("the data were loaded before the shape check")

    monkeypatch.setattr(run_mod, "_load_data", no_data)
    rc, _, err = cli(capsys, "train", "dcgan", "--resolution", "1000", "--dry-run")
    assert rc == 2 and "power-of-two resolution" in err
    monkeypatch.undo()
    rc, _, err = cli(capsys, "train", "dcgan", "--set", "ngf=100000", "--dry-run")
    assert rc == 2 and "more than this machine can hold" in err and "lower ngf/ndf" in err


def test_a_closed_pipe_is_not_an_error():
    """`gankit ... | true`: the reader is gone before gankit writes, so the write fails with
    EPIPE; gankit exits 0 without a traceback. The reader is closed before gankit starts (as
    `true` usually is), so the write fails however fast either side runs."""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    read, write = os.pipe()
    os.close(read)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "gankit", "train", "biggan", "--dry-run"],
            stdout=write, stderr=subprocess.PIPE, text=True, env=env, timeout=HANG_S,
        )  # fmt: skip
    finally:
        os.close(write)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
