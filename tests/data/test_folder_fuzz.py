"""Fuzzing folder:PATH (hypothesis): any folder of files gives a dataset whose documented
conversion holds, or a `UserError` that names the problem; never another exception, a hang or
a memory blowup."""

from __future__ import annotations

import io
import re
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from gankit.data import load_dataset
from gankit.errors import UserError
from tests.fuzzing import assert_one_line, fuzz, peak_rss_bytes

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
