"""Run folders: those left by a run killed at its very start, and config.json's typed record
of what a run used (gankit.resolved), new and from before it existed."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from gankit.cli import main
from gankit.config import RunConfig
from gankit.errors import UserError
from gankit.models import MODELS
from gankit.resolved import CONFIG_VERSION, Piece, read_config, read_resolved, resolve_run
from tests.conftest import FIXTURES_V1

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


# ---------------------------------------------------------------- config.json's typed record

V1_KEYS = ["run_config", "data", "written_at", "processes"]


def test_a_new_run_writes_its_resolved_record_and_reads_it_back(tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ["train", "dcgan", *TINY, "--run-dir", str(run), "--reg", "r1:gamma=2"]
    assert main([*args, "--precision", "fp32"]) == 0
    doc = json.loads((run / "config.json").read_text())
    assert list(doc) == [*V1_KEYS, "version", "resolved"]  # version 1's keys all kept
    assert doc["version"] == CONFIG_VERSION == 2
    assert doc["resolved"] == {
        "objective": {"name": "nonsaturating", "options": {}},
        "regularisers": [{"name": "r1", "options": {"gamma": 2.0, "every": 1.0}}],
        "precision": "fp32",
        "resolution": 16,
        "channels": 1,
        "preset": "grey28",  # digits: the dcgan recipe, as no --preset was given
    }
    rec = read_config(run)
    assert rec == resolve_run(RunConfig.from_json(doc["run_config"]), "fp32")
    assert (rec.resolution, rec.channels, rec.precision, rec.version) == (16, 1, "fp32", 2)
    assert read_resolved(json.loads(json.dumps({**doc, "resolved": rec.to_json()}))) == rec

    assert main(["train", "--resume", str(run), "--kimg", "0.032", "--no-progress"]) == 0
    doc = json.loads((run / "config.json").read_text())
    assert list(doc) == [*V1_KEYS, "resumed_from", "history", "version", "resolved"]
    assert read_config(run).history == (16,)


@pytest.mark.parametrize(
    "name,regularisers",
    [("dcgan", ()), ("cdcgan", ()), ("stylegan", (Piece("r1", {"gamma": 1.0, "every": 1.0}),))],
)
def test_a_version_1_config_reads_back_with_what_it_determines(
    name: str, regularisers: tuple
) -> None:
    doc = json.loads((FIXTURES_V1 / name / "config.json").read_text())
    assert "resolved" not in doc and "version" not in doc
    rec = read_config(FIXTURES_V1 / name)
    stored = RunConfig.from_json(doc["run_config"])
    assert stored.train.data == "digits" and "revision" not in doc["data"]
    # ... the 8x8 digits "digits" meant then, by their name today; the rest as stored
    assert rec.version == 1 and rec.run_config.train.data == "sklearn-digits"
    assert replace(rec.run_config, train=replace(rec.run_config.train, data="digits")) == stored
    assert rec.objective == Piece(MODELS.get(name).objective, {})  # the model's default
    assert rec.regularisers == regularisers
    assert rec.precision == "fp32"  # what it asked for (fp32 or bf16 is what it used)
    assert (rec.resolution, rec.channels, rec.preset, rec.history) == (16, 1, None, ())


def test_a_version_1_config_says_none_where_it_cannot_tell() -> None:
    doc = json.loads((FIXTURES_V1 / "dcgan" / "config.json").read_text())
    doc["run_config"]["train"].update(precision="auto", objective="nosuch")
    rec = read_resolved(doc)
    assert (rec.precision, rec.objective, rec.regularisers) == (None, None, None)


@pytest.mark.parametrize(
    "change,fragment",
    [
        ({"version": 3}, "version 3"),
        ({"resolved": None}, "no resolved record"),
        ({"resolved": {"precision": "fp8"}}, "fp32 or bf16"),
        ({"resolved": {"resolution": 32}}, "disagrees"),
        ({"resolved": {"objective": {"options": {}}}}, "with a name"),
        ({"resolved": {"regularisers": [{"name": "r1", "options": {"gamma": "x"}}]}}, "numbers"),
        ({"history": ["16"]}, "image counts"),
    ],
)
def test_a_malformed_record_is_a_user_error(change: dict, fragment: str, tmp_path: Path) -> None:
    doc = {**json.loads((FIXTURES_V1 / "dcgan" / "config.json").read_text()), "version": 2}
    doc["resolved"] = {"objective": {"name": "nonsaturating"}, "regularisers": []}
    doc.update(change)
    (tmp_path / "config.json").write_text(json.dumps(doc))
    with pytest.raises(UserError, match=fragment):
        read_config(tmp_path)


def test_the_record_loads_no_training_code() -> None:
    code = "import sys, gankit.resolved; print([m for m in sys.modules if 'training' in m])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
