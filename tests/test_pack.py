"""PacGAN's packing (`--pack m`): D judges m samples at once, for any unconditional logit model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gankit.errors import UserError
from gankit.models import MODELS, PackedDiscriminator, create_model

TINY = {"resolution": 16, "channels": 1, "ngf": 4, "ndf": 4}


def test_a_pack_is_consecutive_samples_stacked_along_channels() -> None:
    torch.manual_seed(0)
    m = create_model("dcgan", pack=3, **TINY)
    assert isinstance(m.D, PackedDiscriminator)
    first = next(p for p in m.D.inner.parameters() if p.dim() == 4)
    assert first.shape[1] == 3  # the inner D takes 3 x 1 channels
    x = torch.randn(6, 1, 16, 16)
    m.D.eval()
    by_hand = m.D.inner(torch.cat([x[0::3], x[1::3], x[2::3]], dim=1))
    torch.testing.assert_close(m.D(x), by_hand)
    assert m.D(x).shape == (2,)


def test_each_score_depends_on_its_own_pack_only() -> None:
    torch.manual_seed(0)
    m = create_model("gan", pack=2, resolution=4, channels=1, hidden=8, dropout=0.0)
    x = torch.randn(4, 1, 4, 4, requires_grad=True)
    m.D(x)[0].backward()
    moved = x.grad.flatten(1).abs().sum(1) > 0
    assert moved.tolist() == [True, True, False, False]


@pytest.mark.parametrize("name", [n for n in MODELS.names() if MODELS.get(n).conditional])
def test_models_whose_d_takes_labels_are_refused(name: str) -> None:
    with pytest.raises(UserError, match="pack=2 needs an unconditional model"):
        create_model(name, pack=2)


def test_bad_packs_are_refused_before_training() -> None:
    from gankit.training.run import prepare_training

    with pytest.raises(UserError, match="batch_size .16. must be a multiple of pack .3."):
        prepare_training("dcgan", "digits", train_overrides={"pack": 3, "batch_size": 16})
    with pytest.raises(UserError, match="pack must be > 0"):
        prepare_training("dcgan", "digits", train_overrides={"pack": 0})
    with pytest.raises(UserError, match="began's D does more"):
        prepare_training("began", "digits", train_overrides={"pack": 2})


def test_a_packed_run_trains_resumes_and_loads(tmp_path: Path) -> None:
    from gankit.api import train
    from gankit.sampling import generate, load

    run = tmp_path / "run"
    opts = dict(model_overrides={"resolution": 16, "ngf": 4, "ndf": 4}, progress=False,
                tensorboard=False, batch_size=16, pack=4, precision="fp32",
                ckpt_every_kimg=0.032, sample_every_kimg=0.032)  # fmt: skip
    res = train("dcgan", "digits", run_dir=run, kimg=0.032, **opts)
    assert res.nimg == 32
    loaded = load(run)
    assert isinstance(loaded.model.D, PackedDiscriminator) and loaded.model.D.pack == 4
    assert generate(loaded, range(4)).shape == (4, 1, 16, 16)
    res = train(resume=run, kimg=0.064, progress=False, tensorboard=False)
    assert res.nimg == 64
    # the same 64 images without the stop gives the same weights
    other = train("dcgan", "digits", run_dir=tmp_path / "other", kimg=0.064, **opts)
    a, b = load(run, ema=False).model.D, load(other.run_dir, ema=False).model.D
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb)
