"""The statistics behind the metrics, on feature tensors.

Frechet distance, KID and Inception Score are torch-fidelity's own functions (the reference
implementation most papers' numbers come from), wrapped so that they take plain tensors and
explicit seeds. Precision / recall / density / coverage (Kynkaanniemi et al. 2019; Naeem et al.
2020) are written here because no well-kept library ships all four with one k; precision and
recall are checked against torch-fidelity's in the tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch_fidelity.metric_fid import fid_statistics_to_metric
from torch_fidelity.metric_isc import isc_features_to_metric
from torch_fidelity.metric_kid import kid_features_to_metric


@dataclass
class GaussianStats:
    """Mean and covariance of a feature set (float64), the summary FID compares."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int

    def to_tensors(self) -> dict[str, torch.Tensor]:
        return {
            "mu": torch.from_numpy(self.mu),
            "sigma": torch.from_numpy(self.sigma),
            "n": torch.tensor(self.n),
        }

    @classmethod
    def from_tensors(cls, t: dict[str, torch.Tensor]) -> GaussianStats:
        return cls(mu=t["mu"].double().numpy(), sigma=t["sigma"].double().numpy(), n=int(t["n"]))


def gaussian_stats(features: torch.Tensor) -> GaussianStats:
    """Mean and unbiased covariance of features [N, D], computed in float64."""
    if features.dim() != 2 or features.shape[0] < 2:
        raise ValueError("need a [N, D] feature tensor with N >= 2")
    f = features.detach().cpu().double().numpy()
    return GaussianStats(mu=f.mean(axis=0), sigma=np.cov(f, rowvar=False), n=f.shape[0])


def frechet_distance(a: GaussianStats, b: GaussianStats) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) (Heusel et al. 2017).

    torch-fidelity's form: the trace of the matrix square root is the sum of the square roots
    of the eigenvalues of S_a S_b, which avoids sqrtm's instability on near-singular products.
    """
    out = fid_statistics_to_metric(
        {"mu": a.mu, "sigma": np.atleast_2d(a.sigma)},
        {"mu": b.mu, "sigma": np.atleast_2d(b.sigma)},
        verbose=False,
    )
    return float(out["frechet_inception_distance"])


def kernel_distance(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """KID (Binkowski et al. 2018): unbiased MMD^2 with the cubic polynomial kernel.

    Averaged over `subsets` random subsets of `subset_size` from each set (capped at the
    smaller set). Returns (mean, std over subsets).
    """
    size = min(subset_size, x.shape[0], y.shape[0])
    if size < 2:
        raise ValueError("KID needs at least 2 samples in each set")
    out = kid_features_to_metric(
        x.detach().cpu().double(),
        y.detach().cpu().double(),
        kid_subsets=subsets,
        kid_subset_size=size,
        rng_seed=seed,
        verbose=False,
    )
    return float(out["kernel_inception_distance_mean"]), float(out["kernel_inception_distance_std"])


def inception_score(
    logits: torch.Tensor, *, splits: int = 10, seed: int = 0
) -> tuple[float, float]:
    """exp(E_x KL(p(y|x) || p(y))) from class logits [N, K], mean and std over `splits` parts."""
    splits = max(1, min(splits, logits.shape[0]))
    out = isc_features_to_metric(
        logits.detach().cpu().double(), splits=splits, shuffle=True, rng_seed=seed
    )
    return float(out["inception_score_mean"]), float(out["inception_score_std"])


def _pairwise(a: torch.Tensor, b: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """Euclidean distances [len(a), len(b)] in float64, in row chunks to bound memory."""
    a, b = a.double(), b.double()
    return torch.cat([torch.cdist(a[i : i + chunk], b) for i in range(0, a.shape[0], chunk)])


def knn_radii(x: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each point to its k-th nearest other point of the same set."""
    if x.shape[0] <= k:
        raise ValueError(f"k={k} needs more than {k} points, got {x.shape[0]}")
    d = _pairwise(x, x)
    # The point itself is at distance 0 and comes first; its k-th neighbour is index k.
    return d.kthvalue(k + 1, dim=1).values


def prdc(real: torch.Tensor, fake: torch.Tensor, *, k: int = 5) -> dict[str, float]:
    """Precision, recall (Kynkaanniemi et al. 2019), density and coverage (Naeem et al. 2020).

    Each real point owns a ball reaching its k-th nearest real neighbour; each fake point one
    reaching its k-th nearest fake neighbour.
      precision: share of fake points inside at least one real ball (fidelity)
      recall:    share of real points inside at least one fake ball (diversity)
      density:   balls containing each fake point, summed, / (k * #fake) (1 for matched sets)
      coverage:  share of real balls that contain at least one fake point
    """
    real, fake = real.detach().cpu(), fake.detach().cpu()
    r_real = knn_radii(real, k)
    r_fake = knn_radii(fake, k)
    d = _pairwise(real, fake)  # [R, F]
    inside_real = d <= r_real[:, None]  # fake j in ball of real i
    precision = inside_real.any(dim=0).double().mean()
    recall = (d <= r_fake[None, :]).any(dim=1).double().mean()
    density = inside_real.double().sum() / (k * fake.shape[0])
    coverage = inside_real.any(dim=1).double().mean()
    return {
        "precision": float(precision),
        "recall": float(recall),
        "density": float(density),
        "coverage": float(coverage),
    }
