"""The two filter figures: first-layer filters, and a layer's top patches with guided maps,
each with one column per D (trained | random)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ...viz import save_figure
from .views import LayerView


def _rgb(tile: torch.Tensor) -> Any:
    """[C, h, w] in [0, 1] -> an h x w x 3 array (grey replicated)."""
    arr = tile.clamp(0, 1).permute(1, 2, 0).numpy()
    return arr.repeat(3, axis=2) if arr.shape[2] == 1 else arr[..., :3]


def _mosaic(rows: Sequence[Sequence[torch.Tensor]], pad: int = 1) -> Any:
    """Tiles [C, h, w] in [0, 1] (equal sizes) in rows, on a white background."""
    import numpy as np

    h, w = rows[0][0].shape[1:]
    ncol = max(len(r) for r in rows)
    out = np.ones((len(rows) * (h + pad) + pad, ncol * (w + pad) + pad, 3), dtype=np.float32)
    for i, row in enumerate(rows):
        for j, tile in enumerate(row):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            out[y : y + h, x : x + w] = _rgb(tile)
    return out


def _filter_tiles(filters: torch.Tensor) -> list[list[torch.Tensor]]:
    """Filters [out, in, k, k] as rows of tiles: colour or grey, else one tile per channel."""
    n, c = filters.shape[:2]
    if c in (1, 3):
        per_row = max(1, math.ceil(math.sqrt(n)))
        tiles = list(filters)
        return [tiles[i : i + per_row] for i in range(0, n, per_row)]
    return [[f[j : j + 1] for j in range(c)] for f in filters]


def _save(fig: Any, path: str | os.PathLike) -> Path:
    save_figure(fig, path, dpi=110)
    return Path(path)


def first_layer_figure(
    filters: dict[str, torch.Tensor],  # name ("trained D", "random D") -> first_layer_filters
    path: str | os.PathLike,
    title: str = "",
) -> Path:
    """A PNG with each D's first-layer filters as a grid, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3.4 * len(filters), 3.9))
    axes = fig.subplots(1, len(filters), squeeze=False)[0]
    for ax, (name, f) in zip(axes, filters.items(), strict=True):
        ax.imshow(_mosaic(_filter_tiles(f)), interpolation="nearest")
        ax.set_title(f"{name}: {f.shape[0]} filters {f.shape[2]}x{f.shape[3]}", fontsize=8)
        ax.axis("off")
    fig.suptitle(
        (title + "\n" if title else "")
        + "first-layer filters, each scaled to its own max |w| (grey = 0)",
        fontsize=8,
    )
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.84, wspace=0.05)
    return _save(fig, path)


def _guided_tile(g: torch.Tensor) -> torch.Tensor:
    """A guided gradient shown around mid-grey, scaled by its own max |g|."""
    return g / g.abs().max().clamp(min=1e-20) * 0.5 + 0.5


def layer_figure(
    views: dict[str, LayerView],  # name ("trained D", "random D") -> layer_view
    path: str | os.PathLike,
    title: str = "",
    first_layer: dict[str, torch.Tensor] | None = None,  # optional first row: the filters
) -> Path:
    """A PNG with one column per D: (first-layer filters,) top-k patches, guided maps.

    Patch rows are channels (label: channel and its mean top-k activation), columns the k
    strongest units, strongest left. Patches are shown on the data's scale; guided maps each
    scaled to their own max |g| around grey.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    blocks: list[str] = (["filters"] if first_layer else []) + ["patches", "guided"]
    any_view = next(iter(views.values()))
    n_ch = max(len(v.channels) for v in views.values())
    fh, fw = any_view.field
    tile_in = max(0.28, min(0.6, 2.2 / max(fh, fw) * 3))
    col_w = max(3.8, any_view.k * tile_in + 0.9)
    heights = [n_ch * tile_in * (fh + 1) / (fw + 1) for _ in ("patches", "guided")]
    if first_layer:
        heights = [col_w * 0.75, *heights]
    fig = Figure(figsize=(2 * col_w + 0.4, sum(heights) + 0.45 * len(blocks) + 0.8))
    axes = fig.subplots(
        len(blocks), len(views), squeeze=False, gridspec_kw={"height_ratios": heights}
    )
    for col, (name, v) in enumerate(views.items()):
        for row, block in enumerate(blocks):
            ax = axes[row, col]
            if block == "filters":
                f = first_layer[name]
                ax.imshow(_mosaic(_filter_tiles(f)), interpolation="nearest")
                ax.set_title(
                    f"{name}: first-layer filters ({f.shape[0]}, {f.shape[2]}x{f.shape[3]})",
                    fontsize=8,
                )
                ax.axis("off")
                continue
            if block == "patches":
                tiles = [[(u.patch + 1) / 2 for u in ch.units] for ch in v.channels]
                what = f"top-{v.k} real patches ({fh}x{fw} px)"
            else:
                tiles = [[_guided_tile(u.guided) for u in ch.units] for ch in v.channels]
                what = "guided backprop, same units"
            ax.imshow(_mosaic(tiles), interpolation="nearest")
            ax.set_title(f"{name}: {what}", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([1 + (fh + 1) * (i + 0.5) for i in range(len(v.channels))])
            ax.set_yticklabels(
                [f"ch {ch.channel}\n{ch.top_mean:.3g}" for ch in v.channels], fontsize=6
            )
            ax.tick_params(length=0, pad=2)
            for s in ax.spines.values():
                s.set_visible(False)
    c, h, w = any_view.shape
    fig.suptitle(
        (title + "\n" if title else "")
        + f"layer {any_view.layer} ({any_view.module}, {c} channels x {h}x{w}); rows: channels "
        f"(number, mean top-{any_view.k} activation),\ncolumns: their strongest units over "
        f"{any_view.top.n_images} real images, strongest left",
        fontsize=8,
    )
    top_in = 1.1
    fig.subplots_adjust(
        left=0.07,
        right=0.99,
        bottom=0.01,
        top=1 - top_in / fig.get_figheight(),
        hspace=0.25,
        wspace=0.22,
    )
    return _save(fig, path)
