"""Fuzzing the `gankit` command (hypothesis): any arguments give success, or exit code 2 with
one line on stderr; never a traceback. Nothing trains: `gankit train` is run with its training
call replaced by a dry run."""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import warnings
from typing import Any

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

import gankit.api
import gankit.cli
import gankit.cli.train
from gankit.models import MODELS
from tests.fuzzing import NUMBER_TEXT, TRAIN_FIELDS, fuzz

# ------------------------------------------------------------------------------ CLI

# The cheapest valid training setup; fuzzed arguments come after it, so they win.
TINY = ["--resolution", "16", "--kimg", "0.032", "--batch-size", "16"]
TINY += ["--set", "ngf=8", "--set", "ndf=8", "--no-progress"]


def _run_main(argv: list[str], launch: Any = lambda args: 0) -> tuple[int, str, str, list[str]]:
    """gankit.cli.main(argv) in an empty folder, training replaced by a dry run.

    Returns (exit code, stdout, stderr, what the command left in the folder).
    """
    real_train = gankit.api.train

    def dry_train(*args: Any, **kwargs: Any) -> Any:
        kwargs.update(dry_run=True, progress=False, tensorboard=False)
        return real_train(*args, **kwargs)

    out, err = io.StringIO(), io.StringIO()
    showwarning = warnings.showwarning  # main() installs a one-line printer; put it back
    with (
        tempfile.TemporaryDirectory() as tmp,
        pytest.MonkeyPatch.context() as mp,
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        mp.chdir(tmp)
        mp.setattr(gankit.api, "train", dry_train)
        mp.setattr(gankit.cli.train, "_launch_processes", launch)  # --nproc N: no torchrun
        try:
            code = gankit.cli.main(argv)
        except SystemExit as exc:
            code = exc.code
        finally:
            warnings.showwarning = showwarning
        left = sorted(os.listdir(tmp))
    return code, out.getvalue(), err.getvalue(), left


def assert_clean_exit(code: Any, stdout: str, stderr: str, left: list[str]) -> None:
    """Success, or exit code 2 with exactly one error line (warnings are one line each)."""
    assert "Traceback" not in stderr + stdout
    lines = stderr.strip().splitlines()
    assert all(line.startswith("gankit") for line in lines), stderr
    if code in (0, None):
        assert not [line for line in lines if ": error:" in line], stderr
        return
    assert code == 2, (code, stderr)
    assert len([line for line in lines if ": error:" in line]) == 1, stderr
    assert left == [], left  # a refused command creates nothing


def fuzz_main(argv: list[str]) -> None:
    """Inside a hypothesis test: run `argv` and check that it ends cleanly."""
    code, stdout, stderr, left = _run_main(argv)
    event(f"exit code {code}")
    assert_clean_exit(code, stdout, stderr, left)


DCGAN_FIELDS = sorted(MODELS.get("dcgan").config_cls.__dataclass_fields__)
SIZE_FIELDS = {"resolution", "channels", "nz", "ngf", "ndf", "num_classes"}
# Values for fields that size a network or the data stay small, or the model (or the data)
# would take gigabytes. That a valid-but-huge ngf is not refused is reported, not fuzzed.
SMALL_OR_JUNK = st.one_of(
    st.integers(-3, 16).map(str), st.sampled_from(["abc", "", "1.5", "none", "1e400", "true"])
)
# Pairs that are valid on top of TINY, so that fuzzed runs also get through to a dry run.
VALID_SETS = st.sampled_from(
    [
        "lr_g=1e-3", "lr-d=0.0005", "ema=false", "beta1=0", "seed=7", "n_critic=2", "nz=4",
        "kimg=0.016", "log_every=1", "channels=3", "grid_size=4", "ema_rampup=none",
        "optimizer=rmsprop", "reg=r1:gamma=1", "objective=hinge", "max_images=64",
        "device=cpu", "precision=bf16", "keep_checkpoints=1", "sample_every_kimg=1e9",
    ]
)  # fmt: skip
SET_PAIRS = VALID_SETS | st.one_of(
    st.tuples(st.sampled_from(sorted(SIZE_FIELDS & set(DCGAN_FIELDS))), SMALL_OR_JUNK),
    st.tuples(st.sampled_from(sorted(set(DCGAN_FIELDS) - SIZE_FIELDS)), NUMBER_TEXT),
    st.tuples(st.sampled_from(TRAIN_FIELDS), NUMBER_TEXT),
    st.tuples(st.sampled_from(TRAIN_FIELDS), st.sampled_from(["cuda", "meta", "bf16", "log"])),
    st.tuples(st.text(max_size=8), st.text(max_size=8)),
).map(lambda kv: f"{kv[0]}={kv[1]}")


@fuzz(100)
@given(
    st.sampled_from(["dcgan"] * 5 + ["gan", "nosuchmodel", "", "-x"]),
    st.lists(VALID_SETS, max_size=3),
    st.lists(SET_PAIRS | st.text(max_size=6), max_size=2),
)
def test_train_with_random_set_pairs(model: str, valid: list[str], pairs: list[str]) -> None:
    argv = ["train", model, *TINY]
    for pair in valid + pairs:
        argv += ["--set", pair]
    fuzz_main(argv)


NUMERIC_FLAGS = [
    "--batch-size", "--lr", "--lr-g", "--lr-d", "--kimg", "--epochs", "--max-seconds", "--seed",
    "--n-critic", "--max-images", "--sample-every-kimg", "--ckpt-every-kimg",
    "--eval-every-kimg", "--nproc", "--channels",
]  # fmt: skip
RESOLUTIONS = st.one_of(
    st.integers(-4, 40).map(str),
    st.sampled_from(["64", "1000000", "1048576", str(10**30), "16.0", "abc", "-16"]),
)
DATA_SPECS = st.sampled_from(
    [
        "digits", "nosuch", "folder:", "npz:", "folder:/nonexistent/x", "npz:/nonexistent.npz",
        "npz:.", "folder:.", ".", "ring8", "",
    ]
)  # fmt: skip


@fuzz(120)
@given(
    st.lists(
        st.tuples(st.sampled_from(NUMERIC_FLAGS), st.sampled_from(["1", "16", "0.5", "2e-4"])),
        max_size=2,
    ),
    st.lists(st.tuples(st.sampled_from(NUMERIC_FLAGS), NUMBER_TEXT), max_size=2),
    st.sampled_from([None, None, "16"]) | RESOLUTIONS,
    st.sampled_from([None, None, "digits"]) | DATA_SPECS,
    st.sampled_from([[], ["--dry-run"], ["--no-download"], ["--resume", "nowhere"]]),
)
def test_train_with_random_numeric_flags_and_data(
    plausible: list[tuple[str, str]],
    flags: list[tuple[str, str]],
    resolution: str | None,
    data: str | None,
    extra: list[str],
) -> None:
    argv = ["train", "dcgan", *TINY, *extra]
    for flag, value in plausible + flags:
        argv.append(f"{flag}={value}")  # "=": a value such as "-1" stays a value
    if resolution is not None:
        argv.append(f"--resolution={resolution}")
    if data is not None:
        argv.append(f"--data={data}")
    fuzz_main(argv)


OTHER_COMMANDS = [
    "models", "datasets", "objectives", "sample", "eval", "probe", "features", "memorisation",
    "interpolate", "truncation", "filters", "ablate", "nosuchcommand", "", "--version",
]  # fmt: skip
TOKENS = st.one_of(
    st.sampled_from(
        [
            "--seeds", "0-3", "--class", "--trunc", "--out", "x.png", "--list", "--metrics",
            "fd1k_pixel", "--device", "cpu", "--n", "--layer", "-1", "run", ".", "--data",
            "digits", "--bogus", "--seed", "nan", "--help",
        ]
    ),
    # Control characters are left out here; their escaping has its own test below.
    NUMBER_TEXT.filter(lambda t: all(c.isprintable() or c == " " for c in t)),
)  # fmt: skip


@fuzz(80)
@given(st.sampled_from(OTHER_COMMANDS), st.lists(TOKENS, max_size=5))
def test_other_commands_with_random_arguments(command: str, tokens: list[str]) -> None:
    """Commands that need a run folder get none: each must fail cleanly (or just list/help)."""
    fuzz_main([command, *tokens])


@pytest.mark.parametrize("bad", [["--lr", "nan"], ["--kimg", "-1"], ["--set", "beta1=2"]])
def test_nproc_validates_before_starting_processes(bad: list[str]) -> None:
    launched: list[Any] = []
    argv = ["train", "dcgan", *TINY, "--nproc", "2", *bad]
    code, _, stderr, left = _run_main(argv, launch=lambda args: launched.append(args) or 0)
    assert not launched
    assert_clean_exit(code, "", stderr, left)
    assert code == 2


@pytest.mark.parametrize("token", ["a\nb", "\r", "x\x1b[2Jy"])
def test_argparse_errors_escape_control_characters(token: str) -> None:
    code, stdout, stderr, left = _run_main(["models", token])
    assert code == 2
    assert_clean_exit(code, stdout, stderr, left)
    assert "\x1b" not in stderr
