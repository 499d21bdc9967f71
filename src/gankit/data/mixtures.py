"""2D Gaussian mixtures for mode-collapse studies: the ring of 8 and the grid of 25.

The protocol is the one of Unrolled GAN (Metz et al. 2017), VEEGAN (Srivastava et al. 2017)
and PacGAN (Lin et al. 2018):

- ring8: 8 equally weighted isotropic Gaussians, means on a circle of radius 2
  (angles 2*pi*k/8), standard deviation 0.02 (Unrolled GAN; VEEGAN uses the same). PacGAN's
  code uses radius 1 and std 0.01, the same problem at half the scale.
- grid25: 25 equally weighted isotropic Gaussians, means at {-4, -2, 0, 2, 4}^2, standard
  deviation 0.05 (VEEGAN, PacGAN).

A 2D point is treated as a 1x1 "image" with 2 channels, so the generic trainer and the MLP
`gan` train on it unchanged. Points stay float32: uint8 pixels (steps of 1/127.5 of the range)
would be coarser than the ring's std. They are divided by a fixed power of two, `scale` (the
smallest power of two >= 1.25 x the largest |mean coordinate|: 4 for ring8, 8 for grid25), so
that every mode lies well inside Tanh's (-1, 1) and `to_points` undoes the scaling exactly in
floating point.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import UserError
from .base import Painter
from .common import DATASETS, LoadRequest

# Points drawn per named mixture (PacGAN trains on 100,000 samples).
NUM_POINTS = 100_000
# Seeds of the fixed training and held-out samples.
TRAIN_SEED, TEST_SEED = 0, 1
# Generated points in each progress scatter (the fixed noise of the trainer's grids).
SCATTER_POINTS = 1000
# Real points drawn behind them.
SCATTER_REALS = 2500


@dataclass(frozen=True)
class Mixture:
    """An equally weighted mixture of isotropic 2D Gaussians."""

    name: str
    means: tuple[tuple[float, float], ...]
    std: float

    @property
    def num_modes(self) -> int:
        return len(self.means)

    def means_tensor(self) -> torch.Tensor:
        """The means as float64 [M, 2]."""
        return torch.tensor(self.means, dtype=torch.float64)

    @property
    def scale(self) -> float:
        """Points are divided by this to fit Tanh: a power of two, so the round trip is exact."""
        reach = 1.25 * max(abs(c) for mean in self.means for c in mean)
        return float(2 ** math.ceil(math.log2(reach)))

    def sample(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """n points (float32 [n, 2], original units) and their mode index (int64 [n])."""
        g = torch.Generator().manual_seed(seed)
        modes = torch.randint(self.num_modes, (n,), generator=g)
        noise = torch.randn(n, 2, generator=g, dtype=torch.float64)
        points = self.means_tensor()[modes] + self.std * noise
        return points.float(), modes


def _ring(n: int = 8, radius: float = 2.0) -> tuple[tuple[float, float], ...]:
    angles = [2 * math.pi * k / n for k in range(n)]
    return tuple((radius * math.cos(a), radius * math.sin(a)) for a in angles)


MIXTURES: dict[str, Mixture] = {
    "ring8": Mixture("ring8", _ring(), 0.02),
    "grid25": Mixture(
        "grid25",
        tuple((float(x), float(y)) for x in range(-4, 5, 2) for y in range(-4, 5, 2)),
        0.05,
    ),
}


def get_mixture(name: str) -> Mixture:
    """The mixture called `name` (ring8 or grid25); a UserError for anything else."""
    try:
        return MIXTURES[name]
    except KeyError:
        raise UserError(
            f"unknown 2D mixture {name!r}; choose one of: {', '.join(MIXTURES)}"
        ) from None


@dataclass
class PointDataset:
    """2D points offered to the trainer as 2-channel 1x1 images in Tanh's range.

    It has what the trainer uses of an `ImageDataset` (`batch`, `len`, `labels`, `num_classes`,
    `name`, `class_names`, `notes`, `channels`, `resolution`, and `preview_size` and `draw`
    for the progress pictures) but keeps float points, not uint8 pixels. It is unlabelled:
    the protocol is unconditional, and a mode label would let a conditional model sidestep
    the mode-collapse question.

    Attributes:
        points: float32 [N, 2] in the mixture's own units.
        modes: int64 [N], the mode each point was drawn from (for tests and plots only).
        mixture: the mixture the points come from.
        name: the spec the data was loaded from.
        notes: things a user should know about the data.
    """

    points: torch.Tensor
    modes: torch.Tensor
    mixture: Mixture
    name: str
    notes: list[str] = field(default_factory=list)
    labels: None = None
    num_classes: int = 0
    class_names: None = None

    def __post_init__(self) -> None:
        if self.points.dtype != torch.float32 or self.points.dim() != 2:
            raise ValueError("points must be a float32 tensor [N, 2]")
        if self.points.shape[1] != 2 or self.modes.shape != (self.points.shape[0],):
            raise ValueError("points must be [N, 2] with one mode index per point")

    def __len__(self) -> int:
        return int(self.points.shape[0])

    @property
    def channels(self) -> int:
        return 2

    @property
    def resolution(self) -> int:
        return 1

    @property
    def scale(self) -> float:
        return self.mixture.scale

    def batch(
        self, index: torch.Tensor, device: torch.device | str = "cpu"
    ) -> tuple[torch.Tensor, None]:
        """Points divided by `scale`, as float32 [B, 2, 1, 1] on `device` (no labels)."""
        x = self.points[index].to(device, non_blocking=True) / self.scale
        return x.view(-1, 2, 1, 1), None

    def to_points(self, x: torch.Tensor) -> torch.Tensor:
        """Generator outputs [N, 2, 1, 1] (or [N, 2]) back to the mixture's units, [N, 2]."""
        return to_points(x, self.mixture)

    def preview_size(self, n: int) -> int:
        """Generated points in a progress scatter: at least SCATTER_POINTS (a grid's 64 are
        too few to show which modes are covered)."""
        return max(n, SCATTER_POINTS)

    def draw(
        self,
        samples: torch.Tensor | None,
        path: str | os.PathLike,
        painter: Painter,
        *,
        title: str = "",
        nrow: int | None = None,
    ) -> Path:
        """A progress picture: generated `samples` as a scatter over the first real points,
        or with None the real points alone, on axes fixed to the mixture's scale (so that
        the frames of a run line up in its animation). `nrow` is for image grids."""
        reals = self.points[:SCATTER_REALS]
        return painter.save_scatter(
            reals if samples is None else self.to_points(samples),
            path,
            reference=None if samples is None else reals,
            limit=self.scale,
            title=title,
            label="generated" if samples is not None else "real",
        )


def to_points(x: torch.Tensor, mixture: Mixture | str) -> torch.Tensor:
    """Undo the dataset's scaling: [N, 2, 1, 1] or [N, 2] in Tanh units -> float [N, 2]."""
    mix = get_mixture(mixture) if isinstance(mixture, str) else mixture
    if x.dim() == 0 or x[0].numel() != 2:
        raise ValueError(f"expected 2D points [N, 2] or [N, 2, 1, 1], got {tuple(x.shape)}")
    return x.detach().reshape(x.shape[0], 2) * mix.scale


def load_mixture(req: LoadRequest) -> PointDataset:
    """A fixed seeded sample of a named mixture (max_images keeps its first N points)."""
    mix = get_mixture(req.spec)
    if req.resolution != 1 or req.channels not in (None, 2):
        asked = f"resolution {req.resolution}" + (
            f", {req.channels} channels" if req.channels is not None else ""
        )
        raise UserError(
            f"{req.spec} holds 2D points, trained as 1x1 images with 2 channels, not {asked}: "
            "drop --resolution and --channels"
        )
    n = NUM_POINTS if req.max_images is None else min(NUM_POINTS, req.max_images)
    # Draw all points and cut, so that max_images keeps a prefix of the same fixed sample.
    points, modes = mix.sample(NUM_POINTS, TRAIN_SEED if req.train else TEST_SEED)
    return PointDataset(
        points=points[:n].contiguous(),
        modes=modes[:n].contiguous(),
        mixture=mix,
        name=req.spec,
        notes=[f"2D points divided by {mix.scale:g} to fit the generator's Tanh range"],
    )


@DATASETS.register("ring8")
def load_ring8(req: LoadRequest) -> PointDataset:
    """2D points: 8 Gaussians on a circle of radius 2, std 0.02 (Unrolled GAN, VEEGAN)."""
    return load_mixture(req)


@DATASETS.register("grid25")
def load_grid25(req: LoadRequest) -> PointDataset:
    """2D points: 25 Gaussians on the grid {-4,-2,0,2,4}^2, std 0.05 (VEEGAN/PacGAN)."""
    return load_mixture(req)
