"""Style mixing figures (StyleGAN, Karras et al. 2019, Fig. 3).

Each cell of the grid takes the coarse styles (the layers before `crossover`, i.e. the low
resolutions: pose, shape, which digit) from its row's source and the fine styles (the later
layers: stroke width, texture) from its column's source. The top row shows the column
sources, the left column the row sources, the top-left corner is blank.

Works with any generator that exposes `mapping(z) -> w`, `synthesis(ws) -> images`,
`num_ws`, `layer_resolutions` and (for truncation) `truncate(ws, psi)`: gankit's stylegan.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import UserError
from ..latent import prior_of
from ..modes import eval_mode
from ..sampling import load, parse_seeds
from ..viz import save_grid
from .paths import figure_prefix


@dataclass(frozen=True)
class MixingLayout:
    """Where everything is in a style-mixing grid (row-major, `nrow` images per row)."""

    row_seeds: tuple[int, ...]
    col_seeds: tuple[int, ...]
    crossover: int  # style inputs [0, crossover) from the row source, the rest from the column
    nrow: int  # images per grid row: len(col_seeds) + 1

    def cell(self, r: int, c: int) -> int:
        """Index of the mix of row source r and column source c in the image tensor."""
        return (r + 1) * self.nrow + c + 1


def default_crossover(G: nn.Module) -> int:
    """The first style input above 8x8: the classic "coarse styles" split, kept within
    [1, num_ws - 1] so that both sources contribute."""
    coarse = sum(1 for r in G.layer_resolutions if r <= 8)
    return min(max(coarse, 1), G.num_ws - 1)


@torch.no_grad()
def style_mixing_grid(
    G: nn.Module,
    row_seeds: Sequence[int],
    col_seeds: Sequence[int],
    crossover: int | None = None,
    truncation: float | None = None,
) -> tuple[torch.Tensor, MixingLayout]:
    """Images of a style-mixing grid, in eval mode (fixed noise: reproducible per seed).

    Args:
        G: a style-based generator (see the module docstring).
        row_seeds: seeds of the coarse-style sources, one grid row each.
        col_seeds: seeds of the fine-style sources, one grid column each.
        crossover: first style input taken from the column source (default: above 8x8).
        truncation: psi in (0, 1] for the truncation trick in w space (None: none).

    Returns:
        (images [(R + 1) * (C + 1), channels, H, W] in [-1, 1] on the CPU, the layout).
    """
    if not row_seeds or not col_seeds:
        raise ValueError("style mixing needs at least one row seed and one column seed")
    crossover = default_crossover(G) if crossover is None else int(crossover)
    if not 0 <= crossover <= G.num_ws:
        raise ValueError(f"crossover must be in [0, {G.num_ws}] (got {crossover})")
    device = next(G.parameters()).device
    with eval_mode(G):
        prior = prior_of(G)
        z = prior.from_seeds([*row_seeds, *col_seeds]).to(device)
        ws = G.mapping(z).unsqueeze(1).repeat(1, G.num_ws, 1)  # [R + C, num_ws, w_dim]
        if truncation is not None and truncation != 1:
            ws = G.truncate(ws, truncation)
        rows, cols = ws[: len(row_seeds)], ws[len(row_seeds) :]
        mixed = cols.unsqueeze(0).repeat(len(row_seeds), 1, 1, 1)  # [R, C, num_ws, w_dim]
        mixed[:, :, :crossover] = rows[:, None, :crossover]
        src = G.synthesis(ws).float().cpu()
        mix = G.synthesis(mixed.flatten(0, 1)).float().cpu()
    R, C = len(row_seeds), len(col_seeds)
    blank = torch.ones_like(src[:1])  # white, like the grid's padding
    top = torch.cat([blank, src[R:]])
    grid = [top]
    for r in range(R):
        grid += [src[r : r + 1], mix[r * C : (r + 1) * C]]
    layout = MixingLayout(tuple(map(int, row_seeds)), tuple(map(int, col_seeds)), crossover, C + 1)
    return torch.cat(grid), layout


def save_style_mixing_figure(
    G: nn.Module,
    row_seeds: Sequence[int],
    col_seeds: Sequence[int],
    path: str | os.PathLike,
    crossover: int | None = None,
    truncation: float | None = None,
    scale: int | None = None,
) -> Path:
    """Write the style-mixing grid as a PNG (`scale`: default 2 for images of <= 32 pixels)."""
    images, layout = style_mixing_grid(G, row_seeds, col_seeds, crossover, truncation)
    if scale is None:
        scale = 2 if images.shape[-1] <= 32 else 1
    return save_grid(images, path, nrow=layout.nrow, scale=scale)


@dataclass
class MixingRun:
    """What `mixing_run` drew."""

    figure: Path

    def lines(self) -> list[str]:
        """What `gankit mixing` prints."""
        return [f"style mixing (rows: coarse styles, columns: fine styles): {self.figure}"]


def mixing_run(
    run: str | os.PathLike,
    *,
    rows: str | Sequence[int] = "0-4",  # seeds of the coarse styles
    cols: str | Sequence[int] = "5-10",  # seeds of the fine styles
    crossover: int | None = None,  # first style input taken from the column seed
    truncation: float | None = None,  # psi in (0, 1]
    out: str | os.PathLike | None = None,  # path without suffix; default RUN/mixing
    ema: bool = True,
    device: str = "cpu",
) -> MixingRun:
    """The style-mixing grid of a saved StyleGAN run, as PREFIX.png."""
    loaded = load(run, device=device, ema=ema)
    if not loaded.model.spec.style_mixing:
        raise UserError(f"{loaded.model.name} has no style inputs to mix (a stylegan model has)")
    prefix = figure_prefix(run, out, "mixing")
    try:
        fig = save_style_mixing_figure(
            loaded.G, parse_seeds(rows), parse_seeds(cols),
            prefix.with_name(prefix.name + ".png"), crossover, truncation,
        )  # fmt: skip
    except ValueError as exc:
        raise UserError(str(exc)) from None
    return MixingRun(fig)
