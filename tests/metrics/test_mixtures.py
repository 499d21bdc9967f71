"""2D mixtures (ring8, grid25): the data, the mode counter, and a real training run on them."""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import pytest
import torch
from PIL import Image

from gankit.cli import main
from gankit.data import list_datasets, load_dataset
from gankit.data.mixtures import MIXTURES, NUM_POINTS, PointDataset, get_mixture, to_points
from gankit.errors import UserError
from gankit.metrics.mixtures import evaluate_mixture_run, kl_to_uniform, mixture_spec, mode_stats
from gankit.sampling import generate, load


def emit_modes(name: str, modes: list[int], n: int = 2500, spread: float = 1.0) -> torch.Tensor:
    """A stand-in generator that emits only `modes`: n points around them, `spread` std wide.

    Every point is kept within 2.5 std of its mean (clamped), so that each one is high quality.
    """
    means, std = mixture_spec(name)
    g = torch.Generator().manual_seed(0)
    pick = torch.tensor(modes)[torch.arange(n) % len(modes)]
    noise = (torch.randn(n, 2, generator=g, dtype=torch.float64) * spread).clamp(-1.7, 1.7)
    return means[pick] + std * noise  # |noise| <= 1.7 * sqrt(2) < 2.5 std


# ----------------------------------------------------------------------------- the counter


@pytest.mark.parametrize(
    ("name", "k"), [("ring8", 1), ("ring8", 3), ("ring8", 8), ("grid25", 25), ("grid25", 20)]
)
def test_a_generator_emitting_k_modes_is_counted_as_k(name: str, k: int) -> None:
    num = get_mixture(name).num_modes
    chosen = torch.randperm(num, generator=torch.Generator().manual_seed(k))[:k].tolist()
    stats = mode_stats(emit_modes(name, chosen), name)
    assert stats["modes_covered"] == k
    assert stats["num_modes"] == num
    assert stats["high_quality_fraction"] == 1.0
    hit = {i for i, c in enumerate(stats["per_mode_counts"]) if c > 0}
    assert hit == set(chosen)
    assert sum(stats["per_mode_counts"]) == stats["n"] == 2500


def test_min_count_is_a_parameter() -> None:
    # 2,499 points on mode 0 and one on mode 1: mode 1 counts only while one sample suffices
    pts = torch.cat([emit_modes("ring8", [0], n=2499), emit_modes("ring8", [1], n=1)])
    assert mode_stats(pts, "ring8")["modes_covered"] == 2
    assert mode_stats(pts, "ring8", min_count=2)["modes_covered"] == 1


def test_points_four_std_away_are_not_high_quality() -> None:
    means, std = mixture_spec("grid25")
    angle = torch.rand(1000, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ring = torch.stack([torch.cos(angle * 2 * math.pi), torch.sin(angle * 2 * math.pi)], 1)
    far = means[torch.arange(1000) % 25] + 4 * std * ring
    stats = mode_stats(far, "grid25")
    assert stats["high_quality_fraction"] == 0.0
    assert stats["modes_covered"] == 0
    assert stats["kl_to_uniform"] is None  # no high-quality sample: no histogram
    # the same directions at 2.9 std are all high quality; at 4 std they count with a looser rule
    near = means[torch.arange(1000) % 25] + 2.9 * std * ring
    assert mode_stats(near, "grid25")["high_quality_fraction"] == 1.0
    assert mode_stats(far, "grid25", threshold_std=4.5)["modes_covered"] == 25


def test_half_of_the_points_off_the_modes_halve_the_quality() -> None:
    on = emit_modes("ring8", list(range(8)), n=1000)
    off = torch.zeros(1000, 2, dtype=torch.float64)  # the ring's centre: 2 away from every mode
    stats = mode_stats(torch.cat([on, off]), "ring8")
    assert stats["high_quality_fraction"] == pytest.approx(0.5)
    assert stats["modes_covered"] == 8


@pytest.mark.parametrize(("name", "k"), [("ring8", 8), ("ring8", 2), ("grid25", 25), ("grid25", 5)])
def test_kl_to_uniform_is_log_m_over_k(name: str, k: int) -> None:
    num = get_mixture(name).num_modes
    stats = mode_stats(emit_modes(name, list(range(k)), n=100 * k), name)
    assert stats["kl_to_uniform"] == pytest.approx(math.log(num / k), abs=1e-12)
    if k == num:
        assert abs(stats["kl_to_uniform"]) < 1e-12


def test_kl_to_uniform_of_an_uneven_histogram() -> None:
    counts = torch.tensor([3, 1, 0, 0])
    p = torch.tensor([0.75, 0.25])
    assert kl_to_uniform(counts) == pytest.approx(float((p * torch.log(p * 4)).sum()))
    assert kl_to_uniform(torch.zeros(4)) is None


def test_custom_means_and_std() -> None:
    means = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    pts = torch.tensor([[0.05, 0.0], [9.0, 0.0], [10.2, 0.0]])
    stats = mode_stats(pts, (means, 0.1))
    assert stats["per_mode_counts"] == [1, 1]
    assert stats["high_quality_fraction"] == pytest.approx(2 / 3)


def test_real_data_meets_the_protocol() -> None:
    """Of real 2D Gaussian samples, 1 - exp(-4.5) = 98.9% lie within 3 std."""
    for name in MIXTURES:
        ds = load_dataset(name, resolution=1)
        stats = mode_stats(ds.points[:20_000], name)
        assert stats["modes_covered"] == stats["num_modes"]
        assert stats["high_quality_fraction"] == pytest.approx(1 - math.exp(-4.5), abs=0.004)
        assert stats["kl_to_uniform"] < 0.01


# ----------------------------------------------------------------------------- the data


def test_protocol_means_and_stds() -> None:
    ring, ring_std = mixture_spec("ring8")
    assert ring_std == 0.02 and ring.shape == (8, 2)
    torch.testing.assert_close(ring.norm(dim=1), torch.full((8,), 2.0, dtype=torch.float64))
    grid, grid_std = mixture_spec("grid25")
    assert grid_std == 0.05 and grid.shape == (25, 2)
    assert sorted({float(v) for v in grid.flatten()}) == [-4.0, -2.0, 0.0, 2.0, 4.0]
    with pytest.raises(UserError, match="ring8"):
        mixture_spec("ring9")


@pytest.mark.parametrize("name", sorted(MIXTURES))
def test_scaling_round_trip_is_exact(name: str) -> None:
    ds = load_dataset(name, resolution=1)
    assert isinstance(ds, PointDataset)
    assert (ds.channels, ds.resolution, len(ds)) == (2, 1, NUM_POINTS)
    idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(0))[:4096]
    x, y = ds.batch(idx)
    assert y is None and x.dtype == torch.float32 and x.shape == (4096, 2, 1, 1)
    assert float(x.abs().max()) < 0.9  # every mode, 3 std included, well inside Tanh's range
    torch.testing.assert_close(ds.to_points(x), ds.points[idx], rtol=0, atol=0)
    torch.testing.assert_close(to_points(x.view(-1, 2), name), ds.points[idx], rtol=0, atol=0)


def test_points_are_fixed_seeded_and_cut_by_max_images() -> None:
    a = load_dataset("ring8", resolution=1)
    b = load_dataset("ring8", resolution=1, max_images=1000)
    assert len(b) == 1000
    torch.testing.assert_close(b.points, a.points[:1000], rtol=0, atol=0)
    test = load_dataset("ring8", resolution=1, train=False, max_images=1000)
    assert not torch.equal(test.points, b.points)
    share = torch.bincount(a.modes, minlength=8).double() / len(a)
    assert float((share - 1 / 8).abs().max()) < 0.01  # equally weighted modes


def test_points_refuse_image_sizes_and_are_listed() -> None:
    with pytest.raises(UserError, match="2D points"):
        load_dataset("grid25", resolution=28)
    with pytest.raises(UserError, match="2D points"):
        load_dataset("grid25", resolution=1, channels=3)
    assert len(load_dataset("grid25", resolution=1, channels=2)) == NUM_POINTS
    names = dict(list_datasets())
    assert "ring8" in names and "grid25" in names


# ----------------------------------------------------------------------------- training


def _cli(*argv: str | Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def ring_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny MLP GAN trained 3 steps on ring8 through the real `gankit train`."""
    run = tmp_path_factory.mktemp("mixtures") / "ring"
    rc, _, err = _cli(
        "train", "gan", "--data", "ring8", "--kimg", "0.192", "--batch-size", "64",
        "--set", "hidden=16", "--set", "nz=8", "--set", "log_every=1",
        "--sample-every-kimg", "0.128", "--no-progress", "--run-dir", run,
    )  # fmt: skip
    assert rc == 0, err
    return run


def test_gan_trains_on_ring8_and_draws_scatters(ring_run: Path) -> None:
    cfg = json.loads((ring_run / "config.json").read_text())
    assert cfg["run_config"]["model_config"]["channels"] == 2
    assert cfg["run_config"]["model_config"]["resolution"] == 1
    assert cfg["data"]["images"] == NUM_POINTS
    steps = [json.loads(x)["step"] for x in (ring_run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]
    frames = sorted((ring_run / "samples").glob("fakes*.png"))
    assert [f.name for f in frames] == [
        "fakes000000000.png",
        "fakes000000128.png",
        "fakes000000192.png",
    ]
    sizes = set()
    for f in [*frames, ring_run / "samples" / "reals.png"]:
        with Image.open(f) as im:
            sizes.add(im.size)
    assert len(sizes) == 1 and min(next(iter(sizes))) > 100  # a scatter plot, not a 1x1 grid
    assert (ring_run / "progress.gif").is_file() and (ring_run / "losses.png").is_file()


def test_evaluate_mixture_run_matches_the_counter(ring_run: Path) -> None:
    res = evaluate_mixture_run(ring_run, n=500, seed=7)
    assert res["metric"] == "modes500_ring8" and res["n"] == 500
    assert res["generator"] == "G_ema" and res["nimg"] == 192 and res["seeds"] == "7-506"
    x = generate(load(ring_run), range(7, 507))
    assert res["per_mode_counts"] == mode_stats(to_points(x, "ring8"), "ring8")["per_mode_counts"]
    assert evaluate_mixture_run(ring_run, n=500, ema=False)["generator"] == "G"


def test_sampling_a_point_run_as_an_image_is_one_clear_error(
    ring_run: Path, tmp_path: Path
) -> None:
    rc, _, err = _cli("sample", ring_run, "--out", tmp_path / "s.png")
    assert rc == 2 and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and "2D points" in err
    assert not (tmp_path / "s.png").exists()
