"""Scoring one candidate's images on a list of metrics: the loop every evaluation runs.

A candidate is a generator or real held-out images (the floor); it is scored against a
`Reference` in the feature spaces the metric names ask for, and every record carries its
whole protocol (counts, reference split, resize filters, seed, extractor and its checksum).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..data.base import to_uint8
from ..errors import UserError
from ..latent import prior_of
from ..modes import eval_mode
from .extractors import ExtractorOptions
from .features import Features
from .kinds import MIXTURES, Batch, MetricRequest
from .reference import Reference, real_features, subset


@torch.no_grad()
def generate_images(
    G: nn.Module,
    n: int,
    *,
    num_classes: int = 0,
    seed: int = 0,
    device: str | torch.device = "cpu",
    batch_size: int = 250,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """n uint8 images from seeds seed..seed+n-1; class (seed + i) % K for conditional models."""
    prior = prior_of(G)
    labels = (torch.arange(n) + seed) % num_classes if num_classes else None
    out = []
    with eval_mode(G):
        for i in range(0, n, batch_size):
            seeds = range(seed + i, seed + min(n, i + batch_size))
            z = prior.from_seeds(list(seeds)).to(device)
            y = None if labels is None else labels[i : i + len(seeds)].to(device)
            out.append(to_uint8(G(z, y)))
    return torch.cat(out), labels


@dataclass
class Candidate:
    """What is being judged: a generator, or real held-out images (the floor)."""

    describe: str  # "G_ema", "G" or "real test split"
    images: Callable[[int], tuple[torch.Tensor, torch.Tensor | None]]
    num_classes: int
    conditional: bool


def _ready(
    cand: Candidate, ref: Reference, requests: Sequence[MetricRequest], opts: ExtractorOptions
) -> tuple[Any, torch.Tensor | None]:
    """Every precondition before the first generated image: the reference data, each feature
    extractor (a missing classifier file or Inception weights), the held-out split for memo.

    Returns:
        (the reference dataset, the held-out images for memo or None).
    """
    for r in requests:
        if r.features in MIXTURES:
            raise UserError(f"{r.name} applies to runs trained on {r.features}")
        if r.spec.conditional_only and not cand.conditional:
            raise UserError(f"{r.name} needs a class-conditional model")
    reference = ref.load()
    for r in requests:
        extractor = opts.get(r.features)  # loaded (and cached) now: a missing file fails here
        if r.spec.needs_logits and not extractor.has_logits:
            raise UserError(f"{r.name}: {r.features} features have no class logits")
    heldout = None
    if any(r.spec.name == "memo" for r in requests):
        name = next(r.name for r in requests if r.spec.name == "memo")
        try:
            heldout = ref.load("test" if ref.split == "train" else "train").images
        except UserError as exc:
            raise UserError(f"{name}: no held-out split ({exc})") from None
    return reference, heldout


def score(
    cand: Candidate,
    ref: Reference,
    requests: Sequence[MetricRequest],
    opts: ExtractorOptions,
    *,
    seed: int,
    use_cache: bool = True,
    log: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """One record per request: `cand`'s images scored against `ref` (see `protocol`)."""
    reference, heldout = _ready(cand, ref, requests, opts)
    n_max = max(r.n for r in requests)
    t0 = time.perf_counter()
    if log:
        log(f"generating {n_max:,} images")
    gen_images, gen_labels = cand.images(n_max)
    records = []
    for feat_name in dict.fromkeys(r.features for r in requests):
        extractor = opts.get(feat_name)
        mine = [r for r in requests if r.features == feat_name]
        if log:
            log(f"features: {feat_name} on {len(gen_images)} generated images")
        n_gen_feats = max(r.n for r in mine)
        gen_all = extractor(gen_images[:n_gen_feats])
        for r in mine:
            kind = r.spec
            t1 = time.perf_counter()
            n_total = len(reference)
            n_real = n_total if kind.real_count == "all" else min(r.n, n_total)
            idx = subset(n_total, n_real, seed)
            real_images = reference.images[idx]
            real_labels = None if reference.labels is None else reference.labels[idx]
            key = {
                "data": ref.data,
                "split": ref.split,
                "resolution": ref.resolution,
                "channels": ref.channels,
                "n": n_real,
                "seed": seed,
            }
            if ref.max_images is not None and ref.split == "train":
                key["max_images"] = ref.max_images  # a subset's statistics are its own
            if kind.name == "memo":
                real = Features(features=torch.empty(0))
            elif kind.name in ("acc", "is", "modes"):
                real = Features(features=torch.empty(0))  # generated side only
            else:
                if log:
                    log(f"features: {feat_name} on {n_real} real images ({ref.split})")
                real = real_features(real_images, extractor, key, use_cache=use_cache)
            gen = Features(
                features=gen_all.features[: r.n],
                logits=None if gen_all.logits is None else gen_all.logits[: r.n],
            )
            if kind.needs_logits and gen.logits is None:
                raise UserError(f"{r.name}: {feat_name} features have no class logits")
            batch = Batch(
                gen=gen,
                gen_images=gen_images[: r.n],
                gen_labels=None if gen_labels is None else gen_labels[: r.n],
                real=real,
                real_images=real_images,
                real_labels=real_labels,
                extractor=extractor,
                num_classes=cand.num_classes,
                seed=seed,
                heldout_images=heldout,
            )
            values = kind.compute(batch)
            uses_real = kind.name not in ("acc", "is", "modes")
            records.append(
                {
                    "metric": r.name,
                    "value": values[kind.primary],
                    "higher_is_better": kind.higher_is_better,
                    "values": values,
                    "protocol": {
                        "kind": kind.name,
                        "description": kind.description,
                        "n_gen": r.n,
                        "n_real": n_real if uses_real else 0,
                        "reference": ref.described if uses_real else None,
                        "reference_size": n_total,
                        "data_resolution": ref.resolution,
                        "data_resize": "antialiased bilinear to the model's resolution",
                        "seed": seed,
                        "generator": cand.describe,
                        **extractor.describe(),
                    },
                    "seconds": round(time.perf_counter() - t1, 3),
                }
            )
    for rec in records:
        rec["seconds_total"] = round(time.perf_counter() - t0, 3)
    return records
