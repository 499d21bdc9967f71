"""`folder:PATH`: every image under a directory tree, decoded once with PIL.

Real-world folders are messy, so a file PIL cannot read (truncated, corrupt, a decompression
bomb, a format PIL lacks) is skipped and reported in `ImageDataset.notes` rather than ending a
long run at image 40,000. Every image is turned into grey ("L") or RGB like this:

* "1" (1-bit) and "L" stay grey; 16-bit grey ("I;16*", "I") is scaled to 8 bits (v / 257).
* Transparent images (RGBA, LA, palette with transparency) are composited onto WHITE, because
  transparent areas of icons and sprites are usually meant as "paper", not as black.
* Palette, CMYK, YCbCr and every other mode are converted to RGB by PIL.
* The EXIF orientation of photos is applied, and animated/multi-page files give their first
  frame.

The dataset is grey (1 channel) only if every image is grey; otherwise grey images are
repeated into RGB. Each image is scaled so that its shorter side equals the resolution and
centre-cropped to a square. A folder whose decoded images would not fit in the memory a dataset
may take (`common.memory_budget`) is refused before anything is decoded.
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from ..errors import UserError
from .base import ImageDataset
from .common import LoadRequest, check_fits

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")

_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")

# How many unreadable files are named in the notes (the count is always given).
_NAMED_FAILURES = 5
# Files decoded per batch when `max_images` lets us stop early.
_BATCH = 256


@dataclass
class _Decoded:
    pixels: np.ndarray | None  # [H, W] (grey) or [H, W, 3] uint8
    error: str = ""
    had_alpha: bool = False


def _scan(root: Path) -> tuple[list[Path], int]:
    """Image files under `root` in a fixed (sorted) order, and how many other files were seen.

    Hidden files and folders (".DS_Store", "._x.png" from macOS, ".git") are ignored. Linked
    folders are followed, each real folder once (so a link loop cannot recurse forever).
    """
    images: list[Path] = []
    others = 0
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            if name.lower().endswith(IMAGE_EXTENSIONS):
                images.append(Path(dirpath) / name)
            else:
                others += 1
    images.sort(key=lambda p: p.relative_to(root).parts)  # a/b/c.png before a/d.png
    return images, others


def _composite_on_white(im: Image.Image) -> Image.Image:
    rgba = im.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _grey_or_rgb(im: Image.Image) -> tuple[Image.Image, bool]:
    """Convert a decoded PIL image to mode "L" or "RGB"; also say whether alpha was flattened."""
    mode = im.mode
    if mode in ("1", "L", "F"):  # PIL clips 32-bit float pixels to 0..255
        return im.convert("L"), False
    if mode == "I" or mode.startswith("I;16"):
        values = np.asarray(im).astype(np.float64)
        grey = np.clip(np.round(values / 257.0), 0, 255).astype(np.uint8)
        return Image.fromarray(grey), False
    if mode == "P" and "transparency" in im.info:
        im, mode = im.convert("RGBA"), "RGBA"
    if mode in _ALPHA_MODES:
        flat = _composite_on_white(im)
        # A composited grey image is still grey: R == G == B, so "L" gives the value back.
        return (flat.convert("L") if mode in ("LA", "La") else flat), True
    return im.convert("RGB"), False


def _decode(path: Path, resolution: int) -> _Decoded:
    """Decode one file to a `resolution`-square uint8 array, or say why it could not be."""
    try:
        with Image.open(path) as im:
            limit = Image.MAX_IMAGE_PIXELS
            if limit is not None and im.width * im.height > limit:
                return _Decoded(None, f"{im.width}x{im.height} is over PIL's pixel limit")
            if im.format == "JPEG":
                im.draft(None, (resolution, resolution))  # decode big photos at reduced size
            im.load()
            im = ImageOps.exif_transpose(im)
            im, had_alpha = _grey_or_rgb(im)
        if im.size != (resolution, resolution):
            im = ImageOps.fit(im, (resolution, resolution), method=Image.Resampling.BILINEAR)
        return _Decoded(np.asarray(im, dtype=np.uint8).copy(), had_alpha=had_alpha)
    # A decoder fed a corrupt file can raise almost anything (OSError, SyntaxError,
    # struct.error, DecompressionBombError, ...); none of it should end the whole load.
    except Exception as err:
        return _Decoded(None, " ".join(f"{type(err).__name__}: {err}".split())[:200])


def _decode_all(files: list[Path], resolution: int, wanted: int | None) -> list[_Decoded]:
    """Decode `files` in order on a few threads (PIL releases the GIL while decoding)."""
    results: list[_Decoded] = []
    good = 0
    workers = max(1, min(4, os.cpu_count() or 1))
    with warnings.catch_warnings(), ThreadPoolExecutor(workers) as pool:
        # Large-but-legal images warn; `_decode` already refuses them, so keep the log quiet.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        step = len(files) if wanted is None else max(_BATCH, wanted)
        for start in range(0, len(files), step):
            batch = list(pool.map(lambda p: _decode(p, resolution), files[start : start + step]))
            results.extend(batch)
            good += sum(d.pixels is not None for d in batch)
            if wanted is not None and good >= wanted:
                break
    return results


def _class_folders(root: Path, files: list[Path]) -> list[str]:
    top_level = [f for f in files if f.parent == root]
    if top_level:
        raise UserError(
            f"folder labels need one sub-folder per class ({root}/CLASS/image.png), but "
            f"{len(top_level)} images lie directly in {root} (e.g. {top_level[0].name}): move "
            "them into class folders, or drop --folder-labels"
        )
    return sorted({f.relative_to(root).parts[0] for f in files})


def load_folder(path: str, req: LoadRequest) -> ImageDataset:
    """Load every image under `path` (recursively), optionally labelled by first-level folder."""
    root = Path(path).expanduser()
    if not root.exists():
        raise UserError(f"data folder {path} does not exist: check the path after 'folder:'")
    if not root.is_dir():
        raise UserError(f"data folder {path} is a file, not a folder: use folder:DIRECTORY")
    files, others = _scan(root)
    extensions = ", ".join(IMAGE_EXTENSIONS)
    if not files:
        raise UserError(
            f"no images found in {path} (searched sub-folders too; {others} other files): "
            f"gankit reads files ending in {extensions}"
        )
    classes = _class_folders(root, files) if req.folder_labels else None
    wanted = len(files) if req.max_images is None else min(len(files), req.max_images)
    check_fits(  # every decoded RGB image is held once as decoded and once in the result
        2 * wanted * 3 * req.resolution**2,
        f"{len(files)} images at {req.resolution}x{req.resolution}",
        "use a smaller --resolution or fewer images (--max-images)",
    )

    decoded = _decode_all(files, req.resolution, req.max_images)
    # With max_images, decoding may stop early: `decoded` can be shorter than `files`.
    pairs = list(zip(files, decoded, strict=False))
    kept = [(f, d) for f, d in pairs if d.pixels is not None]
    failed = [(f, d) for f, d in pairs if d.pixels is None]
    if not kept:
        first = failed[0]
        raise UserError(
            f"none of the {len(files)} image files in {path} could be read (e.g. "
            f"{first[0].relative_to(root)}: {first[1].error}): check that they are valid images"
        )
    if req.max_images is not None:
        kept = kept[: req.max_images]

    notes: list[str] = []
    if others:
        notes.append(f"skipped {others} non-image files (read: {extensions})")
    if failed:
        names = ", ".join(str(f.relative_to(root)) for f, _ in failed[:_NAMED_FAILURES])
        more = ", ..." if len(failed) > _NAMED_FAILURES else ""
        notes.append(f"skipped {len(failed)} unreadable files: {names}{more}")
    alpha = sum(d.had_alpha for _, d in kept)
    if alpha:
        notes.append(f"composited {alpha} transparent images onto a white background")

    grey = [d.pixels.ndim == 2 for _, d in kept]
    if not all(grey) and any(grey):
        notes.append(f"repeated {sum(grey)} grey images to RGB because others are in colour")
    size = req.resolution
    images = torch.empty((len(kept), 1 if all(grey) else 3, size, size), dtype=torch.uint8)
    for i, (_, d) in enumerate(kept):
        pixels = torch.from_numpy(d.pixels)
        images[i] = pixels if pixels.dim() == 2 else pixels.permute(2, 0, 1)
        d.pixels = None  # free each decoded image once it is copied

    labels = None
    if classes is not None:
        index = {name: i for i, name in enumerate(classes)}
        labels = torch.tensor([index[f.relative_to(root).parts[0]] for f, _ in kept])
        empty = sorted(set(classes) - {f.relative_to(root).parts[0] for f, _ in kept})
        if empty and req.max_images is None:
            notes.append(f"classes with no readable image: {', '.join(empty)}")
    return ImageDataset(
        images=images,
        labels=labels,
        num_classes=len(classes) if classes is not None else 0,
        name=req.spec,
        class_names=classes,
        notes=notes,
    )
