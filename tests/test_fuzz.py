"""Property-based tests (hypothesis) of everything a user types or hands to gankit.

Config and CLI: any input gives a valid result, or a `UserError` (from the API) / exit code 2
with one line on stderr (from `gankit.cli.main`); never another exception or a traceback.
Loaders (npz:PATH, folder:PATH): any file gives a dataset whose documented conversion holds, or
a `UserError` that names the problem; never another exception, a hang or a memory blowup.

Every test is derandomized and keeps no example database, so CI runs the same examples each
time and leaves no .hypothesis folder. Nothing here trains: `gankit train` is run with its
training call replaced by a dry run.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import resource
import struct
import tempfile
import types
import typing
import warnings
import zipfile
import zlib
from dataclasses import fields
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from PIL import Image

import gankit.api
import gankit.cli
import gankit.cli.train
from gankit.config import (
    RunConfig,
    TrainConfig,
    _coerce,
    apply_overrides,
    from_dict,
    parse_assignments,
)
from gankit.data import load_dataset
from gankit.errors import UserError
from gankit.models import MODELS
from gankit.training.ema import ema_beta
from gankit.training.trainer import total_images

# No example database, and Hypothesis's own caches (constants, unicode tables) go to a
# throw-away folder rather than ./.hypothesis in the repository.
if not os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
    set_hypothesis_home_dir(tempfile.mkdtemp(prefix="gankit-test-hypothesis-"))

# A hang shows up as a deadline failure; each example is otherwise a few milliseconds. The
# deadline is far above that so that a loaded CI machine cannot trip it, only a real hang.
FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=timedelta(seconds=60),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=False,
)


def fuzz(examples: int) -> settings:
    return settings(FUZZ, max_examples=examples)


def assert_one_line(err: UserError, *fragments: str) -> str:
    message = str(err)
    assert message and "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


# ------------------------------------------------------------------------------ value pools

# Strings a user might type for a number: well-formed, odd but valid in Python, and junk.
NUMBER_WORDS = st.sampled_from(
    [
        "0", "-0", "1", "-1", "16", "0.5", "1e-3", "1e400", "-1e400", "nan", "NaN", "inf",
        "-inf", "Infinity", "1_000", " 7 ", "0x10", "1e", "", " ", "2**8", "1,5", "\u0663",
        "9" * 30, "9" * 5000, "none", "None", "null", "true", "off", "1.0", "3.", ".5",
    ]
)  # fmt: skip
NUMBER_TEXT = st.one_of(
    NUMBER_WORDS,
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=8),
)
BIG_INTS = st.sampled_from([2**31, 2**32, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**400, 10**5000])
ANY_SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    BIG_INTS,
    st.floats(allow_nan=True, allow_infinity=True),
    NUMBER_TEXT,
)
ANY_VALUE = st.one_of(
    ANY_SCALAR,
    st.lists(ANY_SCALAR, max_size=3),
    st.dictionaries(st.text(max_size=4), ANY_SCALAR, max_size=2),
)

TRAIN_FIELDS = [f.name for f in fields(TrainConfig)]
HINTS = typing.get_type_hints(TrainConfig)


def conforms(value: Any, tp: Any) -> bool:
    """Whether `value` has exactly the type `tp` (a bool is not an int; an int not a float)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return any(conforms(value, arg) for arg in typing.get_args(tp))
    if tp is type(None):
        return value is None
    return type(value) is tp


# ------------------------------------------------------------------------------ config


@fuzz(60)
@given(
    st.lists(
        st.text(alphabet=st.sampled_from("ab=_- .1\t\n=é"), max_size=10) | st.text(max_size=6),
        max_size=5,
    )
)
def test_parse_assignments_splits_at_the_first_equals_or_refuses(items: list[str]) -> None:
    if all("=" in item for item in items):
        expected = {}
        for item in items:
            key, value = item.split("=", 1)
            expected[key.strip()] = value.strip()
        assert parse_assignments(items) == expected
    else:
        with pytest.raises(UserError) as info:
            parse_assignments(items)
        assert_one_line(info.value, "key=value")


COERCE_TYPES = [int, float, bool, str, int | None, float | None, str | None]


@fuzz(300)
@given(ANY_VALUE, st.sampled_from(COERCE_TYPES))
def test_coerce_gives_the_exact_type_or_a_user_error(value: Any, tp: Any) -> None:
    try:
        out = _coerce(value, tp, "some_key")
    except UserError as err:
        assert_one_line(err, "some_key")
        assert len(str(err)) < 400  # a 5000-digit value is shortened, not pasted
        return
    assert conforms(out, tp), (value, tp, out)
    if out is None:
        assert value is None or value.lower() in ("none", "null")
    elif type(out) is int:
        assert -(2**63) <= out < 2**63
        assert out == (int(value) if isinstance(value, str) else value)
    elif type(out) is float and isinstance(value, str):
        assert out == float(value) or (math.isnan(out) and math.isnan(float(value)))


OVERRIDE_KEYS = st.one_of(
    st.sampled_from(TRAIN_FIELDS),
    st.sampled_from(TRAIN_FIELDS).map(lambda k: k.replace("_", "-")),
    st.text(max_size=10),
)


@fuzz(150)
@given(st.dictionaries(OVERRIDE_KEYS, ANY_VALUE, max_size=4))
def test_apply_overrides_types_every_field_or_names_the_culprit(overrides: dict) -> None:
    base = TrainConfig()
    try:
        cfg = apply_overrides(base, overrides, what="training option")
    except UserError as err:
        message = assert_one_line(err)
        culprits = [repr(k) for k in overrides] + [k.replace("-", "_") for k in overrides]
        assert any(c and c in message for c in culprits), message
        return
    changed = {k.replace("-", "_") for k in overrides}
    for name in TRAIN_FIELDS:
        value = getattr(cfg, name)
        assert conforms(value, HINTS[name]), (name, value)
        if name not in changed:
            assert value == getattr(base, name)


def _positive_float() -> st.SearchStrategy[float]:
    edges = st.sampled_from([0.0, -0.0, 5e-324, 1e-3, 0.999999, 1.0, 1e9, 1e9 * 1.01, 1e306])
    return edges | st.floats(allow_nan=True, allow_infinity=True)


INT_EDGES = st.sampled_from([0, 1, -1, 16, 2**31, 2**32 - 1, 2**32, 2**62, 2**63 - 1, -(2**63)])
NUMERIC_OVERRIDES = {
    name: (INT_EDGES | st.integers()) if HINTS[name] in (int, int | None) else _positive_float()
    for name in TRAIN_FIELDS
    if HINTS[name] in (int, float, int | None, float | None)
}


@fuzz(200)
@given(
    st.dictionaries(st.sampled_from(sorted(NUMERIC_OVERRIDES)), st.none(), max_size=6).flatmap(
        lambda keys: st.fixed_dictionaries({k: NUMERIC_OVERRIDES[k] for k in keys})
    )
)
def test_a_config_that_validates_can_be_run(overrides: dict[str, Any]) -> None:
    """validate() is the last check before the trainer: whatever it accepts must work there."""
    if overrides.get("eval_every_kimg") is not None:
        overrides["eval_metrics"] = "fd2k_mnistcnn"
    try:
        cfg = apply_overrides(TrainConfig(), overrides)  # refuses ints beyond 64 bits
        cfg.validate()
    except UserError as err:
        assert_one_line(err)
        return
    for name in ("batch_size", "lr_g", "lr_d", "ema_kimg", "n_critic", "log_every"):
        value = getattr(cfg, name)
        assert value > 0 and math.isfinite(value), (name, value)
    assert 0.0 <= cfg.beta1 < 1.0 and 0.0 <= cfg.beta2 < 1.0
    # What the trainer computes from the config must not overflow or fail.
    for n in (1, 1797, 70_000):
        assert isinstance(total_images(cfg, n), int)
    for name in ("sample_every_kimg", "ckpt_every_kimg", "eval_every_kimg"):
        value = getattr(cfg, name)
        if value is not None:
            assert max(1, int(value * 1000)) >= 1
    torch.manual_seed(cfg.seed)
    torch.Generator().manual_seed(cfg.seed * 1_000_003 + 10**6)  # the per-epoch shuffle
    for nimg in (0, 1000, 10**9):
        beta = ema_beta(cfg.batch_size, nimg, cfg.ema_kimg, cfg.ema_rampup)
        assert 0.0 <= beta <= 1.0


JSON_SCALAR = st.one_of(  # JSON itself cannot carry a 5000-digit int: leave that one out
    st.none(), st.booleans(), st.integers(), st.sampled_from([2**63, -(2**64), 10**400]),
    st.floats(), st.text(max_size=6),
)  # fmt: skip
JSON_VALUE = st.recursive(
    JSON_SCALAR,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)
TRAIN_DOC = st.dictionaries(
    st.sampled_from(TRAIN_FIELDS) | st.text(max_size=5), JSON_VALUE | NUMBER_TEXT, max_size=4
)


@fuzz(150)
@given(
    st.one_of(
        JSON_VALUE,
        st.fixed_dictionaries(
            {"model": JSON_VALUE, "model_config": JSON_VALUE, "train": TRAIN_DOC | JSON_VALUE}
        ),
        st.fixed_dictionaries(
            {"model": st.sampled_from(["dcgan", "gan"]), "model_config": st.just({})},
            optional={"train": TRAIN_DOC},
        ),
    )
)
def test_run_config_from_any_json(doc: Any) -> None:
    try:
        rc = RunConfig.from_json(doc)
    except UserError as err:
        assert_one_line(err)
        return
    assert isinstance(rc.model, str) and isinstance(rc.model_config, dict)
    for name in TRAIN_FIELDS:
        assert conforms(getattr(rc.train, name), HINTS[name]), name
    # What was accepted survives its own round trip (compared as JSON: NaN != NaN).
    again = RunConfig.from_json(json.loads(json.dumps(rc.to_json())))
    assert json.dumps(again.to_json(), sort_keys=True) == json.dumps(rc.to_json(), sort_keys=True)
    assert from_dict(TrainConfig, doc["train"]) == rc.train or any(
        isinstance(v, float) and math.isnan(v) for v in vars(rc.train).values()
    )


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


# ------------------------------------------------------------------------------ folder:PATH

GREY_MODES = ("1", "L", "LA", "I;16", "I")
RGB_MODES = ("RGB", "RGBA", "P", "CMYK")


@st.composite
def solid_images(draw: st.DrawFn) -> tuple[str, Image.Image, tuple[int, ...], bool]:
    """A constant image in any mode; returns (file suffix, image, expected pixel, had alpha)."""
    mode = draw(st.sampled_from(GREY_MODES + RGB_MODES))
    size = (draw(st.integers(1, 24)), draw(st.integers(1, 24)))
    byte = st.integers(0, 255)
    if mode == "1":
        on = draw(st.booleans())
        return ".png", Image.new("1", size, int(on)), (255 if on else 0,), False
    if mode == "L":
        v = draw(byte)
        return ".png", Image.new("L", size, v), (v,), False
    if mode == "LA":
        v, a = draw(byte), draw(byte)
        return ".png", Image.new("LA", size, (v, a)), (_over_white(v, a),), True
    if mode == "I;16":
        v = draw(st.integers(0, 65535))
        image = Image.fromarray(np.full(size[::-1], v, np.uint16))
        return ".png", image, (round(v / 257),), False
    if mode == "I":
        v = draw(st.integers(-(2**31), 2**31 - 1) | st.integers(-300, 70000))
        image = Image.fromarray(np.full(size[::-1], v, np.int32))
        return ".tif", image, (min(255, max(0, round(v / 257))),), False
    if mode == "RGB":
        c = (draw(byte), draw(byte), draw(byte))
        return draw(st.sampled_from([".png", ".bmp", ".tif"])), Image.new("RGB", size, c), c, False
    if mode == "RGBA":
        c, a = (draw(byte), draw(byte), draw(byte)), draw(byte)
        return ".png", Image.new("RGBA", size, (*c, a)), tuple(_over_white(v, a) for v in c), True
    if mode == "CMYK":
        c = (draw(byte), draw(byte), draw(byte), draw(byte))
        rgb = Image.new("CMYK", (1, 1), c).convert("RGB").getpixel((0, 0))
        return ".tif", Image.new("CMYK", size, c), tuple(rgb), False
    # Palette: index 1 everywhere, optionally declared transparent.
    colour = (draw(byte), draw(byte), draw(byte))
    image = Image.new("P", size, 1)
    image.putpalette([9, 9, 9, *colour] + [0] * 762)
    if draw(st.booleans()):
        image.info["transparency"] = 1
        return ".png", image, (255, 255, 255), True
    return draw(st.sampled_from([".png", ".gif"])), image, colour, False


def _over_white(value: int, alpha: int) -> int:
    return round(value * alpha / 255 + 255 * (1 - alpha / 255))


def _save(image: Image.Image, path: Path) -> None:
    kwargs = {"transparency": image.info["transparency"]} if "transparency" in image.info else {}
    image.save(path, **kwargs)


@fuzz(60)
@given(
    st.lists(solid_images(), min_size=1, max_size=4),
    st.integers(1, 12),
    st.sampled_from([None, 1, 3]),
)
def test_folder_converts_every_mode_as_documented(
    images: list[tuple[str, Image.Image, tuple[int, ...], bool]],
    resolution: int,
    channels: int | None,
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for i, (suffix, image, _, _) in enumerate(images):
            _save(image, Path(tmp) / f"{i:02d}{suffix}")
        ds = load_dataset(f"folder:{tmp}", resolution=resolution, channels=channels)
    all_grey = all(len(px) == 1 for _, _, px, _ in images)
    native = 1 if all_grey else 3
    assert ds.images.dtype == torch.uint8
    assert ds.images.shape == (len(images), channels or native, resolution, resolution)
    for img, (_, _, px, _) in zip(ds.images, images, strict=True):
        rgb = px * 3 if len(px) == 1 else px
        if channels == 1 and not all_grey:  # luminance of the RGB the folder gave
            expected = [round(sum(w * v for w, v in zip((0.299, 0.587, 0.114), rgb, strict=True)))]
        elif (channels or native) == 3:
            expected = list(rgb)
        else:
            expected = list(px)
        for c, value in enumerate(expected):
            # +-1: alpha compositing and luminance round differently in PIL and torch.
            assert abs(int(img[c].min()) - value) <= 1 and abs(int(img[c].max()) - value) <= 1
    alpha = sum(had_alpha for *_, had_alpha in images)
    assert any(f"composited {alpha} transparent" in n for n in ds.notes) == bool(alpha)


def _valid_png(seed: int, size: int = 12) -> bytes:
    buf = io.BytesIO()
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _valid_jpeg(seed: int, size: int = 24) -> bytes:
    buf = io.BytesIO()
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


@st.composite
def folder_entries(draw: st.DrawFn) -> tuple[str, bytes, str]:
    """(kind, bytes, suffix): kind is valid, broken (may or may not decode), other or hidden."""
    kind = draw(st.sampled_from(["valid", "cut", "cut", "empty", "random", "text", "other"]))
    seed = draw(st.integers(0, 2**16))
    if kind == "valid":
        suffix = draw(st.sampled_from([".png", ".jpg"]))
        data = _valid_png(seed) if suffix == ".png" else _valid_jpeg(seed)
        return "valid", data, suffix
    if kind == "cut":
        suffix = draw(st.sampled_from([".png", ".jpg", ".jpeg"]))
        data = _valid_png(seed, 32) if suffix == ".png" else _valid_jpeg(seed, 32)
        return "broken", data[: draw(st.integers(0, len(data) - 1))], suffix
    suffix = draw(st.sampled_from([".png", ".jpg", ".gif", ".bmp", ".webp", ".tif", ".PNG"]))
    if kind == "empty":
        return "broken", b"", suffix
    if kind == "random":
        return "broken", draw(st.binary(max_size=200)), suffix
    if kind == "text":
        return "broken", b"just some text, named like an image\n", suffix
    if draw(st.booleans()):
        return "hidden", _valid_png(seed), ".png"  # ".name.png" is skipped silently
    return "other", draw(st.binary(max_size=50)), draw(st.sampled_from([".txt", ".npz", ""]))


def _skipped(notes: list[str], what: str) -> int:
    found = [int(m.group(1)) for n in notes if (m := re.match(rf"skipped (\d+) {what}", n))]
    return found[0] if found else 0


@fuzz(60)
@given(st.lists(folder_entries(), min_size=1, max_size=6), st.integers(1, 10))
def test_folder_with_broken_files_keeps_and_counts_every_file(
    entries: list[tuple[str, bytes, str]], resolution: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for i, (kind, data, suffix) in enumerate(entries):
            name = f".{i:02d}{suffix}" if kind == "hidden" else f"{i:02d}{suffix}"
            (Path(tmp) / name).write_bytes(data)
        spec = f"folder:{tmp}"
        n_images = sum(kind in ("valid", "broken") for kind, _, _ in entries)
        n_valid = sum(kind == "valid" for kind, _, _ in entries)
        n_other = sum(kind == "other" for kind, _, _ in entries)
        try:
            ds = load_dataset(spec, resolution=resolution)
        except UserError as err:
            assert n_valid == 0
            if n_images == 0:
                assert_one_line(err, "no images found", f"{n_other} other files")
            else:
                assert_one_line(err, f"none of the {n_images} image files", "could be read")
            return
    assert len(ds) >= n_valid
    assert len(ds) + _skipped(ds.notes, "unreadable") == n_images
    assert _skipped(ds.notes, "non-image") == n_other
    assert ds.images.dtype == torch.uint8
    assert ds.images.shape[1:] == (ds.images.shape[1], resolution, resolution)
    assert ds.images.shape[1] in (1, 3)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def forged_png(width: int, height: int, colour_type: int, idat: bytes) -> bytes:
    """A PNG whose header declares width x height, followed by whatever `idat` is."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    chunks = _png_chunk(b"IHDR", ihdr)
    if idat:
        chunks += _png_chunk(b"IDAT", idat)
    return b"\x89PNG\r\n\x1a\n" + chunks + _png_chunk(b"IEND", b"")


def forged_gif(width: int, height: int) -> bytes:
    return b"GIF89a" + struct.pack("<HH", width, height) + b"\x00\x00\x00" + b"\x3b"


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: kB


HUGE_SIDES = st.sampled_from([1, 9000, 20000, 60000, 65535, 2**31 - 1])


@fuzz(30)
@given(
    st.lists(
        st.tuples(
            HUGE_SIDES,
            HUGE_SIDES,
            st.sampled_from([0, 2, 6]),
            st.sampled_from([b"", b"\x00" * 64, zlib.compress(b"\x00" * 4096)]) | st.binary(),
            st.booleans(),
        ),
        min_size=1,
        max_size=3,
    )
)
def test_folder_survives_huge_declared_sizes(forged: list[tuple]) -> None:
    """Headers declaring up to 2**31 x 2**31 pixels: skipped, without hanging or eating memory."""
    before = peak_rss_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        Image.new("L", (4, 4), 7).save(Path(tmp) / "00_good.png")
        for i, (width, height, colour, idat, gif) in enumerate(forged):
            if gif:
                data, suffix = forged_gif(min(width, 65535), min(height, 65535)), ".gif"
            else:
                data, suffix = forged_png(width, height, colour, idat), ".png"
            (Path(tmp) / f"{i + 1:02d}_forged{suffix}").write_bytes(data)
        ds = load_dataset(f"folder:{tmp}", resolution=4)
    # The good image is always kept (first); a forged one that is over PIL's limit never is.
    assert int(ds.images[0].min()) == 7 and int(ds.images[0].max()) == 7
    assert len(ds) + _skipped(ds.notes, "unreadable") == len(forged) + 1
    over = sum(width * height > Image.MAX_IMAGE_PIXELS for width, height, *_ in forged)
    assert len(ds) <= len(forged) + 1 - over
    assert peak_rss_bytes() - before < 1.5 * 2**30


@fuzz(25)
@given(st.integers(2**20, 2**40), st.sampled_from(["folder", "digits"]))
def test_resolutions_too_big_for_memory_are_refused_before_allocating(
    resolution: int, where: str
) -> None:
    before = peak_rss_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(3):
            Image.new("RGB", (8, 8), (i, i, i)).save(Path(tmp) / f"{i}.png")
        spec = f"folder:{tmp}" if where == "folder" else "digits"
        with pytest.raises(UserError) as info:  # 3 images at 2**20 squared: > 6 TB
            load_dataset(spec, resolution=resolution, max_images=3)
        assert_one_line(info.value, "memory", "--resolution")
    assert peak_rss_bytes() - before < 0.5 * 2**30


# ------------------------------------------------------------------------------ npz:PATH

GOOD_DTYPES = [
    np.uint8, np.uint8, np.float32, np.float64, np.float16, np.int8, np.int16, np.int64,
    np.uint16, np.uint64,
]  # fmt: skip
BAD_DTYPES = [np.bool_, np.complex64, np.dtype("U2"), np.dtype("M8[s]")]
RANGES = {"unit": (0.0, 1.0), "signed": (-1.0, 1.0), "byte": (0.0, 255.0), "wide": (-1e4, 1e4)}


@st.composite
def image_arrays(draw: st.DrawFn) -> np.ndarray:
    """Mostly plausible images with at most one thing wrong, so that both the conversions and
    every refusal are exercised (the npz_problems oracle decides which is which)."""
    defect = draw(
        st.sampled_from([None] * 6 + ["ndim", "zero", "channels", "dtype", "range", "odd"])
    )
    ndim = draw(st.sampled_from([1, 2, 5] if defect == "ndim" else [3, 4, 4]))
    shape = [draw(st.integers(1, 4))] + [draw(st.integers(1, 7)) for _ in range(ndim - 1)]
    if ndim == 4:
        channels = draw(st.sampled_from([2, 4, 5] if defect == "channels" else [1, 3]))
        shape[draw(st.sampled_from([1, 3]))] = channels
    if defect == "zero":
        shape[draw(st.integers(0, ndim - 1))] = 0
    dtype = np.dtype(draw(st.sampled_from(BAD_DTYPES if defect == "dtype" else GOOD_DTYPES)))
    if defect == "range" and dtype == np.uint8:
        dtype = np.dtype(np.int16)
    if dtype.kind == "f":
        ranges = ["byte", "wide"] if defect == "range" else ["unit", "signed"]
    else:
        ranges = ["wide"] if defect == "range" else ["byte"]
    low, high = RANGES[draw(st.sampled_from(ranges))]
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    values = rng.uniform(low, high, shape)
    if dtype.kind in "iub":
        values = np.round(values)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        values = np.clip(values, info.min, info.max)
    if dtype.kind in "UM":
        return values.astype(np.int64).astype(str if dtype.kind == "U" else np.int64).astype(dtype)
    array = values.astype(dtype)
    if defect == "odd" and array.size:  # one odd value: NaN, infinity, just past the range
        odd = [np.nan, np.inf, -np.inf, 1.0000001, -1.5] if dtype.kind == "f" else [-1, 256]
        value = draw(st.sampled_from(odd))
        with contextlib.suppress(OverflowError):
            if dtype.kind == "f" or np.iinfo(dtype).min <= value <= np.iinfo(dtype).max:
                array.flat[draw(st.integers(0, array.size - 1))] = value
    return array


@st.composite
def label_arrays(draw: st.DrawFn, n: int) -> np.ndarray:
    """Labels for n images: mostly right, or with one thing wrong."""
    defect = draw(st.sampled_from([None, None, None, "length", "dtype", "negative", "huge", "2d"]))
    length = draw(st.sampled_from([n + 1, max(n - 1, 0), 0])) if defect == "length" else n
    values = draw(st.lists(st.integers(0, 9), min_size=length, max_size=length))
    kinds = [np.float64, np.bool_] if defect == "dtype" else [np.int64, np.uint8, np.int32]
    if defect in ("negative", "huge") and values:
        odd = -1 if defect == "negative" else draw(st.sampled_from([2**31, 2**40, 2**63 + 5]))
        values[draw(st.integers(0, length - 1))] = odd
        kinds = [np.int64] if defect == "negative" or odd < 2**63 else [np.uint64]
    array = np.array(values, dtype=draw(st.sampled_from(kinds)))
    return array[:, None] if defect == "2d" else array


def npz_problems(arrays: dict[str, np.ndarray], max_images: int | None) -> dict[str, str] | None:
    """What a user would have to fix in `arrays`, as {problem: regex the error must match}.

    The loader reports the first problem it meets; the test only asks that it names one of
    the input's real problems, and that an input with none loads.
    """
    image_key = next((k for k in ("x", "images") if k in arrays), None)
    if image_key is None:
        return {"no images": "no image array"}
    x = arrays[image_key]
    problems = {}
    if x.ndim == 4 and x.shape[1] not in (1, 3) and x.shape[3] not in (1, 3):
        problems["channels"] = "neither 1 nor 3 channels"
    elif x.ndim not in (3, 4):
        problems["shape"] = r"images have shape .*: expected"
    elif 0 in x.shape:
        problems["empty"] = "is empty"
    label_key = next((k for k in ("y", "labels") if k in arrays), None)
    if label_key is not None:
        y = arrays[label_key]
        if y.ndim != 1 or y.dtype.kind not in "iu":
            problems["label type"] = "labels must be a 1-D integer array"
        elif len(y) != len(x):
            problems["label count"] = f"{len(y)} labels for {len(x)} images"
        elif len(y) and y.min() < 0:
            problems["negative label"] = "class indices must be >= 0"
        elif len(y) and y.max() > 2**31 - 1:
            problems["huge label"] = "class indices must be at most"
    kept = x[:max_images]
    if x.dtype.kind not in "iuf":
        problems["dtype"] = f"images have dtype {re.escape(str(x.dtype))}"
    elif kept.size and x.dtype.kind in "iu" and (kept.min() < 0 or kept.max() > 255):
        problems["int range"] = "images range over"
    elif kept.size and x.dtype.kind == "f":
        if not np.isfinite(kept).all():
            problems["not finite"] = "NaN or infinity"
        elif kept.min() < -1 or kept.max() > 1:
            problems["float range"] = "float images range over"
    return problems or None


def documented_uint8(x: np.ndarray) -> np.ndarray:
    """The module docstring's conversion, computed independently in float64."""
    if x.dtype == np.uint8 or x.dtype.kind in "iu":
        return x.astype(np.int64)
    v = x.astype(np.float64)
    scaled = v * 255 if v.min() >= 0 else (v + 1) * 127.5
    return np.round(scaled).astype(np.int64)


@fuzz(250)
@given(
    image_arrays(),
    st.sampled_from(["x", "x", "x", "images", "images", "z"]),
    st.data(),
    st.integers(1, 8),
    st.sampled_from([None, 1, 3]),
    st.sampled_from([None, 1, 2, 100]),
    st.booleans(),
)
def test_npz_any_array_loads_as_documented_or_names_the_problem(
    x: np.ndarray,
    image_key: str,
    data: st.DataObject,
    resolution: int,
    channels: int | None,
    max_images: int | None,
    compressed: bool,
) -> None:
    arrays = {image_key: x}
    label_key = data.draw(st.sampled_from([None, "y", "y", "labels", "w"]))
    if label_key is not None:
        arrays[label_key] = data.draw(label_arrays(len(x)))
    if data.draw(st.booleans()) and x.ndim == 4:  # also try the resolution that needs no resize
        resolution = max(1, x.shape[2] if x.shape[1] in (1, 3) else x.shape[1])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.npz"
        (np.savez_compressed if compressed else np.savez)(path, **arrays)
        problems = npz_problems(arrays, max_images)
        try:
            ds = load_dataset(
                f"npz:{path}", resolution=resolution, channels=channels, max_images=max_images
            )
        except UserError as err:
            message = assert_one_line(err)
            assert problems, f"refused valid data: {message}"
            event(f"refused: {', '.join(sorted(problems))}")
            assert str(path) in message or "channel" in message
            assert any(re.search(p, message) for p in problems.values()), (problems, message)
            return
    assert problems is None, f"accepted data with problems {problems}"
    event("loaded")
    x_key = "x" if "x" in arrays else "images"
    kept = arrays[x_key][:max_images]
    assert ds.images.dtype == torch.uint8
    assert ds.images.shape[0] == len(kept)
    assert ds.images.shape[1:] == (channels or ds.images.shape[1], resolution, resolution)
    assert ds.images.shape[1] in (1, 3)
    expected = documented_uint8(kept)
    assert expected.min() >= 0 and expected.max() <= 255
    got = ds.images.flatten().numpy().astype(np.int64)
    # Resizing and the luminance of RGB are convex combinations: no value leaves the range.
    assert expected.min() <= got.min() and got.max() <= expected.max()
    if not any(n.startswith(("resized", "converted")) for n in ds.notes):
        # Same size and channels: the very same values, wherever the channel axis was.
        assert np.abs(np.sort(got) - np.sort(expected.flatten())).max() <= 1
    y_key = next((k for k in ("y", "labels") if k in arrays), None)
    if y_key is None:
        assert ds.labels is None and ds.num_classes == 0
    else:
        assert ds.labels.dtype == torch.int64
        assert ds.labels.tolist() == arrays[y_key][:max_images].tolist()
        assert ds.num_classes == int(arrays[y_key].max()) + 1


class _Trap:
    """Unpickling this calls open(marker, "w"): if the marker file appears, pickle ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.marker, "w"))


@fuzz(30)
@given(
    st.sampled_from(["x", "images", "y", "labels", "z"]),
    st.sampled_from(["trap", "ints", "strings", "none", "nested"]),
    st.booleans(),
)
def test_npz_object_arrays_are_refused_without_unpickling(
    where: str, content: str, compressed: bool
) -> None:
    calls: list[dict[str, Any]] = []
    real_load = np.load

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as mp:
        marker = os.path.join(tmp, "unpickled")
        objects = np.empty(3, dtype=object)
        objects[:] = {
            "trap": [_Trap(marker)] * 3,
            "ints": [1, 2, 3],
            "strings": ["a", "b", "c"],
            "none": [None] * 3,
            "nested": [[1], (2,), {"k": 3}],
        }[content]
        arrays = {"x": np.zeros((3, 4, 4), np.uint8), where: objects}
        path = Path(tmp) / "o.npz"
        (np.savez_compressed if compressed else np.savez)(path, **arrays)
        mp.setattr(np, "load", spy)
        try:
            ds = load_dataset(f"npz:{path}", resolution=4)
        except UserError as err:
            assert where in ("x", "images", "y", "labels")
            assert_one_line(err, "never unpickles", repr(where))
        else:
            # Only an array gankit does not read may hold objects ("images" loses to "x").
            assert where in ("z", "images") and len(ds) == 3
        assert not os.path.exists(marker)
    assert calls and all(kwargs.get("allow_pickle") is False for kwargs in calls)


def _npy_header(shape: tuple[int, ...], descr: str) -> bytes:
    header = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode()
    header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header


@fuzz(40)
@given(
    st.lists(st.sampled_from([0, 1, 3, 1000, 10**5, 10**6, 10**9]), min_size=3, max_size=4),
    st.sampled_from(["|u1", "<f8", "<i2"]),
    st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]),
    st.binary(max_size=64),
    st.booleans(),
)
def test_npz_headers_declaring_huge_arrays_are_refused_quickly(
    shape: list[int], descr: str, method: int, payload: bytes, bare_npy: bool
) -> None:
    """A 200-byte file whose header declares up to 10**27 elements: no allocation, no hang."""
    before = peak_rss_bytes()
    member = _npy_header(tuple(shape), descr) + payload
    count = math.prod(shape)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "forged.npz"
        if bare_npy:
            path.write_bytes(member)
        else:
            with zipfile.ZipFile(path, "w", method) as archive:
                archive.writestr("x.npy", member)
        try:
            ds = load_dataset(f"npz:{path}", resolution=4)
        except UserError as err:
            assert_one_line(err, str(path))
        else:  # only when the payload really holds the (tiny) declared array
            assert count * np.dtype(descr).itemsize <= len(payload) and len(ds) == shape[0]
    assert peak_rss_bytes() - before < 0.5 * 2**30


@fuzz(150)
@given(
    st.integers(0, 2**16),
    st.booleans(),
    st.sampled_from(["cut", "overwrite", "overwrite", "both"]),
    st.data(),
)
def test_npz_damaged_files_give_a_user_error_or_the_data(
    seed: int, compressed: bool, how: str, data: st.DataObject
) -> None:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (6, 8, 8), np.uint8)
    y = rng.integers(0, 3, 6)
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, x=x, y=y)
    raw = bytearray(buf.getvalue())
    if how in ("overwrite", "both"):
        # A position anywhere in the file (integers would crowd at the start, the zip header).
        start = int(data.draw(st.floats(0, 1, exclude_max=True)) * len(raw))
        junk = data.draw(st.binary(min_size=1, max_size=8))
        raw[start : start + len(junk)] = junk
    if how in ("cut", "both"):
        raw = raw[: int(data.draw(st.floats(0, 1, exclude_max=True)) * len(raw))]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "damaged.npz"
        path.write_bytes(bytes(raw))
        try:
            ds = load_dataset(f"npz:{path}", resolution=8)
        except UserError as err:
            assert_one_line(err, str(path))
            return
    # Damage the reader never looks at (a timestamp, a name): every member's CRC is checked,
    # so whatever loads is the data that was saved.
    assert torch.equal(ds.images, torch.from_numpy(x).unsqueeze(1))
    assert ds.labels is None or ds.labels.tolist() == y.tolist()


@fuzz(25)
@given(
    st.sampled_from([1, 10**3, 10**5, 2 * 10**6]),
    st.booleans(),
    st.integers(1, 64),
    st.integers(1, 3),
)
def test_npz_extreme_aspect_ratios_do_not_blow_up(
    length: int, wide: bool, resolution: int, n: int
) -> None:
    """A 1 x 2,000,000 strip at resolution 64 once needed a 32 GB float intermediate."""
    before = peak_rss_bytes()
    rng = np.random.default_rng(length + n)
    x = rng.integers(50, 200, (n, 1, length) if wide else (n, length, 1), np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "strip.npz"
        np.savez(path, x=x)
        ds = load_dataset(f"npz:{path}", resolution=resolution)
    assert ds.images.shape == (n, 1, resolution, resolution)
    assert int(ds.images.min()) >= 50 and int(ds.images.max()) < 200
    assert peak_rss_bytes() - before < 0.5 * 2**30


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
