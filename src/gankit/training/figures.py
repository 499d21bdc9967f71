"""The pictures of a run folder, drawn while it trains.

samples/reals.png once, a fixed-noise frame samples/fakesNNNNNNNNN.png every
sample_every_kimg (NNNNNNNNN: real images seen), losses.png and progress.gif from all frames.
The dataset draws its own pictures (images as a grid, 2D points as a scatter over the real
ones), so a new kind of data needs no edit here.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from .. import viz
from ..data.base import ImageDataset
from ..latent import Prior, class_grid
from ..modes import eval_mode

SAMPLE_BATCH = 256  # fixed-noise samples per forward pass


def frame_path(samples: Path, nimg: int) -> Path:
    return samples / f"fakes{nimg:09d}.png"


class ProgressFigures:
    """Draws a run's progress pictures into `run_dir`.

    Args:
        run_dir: the run folder.
        dataset: the training data; it draws the pictures of its own kind.
        prior: G's latent prior (the fixed noise is drawn from seeds 0, 1, ...).
        title: "<model> on <data>", above the loss curves and the scatters.
        grid_size: fixed-noise samples per frame (the dataset may ask for more).
        num_classes: classes of a conditional model (one row of samples each); 0 otherwise.
        curves: the extra loss curves the objective and regularisers declare.
    """

    GIF_EVERY_S = 120.0  # the animation is rebuilt from all frames: at most this often

    def __init__(
        self,
        run_dir: Path,
        dataset: ImageDataset,
        prior: Prior,
        *,
        title: str,
        grid_size: int,
        num_classes: int,
        curves: Mapping[str, str],
    ) -> None:
        self.run_dir = run_dir
        self.samples = run_dir / "samples"
        self.dataset = dataset
        self.prior = prior
        self.title = title
        self.grid_size = grid_size
        self.num_classes = num_classes
        self.curves = dict(curves)
        self._gif_at = -math.inf

    def fixed_noise(self) -> tuple[torch.Tensor, torch.Tensor | None, int]:
        """(latents, labels, images per row) of every frame: seeds 0..n-1, or one row per class
        (seeds 0..cols-1 in each) for a conditional model."""
        if self.num_classes:
            cols = min(self.grid_size, 10)
            seeds, labels = class_grid(self.num_classes, cols)
            return self.prior.from_seeds(seeds), labels, cols
        n = self.dataset.preview_size(self.grid_size)
        return self.prior.from_seeds(range(n)), None, max(1, math.ceil(math.sqrt(n)))

    @torch.no_grad()
    def draw_fakes(
        self, G: nn.Module, nimg: int, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """G's samples of the fixed noise as frame `nimg`; returns them (and their labels)."""
        z, y, nrow = self.fixed_noise()
        z = z.to(device)
        y = None if y is None else y.to(device)
        with eval_mode(G):
            fakes = torch.cat(
                [
                    G(z[i : i + SAMPLE_BATCH], None if y is None else y[i : i + SAMPLE_BATCH])
                    for i in range(0, z.shape[0], SAMPLE_BATCH)
                ]
            )
        title = f"{self.title}: {nimg / 1000:g} kimg"
        self.dataset.draw(fakes, frame_path(self.samples, nimg), viz, title=title, nrow=nrow)
        return fakes, y

    def draw_reals(self) -> Path:
        """samples/reals.png: the training data as the dataset shows it."""
        path = self.samples / "reals.png"
        return self.dataset.draw(None, path, viz, title=f"{self.title}: real data")

    def frames(self) -> list[Path]:
        return sorted(self.samples.glob("fakes*.png"))

    def forget_after(self, nimg: int) -> None:
        """Delete the frames drawn after `nimg` (resume, rollback)."""
        for f in self.frames():
            if int(f.stem[5:]) > nimg:
                f.unlink()

    def refresh(self, metrics: Path, final: bool = True) -> None:
        """Loss curves and the progress animation from what is on disk.

        Rebuilding the GIF costs time in proportion to the number of frames, so during
        training it is redrawn at most every GIF_EVERY_S seconds, and always at the end.
        """
        viz.plot_losses(metrics, self.run_dir / "losses.png", title=self.title, curves=self.curves)
        now = time.perf_counter()
        if final or now - self._gif_at >= self.GIF_EVERY_S:
            viz.save_gif(self.frames(), self.run_dir / "progress.gif")
            self._gif_at = now
