"""`--mbstd`: D also sees how much its batch's images vary (per label for conditional models)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gankit.errors import UserError
from gankit.models import MODELS, SpreadDiscriminator, batch_spread, create_model
from tests.conftest import tiny_overrides

SCORING = [n for n in MODELS.names() if MODELS.get(n).d_output == "logit"]


def _spread_by_hand(x: torch.Tensor) -> torch.Tensor:
    return (x - x.mean(0)).square().mean(0).add(1e-8).sqrt().mean()


def test_the_plane_is_the_std_over_the_samples_of_one_label() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 2, 4, 4, generator=g)
    y = torch.tensor([0, 1, 0, 1, 1, 2])
    plane = batch_spread(x, y, num_classes=4)
    assert plane.shape == (6, 1, 4, 4)
    expected = {0: _spread_by_hand(x[[0, 2]]), 1: _spread_by_hand(x[[1, 3, 4]])}
    for i, label in enumerate(y.tolist()):
        want = expected.get(label, torch.tensor(1e-4))  # alone in its group: ~0
        torch.testing.assert_close(plane[i], want.expand(1, 4, 4))
    # no labels: the whole batch is one group
    torch.testing.assert_close(batch_spread(x, None, 0), _spread_by_hand(x).expand(6, 1, 4, 4))


def test_a_batch_collapsed_within_each_class_shows_no_spread() -> None:
    g = torch.Generator().manual_seed(1)
    per_class = torch.randn(3, 1, 8, 8, generator=g)
    y = torch.arange(12) % 3
    collapsed = per_class[y]  # one image per class, different across classes
    varied = collapsed + 0.5 * torch.randn(12, 1, 8, 8, generator=g)
    assert batch_spread(collapsed, y, 3).max() < 1e-3
    assert batch_spread(varied, y, 3).min() > 0.3
    assert batch_spread(collapsed, None, 0).min() > 0.3  # the whole batch still varies


def test_gradients_reach_every_sample_of_a_group_through_the_plane() -> None:
    x = torch.randn(4, 1, 4, 4, requires_grad=True)
    y = torch.tensor([0, 0, 1, 1])
    batch_spread(x, y, 2)[0].sum().backward()
    moved = x.grad.flatten(1).abs().sum(1) > 0
    assert moved.tolist() == [True, True, False, False]


@pytest.mark.parametrize("name", SCORING)
def test_every_scoring_model_takes_it_and_its_score_sees_the_group(name: str) -> None:
    torch.manual_seed(0)
    spec = MODELS.get(name)
    over = tiny_overrides(name)
    plain, spread = create_model(name, **over), create_model(name, mbstd=True, **over)
    assert isinstance(spread.D, SpreadDiscriminator)
    size = {k: sum(p.numel() for p in m.D.parameters()) for k, m in (("a", plain), ("b", spread))}
    assert size["b"] > size["a"]  # the inner D is built for one more input channel
    n = 6
    x = torch.rand(n, 1, 16, 16) * 2 - 1
    y = torch.tensor([0, 1, 0, 1, 2, 2]) if spec.conditional else None
    D = spread.D.eval()  # batch norm on running statistics: samples meet only in the plane
    with torch.no_grad():
        out = D(x, y)
        out = out[0] if isinstance(out, tuple) else out
        assert out.shape[0] == n
        other = x.clone()
        other[2] = -other[2]  # same label as sample 0 in a conditional batch
        moved = D(other, y)
        moved = moved[0] if isinstance(moved, tuple) else moved
        assert (moved[0] - out[0]).abs() > 0
        if spec.conditional:  # a sample of another label leaves sample 0's score alone
            third = x.clone()
            third[1] = -third[1]
            kept = D(third, y)
            torch.testing.assert_close(kept[0], out[0])


@pytest.mark.parametrize("name", [n for n in MODELS.names() if n not in SCORING])
def test_models_whose_d_does_not_score_images_are_refused(name: str) -> None:
    with pytest.raises(UserError, match="--mbstd needs a D that scores images"):
        create_model(name, mbstd=True)


def test_mbstd_with_pack_is_refused_before_training() -> None:
    from gankit.training.run import prepare_training

    with pytest.raises(UserError, match="--mbstd and --pack"):
        prepare_training("dcgan", "digits", train_overrides={"pack": 2, "mbstd": True})
    with pytest.raises(UserError, match="began's D returns a reconstruction"):
        prepare_training("began", "digits", train_overrides={"mbstd": True})


def test_a_run_with_it_trains_resumes_and_loads(tmp_path: Path) -> None:
    from gankit.api import train
    from gankit.sampling import generate, load

    run = tmp_path / "run"
    opts = dict(model_overrides=tiny_overrides("cdcgan", num_classes=10), progress=False,
                tensorboard=False, batch_size=16, mbstd=True, precision="fp32",
                ckpt_every_kimg=0.032, sample_every_kimg=0.032)  # fmt: skip
    res = train("cdcgan", "digits", run_dir=run, kimg=0.032, **opts)
    assert res.nimg == 32
    loaded = load(run)
    assert isinstance(loaded.model.D, SpreadDiscriminator)
    assert generate(loaded, range(4), labels=[0, 1, 2, 3]).shape == (4, 1, 16, 16)
    res = train(resume=run, kimg=0.064, progress=False, tensorboard=False)
    assert res.nimg == 64
    other = train("cdcgan", "digits", run_dir=tmp_path / "other", kimg=0.064, **opts)
    a, b = load(run, ema=False).model.D, load(other.run_dir, ema=False).model.D
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb)
