"""Pictures of a run: sample grids, the training animation and loss curves."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torchvision.utils import make_grid

from .errors import UserError
from .files import atomic_write_bytes
from .registry import Configurable


def grid_image(images: torch.Tensor, nrow: int | None = None, padding: int = 2) -> Image.Image:
    """A PIL image of a grid of images in [-1, 1] ([N, C, H, W]), `nrow` images per row."""
    if images.dim() == 4 and images.shape[1] not in (1, 3):
        raise UserError(
            f"cannot draw {images.shape[1]}-channel images (only 1 or 3); a model trained on "
            "ring8 or grid25 makes 2D points: evaluate and plot them with "
            "gankit.metrics.mixtures.evaluate_mixture_run"
        )
    images = images.detach().float().cpu()
    nrow = nrow or max(1, math.ceil(math.sqrt(images.shape[0])))
    grid = make_grid(
        images, nrow=nrow, padding=padding, normalize=True, value_range=(-1, 1), pad_value=1.0
    )
    arr = grid.mul(255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    if images.shape[1] == 1:
        return Image.fromarray(arr[..., 0], mode="L")
    return Image.fromarray(arr, mode="RGB")


def _png_bytes(img: Image.Image) -> bytes:
    import io

    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def save_grid(
    images: torch.Tensor, path: str | os.PathLike, nrow: int | None = None, scale: int = 1
) -> Path:
    """Save a grid PNG atomically; `scale` enlarges small images (nearest neighbour)."""
    img = grid_image(images, nrow=nrow)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    atomic_write_bytes(path, _png_bytes(img))
    return Path(path)


def save_gif(
    frames: Sequence[str | os.PathLike],
    path: str | os.PathLike,
    duration_ms: int = 250,
    max_frames: int = 100,
    label: bool = True,
) -> Path | None:
    """An animated GIF of PNG frames (e.g. the fixed-noise grids over training).

    Long runs are thinned to at most `max_frames` evenly spaced frames, keeping the last one.
    Each frame's file stem (e.g. the image count) is written in a corner when `label` is set.
    """
    frames = list(frames)
    if not frames:
        return None
    if len(frames) > max_frames:
        idx = sorted({round(i * (len(frames) - 1) / (max_frames - 1)) for i in range(max_frames)})
        frames = [frames[i] for i in idx]
    images = []
    for f in frames:
        im = Image.open(f).convert("RGB")
        if label:
            from PIL import ImageDraw

            draw = ImageDraw.Draw(im)
            text = Path(f).stem
            draw.rectangle((0, 0, 7 * len(text) + 4, 12), fill=(0, 0, 0))
            draw.text((2, 0), text, fill=(255, 255, 0))
        images.append(im)
    return save_gif_images(images, path, duration_ms, linger=6)


def save_gif_images(
    images: Sequence[Image.Image],
    path: str | os.PathLike,
    duration_ms: int = 250,
    linger: int = 1,
) -> Path:
    """An animated GIF of PIL images, looping; the last frame stays `linger` times longer."""
    import io

    frames = [im.convert("RGB").convert("P", palette=Image.ADAPTIVE) for im in images]
    if not frames:
        raise ValueError("no frames for the animation")
    buf = io.BytesIO()
    durations = [duration_ms] * (len(frames) - 1) + [duration_ms * linger]
    frames[0].save(
        buf,
        format="GIF",
        save_all=True,
        append_images=frames[1:],
        loop=0,
        duration=durations if len(frames) > 1 else duration_ms,
    )
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Records of a JSONL log; a torn last line (crash mid-write) is skipped."""
    out = []
    p = Path(path)
    if not p.exists():
        return out
    for line in p.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def declared_curves(pieces: Iterable[Configurable]) -> dict[str, str]:
    """The extra curves a run's objective and regularisers declare (their `curves`), in the
    order given: log key -> label. The loss figure draws these and names no key itself."""
    out: dict[str, str] = {}
    for piece in pieces:
        out.update(piece.curves)
    return out


def plot_losses(
    metrics_path: str | os.PathLike,
    out: str | os.PathLike,
    title: str | None = None,
    curves: Mapping[str, str] | None = None,
) -> Path | None:
    """Loss curves and D's outputs against images seen, from a run's metrics.jsonl.

    Args:
        metrics_path: the run's metrics.jsonl.
        out: the PNG to write.
        title: the figure's title.
        curves: extra logged scalars (key -> label, e.g. `declared_curves` of the run's
            objective and regularisers), drawn in a third panel when the log has them.
    Returns:
        `out`, or None when the log has no D loss yet.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = [r for r in read_jsonl(metrics_path) if "loss_d" in r]
    if not recs:
        return None
    kimg = [r["kimg"] for r in recs]
    curves = curves or {}
    extra = [k for k in curves if k in recs[0]]
    fig, axes = plt.subplots(1, 3 if extra else 2, figsize=(16 if extra else 11, 3.8))
    ax1, ax2 = axes[0], axes[1]
    for key, lab in (("loss_d", "D loss"), ("loss_g", "G loss")):
        if key in recs[0]:
            ax1.plot(kimg, [r.get(key, float("nan")) for r in recs], label=lab)
    ax1.set_xlabel("thousands of real images shown (kimg)")
    ax1.set_ylabel("loss")
    ax1.legend()
    ax1.grid(alpha=0.3)
    seen: list[float] = []
    for key, lab in (("d_real", "D(x)"), ("d_fake", "D(G(z))")):
        if key in recs[0]:
            values = [r.get(key, float("nan")) for r in recs]
            seen += [v for v in values if v == v]
            ax2.plot(kimg, values, label=lab)
    if seen and min(seen) >= 0.0 and max(seen) <= 1.0:  # probabilities (the BCE objectives)
        ax2.axhline(0.5, color="grey", lw=0.8, ls="--")
        ax2.set_ylim(-0.02, 1.02)
        ax2.set_ylabel("mean discriminator output")
    else:  # scores (Wasserstein, hinge, least squares) or BEGAN's reconstruction errors
        ax2.set_ylabel("mean D output (not a probability)")
    ax2.set_xlabel("kimg")
    ax2.legend()
    ax2.grid(alpha=0.3)
    if extra:
        for key in extra:
            axes[2].plot(kimg, [r.get(key, float("nan")) for r in recs], label=curves[key])
        axes[2].set_xlabel("kimg")
        axes[2].set_ylabel("value")
        axes[2].set_title("objective state and regularisers", fontsize=9)
        axes[2].legend(fontsize=8)
        axes[2].grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()

    save_figure(fig, out, dpi=100)
    return Path(out)


def save_scatter(
    points: torch.Tensor,
    path: str | os.PathLike,
    reference: torch.Tensor | None = None,
    limit: float | None = None,
    title: str | None = None,
    label: str = "generated",
) -> Path:
    """A scatter PNG of 2D points ([N, 2]) over `reference` points (e.g. the real data).

    The axes are fixed to [-limit, limit] (when given), so that the frames of a run stay the
    same size and line up in the progress GIF.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    if reference is not None:
        ref = reference.detach().float().cpu().numpy()
        ax.scatter(ref[:, 0], ref[:, 1], s=2, c="0.75", lw=0, label="real")
    pts = points.detach().float().cpu().numpy()
    ax.scatter(pts[:, 0], pts[:, 1], s=3, c="tab:blue", alpha=0.6, lw=0, label=label)
    if limit is not None:
        ax.set_xlim(-limit, limit)
        ax.set_ylim(-limit, limit)
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=7, markerscale=3)
    if title:
        ax.set_title(title, fontsize=9)
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.08, top=0.92)

    save_figure(fig, path, dpi=100)
    return Path(path)


def show_image(ax: Any, img: torch.Tensor) -> None:
    """Draw one image in [-1, 1] ([C, H, W]) on a matplotlib axis: grey for one channel."""
    x = img.float().add(1).div(2).clamp(0, 1)
    if x.shape[0] == 1:
        ax.imshow(x[0].numpy(), cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(x.permute(1, 2, 0).numpy())


def save_figure(fig: Any, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Write a matplotlib figure as a PNG atomically and close it (figures pile up otherwise)."""
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def save_labelled_rows(
    rows: Sequence[torch.Tensor],
    labels: Sequence[str],
    path: str | os.PathLike,
    title: str | None = None,
    scale: int | None = None,
) -> Path:
    """A grid with a text label left of each row (e.g. "psi 0.5"), as a PNG.

    Args:
        rows: images in [-1, 1] per row, [n_i, C, H, W] each (rows may differ in length).
        labels: one label per row.
        path: the PNG to write.
        title: drawn above the grid.
        scale: pixel enlargement (default 2 for images of <= 32 pixels).
    """
    from PIL import ImageDraw

    if len(rows) != len(labels) or not rows:
        raise ValueError("one label per row, at least one row")
    side = rows[0].shape[-1]
    scale = scale or (2 if side <= 32 else 1)
    cols = max(r.shape[0] for r in rows)
    strips = [grid_image(r, nrow=cols).convert("RGB") for r in rows]
    strips = [s.resize((s.width * scale, s.height * scale), Image.NEAREST) for s in strips]
    label_w = 7 * max(len(t) for t in labels) + 10
    title_h = 16 if title else 0
    width = label_w + max(s.width for s in strips)
    canvas = Image.new("RGB", (width, title_h + sum(s.height for s in strips)), "white")
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((4, 2), title, fill=(0, 0, 0))
    y = title_h
    for strip, text in zip(strips, labels, strict=True):
        canvas.paste(strip, (label_w, y))
        draw.text((4, y + strip.height // 2 - 6), text, fill=(0, 0, 0))
        y += strip.height
    atomic_write_bytes(path, _png_bytes(canvas))
    return Path(path)
