"""Hostile input to every command but `train`: devices, metric counts, outputs, signals, names.

Each case once ended in a traceback, a silent minutes-long run or a clobbered file. The CLI is
called in-process (`main`), on copies of the committed run folders of tests/fixtures/v1.
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest
import torch

from gankit import viz
from gankit.cli import main
from gankit.metrics import kinds, protocol
from gankit.models import list_models
from tests.conftest import FIXTURES_V1

FIXTURES = FIXTURES_V1


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hostile-runs")
    return {m: Path(shutil.copytree(FIXTURES / m, root / m)) for m in ("dcgan", "stylegan")}


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "Traceback" not in err
    assert len(lines) == 1, err
    assert lines[0].startswith("gankit: error: "), err
    return lines[0]


# Every command that takes --device, with the arguments it needs to get that far.
DEVICE_COMMANDS = {
    "sample": ["sample", "{run}"],
    "eval": ["eval", "{run}", "--metrics", "fd1k_pixel"],
    "interpolate": ["interpolate", "{run}"],
    "arithmetic": ["arithmetic", "{run}", "--a", "1", "--b", "2", "--c", "3"],
    "codes": ["codes", "{run}"],
    "mixing": ["mixing", "{run}"],
    "truncation": ["truncation", "{run}"],
    "features": ["features", "{run}"],
    "filters": ["filters", "{run}"],
    "ablate": ["ablate", "{run}", "--list"],
    "memorisation": ["memorisation", "{run}"],
    "serve": ["serve", "{run}"],
    "evaluator": ["evaluator", "train", "--data", "digits"],
}
BAD_DEVICES = ["foo", "xla", "mps", "meta", "cuda:99"] + (
    [] if torch.cuda.is_available() else ["cuda"]
)


@pytest.mark.parametrize("command", list(DEVICE_COMMANDS))
@pytest.mark.parametrize("device", BAD_DEVICES)
def test_bad_device_is_one_line_and_exit_2_in_every_command(
    command: str, device: str, runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [a.format(run=runs["dcgan"]) for a in DEVICE_COMMANDS[command]]
    assert main([*argv, "--device", device]) == 2
    line = _one_line_error(capsys)
    assert "device" in line


def test_eval_refuses_an_absurd_sample_count_before_any_work(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_generation(*a: object, **k: object) -> None:
        raise AssertionError("images were generated before the metric was checked")

    monkeypatch.setattr(protocol, "generate_images", no_generation)
    assert main(["eval", str(runs["dcgan"]), "--metrics", "fd99999999k_mnistcnn"]) == 2
    assert f"at most {kinds.MAX_SAMPLES:,}" in _one_line_error(capsys)
    assert kinds.MAX_SAMPLES >= 50_000  # fid50k must stay possible
    assert kinds.parse_metric("fid50k_inception").n == 50_000


@pytest.mark.parametrize("metric", ["fd50k_mnistcnn", "is2k_pixel", "fd2k_inception"])
def test_eval_checks_extractors_before_generating(
    metric: str,
    runs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_generation(*a: object, **k: object) -> None:
        raise AssertionError("images were generated before the preconditions were checked")

    monkeypatch.setattr(protocol, "generate_images", no_generation)
    monkeypatch.setenv("GANKIT_CACHE", str(tmp_path))  # no classifier there
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # no Inception weights there
    argv = ["eval", str(runs["dcgan"]), "--metrics", metric, "--no-append", "--no-download"]
    assert main(argv) == 2
    _one_line_error(capsys)


@pytest.mark.parametrize(
    "argv",
    [
        ["sample", "{dcgan}", "--seeds", "0-1", "--out", "/proc/x.png"],
        ["sample", "{dcgan}", "--seeds", "0-1", "--out", "/proc/sub/"],
        ["sample", "{dcgan}", "--seeds", "0-1", "--out", "/proc/sub/x.npz"],
        ["interpolate", "{dcgan}", "--steps", "2", "--out", "/proc/walk"],
        ["truncation", "{dcgan}", "--seeds", "0-1", "--out", "/proc/sub/t"],
        ["mixing", "{stylegan}", "--rows", "0", "--cols", "1", "--out", "/proc/mix"],
        ["features", "{dcgan}", "--n", "4", "--out", "/proc/f.npz"],
        ["arithmetic", "{dcgan}", "--a", "1", "--b", "2", "--c", "3", "--out", "/proc/a"],
    ],
)
def test_a_write_error_is_exit_1_and_one_line(
    argv: list[str], runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [a.format(dcgan=runs["dcgan"], stylegan=runs["stylegan"]) for a in argv]
    assert main(argv) == 1
    line = _one_line_error(capsys)
    assert line.startswith("gankit: error: cannot write /proc/")
    assert ".tmp" not in line  # the file asked for, not our temp file


def test_sigterm_while_filling_a_folder_leaves_nothing_behind(
    runs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_save = viz.save_grid
    saved: list[Path] = []

    def save_then_signal(images: torch.Tensor, path: Path, **kw: object) -> Path:
        out = real_save(images, path, **kw)
        saved.append(Path(path))
        if len(saved) == 3:  # the event: three files are in the folder
            os.kill(os.getpid(), signal.SIGTERM)
        return out

    monkeypatch.setattr(viz, "save_grid", save_then_signal)
    out = tmp_path / "many"
    rc = main(["sample", str(runs["dcgan"]), "--seeds", "0-19", "--out", f"{out}/"])
    assert rc == 128 + signal.SIGTERM
    assert len(saved) == 3
    assert not out.exists()  # the folder appears whole or not at all
    assert list(tmp_path.iterdir()) == []  # no temp folder or temp file either
    err = capsys.readouterr().err
    assert "stopped by SIGTERM" in err and "Traceback" not in err
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored


def test_sample_fills_a_folder_whole(runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "few"
    assert main(["sample", str(runs["dcgan"]), "--seeds", "0-4", "--out", f"{out}/"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [f"seed{s:04d}.png" for s in range(5)]
    assert [p.name for p in tmp_path.iterdir()] == ["few"]


def test_an_existing_out_is_refused_without_overwrite(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = str(runs["dcgan"])
    png = tmp_path / "existing.png"
    png.write_bytes(b"keep me")
    assert main(["sample", run, "--seeds", "0-1", "--out", str(png)]) == 2
    assert "--overwrite" in _one_line_error(capsys)
    assert png.read_bytes() == b"keep me"
    # a trailing slash asks for a folder: never the file of that name
    assert main(["sample", run, "--seeds", "0-1", "--out", f"{png}/"]) == 2
    assert "folder" in _one_line_error(capsys)
    assert png.read_bytes() == b"keep me"
    assert main(["sample", run, "--seeds", "0-1", "--out", str(png), "--overwrite"]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"
    # a folder that is not empty
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "mine.txt").write_text("x")
    assert main(["sample", run, "--seeds", "0-1", "--out", f"{folder}/"]) == 2
    _one_line_error(capsys)
    assert main(["sample", run, "--seeds", "0-1", "--out", f"{folder}/", "--overwrite"]) == 0
    assert sorted(p.name for p in folder.iterdir()) == ["seed0000.png", "seed0001.png"]
    # figure commands: any file their --out prefix would produce
    (tmp_path / "walk.gif").write_bytes(b"old")
    assert main(["interpolate", run, "--steps", "2", "--out", str(tmp_path / "walk")]) == 2
    assert "walk.gif" in _one_line_error(capsys)
    feats = tmp_path / "f.npz"
    feats.write_bytes(b"old")
    assert main(["features", run, "--n", "4", "--out", str(feats)]) == 2
    _one_line_error(capsys)


def test_the_default_out_of_sample_may_be_replaced(
    runs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["sample", str(runs["dcgan"]), "--seeds", "0-1"]) == 0
    assert main(["sample", str(runs["dcgan"]), "--seeds", "0-1"]) == 0  # not an explicit --out
    assert (tmp_path / "samples.png").is_file()


def test_control_characters_in_names_are_escaped_in_every_message(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "q\x1b[31mred.png"
    assert main(["sample", str(runs["dcgan"]), "--seeds", "0-1", "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert "\x1b" not in printed.out and "\\x1b[31mred.png" in printed.out
    assert out.is_file()  # the file keeps the name the user gave
    # errors too (not only argparse's usage errors)
    assert main(["sample", str(tmp_path / "no\x07such\x1b]0;run")]) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\x07" not in err and "\\x1b" in err


@pytest.mark.parametrize("model", list_models())
def test_a_resolution_whose_weights_overflow_is_one_line(
    model: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--resolution 2**40: torch's size arithmetic overflows while the shapes are probed on the
    meta device (a RuntimeError or TypeError from torch, once a traceback)."""
    import numpy as np

    np.savez(tmp_path / "d.npz", x=np.zeros((8, 16, 16, 1), dtype=np.uint8))
    argv = ["train", model, "--data", f"npz:{tmp_path / 'd.npz'}", "--resolution", str(2**40)]
    assert main([*argv, "--run-dir", str(tmp_path / "run")]) == 2
    _one_line_error(capsys)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("device", BAD_DEVICES)
def test_the_python_api_checks_the_device_the_same_way(runs: dict[str, Path], device: str) -> None:
    from gankit.errors import UserError
    from gankit.sampling import load

    with pytest.raises(UserError, match="device"):
        load(runs["dcgan"], device=device)
