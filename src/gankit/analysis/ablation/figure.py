"""The ablation figure: the same seeds before, ablated and with random channels ablated."""

from __future__ import annotations

import math
import os
from pathlib import Path

from ...viz import grid_image, save_figure
from .experiment import AblationResult, summary_lines


def ablation_figure(
    result: AblationResult,
    path: str | os.PathLike,
    title: str = "",
    attribute_name: str = "attribute",
) -> Path:
    """A PNG: the same seeds before, with the chosen channels ablated, and with random
    channels ablated (top row); the two |differences| and the numbers (bottom row)."""
    import matplotlib

    matplotlib.use("Agg")

    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    nrow = min(len(result.seeds), max(1, math.ceil((2 * len(result.seeds)) ** 0.5)))  # wide
    diff_a = (result.after - result.before).abs().mean(1, keepdim=True) * 2 - 1
    diff_c = (result.control - result.before).abs().mean(1, keepdim=True) * 2 - 1
    panels = [
        ("before", result.before),
        (f"ablated ({len(result.channels)} chosen channels)", result.after),
        (f"control ({len(result.channels)} random channels)", result.control),
        (None, None),
        ("|ablated - before|", diff_a),
        ("|control - before|", diff_c),
    ]
    H, W = result.before.shape[-2:]
    rows = math.ceil(len(result.seeds) / nrow)
    aspect = (rows * (H + 2) + 2) / (nrow * (W + 2) + 2)  # of one grid, height / width
    fig, axes = plt.subplots(2, 3, figsize=(13, 2 * (4.2 * aspect + 0.5) + 0.5))
    for ax, (name, imgs) in zip(axes.flat, panels, strict=True):
        ax.set_axis_off()
        if imgs is None:
            text = "\n".join(summary_lines(result, attribute_name))
            ax.text(-0.05, 0.5, text, va="center", ha="left", fontsize=7.5, family="monospace")
            continue
        grid = grid_image(imgs.clamp(-1, 1), nrow=nrow)
        ax.imshow(grid, cmap="gray" if grid.mode == "L" else None, vmin=0, vmax=255)
        ax.set_title(name, fontsize=10)
        if result.region is not None and name in ("before", "|ablated - before|"):
            x0, y0, x1, y1 = result.region
            for i in range(imgs.shape[0]):
                r, c = divmod(i, nrow)
                ox, oy = 2 + c * (W + 2), 2 + r * (H + 2)  # grid_image's 2-pixel padding
                ax.add_patch(
                    Rectangle(
                        (ox + x0 - 0.5, oy + y0 - 0.5), x1 - x0, y1 - y0,
                        fill=False, edgecolor="red", linewidth=0.6,
                    )
                )  # fmt: skip
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    return Path(path)
