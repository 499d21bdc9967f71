"""Fuzzing npz:PATH (hypothesis): any array file loads as documented or gives a `UserError`
that names the problem; never another exception, a hang, a memory blowup or an unpickling."""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
import struct
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import event, given
from hypothesis import strategies as st

from gankit.data import load_dataset
from gankit.errors import UserError
from tests.fuzzing import assert_one_line, fuzz, peak_rss_bytes

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
