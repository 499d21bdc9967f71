"""gankit.files: atomic writes (temp file, fsync, rename), and their error paths."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from gankit import checkpoint
from gankit.files import atomic_write_bytes, atomic_write_json, atomic_write_text


def test_atomic_write_leaves_no_temp_files(tmp_path: Path) -> None:
    atomic_write_bytes(tmp_path / "f.bin", b"one")
    atomic_write_bytes(tmp_path / "f.bin", b"two")
    assert (tmp_path / "f.bin").read_bytes() == b"two"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_text_and_json_and_missing_folders(tmp_path: Path) -> None:
    atomic_write_text(tmp_path / "a" / "b.txt", "h\u00e9\n")
    atomic_write_json(tmp_path / "c.json", {"x": [1, 2]})
    assert (tmp_path / "a" / "b.txt").read_bytes() == "h\u00e9\n".encode()
    assert json.loads((tmp_path / "c.json").read_text()) == {"x": [1, 2]}
    assert (tmp_path / "c.json").read_text().endswith("\n")


def test_a_failed_write_names_the_file_asked_for_and_leaves_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError) as info:
        atomic_write_bytes(tmp_path / "f.bin", b"data")
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(tmp_path / "f.bin")
    assert list(tmp_path.iterdir()) == []


def test_checkpoint_still_offers_them() -> None:
    assert checkpoint.atomic_write_bytes is atomic_write_bytes
    assert checkpoint.atomic_write_text is atomic_write_text
    assert checkpoint.atomic_write_json is atomic_write_json
