"""BEGAN: the autoencoder networks, the k_t equilibrium objective and its exact resume."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from gankit.checkpoint import load_checkpoint
from gankit.config import RunConfig, TrainConfig, apply_overrides
from gankit.errors import UserError
from gankit.models import create_model
from gankit.objectives import create_objective
from gankit.training.run import resolve_train_config
from gankit.training.trainer import Trainer
from tests.conftest import SignD, synthetic_dataset, tiny_overrides


def _batches(seed: int = 0):
    """A positive real batch, a negative fake batch and reconstructions of each."""
    g = torch.Generator().manual_seed(seed)
    real = torch.rand(3, 1, 4, 4, generator=g) + 0.1
    fake = -torch.rand(3, 1, 4, 4, generator=g) - 0.1
    rec_real = real + 0.8 * torch.randn(3, 1, 4, 4, generator=g)
    rec_fake = fake + 0.3 * torch.randn(3, 1, 4, 4, generator=g)
    return real, fake, SignD(rec_real, rec_fake)


def _l1(v: torch.Tensor, rec: torch.Tensor) -> torch.Tensor:
    """L(v) by hand: per-sample mean absolute error, then the batch mean."""
    per_sample = [(v[i] - rec[i]).abs().sum() / v[i].numel() for i in range(v.shape[0])]
    return torch.stack(per_sample).mean()


def test_losses_are_l1_reconstruction_errors_with_the_old_k():
    real, fake, D = _batches()
    obj = create_objective("began")
    obj.k = torch.tensor(0.3)
    lx, lg = _l1(real, D.real), _l1(fake, D.fake)
    assert not torch.allclose(lx, ((real - D.real) ** 2).mean())  # the data tell L1 from L2
    loss, logs = obj.d_loss(D, real, fake, None, None)
    torch.testing.assert_close(loss, lx - 0.3 * lg)  # k_t of before the update
    assert float(obj.k) != pytest.approx(0.3)  # ... which did happen
    torch.testing.assert_close(logs["d_real"], lx)
    torch.testing.assert_close(logs["d_fake"], lg)
    torch.testing.assert_close(logs["loss_d"], loss.detach())
    loss_g, logs_g = obj.g_loss(D, fake, None)
    torch.testing.assert_close(loss_g, lg)  # G minimises the fakes' reconstruction error
    torch.testing.assert_close(logs_g["loss_g"], lg)


@pytest.mark.parametrize("gamma", [0.5, 0.7])
def test_k_update_and_m_global_follow_the_formulas(gamma):
    real, fake, D = _batches(1)
    obj = create_objective(f"began:gamma={gamma}:lambda_k=0.01")
    obj.k = torch.tensor(0.4)
    lx, lg = _l1(real, D.real), _l1(fake, D.fake)
    _, logs = obj.d_loss(D, real, fake, None, None)
    expected_k = torch.clamp(0.4 + 0.01 * (gamma * lx - lg), 0.0, 1.0)
    torch.testing.assert_close(obj.k, expected_k)
    torch.testing.assert_close(logs["k"], expected_k)
    torch.testing.assert_close(logs["m_global"], lx + (gamma * lx - lg).abs())
    assert isinstance(obj.k, torch.Tensor) and not obj.k.requires_grad  # no host sync


def test_gamma_is_an_option_and_changes_the_update():
    assert create_objective("began:gamma=0.7").gamma == 0.7
    assert create_objective("began").gamma == 0.5
    real, fake, D = _batches(2)
    ks = []
    for gamma in (0.5, 0.7):
        obj = create_objective(f"began:gamma={gamma}")
        obj.d_loss(D, real, fake, None, None)
        ks.append(float(obj.k))
    assert ks[0] != ks[1]
    with pytest.raises(UserError, match="gamma must be in"):
        create_objective("began:gamma=0")


def test_k_clips_at_zero_and_one_from_near_the_bounds():
    real, fake, D = _batches(4)
    # a fake batch that D reconstructs worse than gamma * L(x): the balance is negative
    bad = SignD(D.real, fake + 5.0)
    obj = create_objective("began:lambda_k=0.5")
    obj.k = torch.tensor(0.01)
    obj.d_loss(bad, real, fake, None, None)
    assert float(obj.k) == 0.0
    # a perfectly reconstructed fake batch: the balance is gamma * L(x) > 0
    good = SignD(D.real, fake)
    obj.k = torch.tensor(0.99)
    obj.d_loss(good, real, fake, None, None)
    assert float(obj.k) == 1.0


def test_state_round_trip():
    real, fake, D = _batches(5)
    obj = create_objective("began:lambda_k=0.1")
    for _ in range(3):
        obj.d_loss(D, real, fake, None, None)
    state = json.loads(json.dumps(obj.state_dict()))  # it goes into the checkpoint's JSON
    assert set(state) == {"k"} and isinstance(state["k"], float) and state["k"] > 0
    other = create_objective("began:lambda_k=0.1")
    other.load_state_dict(state)
    torch.testing.assert_close(other.k, obj.k, rtol=0, atol=0)
    with pytest.raises(ValueError):
        other.load_state_dict({"k": 0.1, "extra": 1})


def test_networks_are_an_autoencoder_d_and_a_decoder_g():
    for res in (16, 32):
        torch.manual_seed(0)
        m = create_model("began", **tiny_overrides("began", resolution=res))
        z = torch.randn(2, m.config.nz)
        x = m.G.eval()(z)
        assert x.shape == (2, 1, res, res) and x.abs().max() <= 1  # clamped when sampling
        assert m.D(x).shape == x.shape
        ups = [u for u in m.G.modules() if isinstance(u, nn.Upsample)]
        assert len(ups) == {16: 1, 32: 2}[res]  # blocks derived from the resolution
        downs = [c for c in m.D.encoder.modules() if getattr(c, "stride", None) == (2, 2)]
        assert len(downs) == len(ups)
    with pytest.raises(UserError, match="power-of-two"):
        create_model("began", resolution=28)


@pytest.mark.parametrize("width", [8, 16])
def test_init_keeps_the_input_s_signal_through_the_deep_stacks(width):
    # The paper's networks are 16 convs deep (32 px); at PyTorch's default init D's
    # reconstruction varied with its input by ~1e-7 and G's output with z by ~0.005, so D
    # began as a constant. The init must keep the spread across a batch at the input's order.
    torch.manual_seed(0)
    m = create_model("began", resolution=32, ngf=width, ndf=width)
    x = torch.rand(32, 1, 32, 32) * 2 - 1  # spread across the batch about 0.58
    with torch.no_grad():
        rec = m.D(x)
        g = m.G(torch.randn(32, m.config.nz))
    assert 0.1 < rec.std(0).mean() < 3
    assert 0.1 < g.std(0).mean() < 3
    init = m.D.encoder.main[0]
    assert init.bias.abs().max() == 0  # biases start at zero
    fan_in = init.weight[0].numel()
    torch.testing.assert_close(
        init.weight.std(), torch.tensor(1.245 / fan_in**0.5), rtol=0.15, atol=0
    )


def test_g_keeps_its_gradient_where_it_draws_black():
    # With a tanh output G stalled on digits: it first drew black (D reconstructs everything
    # as a mostly black median digit early on), its tanh saturated and the gradient was gone
    # (G at -0.999 on every pixel after 120 s). The output is linear in training.
    torch.manual_seed(0)
    m = create_model("began", **tiny_overrides("began"))
    out = m.G.net.main[-1]
    assert isinstance(out, nn.Conv2d)
    with torch.no_grad():
        out.bias.fill_(-6.0)  # every pixel far below the background's -1
    z = torch.randn(4, m.config.nz)
    (m.G(z) - 0.5).abs().mean().backward()  # any L1 target brighter than black
    # d mean|x - 0.5| / d bias = -1 on a linear output; a tanh's would be ~2.5e-5
    torch.testing.assert_close(out.bias.grad, torch.tensor([-1.0]))
    with torch.no_grad():
        x = m.G.eval()(z)
    assert x.min() == -1 and x.max() <= 1  # samples are clamped to the data range


def test_other_objectives_are_refused():
    with pytest.raises(UserError, match="began trains only with the began objective"):
        resolve_train_config("began", "digits", {"objective": "hinge"})
    cfg = resolve_train_config("began", "digits", {"objective": "began:gamma=0.7"})
    assert cfg.objective == "began:gamma=0.7"


def _rc(**train) -> RunConfig:
    base = TrainConfig(
        model="began",
        batch_size=16,
        log_every=1,
        sample_every_kimg=1.0,
        grid_size=4,
        ckpt_every_kimg=10.0,
        ema_kimg=0.05,
        lr_g=1e-3,
        lr_d=1e-3,
        # k_t starts at 0.5 (K0, set on each fresh run) and lambda_k 0.01 moves it a little
        # per step: it stays inside (0, 1) and weighs D's loss, so a k lost on resume shows.
        # From 0 it would stay clipped there (G's first images reconstruct worse than the
        # real ones) and the resume would test nothing.
        objective="began:lambda_k=0.01:gamma=1",
    )
    return RunConfig(
        model="began", model_config=tiny_overrides("began"), train=apply_overrides(base, train)
    )


K0 = 0.5


def test_resume_is_exact(tmp_path, monkeypatch):
    """N steps + resume + N steps gives the same weights (and k_t) as 2N steps straight."""
    monkeypatch.setattr(
        Trainer, "refresh_figures", lambda self, final=True: None
    )  # plots: most of the time
    ds = synthetic_dataset(n=48)
    straight = tmp_path / "straight"
    run = Trainer(_rc(kimg=0.128), straight, ds, progress=False, tensorboard=False)
    run.objective.load_state_dict({"k": K0})
    run.train()
    split = tmp_path / "split"
    first = Trainer(_rc(kimg=0.064), split, ds, progress=False, tensorboard=False)
    first.objective.load_state_dict({"k": K0})
    first.train()
    assert 0 < float(first.objective.k) < 1 and float(first.objective.k) != K0
    ck = load_checkpoint(split)
    assert ck.meta["objective_state"] == {"k": float(first.objective.k)}
    torch.manual_seed(999)
    resumed = Trainer(_rc(kimg=0.128), split, ds, resume=ck, progress=False, tensorboard=False)
    resumed.train()
    a, b = load_checkpoint(straight), load_checkpoint(split)
    assert b.meta["objective_state"] == a.meta["objective_state"]
    for key in a.tensors:
        if not key.startswith("rng."):
            torch.testing.assert_close(b.tensors[key], a.tensors[key], rtol=0, atol=0, msg=key)
    recs = [json.loads(x) for x in (split / "metrics.jsonl").read_text().splitlines()]
    assert all("k" in r and "m_global" in r for r in recs)
