"""Memorisation: is a generated sample closer to the training set than unseen real data is?

The DCGAN paper argues its generator is "not memorising" by showing samples beside their
nearest training images. A picture alone cannot tell copying from a good model, because a good
model's samples also lie near real images; what can is a baseline. So for every generated
sample we take the distance to its nearest training image, and for every held-out real image
(data the generator never saw) the same distance; then compare the two distributions:

* ratio (generated / held-out, of medians and of 5th percentiles) near 1 or above: samples are
  no closer to the training set than fresh real data is, i.e. no sign of copying;
* ratio well below 1, a large near-copy fraction (samples closer than the held-out images'
  1st percentile; about 0.01 is expected without copying) or a tiny Mann-Whitney p-value
  (one-sided: generated distances smaller): samples hug training images, look at the figure.

A ratio above 1 is normal for an imperfect generator (its samples are off the data manifold),
so "not memorising" is evidence only together with good sample quality.

Distances are measured in pixel space (uint8 images as floats in [0, 1], flattened) and,
optionally, in a feature extractor's space, where near copies that are shifted or re-shaded
are also found. Where the held-out split overlaps the training set (sklearn-digits' held-out
297 images are part of its training set; folder:PATH and npz:PATH have no separate split, so
train=False gives the training images again), each overlapping held-out image is compared
with the training set minus itself (leave-one-out); the result says how many were.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import load_checkpoint, run_folder
from ..data import load_dataset
from ..data.base import to_uint8
from ..errors import UserError
from ..files import atomic_write_json
from ..metrics.extractors import ExtractorOptions
from ..metrics.features import FeatureExtractor

# The search and statistics live in gankit.metrics.neighbours (the memo metric measures through
# them); embed, k_nearest_neighbours, memorisation_stats, nearest_neighbours and summarise are
# re-exported because they were defined here before.
from ..metrics.neighbours import (  # noqa: F401
    check_images,
    embed,
    find_in_train,
    k_nearest_neighbours,
    memorisation_stats,
    nearest_neighbours,
    space_distances,
    space_stats,
    summarise,
)
from ..sampling import generate, load
from ..viz import save_figure

# ----------------------------------------------------------------------------- figure


def _show(ax: Any, img: torch.Tensor) -> None:
    arr = img.permute(1, 2, 0).numpy()
    if arr.shape[2] == 1:
        ax.imshow(arr[..., 0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    else:
        ax.imshow(arr, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def memorisation_figure(
    generated: torch.Tensor,
    train: torch.Tensor,
    dist: torch.Tensor,
    index: torch.Tensor,
    path: str | os.PathLike,
    n: int = 16,
    space: str = "pixel",
    *,
    n_random: int | None = None,  # of the n shown, how many are random (default n // 4)
    seed: int = 0,  # picks the random ones
) -> Path:
    """A PNG of generated samples (left of each group) beside their nearest training images.

    The samples closest to the training set are shown first, since copies would be there;
    a few random others show the typical case. The distance is written above each neighbour.

    Args:
        generated: uint8 [N, C, H, W].
        train: uint8 [M, C, H, W].
        dist, index: [N] or [N, k] distances and training indices, nearest first.
        path: the PNG to write (atomically).
        n: samples shown.
        space: named in the title ("pixel" or the extractor's name).
    Returns:
        The path written.
    """
    if dist.dim() == 1:
        dist, index = dist.unsqueeze(1), index.unsqueeze(1)
    if dist.shape != index.shape or dist.shape[0] != len(generated):
        raise UserError("dist and index need one row per generated image")
    n = max(1, min(n, len(generated)))
    n_rand = n // 4 if n_random is None else max(0, min(n_random, n))
    n_close = n - n_rand
    order = torch.argsort(dist[:, 0].double(), stable=True)
    closest = order[:n_close]
    rest = order[n_close:]
    g = torch.Generator().manual_seed(seed)
    picked = rest[torch.randperm(len(rest), generator=g)[:n_rand]]
    picked = picked[torch.argsort(dist[picked, 0].double(), stable=True)]
    shown = [(int(i), False) for i in closest] + [(int(i), True) for i in picked]

    from matplotlib.figure import Figure

    k = int(dist.shape[1])
    groups = 2 if len(shown) > 8 else 1
    rows = math.ceil(len(shown) / groups)
    step = k + 2  # a group's columns: sample, k neighbours, a narrow gap before the next group
    ratios = ([1.0] * (k + 1) + [0.3]) * groups
    ratios = ratios[:-1]
    fig = Figure(figsize=(0.95 * sum(ratios), 1.05 * rows + 0.8))
    axes = fig.subplots(rows, len(ratios), squeeze=False, gridspec_kw={"width_ratios": ratios})
    for ax in axes.flat:
        ax.axis("off")
    for slot, (i, random_pick) in enumerate(shown):
        r, c0 = slot % rows, (slot // rows) * step
        ax = axes[r, c0]
        ax.axis("on")
        _show(ax, generated[i])
        ax.set_title(f"gen {i}" + (" (rand)" if random_pick else ""), fontsize=6)
        for s in ax.spines.values():
            s.set_edgecolor("tab:blue" if random_pick else "tab:red")
            s.set_linewidth(1.5)
        for j in range(k):
            ax = axes[r, c0 + 1 + j]
            ax.axis("on")
            _show(ax, train[int(index[i, j])])
            ax.set_title(f"d={float(dist[i, j]):.3g}", fontsize=6)
    fig.suptitle(
        f"{space} space: generated sample (framed) and its {k} nearest training image(s)\n"
        f"red: the {n_close} samples closest to the training set; blue: {n_rand} random "
        f"others (seed {seed})",
        fontsize=8,
    )
    height = fig.get_figheight()
    fig.subplots_adjust(
        left=0.02, right=0.98, wspace=0.12, hspace=0.35, top=1 - 0.7 / height, bottom=0.1 / height
    )
    save_figure(fig, path, dpi=100)
    return Path(path)


# ----------------------------------------------------------------------------- report


def memorisation_report(
    run_dir: str | os.PathLike,
    *,
    data: str | None = None,  # dataset spec; default the run's
    data_root: str | None = None,  # where it lives; default the run's
    n: int = 1000,  # generated samples (seeds seed .. seed + n - 1)
    n_heldout: int | None = None,  # held-out images used (a seeded subset); default n
    seed: int = 0,
    extractor: FeatureExtractor | None = None,
    out_dir: str | os.PathLike | None = None,  # default the run folder
    ema: bool = True,
    device: str = "cpu",
    figure_n: int = 16,  # samples shown per figure
    k: int = 3,  # training neighbours shown per sample
) -> dict[str, Any]:
    """Memorisation statistics and figures of a saved run, in pixel and feature space.

    Generates `n` samples (conditional models cycle the labels 0..K-1), loads the training
    data as the run was trained on it (same spec, resolution, channels and max_images) and the
    held-out split, and measures both against the training set (see the module docstring).
    Writes memorisation-pixel.png, memorisation-{extractor.name}.png and memorisation.json.

    Returns:
        {"protocol": {...}, "spaces": {"pixel": stats, extractor.name: stats},
         "figures": {space: path}, "notes": [...]}, stats as in `memorisation_stats`.
    """
    if n < 1:
        raise UserError(f"n must be at least 1 (got {n})")
    if n_heldout is not None and n_heldout < 1:
        raise UserError(f"n_heldout must be at least 1 (got {n_heldout})")
    run = load(run_dir, device=device, ema=ema)
    ck = run.checkpoint
    rc = ck.run_config
    spec = data if data is not None else rc.train.data
    root = data_root if data_root is not None else rc.train.data_root
    res, ch = rc.resolution, rc.channels
    common = {"resolution": res, "channels": ch, "root": root, "download": rc.train.download}
    train_ds = load_dataset(spec, train=True, max_images=rc.train.max_images, **common)
    held_ds = load_dataset(spec, train=False, **common)
    notes: list[str] = []
    trained_on = ck.meta.get("data", {}).get("images")
    if trained_on is not None and int(trained_on) != len(train_ds):
        notes.append(f"{spec} now has {len(train_ds)} training images; the run saw {trained_on}")

    labels = [i % run.num_classes for i in range(n)] if run.num_classes else None
    generated = to_uint8(generate(run, list(range(seed, seed + n)), labels))
    heldout = held_ds.images
    want = n if n_heldout is None else n_heldout
    if len(heldout) > want:
        g = torch.Generator().manual_seed(seed)
        heldout = heldout[torch.randperm(len(heldout), generator=g)[:want].sort().values]
    train = train_ds.images
    check_images(generated=generated, train=train, heldout=heldout)
    in_train = find_in_train(heldout, train)
    overlap = int((in_train >= 0).sum())
    if overlap:
        notes.append(
            f"{overlap} of {len(heldout)} held-out images are also training images "
            f"({'no unseen real data' if overlap == len(heldout) else 'partly unseen'}): "
            "each is compared with the training set without itself (leave-one-out)"
        )

    out = Path(out_dir) if out_dir is not None else run_folder(run_dir)
    kk = min(k, len(train))
    spaces: dict[str, Any] = {}
    figures: dict[str, str] = {}
    for ex in (None, extractor) if extractor is not None else (None,):
        name = "pixel" if ex is None else ex.name
        gen_d, gen_i, held_d, dim = space_distances(
            generated, train, heldout, in_train, ex, kk, device
        )
        spaces[name] = space_stats(gen_d[:, 0], held_d, dim, len(train), overlap, ex)
        fig = memorisation_figure(
            generated,
            train,
            gen_d,
            gen_i,
            out / f"memorisation-{name}.png",
            figure_n,
            name,
            seed=seed,
        )
        figures[name] = str(fig)
    protocol = {
        "run": str(run_dir),
        "checkpoint": str(ck.path),
        "model": rc.model,
        "generator": "G_ema" if run.used_ema else "G",
        "nimg": ck.nimg,
        "seed": seed,
        "seeds": f"{seed}-{seed + n - 1}",
        "labels": f"cycled 0..{run.num_classes - 1}" if run.num_classes else None,
        "data": spec,
        "resolution": res,
        "channels": ch,
        "n_generated": n,
        "n_train": len(train),
        "n_heldout": len(heldout),
        "n_heldout_available": len(held_ds),
        "n_heldout_in_train": overlap,
    }
    result = {"protocol": protocol, "spaces": spaces, "figures": figures, "notes": notes}
    atomic_write_json(out / "memorisation.json", result)
    return result


@dataclass
class MemorisationRun:
    """What `memorisation_run` measured and wrote (RUN/memorisation.json and its figures)."""

    report: dict[str, Any]  # as `memorisation_report` returns and writes it

    def lines(self) -> list[str]:
        """What `gankit memorisation` prints."""
        out = []
        for space, st in self.report["spaces"].items():
            ratio = st.get("ratio_median")
            if ratio is None:
                ratio = float("nan")  # held-out median 0: every held-out image repeats
            out.append(
                f"{space:>9}: median distance to the nearest training image: generated "
                f"{st['median_generated']:.4g}, held-out real {st['median_heldout']:.4g} "
                f"(ratio {ratio:.3g}); near copies {st['near_copy_fraction']:.1%}"
            )
        out += [f"note: {note}" for note in self.report.get("notes", [])]
        out += [f"figure ({space}): {path}" for space, path in self.report["figures"].items()]
        return out


def memorisation_run(
    run: str | os.PathLike,
    *,
    features: str = "pixel",  # also a feature space: "mnistcnn" or "inception"
    n: int = 1000,  # generated samples
    seed: int = 0,
    data: str | None = None,  # training data; default: the run's
    data_root: str | None = None,
    evaluator: str | None = None,  # domain classifier file (mnistcnn)
    inception_weights: str | None = None,
    out: str | os.PathLike | None = None,  # folder for the figures; default the run folder
    ema: bool = True,
    device: str = "cpu",
) -> MemorisationRun:
    """`memorisation_report` with the feature extractor named by `features` (pixel space is
    always measured too)."""
    extractor = None
    if features != "pixel":
        opts = ExtractorOptions(
            data=data or load_checkpoint(run).run_config.train.data,
            evaluator=evaluator,
            inception_weights=inception_weights,
            device=device,
        )
        extractor = opts.get(features)
    report = memorisation_report(
        run,
        data=data,
        data_root=data_root,
        n=n,
        seed=seed,
        extractor=extractor,
        out_dir=out,
        ema=ema,
        device=device,
    )
    return MemorisationRun(report)
