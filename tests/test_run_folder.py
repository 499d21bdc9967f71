"""Run folders left by a run killed at its very start."""

from __future__ import annotations

from pathlib import Path

from gankit.cli import main

TINY = ["--data", "digits", "--resolution", "16", "--batch-size", "16", "--no-progress",
        "--set", "ngf=8", "--set", "ndf=8", "--kimg", "0.016"]  # fmt: skip


def test_a_folder_with_only_a_half_written_config_starts_again(tmp_path: Path) -> None:
    """Killed while writing its first config.json, a run leaves only that temp file; the same
    command must start it again (it once answered "already exists", and with --overwrite "not
    a gankit run folder", and --resume found no checkpoint)."""
    run = tmp_path / "run"
    run.mkdir()
    (run / ".config.json.k2j4x9.tmp").write_bytes(b'{"half": ')
    assert main(["train", "dcgan", *TINY, "--run-dir", str(run)]) == 0
    assert (run / "config.json").is_file()
    assert not list(run.glob(".*.tmp"))


def test_a_folder_with_other_files_is_still_refused(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / ".config.json.k2j4x9.tmp").write_bytes(b"x")
    (run / "notes.txt").write_text("mine")
    assert main(["train", "dcgan", *TINY, "--run-dir", str(run)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (run / "notes.txt").read_text() == "mine"
