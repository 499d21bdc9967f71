"""Projecting real images into G's latent space: the latent whose image is closest to each one.

GAN inversion by optimisation, the way StyleGAN2's projector does it: from several starts, Adam
moves the latent (z, or w for StyleGAN, where the per-layer noise maps are optimised too under
the projector's noise regularisation) to lower a pixel loss plus a perceptual one. Offline
there is no VGG, so the perceptual loss is the run's own discriminator: the distance between
D's feature maps of G's image and of the target (each layer normalised by the target's
energy), which D learned on exactly this kind of image. A conditional model is projected
under every class from the same starts; after a quarter of the steps each image keeps its best
(class, start) and the rest are dropped.

The latents are written as an .npz that `interpolate` and `arithmetic` accept in place of
seeds (see `latent_files`), so a walk can run between two of a user's own digits.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from ..files import atomic_write_json
from ..latent import prior_of
from ..modes import eval_mode
from .dfeatures import feature_layers
from .latent_files import SPACES, save_latents


@dataclass
class ProjectOptions:
    """How hard to search. The defaults project a 32x32 digit in under a second of one CPU
    core for an unconditional DCGAN (a conditional one searches 10 classes: ~4 s)."""

    steps: int = 500  # Adam steps per image
    starts: int = 4  # random starts per image (and per class for a conditional model)
    lr: float = 0.1  # peak learning rate (cosine ramp-down over the last quarter)
    feature_weight: float = 0.1  # weight of the D-feature distance against the pixel MSE
    prior_weight: float = 0.01  # z: keeps |z|^2 / nz near 1, where G was trained
    noise_weight: float = 1e3  # w: StyleGAN2's noise-map autocorrelation penalty
    w_noise: float = 0.05  # w: noise added to w early on (x the spread of w), ramped to 0
    snapshots: int = 5  # progress images kept per target, the last being the result
    batch_size: int = 32  # targets optimised together (x starts x classes)
    seed: int = 0

    def check(self) -> None:
        """A UserError for settings that cannot run."""
        if not 1 <= self.steps <= 100_000:
            raise UserError(f"--steps must be between 1 and 100,000 (got {self.steps})")
        if not 1 <= self.starts <= 256:
            raise UserError(f"--starts must be between 1 and 256 (got {self.starts})")
        if not self.lr > 0:
            raise UserError(f"the learning rate must be > 0 (got {self.lr})")
        for name in ("feature_weight", "prior_weight", "noise_weight", "w_noise"):
            if not getattr(self, name) >= 0:
                raise UserError(f"{name} must be >= 0 (got {getattr(self, name)})")
        if not 1 <= self.snapshots <= 32:
            raise UserError(f"snapshots must be between 1 and 32 (got {self.snapshots})")


@dataclass
class Projection:
    """The projected latents of N targets and how close G's images came."""

    space: str  # "z" or "w"
    latents: torch.Tensor  # [N, nz] or [N, w_dim]
    labels: torch.Tensor | None  # [N] classes of a conditional model, else None
    images: torch.Tensor  # G at the latents, [N, C, H, W] in [-1, 1]
    pixel_error: torch.Tensor  # [N] RMS difference from the target in [0, 1] pixel units
    progress: torch.Tensor  # [N, P, C, H, W] the best image so far at `progress_steps`
    progress_steps: list[int]
    noises: list[torch.Tensor] | None = None  # w: the optimised noise maps, [N, 1, r, r] each


def pixel_error(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[N] RMS difference of images in [-1, 1], in [0, 1] pixel units (0 = identical)."""
    return ((a.float() - b.float()) / 2).pow(2).flatten(1).mean(1).sqrt()


class DFeatures:
    """D's feature maps of a batch (its activation layers' 4D outputs), with gradients to the
    images: the perceptual distance the projector uses where VGG is not at hand."""

    def __init__(self, D: nn.Module) -> None:
        self.D = D
        self.layers = feature_layers(D)

    def __call__(self, x: torch.Tensor, y: torch.Tensor | None) -> list[torch.Tensor]:
        grabbed: list[torch.Tensor] = []

        def hook(_m: nn.Module, _i: tuple, out: torch.Tensor) -> None:
            if out.dim() == 4:
                grabbed.append(out.float())

        handles = [m.register_forward_hook(hook) for m in self.layers]
        try:
            self.D(x, y)
        finally:
            for h in handles:
                h.remove()
        return grabbed


def _lr_at(t: float, peak: float) -> float:
    """StyleGAN2's projector schedule: a 5% ramp-up, a cosine ramp-down over the last 25%."""
    ramp = min(1.0, (1.0 - t) / 0.25)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    return peak * ramp * min(1.0, t / 0.05)


def _noise_penalty(noises: list[torch.Tensor]) -> torch.Tensor:
    """Squared autocorrelation of each noise map at shifts of one pixel, over a pyramid down
    to 8x8 (StyleGAN2's projector): per image [B]. Keeps the maps noise, not image detail."""
    total = 0.0
    for n in noises:
        while True:
            total = total + (n * n.roll(1, dims=3)).mean((1, 2, 3)).square()
            total = total + (n * n.roll(1, dims=2)).mean((1, 2, 3)).square()
            if n.shape[2] <= 8:
                break
            n = F.avg_pool2d(n, 2)
    return total  # type: ignore[return-value]


class _Search:
    """One batch of candidates (target x class x start) and their optimiser."""

    def __init__(self, G: nn.Module, space: str, params: list[torch.Tensor]) -> None:
        self.G, self.space = G, space
        self.params = [p.detach().clone().requires_grad_(True) for p in params]
        self.opt = torch.optim.Adam(self.params, lr=0.0, betas=(0.9, 0.999))

    def keep(self, idx: torch.Tensor) -> None:
        """Continue with the candidates at `idx` only, with their optimiser state."""
        old = self.opt.state
        kept = [p.detach()[idx].clone().requires_grad_(True) for p in self.params]
        opt = torch.optim.Adam(kept, lr=0.0, betas=(0.9, 0.999))
        for p, q in zip(self.params, kept, strict=True):
            if p in old:
                opt.state[q] = {
                    k: (v[idx].clone() if v.dim() and v.shape[0] == p.shape[0] else v.clone())
                    for k, v in old[p].items()
                }
        self.params, self.opt = kept, opt


def project(
    G: nn.Module,
    D: nn.Module | None,
    targets: torch.Tensor,
    *,
    space: str = "z",
    num_classes: int = 0,
    labels: torch.Tensor | None = None,
    options: ProjectOptions | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Projection:
    """Latents whose G images are closest to `targets` ([N, C, H, W] in [-1, 1]).

    Args:
        G, D: the run's networks (D for the feature loss; None or `feature_weight` 0 for
            pixels only). Both are used in eval mode and left as they were.
        space: "z" (any model) or "w" (a model with StyleGAN's style inputs).
        num_classes: K > 0 for a conditional model: each target is searched under every class
            unless `labels` fixes it.
        progress: called with (targets done, targets in all) after each batch.
    """
    opts = options or ProjectOptions()
    opts.check()
    if space not in SPACES:
        raise UserError(f"--space must be z or w (got {space!r})")
    if space == "w" and num_classes:
        raise UserError("only StyleGAN has a w space, and it is not class-conditional")
    first = next(G.parameters(), None)
    device = first.device if first is not None else targets.device
    n = targets.shape[0]
    if labels is not None:
        labels = torch.as_tensor(labels).long().reshape(-1)
        if labels.numel() == 1 and n > 1:
            labels = labels.expand(n).clone()
        if labels.shape[0] != n:
            raise UserError(f"give one class or one per image ({n}); got {labels.shape[0]}")
    feats = DFeatures(D) if D is not None and opts.feature_weight > 0 else None
    gen = torch.Generator().manual_seed(opts.seed)
    nets = [G] + ([D] if D is not None else [])
    grads = [p.requires_grad for net in nets for p in net.parameters()]
    for net in nets:
        net.requires_grad_(False)
    out: list[Projection] = []
    try:
        with eval_mode(*nets):
            for i in range(0, n, opts.batch_size):
                chunk = targets[i : i + opts.batch_size].to(device).float()
                fixed = None if labels is None else labels[i : i + opts.batch_size]
                out.append(_project_batch(G, feats, chunk, space, num_classes, fixed, opts, gen))
                if progress is not None:
                    progress(min(n, i + opts.batch_size), n)
    finally:
        flags = iter(grads)
        for net in nets:
            for p in net.parameters():
                p.requires_grad_(next(flags))
    return Projection(
        space=space,
        latents=torch.cat([p.latents for p in out]),
        labels=None if out[0].labels is None else torch.cat([p.labels for p in out]),
        images=torch.cat([p.images for p in out]),
        pixel_error=torch.cat([p.pixel_error for p in out]),
        progress=torch.cat([p.progress for p in out]),
        progress_steps=out[0].progress_steps,
        noises=None if out[0].noises is None else [
            torch.cat([p.noises[k] for p in out]) for k in range(len(out[0].noises))
        ],
    )  # fmt: skip


def _project_batch(
    G: nn.Module,
    feats: DFeatures | None,
    targets: torch.Tensor,
    space: str,
    num_classes: int,
    fixed: torch.Tensor | None,
    opts: ProjectOptions,
    gen: torch.Generator,
) -> Projection:
    device = targets.device
    n = targets.shape[0]
    classes = [None] if not num_classes else (
        [None] if fixed is not None else list(range(num_classes))
    )  # fmt: skip
    per = len(classes) * opts.starts  # candidates per target, target-major
    owner = torch.arange(n).repeat_interleave(per)  # candidate -> target
    if num_classes:
        cls = (
            fixed.repeat_interleave(per)
            if fixed is not None
            else torch.arange(num_classes).repeat_interleave(opts.starts).repeat(n)
        )
    else:
        cls = None
    b = n * per
    noise_shapes: list[tuple[int, int, int]] = []
    if space == "z":
        params = [
            prior_of(G).from_seeds([int(s) for s in torch.randint(0, 2**31, (b,), generator=gen)])
        ]
        w_std = 0.0
    else:
        w_avg = G.w_avg.detach().float().cpu()
        probe = G.mapping(torch.randn(512, G.z_dim, generator=gen).to(device)).float().cpu()
        w_std = float((probe - w_avg).square().sum(1).mean().sqrt())
        starts = G.mapping(torch.randn(b, G.z_dim, generator=gen).to(device)).float().cpu()
        starts[:: opts.starts] = w_avg  # the projector's own start: the average w
        noise_shapes = list(G.noise_shapes)
        params = [starts] + [torch.randn(b, *s, generator=gen) for s in noise_shapes]
    search = _Search(G, space, [p.to(device) for p in params])
    y = None if cls is None else cls.to(device)
    want = targets[owner.to(device)]
    want_feats = None if feats is None else [f.detach() for f in feats(want, y)]
    energy = None if want_feats is None else [f.square().mean((1, 2, 3)) + 1e-8 for f in want_feats]
    marks = sorted(
        {round(opts.steps * k / max(1, opts.snapshots - 1)) for k in range(opts.snapshots)}
    )
    if opts.snapshots == 1:
        marks = [opts.steps]
    snaps: list[torch.Tensor] = []
    select_at = max(1, opts.steps // 4) if per > 1 else None

    def render(ps: list[torch.Tensor], y_: torch.Tensor | None, t: float) -> torch.Tensor:
        if space == "z":
            return G(ps[0], y_)
        w = ps[0]
        if opts.w_noise > 0 and t < 0.75:
            w = (
                w
                + torch.randn(w.shape, generator=gen).to(w)
                * w_std
                * opts.w_noise
                * (1 - t / 0.75) ** 2
            )
        ws = w.unsqueeze(1).repeat(1, G.num_ws, 1)
        return G.synthesis(ws, noises=ps[1:])

    def losses(x: torch.Tensor, ps: list[torch.Tensor], want_: torch.Tensor, y_, wf, en):
        loss = (x.float() - want_).square().mean((1, 2, 3))
        if feats is not None:
            got = feats(x, y_)
            loss = loss + opts.feature_weight * sum(
                (g - w_).square().mean((1, 2, 3)) / e for g, w_, e in zip(got, wf, en, strict=True)
            ) / len(got)
        if space == "z" and opts.prior_weight > 0:
            loss = loss + opts.prior_weight * (ps[0].square().mean(1) - 1).square()
        if space == "w" and opts.noise_weight > 0:
            loss = loss + opts.noise_weight * _noise_penalty(ps[1:])
        return loss

    best_of = torch.arange(n) * per  # each target's best candidate so far (index into search)
    for step in range(opts.steps + 1):
        t = step / opts.steps
        x = render(search.params, y, t)
        loss = losses(x, search.params, want, y, want_feats, energy)
        with torch.no_grad():
            per_target = loss.detach().view(n, -1)
            best_of = per_target.argmin(1) + torch.arange(n, device=device) * per_target.shape[1]
            if step in marks:
                snaps.append(x.detach()[best_of].float().cpu())
        if step == opts.steps:
            break
        if select_at is not None and step == select_at:
            keep = best_of.cpu()
            search.keep(keep.to(device))
            y = None if y is None else y[keep.to(device)]
            cls = None if cls is None else cls[keep]
            want = targets
            if want_feats is not None:
                want_feats = [f[keep.to(device)] for f in want_feats]
                energy = [e[keep.to(device)] for e in energy]
            select_at = None
            x = render(search.params, y, t)
            loss = losses(x, search.params, want, y, want_feats, energy)
        for g in search.opt.param_groups:
            g["lr"] = _lr_at(t, opts.lr)
        search.opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        search.opt.step()
        if space == "w":  # the projector keeps each noise map zero-mean, unit-variance
            with torch.no_grad():
                for p in search.params[1:]:
                    p.sub_(p.mean((1, 2, 3), keepdim=True))
                    p.div_(p.square().mean((1, 2, 3), keepdim=True).sqrt() + 1e-8)
    pick = best_of
    with torch.no_grad():
        final = [p.detach()[pick] for p in search.params]
        y_final = None if y is None else y[pick]
        images = (G(final[0], y_final) if space == "z" else G.synthesis(
            final[0].unsqueeze(1).repeat(1, G.num_ws, 1), noises=final[1:]
        )).float()  # fmt: skip
    lab = None if cls is None else cls[pick.cpu()].cpu()
    return Projection(
        space=space,
        latents=final[0].float().cpu(),
        labels=lab,
        images=images.cpu(),
        pixel_error=pixel_error(images, targets).cpu(),
        progress=torch.stack(snaps, 1),
        progress_steps=marks,
        noises=None if space == "z" else [p.float().cpu() for p in final[1:]],
    )


# ----------------------------------------------------------------------------- files


def load_images(paths: Sequence[str | os.PathLike], channels: int, resolution: int) -> torch.Tensor:
    """Image files -> [N, C, R, R] in [-1, 1], converted to the model's channels and size.

    Digits models were trained on white ink on black, as MNIST is: a scan of dark ink on
    paper needs inverting first (the projection of a negative is poor, not an error).
    """
    from PIL import Image, UnidentifiedImageError

    if not paths:
        raise UserError("give at least one image to project")
    out = []
    for p in paths:
        try:
            with Image.open(p) as im:
                im = im.convert("L" if channels == 1 else "RGB")
                if im.size != (resolution, resolution):
                    im = im.resize((resolution, resolution), Image.BICUBIC)
                a = np.asarray(im, dtype=np.float32)
        except FileNotFoundError:
            raise UserError(f"{p}: no such image") from None
        except (UnidentifiedImageError, OSError) as exc:
            raise UserError(f"{p}: not an image PIL can read ({exc})") from None
        a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
        out.append(torch.from_numpy(a.copy()) / 127.5 - 1)
    return torch.stack(out)


def save_projection_figure(
    targets: torch.Tensor, proj: Projection, path: str | os.PathLike, rows: int = 16
) -> Path:
    """One row per target (the first `rows`): the target, G's best image at each progress
    step, the final projection, and the pixel error in the row's title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..viz import save_figure, show_image

    k = min(rows, targets.shape[0])
    cols = 1 + proj.progress.shape[1]
    fig, axes = plt.subplots(k, cols, figsize=(1.0 * cols + 0.6, 1.05 * k + 0.3), squeeze=False)

    def show(ax: Any, img: torch.Tensor) -> None:
        show_image(ax, img)
        ax.set_xticks([])
        ax.set_yticks([])

    for r in range(k):
        show(axes[r, 0], targets[r])
        for c in range(proj.progress.shape[1]):
            show(axes[r, 1 + c], proj.progress[r, c])
        tag = f"err {float(proj.pixel_error[r]):.3f}"
        if proj.labels is not None:
            tag += f", class {int(proj.labels[r])}"
        axes[r, -1].set_xlabel(tag, fontsize=6, labelpad=1)
    axes[0, 0].set_title("target", fontsize=8)
    for c, s in enumerate(proj.progress_steps):
        axes[0, 1 + c].set_title("final" if c == len(proj.progress_steps) - 1 else f"step {s}",
                                 fontsize=8)  # fmt: skip
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    return Path(path)


# ----------------------------------------------------------------------------- a saved run


@dataclass
class ProjectRun:
    """What `project_run` projected and wrote."""

    projection: Projection
    sources: list[str]
    paths: dict[str, Path]  # "latents", "figure", "report"
    report: dict[str, Any]

    def lines(self) -> list[str]:
        """What `gankit project` prints."""
        p = self.projection
        out = []
        for i, src in enumerate(self.sources):
            cls = "" if p.labels is None else f", class {int(p.labels[i])}"
            out.append(f"{src}: pixel error {float(p.pixel_error[i]):.4f}{cls}")
        err = p.pixel_error
        out.append(
            f"{len(self.sources)} image(s) in {p.space}: median pixel error "
            f"{float(err.median()):.4f} (RMS, pixels in [0, 1])"
        )
        out.append(
            f"latents: {self.paths['latents']}  figure: {self.paths['figure']}  "
            f"report: {self.paths['report']}"
        )
        return out


def project_run(
    run: str | os.PathLike,
    images: Sequence[str | os.PathLike] | torch.Tensor,
    *,
    space: str = "z",
    label: int | None = None,  # fix the class of a conditional model (default: searched)
    options: ProjectOptions | None = None,
    sources: Sequence[str] | None = None,  # names of tensor targets, for the report
    out: str | os.PathLike | None = None,  # path without suffix; default RUN/project
    ema: bool = True,
    device: str = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> ProjectRun:
    """Project image files (or a tensor in [-1, 1]) into a saved run's latent space:
    PREFIX.npz (the latents), PREFIX.png (target / progress / projection), PREFIX.json."""
    from ..sampling import check_class, load
    from .paths import figure_prefix

    loaded = load(run, device=device, ema=ema)
    spec = loaded.model.spec
    if space == "w" and not spec.style_mixing:
        raise UserError(f"{spec.name} has no w space; project into z (--space z)")
    check_class(loaded, label)
    rc = loaded.checkpoint.run_config
    if isinstance(images, torch.Tensor):
        targets = images.float()
        names = list(sources or [f"image {i}" for i in range(len(targets))])
    else:
        targets = load_images(images, rc.channels, rc.resolution)
        names = [str(p) for p in images]
    want = (rc.channels, rc.resolution, rc.resolution)
    if tuple(targets.shape[1:]) != want:
        raise UserError(f"targets must be {list(want)} images, got {list(targets.shape[1:])}")
    opts = options or ProjectOptions()
    proj = project(
        loaded.G, loaded.model.D, targets, space=space, num_classes=loaded.num_classes,
        labels=None if label is None else torch.tensor([label]), options=opts, progress=progress,
    )  # fmt: skip
    prefix = figure_prefix(run, out, "project")
    ck = loaded.checkpoint
    meta = {"model": spec.name, "run": str(run), "checkpoint": str(ck.path), "nimg": ck.nimg,
            "sources": names, "dim": int(proj.latents.shape[1])}  # fmt: skip
    paths = {
        "latents": save_latents(prefix.with_name(prefix.name + ".npz"), proj, meta),
        "figure": save_projection_figure(targets, proj, prefix.with_name(prefix.name + ".png")),
        "report": prefix.with_name(prefix.name + ".json"),
    }
    err = proj.pixel_error
    report = {
        **meta, "space": space, "options": opts.__dict__,
        "pixel_error": err.tolist(), "median_pixel_error": float(err.median()),
        "labels": None if proj.labels is None else proj.labels.tolist(),
        "files": {k: str(v) for k, v in paths.items()},
    }  # fmt: skip
    atomic_write_json(paths["report"], report)
    return ProjectRun(proj, names, paths, report)
