"""Walks and arithmetic in G's latent space (the DCGAN paper's sections 6.1 and 6.3).

A walk between seeds shows whether the latent space is smooth (no sudden jumps between
neighbouring frames, which would suggest memorisation); arithmetic on averaged latents
(a - b + c) shows whether concepts add up. Latents come from `prior_of(G)`, so seed s is the
same z as in `gankit sample --seeds s`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data.base import to_uint8
from ..errors import UserError
from ..files import atomic_write_json
from ..latent import prior_of
from ..metrics.extractors import ExtractorOptions
from ..sampling import load, parse_seeds
from ..viz import save_figure
from .latent_files import is_latent_file, latent_size, read_latents, render_latents
from .paths import figure_prefix


def lerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Straight-line interpolation; `t` [T] -> [T, D]."""
    return a[None] + t[:, None] * (b - a)[None]


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation: the direction moves along the great circle from a to b and
    the norm linearly from |a| to |b| (so it is kept when |a| = |b|). A straight line between
    two Gaussian samples passes through norms the prior almost never draws; this does not."""
    na, nb = a.norm(), b.norm()
    ua, ub = a / na, b / nb
    omega = torch.arccos((ua * ub).sum().clamp(-1.0, 1.0))
    if omega.abs() < 1e-6:  # (anti)parallel within rounding: nothing to rotate
        direction = lerp(ua, ub, t)
        direction = direction / direction.norm(dim=1, keepdim=True)
    else:
        s = torch.sin(omega)
        direction = (
            torch.sin((1 - t) * omega)[:, None] * ua[None]
            + torch.sin(t * omega)[:, None] * ub[None]
        ) / s
    return direction * (na + t * (nb - na))[:, None]


def walk_latents(
    G: nn.Module, seeds: Sequence[int], steps: int, spherical: bool = False
) -> torch.Tensor:
    """[(len(seeds) - 1) * (steps - 1) + 1, nz]: the path through the seeds' latents, each leg
    `steps` frames long (the shared endpoints are not repeated)."""
    if len(seeds) < 2 or steps < 2:
        raise ValueError("a walk needs at least two seeds and two steps")
    return _walk_through(prior_of(G).from_seeds(list(seeds)), steps, spherical)


@dataclass
class Walk:
    """A walk's latents [T, nz], class weights [T, K] for a conditional model (else None), and
    how it was made. Frames run leg by leg; leg i goes from waypoint i to waypoint i + 1."""

    z: torch.Tensor
    y: torch.Tensor | None
    seeds: list[int]
    classes: list[int] | None
    steps: int
    spherical: bool
    names: list[str] | None = None  # waypoints given as projected latents ("FILE.npz:i")
    space: str = "z"  # "w" for StyleGAN latents projected into w

    @property
    def legs(self) -> int:
        return (self.z.shape[0] - 1) // (self.steps - 1)


def _waypoints(what: str, values: list[int], n: int) -> list[int]:
    if len(values) == n:
        return values
    if len(values) == 1:
        return values * n
    raise ValueError(f"give one {what} or one per waypoint ({n}); got {len(values)}")


def make_walk(
    G: nn.Module,
    seeds: Sequence[int],
    steps: int,
    spherical: bool = False,
    classes: Sequence[int] | None = None,
    num_classes: int = 0,
    latents: torch.Tensor | None = None,
) -> Walk:
    """A walk through waypoints: each waypoint is a seed's latent and, for a conditional
    model, a class. z moves by lerp or slerp; the class moves linearly between one-hot rows,
    so G sees the straight line between the two class embeddings (see `LabelEmbedding`).

    One seed with several classes keeps z fixed and walks the class; several seeds with one
    class keep the class fixed. Otherwise seeds and classes pair up waypoint by waypoint.
    `latents` [W, D] (projected real images) are the waypoints instead of the seeds' z.
    """
    seeds = [int(s) for s in seeds]
    classes = None if classes is None else [int(c) for c in classes]
    if latents is not None:
        seeds = list(range(latents.shape[0]))  # waypoint indices into `latents`
    n = max(len(seeds), len(classes or []))
    if n < 2 or steps < 2:
        raise ValueError("a walk needs at least two waypoints (seeds or classes) and two steps")
    if classes is not None and not num_classes:
        raise ValueError("classes were given for a model that is not class-conditional")
    if num_classes and classes is None:
        raise ValueError("a class-conditional model needs a class (or one per waypoint)")
    seeds = _waypoints("seed", seeds, n)
    if latents is not None:
        z = _walk_through(latents[seeds], steps, spherical)
    elif len(set(seeds)) > 1:
        z = walk_latents(G, seeds, steps, spherical)
    else:  # one seed: z stays put while the class moves
        z = prior_of(G).from_seeds(seeds[:1]).expand((n - 1) * (steps - 1) + 1, -1).clone()
    y = None
    if classes is not None:
        classes = _waypoints("class", classes, n)
        if not all(0 <= c < num_classes for c in classes):
            raise ValueError(f"classes must be in 0..{num_classes - 1}; got {classes}")
        eye = torch.eye(num_classes)
        t = torch.linspace(0, 1, steps)
        legs = [lerp(eye[classes[i]], eye[classes[i + 1]], t) for i in range(n - 1)]
        y = torch.cat([legs[0]] + [leg[1:] for leg in legs[1:]])
    return Walk(z, y, seeds, classes, steps, spherical)


def _walk_through(points: torch.Tensor, steps: int, spherical: bool) -> torch.Tensor:
    """The path through the rows of `points` [W, D], each leg `steps` frames long."""
    t = torch.linspace(0, 1, steps)
    f = slerp if spherical else lerp
    legs = [f(points[i], points[i + 1], t) for i in range(points.shape[0] - 1)]
    return torch.cat([legs[0]] + [leg[1:] for leg in legs[1:]])


def leg_rows(frames: torch.Tensor, steps: int) -> torch.Tensor:
    """The frames of a walk laid out one leg per row (a leg's end starts the next row)."""
    legs = (frames.shape[0] - 1) // (steps - 1)
    return torch.cat([frames[i * (steps - 1) : i * (steps - 1) + steps] for i in range(legs)])


@dataclass
class Smoothness:
    """How far apart neighbouring frames of a walk are: the root-mean-square difference per
    pixel (or feature) of each step, summarised. A smooth walk has even steps (max / mean near
    1); a sudden jump, the sign of a latent space that switches between memorised images,
    stands out as a large max / mean."""

    mean: float
    max: float
    max_over_mean: float
    steps: list[float]

    def to_json(self) -> dict[str, float | list[float]]:
        return {"mean": self.mean, "max": self.max, "max_over_mean": self.max_over_mean,
                "steps": self.steps}  # fmt: skip


def smoothness(frames: torch.Tensor) -> Smoothness:
    """Step sizes between consecutive frames [T, ...] (images or feature vectors)."""
    steps = (frames[1:] - frames[:-1]).float().pow(2).flatten(1).mean(1).sqrt()
    mean, top = float(steps.mean()), float(steps.max())
    return Smoothness(mean, top, top / mean if mean > 0 else float("nan"), steps.tolist())


def arithmetic(G: nn.Module, a: Sequence[int], b: Sequence[int], c: Sequence[int]) -> torch.Tensor:
    """mean z(a) - mean z(b) + mean z(c): the DCGAN paper averages three seeds per concept."""
    prior = prior_of(G)
    mean = [prior.from_seeds(list(group)).mean(0) for group in (a, b, c)]
    return mean[0] - mean[1] + mean[2]


def walk_title(walk: Walk) -> str:
    """'seeds 3 -> 17 (slerp), class 1 -> 7': what a walk went through, for figures."""
    if walk.names is not None:
        parts = [" -> ".join(walk.names)]
    else:
        text = " -> ".join(str(s) for s in walk.seeds) if len(set(walk.seeds)) > 1 else None
        parts = [f"seeds {text}" if text else f"seed {walk.seeds[0]}"]
    parts[0] += " (slerp)" if walk.spherical else " (lerp)"
    if walk.space == "w":
        parts[0] += " in w"
    if walk.classes is not None:
        if len(set(walk.classes)) > 1:
            parts.append("class " + " -> ".join(str(c) for c in walk.classes))
        else:
            parts.append(f"class {walk.classes[0]}")
    return ", ".join(parts)


def save_walk_figures(
    frames: torch.Tensor,
    walk: Walk,
    prefix: str | os.PathLike,
    step_sizes: dict[str, Smoothness] | None = None,
    gif_ms: int = 120,
) -> dict[str, Path]:
    """PREFIX.png (one leg per row), PREFIX.gif (there and back) and, with `step_sizes`,
    PREFIX-steps.png: the size of each step, where a jump would stand out as a spike.

    Args:
        frames: the walk's images in [-1, 1], [T, C, H, W].
        walk: the walk that made them.
        prefix: path without suffix.
        step_sizes: named `Smoothness` results (e.g. "pixels", "features") to plot.
    """
    from PIL import Image

    from .. import viz

    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    side = frames.shape[-1]
    scale = max(1, 64 // side)
    out = {"grid": prefix.with_name(prefix.name + ".png")}
    viz.save_grid(leg_rows(frames, walk.steps), out["grid"], nrow=walk.steps, scale=scale)
    gif_scale = max(1, 128 // side)
    images = []
    for f in frames:
        im = viz.grid_image(f[None], nrow=1, padding=0)
        images.append(im.resize((im.width * gif_scale, im.height * gif_scale), Image.NEAREST))
    there_and_back = images + images[-2:0:-1]  # a seamless loop
    out["gif"] = viz.save_gif_images(there_and_back, prefix.with_name(prefix.name + ".gif"), gif_ms)
    if step_sizes:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.4, 2.6))
        for name, sm in step_sizes.items():
            rel = torch.tensor(sm.steps) / sm.mean
            ax.plot(range(1, len(sm.steps) + 1), rel.numpy(), marker=".", label=name)
        for leg in range(1, walk.legs):
            ax.axvline(leg * (walk.steps - 1) + 0.5, color="0.8", lw=0.8)
        ax.axhline(1.0, color="0.5", lw=0.8, ls="--")
        ax.set_xlabel("step along the walk")
        ax.set_ylabel("step size / mean")
        ax.set_title(walk_title(walk), fontsize=9)
        ax.legend(fontsize=8)
        fig.tight_layout()
        out["steps"] = prefix.with_name(prefix.name + "-steps.png")

        save_figure(fig, out["steps"], dpi=110)
    return out


# ----------------------------------------------------------------------------- a saved run


@dataclass
class InterpolateRun:
    """What `interpolate_run` walked, measured and wrote."""

    walk: Walk
    frames: int
    measured: dict[str, Smoothness]  # "pixels", and the feature space asked for
    paths: dict[str, Path]  # "grid", "gif", "steps"
    report: dict[str, Any]  # as written to `report_path`
    report_path: Path
    notes: list[str] = field(default_factory=list)  # defaults chosen for the user

    def lines(self) -> list[str]:
        """What `gankit interpolate` prints."""
        out = [f"gankit: {note}" for note in self.notes]
        out.append(f"{walk_title(self.walk)}: {self.frames} frames")
        for name, sm in self.measured.items():
            out.append(
                f"  step size ({name}, RMS): mean {sm.mean:.4g}, max {sm.max:.4g}, "
                f"max/mean {sm.max_over_mean:.2f}" + ("  <- a jump" if sm.max_over_mean > 3 else "")
            )
        p = self.paths
        out.append(f"  grid: {p['grid']}  animation: {p['gif']}  steps: {p['steps']}")
        return out


def interpolate_run(
    run: str | os.PathLike,
    *,
    seeds: str | Sequence[int] = "3,17",  # the waypoints
    steps: int = 10,  # frames per leg, ends included (2..200)
    spherical: bool = False,  # slerp instead of lerp in z
    classes: str | Sequence[int] | None = None,  # one class, or one per waypoint
    features: str = "pixel",  # also measure steps in "mnistcnn" or "inception" space
    evaluator: str | None = None,  # domain classifier file (mnistcnn)
    out: str | os.PathLike | None = None,  # path without suffix; default RUN/interpolate
    ema: bool = True,
    device: str = "cpu",
) -> InterpolateRun:
    """A latent walk of a saved run: PREFIX.png, .gif, -steps.png and a .json report.

    A conditional model walks at class 0 unless `classes` is given (a note says so).
    """
    loaded = load(run, device=device, ema=ema)
    given = None
    if is_latent_file(seeds):
        given = read_latents(str(seeds), loaded.model.name, latent_size(loaded))
        seeds = list(range(len(given.names)))
    seeds, classes = parse_seeds(seeds), None if classes is None else parse_seeds(classes)
    notes = []
    if given is not None and given.labels is not None and classes is None:
        classes = given.labels  # each projected digit walks with the class it was found in
    if loaded.num_classes and classes is None:
        classes = [0]
        notes.append("class-conditional model: walking at class 0 (choose with --class)")
    if classes is not None and not loaded.num_classes:
        raise UserError(f"{loaded.model.name} is not class-conditional; drop --class")
    if steps < 2 or steps > 200:
        raise UserError(f"--steps must be between 2 and 200 (got {steps})")
    try:
        walk = make_walk(
            loaded.G, seeds, steps, spherical, classes, loaded.num_classes,
            latents=None if given is None else given.latents,
        )  # fmt: skip
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if given is not None:
        walk.names, walk.space = given.names, given.space
    frames = render_latents(loaded, walk.z, walk.y, walk.space)
    measured = {"pixels": smoothness(frames)}
    if features != "pixel":
        data = loaded.checkpoint.run_config.train.data
        opts = ExtractorOptions(data=data, evaluator=evaluator, device=device)
        measured[features] = smoothness(opts.get(features)(to_uint8(frames)).features)
    prefix = figure_prefix(run, out, "interpolate")
    paths = save_walk_figures(frames, walk, prefix, measured)
    ck = loaded.checkpoint
    report = {
        "run": str(run), "checkpoint": str(ck.path), "nimg": ck.nimg,
        "walk": walk_title(walk), "seeds": walk.seeds, "classes": walk.classes,
        "latents": walk.names, "space": walk.space,
        "steps": walk.steps, "slerp": walk.spherical, "frames": int(frames.shape[0]),
        "smoothness": {k: v.to_json() for k, v in measured.items()},
        "figures": {k: str(v) for k, v in paths.items()},
    }  # fmt: skip
    report_path = prefix.with_name(prefix.name + ".json")
    atomic_write_json(report_path, report)
    return InterpolateRun(walk, int(frames.shape[0]), measured, paths, report, report_path, notes)
