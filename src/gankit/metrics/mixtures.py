"""Mode collapse on the 2D mixtures ring8 and grid25: modes covered, sample quality, balance.

The protocol follows VEEGAN and PacGAN (whose published evaluation code we read for the rules):

- Draw 2,500 samples from the generator (PacGAN).
- Assign each sample to its nearest mode mean. It is *high quality* if it lies within
  `threshold_std` (3) standard deviations of that mean; with isotropic modes of one std this
  is the Euclidean distance < 3 std, which is PacGAN's variance-scaled distance < 3. (Of real
  data, 1 - exp(-4.5) = 98.9% is high quality by this rule, since the modes are 2D.)
- A mode is *covered* when it receives at least `min_count` (1) high-quality samples: PacGAN
  counts a mode as recovered when it has at least one.
- The balance of the covered modes is KL(p || uniform) in nats, where p is the histogram of
  the high-quality samples over the M modes: 0 when they spread evenly, log(M / k) when they
  spread evenly over only k modes, log(M) when they all fall in one.

The numbers are computed in the mixture's own units, after undoing the dataset's scaling.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data.mixtures import MIXTURES, get_mixture, to_points
from ..errors import UserError
from ..latent import prior_of
from ..modes import eval_mode
from ..sampling import generate, load
from .kinds import MetricRequest

DEFAULT_SAMPLES = 2500  # PacGAN's evaluation sample count
DEFAULT_THRESHOLD_STD = 3.0  # a high-quality sample lies within this many std of its mode
DEFAULT_MIN_COUNT = 1  # high-quality samples a mode needs to count as covered


def mixture_spec(name: str) -> tuple[torch.Tensor, float]:
    """The means (float64 [M, 2]) and the common std of the mixture `name` (ring8, grid25)."""
    mix = get_mixture(name)
    return mix.means_tensor(), mix.std


def _as_points(points: torch.Tensor | np.ndarray) -> torch.Tensor:
    x = torch.as_tensor(points).detach().cpu().to(torch.float64)
    if x.dim() != 2 or x.shape[1] != 2:
        raise ValueError(f"points must be [N, 2], got {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError("no points to evaluate")
    return x


def kl_to_uniform(counts: torch.Tensor) -> float | None:
    """KL(p || uniform) in nats of the histogram `counts` over M bins; None if it is empty."""
    counts = counts.to(torch.float64)
    total = float(counts.sum())
    if total <= 0:
        return None
    p = counts[counts > 0] / total
    return float((p * torch.log(p * counts.numel())).sum().clamp_min(0.0))


def mode_stats(
    points: torch.Tensor | np.ndarray,
    mixture: str | tuple[torch.Tensor, float],
    threshold_std: float = DEFAULT_THRESHOLD_STD,
    min_count: int = DEFAULT_MIN_COUNT,
) -> dict[str, Any]:
    """Mode coverage of 2D samples, in the mixture's own units.

    Args:
        points: [N, 2] samples (original units, not the generator's Tanh range).
        mixture: a mixture name (ring8, grid25) or (means [M, 2], std).
        threshold_std: a sample is high quality within this many std of its nearest mean.
        min_count: high-quality samples a mode needs to count as covered.
    Returns:
        modes_covered, num_modes, high_quality_fraction, kl_to_uniform (None when no sample is
        high quality), n, per_mode_counts (high-quality samples per mode), threshold_std and
        min_count.
    """
    if not threshold_std > 0:
        raise ValueError(f"threshold_std must be > 0, got {threshold_std}")
    if min_count < 1:
        raise ValueError(f"min_count must be >= 1, got {min_count}")
    if isinstance(mixture, str):
        means, std = mixture_spec(mixture)
    else:
        means, std = torch.as_tensor(mixture[0], dtype=torch.float64), float(mixture[1])
    x = _as_points(points)
    dist = torch.cdist(x, means)  # [N, M]
    nearest_dist, nearest = dist.min(dim=1)
    good = nearest_dist < threshold_std * std
    counts = torch.bincount(nearest[good], minlength=means.shape[0])
    return {
        "modes_covered": int((counts >= min_count).sum()),
        "num_modes": int(means.shape[0]),
        "high_quality_fraction": float(good.double().mean()),
        "kl_to_uniform": kl_to_uniform(counts),
        "n": int(x.shape[0]),
        "per_mode_counts": [int(c) for c in counts],
        "threshold_std": float(threshold_std),
        "min_count": int(min_count),
    }


def evaluate_mixture_run(
    run_dir: str | os.PathLike,
    n: int = DEFAULT_SAMPLES,
    seed: int = 0,
    ema: bool = True,
    threshold_std: float = DEFAULT_THRESHOLD_STD,
    min_count: int = DEFAULT_MIN_COUNT,
    device: str = "cpu",
) -> dict[str, Any]:
    """`mode_stats` of `n` samples (seeds seed..seed+n-1) from a run trained on ring8/grid25.

    Args:
        run_dir: run folder or checkpoint file.
        n: samples to draw (PacGAN: 2,500).
        seed: the first seed; the same seeds give the same samples.
        ema: use G_ema when the checkpoint has it (as `gankit sample` does), else G.
        threshold_std, min_count: see `mode_stats`.
        device: where to run the generator.
    Returns:
        The statistics plus the protocol: metric (e.g. modes2500_ring8), data, seeds, generator
        (G or G_ema), nimg and checkpoint.
    """
    if n < 1:
        raise UserError(f"n must be at least 1 (got {n})")
    run = load(run_dir, device=device, ema=ema)
    data = run.checkpoint.meta.get("data", {}).get("name")
    if data not in MIXTURES:
        raise UserError(
            f"{run.checkpoint.path} was trained on {data!r}, not on a 2D mixture "
            f"({', '.join(MIXTURES)})"
        )
    x = generate(run, range(seed, seed + n))
    stats = mode_stats(to_points(x, data), data, threshold_std, min_count)
    return {
        "metric": f"modes{n}_{data}",
        "data": data,
        "seeds": f"{seed}-{seed + n - 1}",
        "generator": "G_ema" if run.used_ema else "G",
        "nimg": run.checkpoint.nimg,
        "checkpoint": str(run.checkpoint.path),
        **stats,
    }


@torch.no_grad()
def mixture_record(
    G: nn.Module, req: MetricRequest, *, seed: int, device: str, describe: str
) -> dict[str, Any]:
    """The PacGAN protocol's numbers for a generator of 2D points (seeds seed..seed+n-1)."""
    t0 = time.perf_counter()
    z = prior_of(G).from_seeds(list(range(seed, seed + req.n))).to(device)
    with eval_mode(G):
        x = torch.cat([G(z[i : i + 1000]).float().cpu() for i in range(0, req.n, 1000)])
    out = mode_stats(to_points(x, req.features), req.features)
    kl = out["kl_to_uniform"]
    return {
        "metric": req.name,
        "value": float(out["modes_covered"]),
        "higher_is_better": True,
        "values": {
            "modes_covered": float(out["modes_covered"]),
            "num_modes": float(out["num_modes"]),
            "high_quality_fraction": out["high_quality_fraction"],
            "kl_to_uniform": kl,  # None when no sample is high quality (JSON null)
        },
        "per_mode_counts": out["per_mode_counts"],
        "protocol": {
            "kind": "modes",
            "description": "2D mixture: modes with a high-quality sample, HQ share, KL to uniform",
            "n_gen": req.n,
            "n_real": 0,
            "reference": f"{req.features} means and std",
            "threshold_std": out["threshold_std"],
            "min_count": out["min_count"],
            "seed": seed,
            "generator": describe,
            "extractor": req.features,
            "extractor_checksum": "none",
            "resize_filter": "none",
        },
        "seconds": round(time.perf_counter() - t0, 3),
    }


__all__ = [
    "DEFAULT_MIN_COUNT",
    "DEFAULT_SAMPLES",
    "DEFAULT_THRESHOLD_STD",
    "evaluate_mixture_run",
    "kl_to_uniform",
    "mixture_record",
    "mixture_spec",
    "mode_stats",
]
