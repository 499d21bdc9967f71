"""Regularisers, the Wasserstein objective and the WGAN/WGAN-GP/LSGAN training setups."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gankit.config import RunConfig
from gankit.errors import UserError
from gankit.objectives import create_objective
from gankit.regularisers import (
    R1,
    REGULARISERS,
    GradientPenalty,
    Orthogonal,
    Regulariser,
    Step,
    WeightClip,
    create_regularisers,
    orthogonality,
)
from gankit.training.run import resolve_train_config
from gankit.training.trainer import Trainer
from tests.conftest import synthetic_dataset, tiny_overrides


class Linear(nn.Module):
    """D(x) = <w, x>: its input gradient is w everywhere."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(w.clone())

    def forward(self, x, y=None):
        return (x * self.w).flatten(1).sum(1)


class Quadratic(nn.Module):
    """D(x) = 1/2 ||x||^2 per sample: its input gradient is x itself."""

    def forward(self, x, y=None):
        return 0.5 * x.flatten(1).pow(2).sum(1)


def _step(D, real, fake, G=None, index=0):
    z = torch.zeros(real.shape[0], 1)
    return Step(G or nn.Identity(), D, real, None, fake, None, z, index)


def test_gradient_penalty_on_a_linear_critic():
    w = torch.full((1, 2, 2), 0.25)  # ||w|| = 0.5 over all non-batch dims
    D = Linear(w)
    real, fake = torch.randn(6, 1, 2, 2), torch.randn(6, 1, 2, 2)
    value, logs = GradientPenalty(weight=10).d_term(_step(D, real, fake))
    torch.testing.assert_close(value, torch.tensor(10 * (0.5 - 1.0) ** 2))
    torch.testing.assert_close(logs["grad_norm"], torch.tensor(0.5))


def test_gradient_penalty_takes_the_norm_per_sample_on_interpolates():
    D = Quadratic()
    g = torch.Generator().manual_seed(1)
    real, fake = torch.randn(5, 3, 4, 4, generator=g), torch.randn(5, 3, 4, 4, generator=g)
    torch.manual_seed(7)
    value, _ = GradientPenalty(weight=1).d_term(_step(D, real, fake))
    torch.manual_seed(7)
    e = torch.rand(5, 1, 1, 1)
    x_hat = e * real + (1 - e) * fake  # the gradient of D at x_hat is x_hat
    per_sample = x_hat.flatten(1).norm(dim=1)
    torch.testing.assert_close(value, ((per_sample - 1) ** 2).mean())
    # one norm over the whole batch (a classic bug) would give another number
    assert not torch.isclose(value, (x_hat.norm() - 1) ** 2)


def test_gradient_penalty_trains_d_towards_unit_gradients():
    D = Linear(torch.full((1, 2, 2), 2.0))  # ||grad|| = 4
    opt = torch.optim.SGD(D.parameters(), lr=0.1)
    real, fake = torch.randn(8, 1, 2, 2), torch.randn(8, 1, 2, 2)
    for _ in range(200):
        value, _ = GradientPenalty(weight=1).d_term(_step(D, real, fake))
        opt.zero_grad()
        value.backward()
        opt.step()
    assert abs(D.w.detach().norm().item() - 1.0) < 1e-2


def test_r1_on_a_quadratic_critic_uses_real_data_only():
    real = torch.randn(4, 1, 3, 3)
    fake = torch.randn(4, 1, 3, 3) * 100  # must not matter
    value, logs = R1(gamma=4).d_term(_step(Quadratic(), real, fake))
    expected = 4 / 2 * real.flatten(1).pow(2).sum(1).mean()
    torch.testing.assert_close(value, expected)
    torch.testing.assert_close(logs["r1"], expected / 2)


def test_lazy_r1_runs_one_update_in_k_scaled_by_k():
    real, fake = torch.randn(4, 1, 3, 3), torch.randn(4, 1, 3, 3)
    pen = real.flatten(1).pow(2).sum(1).mean()
    lazy = R1(gamma=2, every=4)
    # a resumed run may start between two penalised updates: nothing to add or show yet
    assert lazy.d_term(_step(Quadratic(), real, fake, index=3)) is None
    for index in range(8):
        value, logs = lazy.d_term(_step(Quadratic(), real, fake, index=index))
        want = 2 / 2 * 4 * pen if index % 4 == 0 else torch.tensor(0.0)
        torch.testing.assert_close(value, want)
        torch.testing.assert_close(logs["r1"], pen)  # the last computed value in between
    # over k updates the lazy term adds what the eager one adds
    eager = sum(R1(gamma=2).d_term(_step(Quadratic(), real, fake, index=i))[0] for i in range(4))
    lazy_sum = sum(lazy.d_term(_step(Quadratic(), real, fake, index=i))[0] for i in range(4))
    torch.testing.assert_close(lazy_sum, eager)


@pytest.mark.parametrize("every", ["0", "2.5"])
def test_lazy_r1_takes_whole_intervals_only(every):
    with pytest.raises(UserError, match="whole number >= 1"):
        create_regularisers(f"r1:every={every}")


def test_weight_clipping_bounds_every_weight():
    D = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Linear(2, 2))
    WeightClip(c=0.01).after_d_step(D)
    for p in D.parameters():
        assert p.abs().max() <= 0.01
    assert any((p.abs() == 0.01).any() for p in D.parameters())  # the bound was hit


def test_orthogonality_is_zero_only_for_orthogonal_rows():
    q, _ = torch.linalg.qr(torch.randn(8, 8))
    assert orthogonality(q * 3.0).item() == pytest.approx(0.0, abs=1e-8)  # norms are free
    w = torch.randn(4, 6)
    gram = w @ w.T
    expected = (gram - torch.diag(torch.diag(gram))).pow(2).sum()
    torch.testing.assert_close(orthogonality(w), expected)


def test_orthogonal_regulariser_covers_convs_and_linears_and_reaches_g():
    G = nn.Sequential(nn.Linear(3, 8), nn.Embedding(5, 4), nn.ConvTranspose2d(8, 4, 3))
    value, logs = Orthogonal(weight=1e-4).g_term(
        _step(nn.Identity(), torch.zeros(1), torch.zeros(1), G)
    )
    expected = orthogonality(G[0].weight) + orthogonality(G[2].weight)  # not the embedding
    torch.testing.assert_close(logs["ortho"], expected.detach())
    value.backward()
    assert G[0].weight.grad.abs().sum() > 0 and G[2].weight.grad.abs().sum() > 0
    assert G[1].weight.grad is None


def test_wasserstein_losses():
    obj = create_objective("wasserstein")
    D = lambda x, y=None: x  # noqa: E731  (the "scores" are the inputs)
    loss_d, logs = obj.d_loss(D, torch.tensor([3.0, 1.0]), torch.tensor([0.5, -0.5]), None, None)
    torch.testing.assert_close(loss_d, torch.tensor(-2.0))  # -(E[D(x)] - E[D(G(z))])
    torch.testing.assert_close(logs["w_dist"], torch.tensor(2.0))
    loss_g, _ = obj.g_loss(D, torch.tensor([0.5, -0.5, 3.0]), None)
    torch.testing.assert_close(loss_g, torch.tensor(-1.0))


@pytest.mark.parametrize(
    "spec, error",
    [
        ("r1:gamma", "bad option"),
        ("r1:gamma=x", "bad option"),
        ("r1:beta=1", "r1 has no option 'beta'"),
        ("r2", "unknown regulariser 'r2'"),
        ("r1,r1:gamma=3", "given twice"),
    ],
)
def test_bad_regulariser_specs_are_user_errors(spec, error):
    with pytest.raises(UserError, match=error):
        create_regularisers(spec)


def test_specs_set_options():
    regs = create_regularisers("gp:weight=5, ortho")
    assert [r.name for r in regs] == ["gp", "ortho"]
    assert regs[0].weight == 5.0 and regs[1].weight == 1e-4
    assert create_regularisers("none") == [] and create_regularisers(None) == []
    assert set(REGULARISERS.names()) >= {"gp", "r1", "clip", "ortho"}


def _trainer(name, tmp_path, **train):
    overrides = {"batch_size": 16, "log_every": 1, "kimg": 1, **train}
    tcfg = resolve_train_config(name, "digits", overrides)
    rc = RunConfig(model=name, model_config=tiny_overrides(name), train=tcfg)
    return Trainer(rc, tmp_path, synthetic_dataset(n=96), progress=False, tensorboard=False)


def test_wgan_setup_clips_uses_rmsprop_and_five_critic_steps(tmp_path):
    tr = _trainer("wgan", tmp_path)
    assert isinstance(tr.opt_D, torch.optim.RMSprop) and tr.cfg.n_critic == 5
    assert tr.objective.name == "wasserstein"
    logs = tr.train_step()
    assert torch.isfinite(logs["w_dist"])
    for p in tr.D.parameters():
        assert p.abs().max() <= 0.01 + 1e-12
    d_steps = {int(s["step"]) for s in tr.opt_D.state_dict()["state"].values()}
    assert d_steps == {5}  # five D updates for one G update
    assert tr.nimg == 5 * 16


def test_without_clipping_the_same_critic_leaves_the_bound(tmp_path):
    tr = _trainer("wgan", tmp_path, reg="none")
    tr.train_step()
    assert max(p.abs().max().item() for p in tr.D.parameters()) > 0.01


@pytest.mark.parametrize("preset, betas", [("paper", (0.0, 0.9)), ("grey28", (0.5, 0.9))])
def test_wgan_gp_setup(tmp_path, preset, betas):
    # the paper's Adam(0, 0.9); the grey28 recipe (the default on digits) takes beta1 0.5
    tr = _trainer("wgan-gp", tmp_path, preset=preset)
    assert isinstance(tr.opt_D, torch.optim.Adam)
    assert tr.opt_D.defaults["betas"] == betas and tr.cfg.n_critic == 5
    assert [r.name for r in tr.regularisers] == ["gp"] and tr.regularisers[0].weight == 10
    assert not any(isinstance(m, nn.BatchNorm2d) for m in tr.D.modules())
    logs = tr.train_step()
    assert torch.isfinite(logs["gp"]) and logs["grad_norm"] > 0


class Recorder(Regulariser):
    """A term that adds nothing and writes down the update index of every step it is shown."""

    name = "recorder"

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, int]] = []

    def d_term(self, step):
        self.seen.append(("d", step.index))
        return None

    def g_term(self, step):
        self.seen.append(("g", step.index))
        return None


def test_trainer_numbers_d_and_g_updates_from_the_run_start(tmp_path):
    tr = _trainer("wgan", tmp_path)  # five D updates per G update
    rec = Recorder()
    tr.regularisers = [rec]
    tr.train_step()
    tr.train_step()
    assert rec.seen == [("d", i) for i in range(5)] + [("g", 0)] + [
        ("d", i) for i in range(5, 10)
    ] + [("g", 1)]
    rec.seen.clear()
    tr.state.step = 5  # as after resuming at step 5: the count goes on from there
    tr.train_step()
    assert rec.seen == [("d", i) for i in range(25, 30)] + [("g", 5)]


def test_lsgan_uses_least_squares(tmp_path):
    assert _trainer("lsgan", tmp_path).objective.name == "least-squares"


def test_any_model_takes_any_score_objective_and_regulariser(tmp_path):
    tr = _trainer("dcgan", tmp_path, objective="hinge", reg="r1:gamma=5")
    assert tr.objective.name == "hinge" and tr.regularisers[0].gamma == 5.0
    logs = tr.train_step()
    assert logs["r1"] > 0


def test_cli_accepts_reg_and_objective_options(capsys):
    from gankit.cli import main

    rc = main(
        ["train", "dcgan", "--objective", "hinge", "--reg", "r1:gamma=5,ortho", "--n-critic",
         "2", "--optimizer", "rmsprop", "--dry-run", "--no-progress"]
    )  # fmt: skip
    assert rc == 0
    out = capsys.readouterr().out
    assert "r1:gamma=5,ortho" in out and "rmsprop" in out
    assert main(["train", "dcgan", "--reg", "r9", "--dry-run"]) != 0


@pytest.mark.parametrize("name", ["infogan", "wgan-gp", "stylegan", "biggan"])
def test_regularisers_run_in_fp32_under_bf16_autocast(name, tmp_path):
    """Each model's own regularisers (info, gp, r1, ortho) with a bf16 forward pass."""
    tr = _trainer(name, tmp_path, precision="bf16")
    assert tr.regularisers
    logs = tr.train_step()
    assert all(torch.isfinite(v) for v in logs.values())
