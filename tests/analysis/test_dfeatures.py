"""The discriminator as a feature extractor (DCGAN paper) and the linear probe."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gankit.analysis.dfeatures import (
    discriminator_features,
    feature_size,
    few_labels,
    linear_probe,
    probe_report,
)
from gankit.errors import UserError
from gankit.models import create_model
from tests.conftest import FIXTURES_V1, tiny_overrides

FIXTURES = FIXTURES_V1


def _dcgan_d(seed: int = 0):
    torch.manual_seed(seed)
    return create_model("dcgan", **tiny_overrides("dcgan")).D  # 16x16, ndf 8


def test_feature_size_follows_the_formula():
    D = _dcgan_d()
    x = torch.rand(5, 1, 16, 16) * 2 - 1
    feats = discriminator_features(D, x)
    # two LeakyReLU layers: 8 channels at 8x8 and 16 at 4x4, each pooled to 4x4
    assert feats.shape == (5, (8 + 16) * 16)
    assert feature_size(D, 1, 16) == feats.shape[1]


def test_features_are_each_layer_max_pooled_to_4x4():
    D = _dcgan_d().eval()
    x = torch.rand(3, 1, 16, 16) * 2 - 1
    first = F.leaky_relu(D.net.main[0](x), 0.2)  # the first conv + activation, by hand
    expected = F.adaptive_max_pool2d(first, 4).flatten(1)
    torch.testing.assert_close(discriminator_features(D, x)[:, : expected.shape[1]], expected)
    assert D.training is False  # left as it was


def test_features_use_running_statistics_not_the_batch():
    D = _dcgan_d()
    x = torch.rand(6, 1, 16, 16) * 2 - 1
    alone = discriminator_features(D, x[:1])
    together = discriminator_features(D, x)[:1]
    torch.testing.assert_close(alone, together)  # eval mode: one image does not see the others


def test_probe_separates_separable_features():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 20, generator=g) * 5
    y = torch.arange(300) % 3
    x = centres[y] + torch.randn(300, 20, generator=g)
    res = linear_probe(x[:150], y[:150], x[150:], y[150:], C=1.0)
    assert res.accuracy >= 0.99
    shuffled = y[:150][torch.randperm(150, generator=g)]
    chance = linear_probe(x[:150], shuffled, x[150:], y[150:])
    assert chance.accuracy < 0.6  # with labels that mean nothing it cannot score


def test_few_labels_draws_k_per_class():
    labels = torch.arange(100) % 4
    idx = few_labels(labels, 5, seed=1)
    assert torch.bincount(labels[idx]).tolist() == [5, 5, 5, 5]
    assert torch.equal(idx, few_labels(labels, 5, seed=1))
    assert not torch.equal(idx, few_labels(labels, 5, seed=2))
    with pytest.raises(UserError, match="only 25 examples"):
        few_labels(labels, 30)


def test_probe_report_compares_three_feature_sets():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(120) % 3
    images = (torch.rand(120, 1, 16, 16, generator=g) * 0.2 - 1).clone()
    for c in range(3):  # a bright bar whose position is the class
        images[y == c, :, 2 + 5 * c : 5 + 5 * c, :] = 1.0
    res = probe_report(_dcgan_d(0), _dcgan_d(1), images[:60], y[:60], images[60:], y[60:],
                       per_class=10)  # fmt: skip
    assert [r.name for r in res] == ["trained D", "random D", "pixels"]
    assert all(r.train_examples == 30 and r.test_examples == 60 for r in res)
    assert res[2].accuracy == 1.0  # the bars are linearly separable in pixels


def test_probe_chooses_c_by_cross_validation_on_the_training_labels():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 20, generator=g) * 5
    y = torch.arange(300) % 3
    x = centres[y] + torch.randn(300, 20, generator=g)
    res = linear_probe(x[:150], y[:150], x[150:], y[150:], C=(0.001, 1.0))
    assert res.C in (0.001, 1.0) and res.cv_accuracy is not None and res.cv_accuracy > 0.9
    with pytest.raises(UserError, match="2 labelled examples"):
        linear_probe(x[:4], torch.tensor([0, 1, 2, 2]), x[4:10], y[4:10], C=(0.1, 1.0))


def test_a_conditional_d_never_sees_the_true_labels():
    """Images carry no class information; a probe that fed D the true labels would read the
    class off D's label plane and score ~100%. With a fixed label it stays near chance."""
    from gankit.models import create_model
    from tests.conftest import tiny_overrides

    torch.manual_seed(0)
    D = create_model("cdcgan", **tiny_overrides("cdcgan")).D.eval()
    g = torch.Generator().manual_seed(1)
    images = torch.rand(240, 1, 16, 16, generator=g) * 2 - 1
    y = torch.randint(0, 3, (240,), generator=g)
    res = probe_report(D, D, images[:120], y[:120], images[120:], y[120:], per_class=20,
                       C=1.0, fixed_label=0)  # fmt: skip
    assert res[0].accuracy < 0.6
    leaked = discriminator_features(D, images, y)  # what feeding the true labels would give
    tr, te = few_labels(y[:120], 20), torch.arange(120, 240)
    cheat = linear_probe(leaked[tr], y[tr], leaked[te], y[te], C=1.0)
    assert cheat.accuracy > 0.9  # so the test above can fail


# ----------------------------------------------------------------------------- the commands' API


@pytest.mark.parametrize("model", ["dcgan", "cdcgan"])
def test_probe_run_is_the_command(model, capsys, tmp_path, monkeypatch):
    """`probe_run` prints and writes what `gankit probe` does (a conditional D sees label 0)."""
    from gankit.analysis import probe_run
    from tests.analysis.test_inside import same_as_cli

    monkeypatch.chdir(tmp_path)
    run = FIXTURES / model
    res = same_as_cli(
        capsys,
        ("probe", run, "--per-class", "3", "--test", "30", "--C", "0.01", "--out", "p.json"),
        lambda: probe_run(run, per_class=3, test=30, C=0.01, out="p.json"),
        ["p.json"],
    )
    assert res.path == Path("p.json") and res.figure == Path("p.png") and res.figure.exists()
    assert [r.name for r in res.results] == ["trained D", "random D", "pixels"]
    assert res.random_seed == res.report["random_d_seed"] == 1  # the training seed + 1
    assert all(r.train_examples == 30 and r.test_examples == 30 for r in res.results)


def test_probe_run_needs_labels_and_features_run_an_npz(tmp_path):
    from gankit.analysis import features_run, probe_run

    data = "npz:" + str(_unlabelled(tmp_path))
    with pytest.raises(UserError, match="no class labels"):
        probe_run(FIXTURES / "dcgan", data=data, out=tmp_path / "p.json")
    res = features_run(FIXTURES / "dcgan", data=data, out=tmp_path / "f.npz")
    with np.load(res.path) as f:
        assert f["x"].shape == (20, res.dims) and f["y"].shape == (0,)  # no labels: y is empty
    with pytest.raises(UserError, match=r"\.npz"):
        features_run(FIXTURES / "dcgan", n=2, out=tmp_path / "f.txt")
    assert not (tmp_path / "p.json").exists() and not (tmp_path / "f.txt").exists()


def _unlabelled(tmp_path: Path) -> Path:
    path = tmp_path / "faces.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.integers(0, 256, (20, 16, 16, 1), dtype=np.uint8))
    return path
