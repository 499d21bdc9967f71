"""`gankit filters`: every filter view of a saved run's D and of a random D, two figures."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ...checkpoint import run_folder
from ...data import load_dataset
from ...errors import UserError
from ...sampling import load
from ..dfeatures import random_discriminator
from .figures import first_layer_figure, layer_figure
from .layers import check_layer, conv_layers, first_conv, layer_shapes
from .top import first_layer_filters
from .views import LayerView, layer_view


@dataclass
class FilterReport:
    """What `filter_report` computed and wrote."""

    run: str
    nimg: int  # images the run's D had seen
    data: str
    n_images: int
    layer: int
    views: dict[str, LayerView]  # "trained D", "random D"
    filters: dict[str, torch.Tensor]  # first-layer filters, same keys
    figures: dict[str, Path]  # "first_layer", "layer"
    random_seed: int
    random_is_init: bool  # the random D is this run's own initial D (same seed as training)
    first_layer_change: float  # |W_trained - W_random| / |W_random| of the first convolution


def filter_report(
    run_dir: str | os.PathLike,
    *,
    layer: int | None = None,  # default: the deepest convolutional feature layer
    channels: Sequence[int] | None = None,  # default: `count` chosen per D
    top: int = 9,
    n: int = 2000,  # real training images searched (a seeded random subset)
    data: str | None = None,  # default: the run's data
    data_root: str | None = None,
    download: bool | None = None,  # default: as the run was trained
    seed: int = 0,  # picks the images
    random_seed: int | None = None,  # the random D's; default: the training seed + 1
    out_dir: str | os.PathLike | None = None,  # default: the run folder
    device: str = "cpu",
    count: int = 8,
    one_per_image: bool = False,
) -> FilterReport:
    """Filter views of a run's D and of a random D of the same architecture; two figures.

    Writes OUT/filters-first-layer.png (first-layer filters, trained | random) and
    OUT/filters-layer{N}.png (top-k patches and guided-backprop maps, trained | random).
    """
    if n < 1:
        raise UserError(f"--n must be at least 1 (got {n})")
    if top < 1:
        raise UserError(f"--top must be at least 1 (got {top})")
    if count < 1:
        raise UserError(f"count must be at least 1 (got {count})")
    run = load(run_dir, device=device)
    ck = run.checkpoint
    if not ck.has("D"):
        raise UserError(f"{ck.path} has no D weights to look at")
    trained = run.model.D
    conv_layers(trained)  # MLPs fail here, before any data is loaded
    rc = ck.run_config
    spec = data if data is not None else rc.train.data
    ds = load_dataset(
        spec,
        train=True,
        resolution=rc.resolution,
        channels=rc.channels,
        root=data_root if data_root is not None else rc.train.data_root,
        download=rc.train.download if download is None else download,
    )
    if getattr(ds, "images", None) is None or ds.images.dim() != 4:
        raise UserError(f"{spec} is not image data; filter views need images")
    conditional = run.model.spec.conditional
    if conditional and ds.labels is None:
        raise UserError(f"{run.model.name}'s D needs class labels and {spec} has none")
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(ds), generator=g)[: min(n, len(ds))].sort().values
    images, labels = ds.batch(idx)
    if not conditional:
        labels = None

    random, random_seed = random_discriminator(run, random_seed)
    nets = {"trained D": trained, "random D": random}
    # The trainer seeds torch with its seed and then builds the model, so with the training
    # seed the random D is exactly where this D started: the change is then training's alone.
    random_is_init = int(rc.train.seed) == random_seed
    w_t, w_r = (first_conv(D).weight.detach().float().cpu() for D in (trained, random))
    change = float((w_t - w_r).norm() / w_r.norm().clamp(min=1e-12))
    first_label = None if labels is None else labels[0]
    layer = check_layer(layer_shapes(trained, images[0], first_label), layer)
    views = {
        name: layer_view(
            D, images, layer, channels, top, labels, count=count, one_per_image=one_per_image
        )
        for name, D in nets.items()
    }
    for v in views.values():  # report image numbers in the dataset, not in the subset
        for ch in v.channels:
            for u in ch.units:
                u.image_index = int(idx[u.image_index])
    filters = {name: first_layer_filters(D, rc.channels) for name, D in nets.items()}
    out = Path(out_dir) if out_dir is not None else run_folder(run_dir)
    init = "= its own initial weights" if random_is_init else "independent of this run"
    title = (
        f"{run.model.name} D after {ck.nimg / 1000:g} kimg vs a random D "
        f"(seed {random_seed}, {init}); {spec}"
    )
    figures = {
        "first_layer": first_layer_figure(filters, out / "filters-first-layer.png", title),
        "layer": layer_figure(views, out / f"filters-layer{layer}.png", title, first_layer=filters),
    }
    return FilterReport(
        run=str(run_dir),
        nimg=ck.nimg,
        data=spec,
        n_images=len(idx),
        layer=layer,
        views=views,
        filters=filters,
        figures=figures,
        random_seed=random_seed,
        random_is_init=random_is_init,
        first_layer_change=change,
    )


def format_report(report: FilterReport) -> str:
    """A short text summary: per chosen channel, trained next to random."""
    tr, rn = report.views["trained D"], report.views["random D"]
    c, h, w = tr.shape
    k = tr.k
    lines = [
        f"layer {report.layer}: {tr.module} output, {c} channels x {h}x{w}, receptive field "
        f"{tr.field[0]}x{tr.field[1]} px; top {k} units per channel over {report.n_images} "
        f"real {report.data} images",
        "z = (mean top-k - channel mean) / channel std: how far the best units stand out",
        f"{'':>4}  {'trained D':<32}  random D",
        (
            f"{'rank':>4}  " + f"{'channel':>7} {'top-1':>8} {f'top-{k} mean':>10} {'z':>5}  " * 2
        ).rstrip(),
    ]
    for r in range(max(len(tr.channels), len(rn.channels))):
        row = f"{r:>4}  "
        for v in (tr, rn):
            if r < len(v.channels):
                ch = v.channels[r]
                row += (
                    f"{ch.channel:>7} {ch.units[0].activation:>8.3g} {ch.top_mean:>10.3g} "
                    f"{ch.z:>5.1f}  "
                )
            else:
                row += " " * 34
        lines.append(row.rstrip())
    zt, zr = tr.z_all.median(), rn.z_all.median()
    lines.append(f"median z over all {c} channels: trained {zt:.2f}, random {zr:.2f}")
    init = (
        f"this run's own initial D (training seed {report.random_seed}; pass another "
        "--random-seed for an independent one)"
        if report.random_is_init
        else "independent of this run's initialisation"
    )
    lines.append(f"random D: seed {report.random_seed}, {init}")
    lines.append(
        f"first-layer weights moved by {report.first_layer_change:.1%} of their norm in training"
        if report.random_is_init
        else f"first-layer weights: |trained - random| / |random| = {report.first_layer_change:.3g}"
    )
    for name, path in report.figures.items():
        lines.append(f"figure ({name.replace('_', ' ')}): {path}")
    return "\n".join(lines)
