"""Memorisation analysis: exact neighbour search, the statistic's two anchors, figure, report."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from PIL import Image

from gankit.analysis.memorisation import memorisation_figure, memorisation_report
from gankit.errors import UserError
from gankit.metrics.features import FeatureExtractor, Features, weights_checksum
from gankit.metrics.neighbours import (
    find_in_train,
    k_nearest_neighbours,
    memorisation_stats,
    nearest_neighbours,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class RandomProjection(FeatureExtractor):
    """A stand-in feature network: a fixed random linear map of the pixels."""

    name = "randproj"
    resolution = 0
    channels = 0
    resize_filter = "none"

    def __init__(self, dim_in: int, dim_out: int = 8, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.proj = torch.nn.Linear(dim_in, dim_out, bias=False)
        with torch.no_grad():
            self.proj.weight.copy_(torch.randn(dim_out, dim_in, generator=g))

    @property
    def checksum(self) -> str:
        return weights_checksum(self.proj)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> Features:
        return Features(self.proj(images.reshape(len(images), -1).float() / 255.0))


def _brute(queries: torch.Tensor, refs: torch.Tensor, k: int, exclude=None):
    d = torch.cdist(queries.double(), refs.double())
    if exclude is not None:
        rows = torch.arange(len(queries))[exclude >= 0]
        d[rows, exclude[exclude >= 0]] = math.inf
    dist, idx = torch.topk(d, k, dim=1, largest=False)
    return dist, idx


def _uniform_images(n: int, seed: int, side: int = 4) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, side, side), generator=g, dtype=torch.uint8)


# ----------------------------------------------------------------------------- search


@pytest.mark.parametrize("offset", [0.0, 1000.0])
def test_search_equals_brute_force(offset: float) -> None:
    """Small blocks force the running top-k merge; the offset tests the cancellation guard."""
    g = torch.Generator().manual_seed(0)
    refs = torch.randn(101, 20, generator=g) + offset
    queries = torch.randn(37, 20, generator=g) + offset
    d, i = nearest_neighbours(queries, refs, chunk=8, ref_chunk=16)
    bd, bi = _brute(queries, refs, 1)
    assert torch.equal(i, bi[:, 0])
    torch.testing.assert_close(d, bd[:, 0], rtol=1e-9, atol=1e-9)

    d3, i3 = k_nearest_neighbours(queries, refs, 3, chunk=8, ref_chunk=16)
    bd3, bi3 = _brute(queries, refs, 3)
    assert torch.equal(i3, bi3)
    torch.testing.assert_close(d3, bd3, rtol=1e-9, atol=1e-9)


def test_search_on_pixel_like_data_and_exclusion() -> None:
    """uint8-valued vectors (many near ties at D = 784) and leave-one-out exclusion."""
    refs = _uniform_images(300, seed=1, side=28).reshape(300, -1).float() / 255.0
    queries = torch.cat([refs[:20], _uniform_images(20, seed=2, side=28).reshape(20, -1) / 255.0])
    exclude = torch.cat([torch.arange(20), torch.full((20,), -1)])
    d, i = nearest_neighbours(queries, refs, chunk=7, ref_chunk=64, exclude=exclude)
    bd, bi = _brute(queries, refs, 1, exclude)
    assert torch.equal(i, bi[:, 0])
    torch.testing.assert_close(d, bd[:, 0], rtol=1e-9, atol=1e-9)
    assert (i[:20] != torch.arange(20)).all() and (d > 0).all()
    # without exclusion the first 20 find themselves at distance 0
    d0, i0 = nearest_neighbours(queries[:20], refs)
    assert torch.equal(i0, torch.arange(20)) and torch.equal(d0, torch.zeros(20).double())


def test_search_refuses_too_few_references() -> None:
    with pytest.raises(UserError, match="neighbours among"):
        k_nearest_neighbours(torch.zeros(2, 3), torch.zeros(2, 3), 3)
    with pytest.raises(UserError, match="same D"):
        nearest_neighbours(torch.zeros(2, 3), torch.zeros(2, 4))


# ----------------------------------------------------------------------------- statistic


def test_exact_copies_are_flagged() -> None:
    """A "generator" that returns training images: ratio 0, every sample a near copy."""
    train_imgs = _uniform_images(400, seed=3)
    heldout = _uniform_images(200, seed=4)
    generated = train_imgs[torch.randperm(400, generator=torch.Generator().manual_seed(5))[:150]]
    for extractor in (None, RandomProjection(16)):
        st = memorisation_stats(generated, train_imgs, heldout, extractor)
        assert st["median_generated"] == 0.0 and st["median_heldout"] > 0
        assert st["ratio_median"] == 0.0
        assert st["near_copy_fraction"] == 1.0
        assert st["mannwhitney_p"] < 1e-10
        assert st["n_generated"] == 150 and st["n_heldout"] == 200 and st["n_train"] == 400
    assert st["space"] == "randproj" and st["dim"] == 8 and "extractor_checksum" in st


def test_same_distribution_gives_ratio_near_one() -> None:
    """Held-out vs "generated" drawn from one distribution: ratio 1 within 0.05.

    Over 20 seeds of this setup the median ratio stayed within 0.017 of 1 (about 0.009
    standard deviation), so 0.05 is a > 5 sigma tolerance that copying (ratio 0) or off-manifold
    samples (ratio > 1) still fail.
    """
    pool = _uniform_images(1600, seed=6)
    st = memorisation_stats(pool[:300], pool[600:], pool[300:600])
    assert abs(st["ratio_median"] - 1.0) < 0.05
    assert abs(st["ratio_p05"] - 1.0) < 0.25
    assert st["near_copy_fraction"] < 0.05
    assert st["n_heldout_in_train"] == 0


def test_noisy_generator_is_farther_than_heldout() -> None:
    """Samples off the data (here: brighter than any training image) give a ratio above 1."""
    pool = _uniform_images(1300, seed=7) // 2  # data in 0..127
    generated = pool[:300] + 128  # shifted out of the data's range
    st = memorisation_stats(generated, pool[600:], pool[300:600])
    assert st["ratio_median"] > 2.0 and st["near_copy_fraction"] == 0.0
    assert st["mannwhitney_p"] > 0.99


def test_heldout_inside_train_is_leave_one_out() -> None:
    train_imgs = _uniform_images(300, seed=8)
    heldout = train_imgs[100:160]
    assert torch.equal(find_in_train(heldout, train_imgs), torch.arange(100, 160))
    st = memorisation_stats(_uniform_images(50, seed=9), train_imgs, heldout)
    assert st["n_heldout_in_train"] == 60
    assert st["median_heldout"] > 0 and st["near_copy_threshold"] > 0
    assert abs(st["ratio_median"] - 1.0) < 0.15


def test_stats_refuse_mismatched_images() -> None:
    with pytest.raises(UserError, match="channels and resolution"):
        memorisation_stats(
            _uniform_images(4, 0), _uniform_images(4, 0, side=8), _uniform_images(4, 0)
        )
    with pytest.raises(UserError, match="uint8"):
        memorisation_stats(torch.zeros(4, 1, 4, 4), _uniform_images(4, 0), _uniform_images(4, 0))


# ----------------------------------------------------------------------------- figure


@pytest.mark.parametrize("channels", [1, 3])
def test_figure_is_a_png(tmp_path: Path, channels: int) -> None:
    g = torch.Generator().manual_seed(0)
    train_imgs = torch.randint(0, 256, (40, channels, 8, 8), generator=g, dtype=torch.uint8)
    generated = torch.randint(0, 256, (20, channels, 8, 8), generator=g, dtype=torch.uint8)
    flat = generated.reshape(20, -1).float()
    d, i = k_nearest_neighbours(flat, train_imgs.reshape(40, -1).float(), 3)
    path = memorisation_figure(generated, train_imgs, d, i, tmp_path / "m.png", n=10)
    assert path.read_bytes()[:8] == PNG_MAGIC
    with Image.open(path) as im:
        im.verify()
    d1, i1 = nearest_neighbours(flat, train_imgs.reshape(40, -1).float())
    one = memorisation_figure(generated, train_imgs, d1, i1, tmp_path / "one.png", n=4)
    assert one.read_bytes()[:8] == PNG_MAGIC


# ----------------------------------------------------------------------------- report


def test_report_end_to_end(digits_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = memorisation_report(
        digits_run, n=48, n_heldout=40, extractor=RandomProjection(16 * 16), out_dir=out
    )
    proto = res["protocol"]
    assert proto["generator"] == "G_ema" and proto["nimg"] == 64 and proto["seeds"] == "0-47"
    assert proto["n_train"] == 4000 and proto["n_heldout"] == 40
    # the digits' test split is disjoint from their training split: nothing leave-one-out
    assert proto["n_heldout_in_train"] == 0 and not any("leave-one-out" in s for s in res["notes"])
    assert set(res["spaces"]) == {"pixel", "randproj"}
    for name, st in res["spaces"].items():
        assert st["n_generated"] == 48 and st["n_heldout"] == 40
        assert st["median_generated"] > 0 and st["median_heldout"] > 0
        assert math.isfinite(st["ratio_median"]) and 0 <= st["mannwhitney_p"] <= 1
        path = Path(res["figures"][name])
        assert path == out / f"memorisation-{name}.png"
        assert path.read_bytes()[:8] == PNG_MAGIC
    assert res["spaces"]["pixel"]["dim"] == 256 and res["spaces"]["randproj"]["dim"] == 8
    saved = json.loads((out / "memorisation.json").read_text())
    assert saved["spaces"]["pixel"] == pytest.approx(res["spaces"]["pixel"])
    # the same seeds give the same numbers
    again = memorisation_report(digits_run, n=48, n_heldout=40, out_dir=tmp_path / "again")
    assert again["spaces"]["pixel"] == res["spaces"]["pixel"]


def test_held_out_images_inside_the_training_set_are_measured_leave_one_out(
    digits_run: Path, tmp_path: Path
) -> None:
    # sklearn-digits' held-out images are part of its training set
    res = memorisation_report(
        digits_run, data="sklearn-digits", n=16, n_heldout=40, out_dir=tmp_path, figure_n=4
    )
    proto = res["protocol"]
    assert proto["n_train"] == 1797 and proto["n_heldout"] == 40
    assert proto["n_heldout_in_train"] == 40 and any("leave-one-out" in s for s in res["notes"])


def test_report_refuses_no_samples(digits_run: Path) -> None:
    with pytest.raises(UserError, match="n must be at least 1"):
        memorisation_report(digits_run, n=0)


# ----------------------------------------------------------------------------- the command's API


def test_memorisation_run_is_the_command(digits_run: Path, capsys, tmp_path, monkeypatch) -> None:
    """`memorisation_run` prints and writes what `gankit memorisation` does, feature space too."""
    from gankit.analysis import memorisation_run
    from tests.analysis.test_inside import CLASSIFIER, same_as_cli

    monkeypatch.chdir(tmp_path)
    argv = ("--n", "12", "--seed", "3", "--features", "mnistcnn", "--evaluator", CLASSIFIER)
    argv += ("--data", "sklearn-digits")  # whose held-out split overlaps: a note to print
    res = same_as_cli(
        capsys,
        ("memorisation", digits_run, *argv, "--out", "mem"),
        lambda: memorisation_run(
            digits_run,
            n=12,
            seed=3,
            features="mnistcnn",
            evaluator=str(CLASSIFIER),
            out="mem",
            data="sklearn-digits",
        ),  # fmt: skip
        ["mem/memorisation.json"],
    )
    assert set(res.report["spaces"]) == {"pixel", "mnistcnn"}
    assert res.report["protocol"]["seeds"] == "3-14"
    assert any(line.startswith("note: ") for line in res.lines())  # the leave-one-out note
    assert res.lines()[-1] == "figure (mnistcnn): mem/memorisation-mnistcnn.png"


def test_memorisation_lines_show_an_undefined_ratio_as_nan() -> None:
    from gankit.analysis import MemorisationRun

    st = {"median_generated": 0.5, "median_heldout": 0.0, "ratio_median": None,
          "near_copy_fraction": 0.25}  # fmt: skip
    lines = MemorisationRun({"spaces": {"pixel": st}, "figures": {}}).lines()
    assert lines == [
        "    pixel: median distance to the nearest training image: generated 0.5, held-out "
        "real 0 (ratio nan); near copies 25.0%"
    ]
