"""Nearest neighbours in bounded memory, and the memorisation statistics built on them.

For every generated sample, the distance to its nearest training image; for every held-out real
image (data the generator never saw), the same distance; then the two distributions compared
(see `gankit.analysis.memorisation` for how to read them, its figure and its report). The
`memo` metric and `gankit memorisation` both measure through here.

Distances are measured in pixel space (uint8 images as floats in [0, 1], flattened) or in a
feature extractor's space. Held-out images that are byte-identical to training images are
compared with the training set minus themselves (leave-one-out).
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import numpy as np
import torch

from ..errors import UserError
from .features import FeatureExtractor

# Extra float32 candidates re-ranked with exact float64 distances: the returned neighbour can
# only differ from the exact one if more than this many references lie within float32 rounding
# (~1e-6 relative) of the true nearest distance, i.e. for near ties.
CANDIDATE_PAD = 8

# ----------------------------------------------------------------------------- search


def k_nearest_neighbours(
    queries: torch.Tensor,
    refs: torch.Tensor,
    k: int,
    *,
    chunk: int = 1024,  # query rows per block
    ref_chunk: int = 16384,  # reference rows per block
    exclude: torch.Tensor | None = None,  # [N] a reference index to skip per query, or -1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact Euclidean k nearest references of each query, in blocks of bounded memory.

    Candidates are found with the expanded form |q|^2 + |r|^2 - 2 q.r in float32 (one matmul
    per block, after centring both sets on the references' mean to limit cancellation), then
    the best k + CANDIDATE_PAD are re-measured exactly in float64 and re-ranked. Peak memory is
    about chunk x ref_chunk floats plus one float32 copy of the queries, so 10k x 60k x 784 fits
    in a few hundred MB. Ties are broken by the smaller reference index.

    Args:
        queries: [N, D] (any float or integer dtype).
        refs: [M, D] on the same device.
        k: neighbours per query, 1 <= k < M (<= M without `exclude`).
        exclude: per query, a reference index never returned (for leave-one-out), -1 for none.
    Returns:
        (distances float64 [N, k], indices int64 [N, k]), nearest first.
    """
    if queries.dim() != 2 or refs.dim() != 2 or queries.shape[1] != refs.shape[1]:
        raise UserError(
            f"queries [N, D] and references [M, D] must have the same D; got "
            f"{tuple(queries.shape)} and {tuple(refs.shape)}"
        )
    n, m = int(queries.shape[0]), int(refs.shape[0])
    most = m - (1 if exclude is not None else 0)
    if not 1 <= k <= most:
        raise UserError(f"cannot find {k} neighbours among {most} references")
    if chunk < 1 or ref_chunk < 1:
        raise ValueError("chunk and ref_chunk must be >= 1")
    device = queries.device
    refs = refs.to(device)
    if exclude is not None:
        exclude = exclude.to(device=device, dtype=torch.long).reshape(n)
    if n == 0:
        return torch.empty(0, k, dtype=torch.float64, device=device), torch.empty(
            0, k, dtype=torch.long, device=device
        )
    cands = min(m, k + CANDIDATE_PAD + (1 if exclude is not None else 0))

    mean = torch.zeros(refs.shape[1], dtype=torch.float64, device=device)
    for s in range(0, m, ref_chunk):
        mean += refs[s : s + ref_chunk].double().sum(0)
    mean /= m
    q32 = (queries.double() - mean).float()
    q_sq = q32.square().sum(1)

    best_d = torch.full((n, cands), math.inf, dtype=torch.float32, device=device)
    best_i = torch.zeros((n, cands), dtype=torch.long, device=device)
    for rs in range(0, m, ref_chunk):
        r32 = (refs[rs : rs + ref_chunk].double() - mean).float()
        r_sq = r32.square().sum(1)
        take = min(cands, r32.shape[0])
        for qs in range(0, n, chunk):
            qe = min(qs + chunk, n)
            d = torch.addmm(r_sq.unsqueeze(0), q32[qs:qe], r32.T, alpha=-2.0)
            d += q_sq[qs:qe].unsqueeze(1)
            blk_d, blk_i = torch.topk(d, take, dim=1, largest=False)
            all_d = torch.cat([best_d[qs:qe], blk_d], dim=1)
            all_i = torch.cat([best_i[qs:qe], blk_i + rs], dim=1)
            keep_d, pos = torch.topk(all_d, cands, dim=1, largest=False)
            best_d[qs:qe] = keep_d
            best_i[qs:qe] = torch.gather(all_i, 1, pos)

    out_d = torch.empty(n, k, dtype=torch.float64, device=device)
    out_i = torch.empty(n, k, dtype=torch.long, device=device)
    for qs in range(0, n, chunk):
        qe = min(qs + chunk, n)
        q64 = queries[qs:qe].double()
        idx = best_i[qs:qe]
        exact = torch.stack(
            [(q64 - refs[idx[:, j]].double()).square().sum(1) for j in range(cands)], dim=1
        ).sqrt()
        if exclude is not None:
            exact[idx == exclude[qs:qe].unsqueeze(1)] = math.inf
        # order by index, then (stably) by distance: equal distances keep the smaller index
        by_idx = torch.argsort(idx, dim=1)
        idx, exact = torch.gather(idx, 1, by_idx), torch.gather(exact, 1, by_idx)
        order = torch.argsort(exact, dim=1, stable=True)[:, :k]
        out_d[qs:qe] = torch.gather(exact, 1, order)
        out_i[qs:qe] = torch.gather(idx, 1, order)
    return out_d, out_i


def nearest_neighbours(
    queries: torch.Tensor,
    refs: torch.Tensor,
    *,
    chunk: int = 1024,
    ref_chunk: int = 16384,
    exclude: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The nearest reference of each query: (distance float64 [N], index int64 [N]).

    See `k_nearest_neighbours` for how it stays exact and bounded in memory.
    """
    d, i = k_nearest_neighbours(queries, refs, 1, chunk=chunk, ref_chunk=ref_chunk, exclude=exclude)
    return d[:, 0], i[:, 0]


# ----------------------------------------------------------------------------- statistics


def check_images(**named: torch.Tensor) -> None:
    shape = None
    for name, x in named.items():
        if not isinstance(x, torch.Tensor) or x.dtype != torch.uint8 or x.dim() != 4:
            raise UserError(f"{name} must be uint8 images [N, C, H, W]")
        if shape is not None and tuple(x.shape[1:]) != shape:
            raise UserError(
                f"{name} images are {tuple(x.shape[1:])}, the others {shape}: load every set "
                "at the generator's channels and resolution"
            )
        shape = tuple(x.shape[1:])
    if len(named.get("train", ())) < 2:
        raise UserError("the training set needs at least 2 images")
    for name in ("generated", "heldout"):
        if name in named and len(named[name]) < 1:
            raise UserError(f"{name} holds no images")


def embed(
    images: torch.Tensor, extractor: FeatureExtractor | None = None, batch_size: int = 256
) -> torch.Tensor:
    """The vectors distances are measured between: pixels in [0, 1] flattened, or features."""
    if extractor is None:
        return images.reshape(len(images), -1).float().div_(255.0)
    parts = [
        extractor(images[s : s + batch_size]).features.float().cpu()
        for s in range(0, len(images), batch_size)
    ]
    return torch.cat(parts).reshape(len(images), -1)


def find_in_train(heldout: torch.Tensor, train: torch.Tensor) -> torch.Tensor:
    """For each held-out image, the index of a byte-identical training image, or -1."""

    def key(img: torch.Tensor) -> bytes:
        return hashlib.blake2b(img.contiguous().numpy().tobytes(), digest_size=16).digest()

    seen: dict[bytes, int] = {}
    for i in range(len(train)):
        seen.setdefault(key(train[i]), i)
    return torch.tensor([seen.get(key(h), -1) for h in heldout], dtype=torch.long)


def summarise(generated_dist: torch.Tensor, heldout_dist: torch.Tensor) -> dict[str, Any]:
    """Compare nearest-training-image distances of generated samples and held-out images.

    Returns:
        median_/p05_ generated and heldout, ratio_median and ratio_p05 (generated / held-out;
        None where the held-out value is 0), near_copy_threshold (the held-out distances' 1st
        percentile), near_copy_fraction (generated samples at or below it; ~0.01 expected
        without copying), mannwhitney_p (one-sided: generated distances tend to be smaller;
        small means closer to the training set than real unseen data) and the two counts.
    """
    g = generated_dist.detach().double().cpu().numpy()
    h = heldout_dist.detach().double().cpu().numpy()
    med_g, med_h = float(np.median(g)), float(np.median(h))
    p05_g, p05_h = float(np.percentile(g, 5)), float(np.percentile(h, 5))
    threshold = float(np.percentile(h, 1))
    from scipy.stats import mannwhitneyu

    p_value = float(mannwhitneyu(g, h, alternative="less").pvalue)
    return {
        "n_generated": len(g),
        "n_heldout": len(h),
        "median_generated": med_g,
        "median_heldout": med_h,
        "p05_generated": p05_g,
        "p05_heldout": p05_h,
        "ratio_median": med_g / med_h if med_h > 0 else None,
        "ratio_p05": p05_g / p05_h if p05_h > 0 else None,
        "near_copy_threshold": threshold,
        "near_copy_fraction": float(np.mean(g <= threshold)),
        "mannwhitney_p": p_value,
    }


def space_distances(
    generated: torch.Tensor,
    train: torch.Tensor,
    heldout: torch.Tensor,
    in_train: torch.Tensor,
    extractor: FeatureExtractor | None,
    k: int,
    device: str | torch.device,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """(generated distances [N, k], their training indices [N, k], held-out distances, D)."""
    dev = torch.device(device)
    ref = embed(train, extractor).to(dev)
    gen_d, gen_i = k_nearest_neighbours(embed(generated, extractor).to(dev), ref, k)
    held_d, _ = nearest_neighbours(embed(heldout, extractor).to(dev), ref, exclude=in_train)
    return gen_d.cpu(), gen_i.cpu(), held_d.cpu(), int(ref.shape[1])


def space_stats(
    gen_d: torch.Tensor,
    held_d: torch.Tensor,
    dim: int,
    n_train: int,
    n_overlap: int,
    extractor: FeatureExtractor | None,
) -> dict[str, Any]:
    stats: dict[str, Any] = {"space": "pixel" if extractor is None else extractor.name}
    stats.update(summarise(gen_d, held_d))
    stats.update(dim=dim, n_train=n_train, n_heldout_in_train=n_overlap)
    if extractor is not None:
        stats.update(extractor.describe())
    return stats


def memorisation_stats(
    generated: torch.Tensor,
    train: torch.Tensor,
    heldout: torch.Tensor,
    extractor: FeatureExtractor | None = None,
    *,
    device: str | torch.device = "cpu",  # where the neighbour search runs
) -> dict[str, Any]:
    """Nearest-training-image distances of generated samples against a held-out baseline.

    In one space: pixels (`extractor` None) or the extractor's features. See
    `gankit.analysis.memorisation` for how to read the result; held-out images that are also
    training images are measured leave-one-out.

    Args:
        generated: uint8 [N, C, H, W] samples.
        train: uint8 [M, C, H, W], the images the generator was trained on.
        heldout: uint8 [L, C, H, W] real images it never saw.
        extractor: a FeatureExtractor, or None for pixel space.
    Returns:
        `summarise`'s keys plus space, dim, n_train, n_heldout_in_train and, for features, the
        extractor's protocol (name, checksum, resolution, resize filter).
    """
    check_images(generated=generated, train=train, heldout=heldout)
    in_train = find_in_train(heldout, train)
    gen_d, _, held_d, dim = space_distances(
        generated, train, heldout, in_train, extractor, 1, device
    )
    return space_stats(gen_d[:, 0], held_d, dim, len(train), int((in_train >= 0).sum()), extractor)
