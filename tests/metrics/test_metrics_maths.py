"""The maths of the metrics, on inputs whose answers are known in closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch
from torch_fidelity.metric_prc import prc_features_to_metric

from gankit.metrics.maths import (
    GaussianStats,
    frechet_distance,
    gaussian_stats,
    inception_score,
    kernel_distance,
    knn_radii,
    prdc,
)


def _closed_form_fd(mu1, s1, mu2, s2) -> float:
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def test_frechet_distance_of_a_set_with_itself_is_zero() -> None:
    x = torch.randn(400, 12, generator=torch.Generator().manual_seed(0))
    s = gaussian_stats(x)
    assert abs(frechet_distance(s, s)) < 1e-8


def test_frechet_distance_matches_the_closed_form_for_known_gaussians() -> None:
    rng = np.random.default_rng(1)
    d = 6
    a = rng.normal(size=(d, d))
    b = rng.normal(size=(d, d))
    s1 = a @ a.T + 0.1 * np.eye(d)  # full, non-diagonal covariances
    s2 = b @ b.T + 0.1 * np.eye(d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    got = frechet_distance(GaussianStats(mu1, s1, 0), GaussianStats(mu2, s2, 0))
    assert got == pytest.approx(_closed_form_fd(mu1, s1, mu2, s2), rel=1e-8)
    # Diagonal case written out by hand: |mu1 - mu2|^2 + sum (sqrt(v1) - sqrt(v2))^2.
    v1, v2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    m1, m2 = np.zeros(3), np.array([1.0, 2.0, 0.0])
    got = frechet_distance(GaussianStats(m1, np.diag(v1), 0), GaussianStats(m2, np.diag(v2), 0))
    assert got == pytest.approx(5.0 + 1.0 + 1.0 + 0.0, rel=1e-10)


def test_frechet_distance_from_samples_approaches_the_population_value() -> None:
    g = torch.Generator().manual_seed(2)
    n, d = 20000, 4
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randn(n, d, generator=g, dtype=torch.float64) * 2.0 + 1.0
    # Population: |mu|^2 = 4, each dim (1 - 2)^2 = 1 -> 4 + 4 = 8.
    got = frechet_distance(gaussian_stats(x), gaussian_stats(y))
    assert got == pytest.approx(8.0, rel=0.03)


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """KID written out term by term (cubic kernel, gamma = 1/d, coef 1)."""
    d = x.shape[1]

    def k(a, b):
        return (a @ b / d + 1.0) ** 3

    m = len(x)
    kxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kyy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kxy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return kxx + kyy - 2 * kxy


def test_kid_is_the_unbiased_mmd_on_known_inputs() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(12, 5))
    y = rng.normal(size=(12, 5)) + 0.5
    mean, std = kernel_distance(torch.from_numpy(x), torch.from_numpy(y), subsets=1, subset_size=12)
    # One subset of all points: the estimate is exactly the unbiased MMD^2, whatever the order.
    assert mean == pytest.approx(_mmd2_unbiased(x, y), rel=1e-10)
    assert std == 0.0


def test_kid_has_zero_mean_for_equal_distributions() -> None:
    # Unbiased: averaged over many independent small draws, KID of equal distributions is 0
    # within its standard error, while the biased (V-statistic) estimate would stay > 0.
    g = torch.Generator().manual_seed(4)
    vals = []
    for _ in range(200):
        x = torch.randn(20, 3, generator=g, dtype=torch.float64)
        y = torch.randn(20, 3, generator=g, dtype=torch.float64)
        vals.append(kernel_distance(x, y, subsets=1, subset_size=20)[0])
    v = np.array(vals)
    sem = v.std() / math.sqrt(len(v))
    assert abs(v.mean()) < 3 * sem
    # ... and a real shift is detected far above that noise.
    y = torch.randn(200, 3, generator=g, dtype=torch.float64) + 1.0
    x = torch.randn(200, 3, generator=g, dtype=torch.float64)
    assert kernel_distance(x, y, subsets=5, subset_size=100)[0] > 20 * sem


def test_inception_score_of_known_predictions() -> None:
    k = 10
    confident = torch.full((1000, k), -50.0)
    confident[torch.arange(1000), torch.arange(1000) % k] = 50.0
    mean, _ = inception_score(confident, splits=1)
    assert mean == pytest.approx(k, rel=1e-6)  # sure and balanced: the maximum, K
    # Ten shuffled splits of 100 are not exactly balanced, so each scores a little below K.
    assert 9.0 < inception_score(confident, splits=10)[0] < k
    one_class = torch.zeros(1000, k)
    one_class[:, 3] = 50.0
    assert inception_score(one_class)[0] == pytest.approx(1.0, rel=1e-6)  # collapsed: 1
    uniform = torch.zeros(1000, k)
    assert inception_score(uniform)[0] == pytest.approx(1.0, rel=1e-6)  # unsure: 1


def test_prdc_on_constructed_point_sets() -> None:
    real = torch.arange(10, dtype=torch.float64)[:, None]  # 0..9 on a line, k=1 radius 1
    fake = torch.tensor([[0.5], [100.0]], dtype=torch.float64)
    out = prdc(real, fake, k=1)
    # 0.5 lies in the balls of 0 and 1; 100 in none.
    assert out["precision"] == pytest.approx(0.5)
    assert out["density"] == pytest.approx((2 + 0) / (1 * 2))
    assert out["coverage"] == pytest.approx(2 / 10)
    # The fake balls have radius 99.5 (each other's distance): every real point is inside.
    assert out["recall"] == pytest.approx(1.0)
    far = prdc(real, fake + 1000.0, k=1)
    assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}
    same = prdc(real, real.clone(), k=3)
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0


def test_precision_recall_match_torch_fidelity() -> None:
    g = torch.Generator().manual_seed(5)
    real = torch.randn(300, 8, generator=g)
    fake = torch.randn(250, 8, generator=g) * 1.3 + 0.2
    ours = prdc(real, fake, k=3)
    theirs = prc_features_to_metric(fake, real, prc_neighborhood=3, verbose=False)
    assert ours["precision"] == pytest.approx(theirs["precision"], abs=1e-6)
    assert ours["recall"] == pytest.approx(theirs["recall"], abs=1e-6)  # theirs: float32 mean


def test_knn_radii_excludes_the_point_itself() -> None:
    x = torch.tensor([[0.0], [1.0], [3.0]])
    torch.testing.assert_close(knn_radii(x, 1), torch.tensor([1.0, 1.0, 2.0], dtype=torch.float64))
    with pytest.raises(ValueError):
        knn_radii(x, 3)
