"""`npz:PATH`: images (and optional labels) saved with `numpy.savez`.

The file is always opened with `allow_pickle=False`: an .npz from the internet must not be able
to run code, so an object array (which needs pickle) is refused, never loaded. Each array's
header is read before its data: an array larger than the memory a dataset may take (see
`common.memory_budget`), or than the bytes its file holds, is refused without allocating it.

Conversions: uint8 images are kept as they are; other integer images must lie in 0..255; float
images in [0, 1] are scaled by 255 and floats in [-1, 1] mapped by (v + 1) * 127.5 (rounded);
labels must be 1-D integers in 0..2**31 - 1, one per image.
"""

from __future__ import annotations

import math
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from .base import ImageDataset
from .common import LoadRequest, check_fits

IMAGE_KEYS = ("x", "images")
LABEL_KEYS = ("y", "labels")

_HOW = "save one with numpy.savez(PATH, x=images, y=labels)"
_READ_ERRORS = (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError)
# Reading a member can also fail in zlib (corrupt deflate data), on an encrypted member
# (RuntimeError) or on a compression method Python lacks (NotImplementedError).
_MEMBER_ERRORS = (*_READ_ERRORS, zlib.error, RuntimeError, NotImplementedError, MemoryError)


# Class indices beyond this are not class indices (and uint64 ones would wrap in int64).
MAX_LABEL = 2**31 - 1


def _check_header(archive: np.lib.npyio.NpzFile, key: str, path: str) -> None:
    """Refuse an array whose header declares more data than fits in memory or in the file.

    np.load allocates the whole declared shape before reading a byte of data, so a forged
    100-byte file can ask for terabytes, and a small deflated member can expand to gigabytes.
    """
    names = archive.zip.namelist()
    member = f"{key}.npy" if f"{key}.npy" in names else key
    info = archive.zip.getinfo(member)
    with archive.zip.open(member) as f:
        if f.read(len(np.lib.format.MAGIC_PREFIX)) != np.lib.format.MAGIC_PREFIX:
            raise UserError(f"{path}: {key!r} is not a NumPy array (no .npy header): {_HOW}")
        f.seek(0)
        version = np.lib.format.read_magic(f)
        reader = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, _, dtype = reader(f)
        header_size = f.tell()
    count = math.prod(shape)
    nbytes = count * dtype.itemsize
    check_fits(
        nbytes + 5 * count,  # the array, a float32 copy when it is scaled, and the uint8 result
        f"{path}: array {key!r} of shape {shape} and dtype {dtype}",
        "store fewer or smaller images",
    )
    if info.compress_type == zipfile.ZIP_STORED and nbytes > info.file_size - header_size:
        raise UserError(
            f"{path}: array {key!r} declares shape {shape} ({nbytes} bytes of {dtype}) but the "
            f"file holds {max(info.file_size - header_size, 0)} bytes: it is truncated or "
            f"damaged; {_HOW}"
        )


def _read(archive: np.lib.npyio.NpzFile, key: str, path: str) -> np.ndarray:
    try:
        _check_header(archive, key, path)
        return np.asarray(archive[key])
    except ValueError as err:
        if "pickle" in str(err).lower() or "object" in str(err).lower():
            raise UserError(
                f"{path}: array {key!r} holds Python objects, which would need pickle to load; "
                "gankit never unpickles data files: store a numeric array instead"
            ) from None
        raise UserError(f"{path}: array {key!r} could not be read ({err}): {_HOW}") from None
    except _MEMBER_ERRORS as err:
        raise UserError(f"{path}: array {key!r} could not be read ({err}): {_HOW}") from None


def _to_nchw(images: np.ndarray, path: str) -> np.ndarray:
    """Accept [N, H, W], [N, H, W, C] or [N, C, H, W] with C in {1, 3}; return [N, C, H, W]."""
    expected = "[N, H, W], [N, H, W, C] or [N, C, H, W] with C = 1 or 3"
    if images.ndim == 3:
        images = images[:, None]
    elif images.ndim == 4:
        last, second = images.shape[3] in (1, 3), images.shape[1] in (1, 3)
        if last and second:  # e.g. [N, 3, 3, 3] or [N, 1, 1, 1]: prefer the square reading
            last = images.shape[1] == images.shape[2] or images.shape[2] != images.shape[3]
        if last:
            images = images.transpose(0, 3, 1, 2)
        elif not second:
            raise UserError(
                f"{path}: images have shape {images.shape}, with neither 1 nor 3 channels in "
                f"axis 1 or 3: expected {expected}"
            )
    else:
        raise UserError(f"{path}: images have shape {images.shape}: expected {expected}")
    if min(images.shape) == 0:
        raise UserError(f"{path}: the image array {images.shape} is empty: {_HOW}")
    return images


def _to_uint8(images: np.ndarray, path: str, notes: list[str]) -> np.ndarray:
    """uint8 as is; other integers if within 0..255; floats in [0, 1] or [-1, 1] are scaled."""
    wanted = "uint8 0..255, or floats in [0, 1] or [-1, 1]"
    kind = images.dtype.kind
    if images.dtype == np.uint8:
        return images
    if kind in "iu":
        low, high = int(images.min()), int(images.max())
        if low < 0 or high > 255:
            raise UserError(
                f"{path}: {images.dtype} images range over {low}..{high}; expected {wanted}"
            )
        return images.astype(np.uint8)
    if kind == "f":
        if not np.isfinite(images).all():
            raise UserError(f"{path}: images contain NaN or infinity; expected {wanted}")
        low, high = float(images.min()), float(images.max())
        if low >= 0.0 and high <= 1.0:
            notes.append("scaled float images from [0, 1] to 0..255")
            scaled = images.astype(np.float32) * 255.0
        elif low >= -1.0 and high <= 1.0:
            notes.append("mapped float images from [-1, 1] to 0..255")
            scaled = (images.astype(np.float32) + 1.0) * 127.5
        else:
            raise UserError(f"{path}: float images range over {low:g}..{high:g}; expected {wanted}")
        return np.clip(np.round(scaled), 0, 255).astype(np.uint8)
    raise UserError(f"{path}: images have dtype {images.dtype}; expected {wanted}")


def _check_labels(labels: np.ndarray, count: int, path: str) -> np.ndarray:
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise UserError(
            f"{path}: labels must be a 1-D integer array, got {labels.dtype} {labels.shape}: "
            "store class indices 0, 1, 2, ..."
        )
    if len(labels) != count:
        raise UserError(
            f"{path}: {len(labels)} labels for {count} images: store one label per image"
        )
    if len(labels) and labels.min() < 0:
        raise UserError(f"{path}: labels include {labels.min()}; class indices must be >= 0")
    if len(labels) and labels.max() > MAX_LABEL:
        raise UserError(
            f"{path}: labels include {labels.max()}; class indices must be at most {MAX_LABEL} "
            "(store 0, 1, 2, ... for the classes)"
        )
    return labels.astype(np.int64)


def load_npz(path: str, req: LoadRequest) -> ImageDataset:
    """Load `x`/`images` (and `y`/`labels` if present) from an .npz, without ever unpickling."""
    file = Path(path).expanduser()
    if not file.is_file():
        what = "is a folder (use folder:PATH for images)" if file.is_dir() else "does not exist"
        raise UserError(f"npz file {path} {what}: check the path after 'npz:'")
    try:
        with open(file, "rb") as f:
            # np.load would read a whole .npy (whatever size its header declares) only for it
            # to be refused here, so look at the magic bytes first.
            if f.read(len(np.lib.format.MAGIC_PREFIX)) == np.lib.format.MAGIC_PREFIX:
                raise UserError(f"{path} is a single .npy array, not an .npz archive: {_HOW}")
        archive = np.load(file, allow_pickle=False)
    except _READ_ERRORS as err:
        raise UserError(f"{path} is not a readable .npz file ({err}): {_HOW}") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise UserError(f"{path} is not an .npz archive: {_HOW}")
    with archive:
        keys = list(archive.files)
        image_key = next((k for k in IMAGE_KEYS if k in keys), None)
        if image_key is None:
            raise UserError(
                f"{path} has no image array (looked for {' or '.join(IMAGE_KEYS)}; found "
                f"{', '.join(keys) or 'nothing'}): {_HOW}"
            )
        label_key = next((k for k in LABEL_KEYS if k in keys), None)
        images = _read(archive, image_key, path)
        labels = None if label_key is None else _read(archive, label_key, path)

    notes: list[str] = []
    images = _to_nchw(images, path)
    num_classes = 0
    if labels is not None:
        labels = _check_labels(labels, len(images), path)
        num_classes = int(labels.max()) + 1
    if req.max_images is not None:
        images = images[: req.max_images]
        labels = None if labels is None else labels[: req.max_images]
    images = _to_uint8(images, path, notes)
    return ImageDataset(
        images=torch.from_numpy(np.ascontiguousarray(images)),
        labels=None if labels is None else torch.from_numpy(labels),
        num_classes=num_classes,
        name=req.spec,
        notes=notes,
    )
