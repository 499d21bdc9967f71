"""InfoGAN: the code prior, Q sharing D's body, the mutual-information term and code sweeps."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from torch import nn

from gankit.analysis.infogan import (
    categorical_purity,
    code_sweep,
    save_code_sweep_figure,
    sweep_latents,
)
from gankit.api import train as gankit_train
from gankit.errors import UserError
from gankit.latent import prior_of
from gankit.models import create_model
from gankit.models.infogan import InfoPrior, QOutput
from gankit.regularisers import MutualInformation, Step, create_regularisers
from gankit.sampling import generate, load
from gankit.training.run import resolve_train_config
from gankit.training.trainer import Trainer
from tests.conftest import synthetic_dataset, tiny_overrides


def tiny(**kw):
    torch.manual_seed(0)
    return create_model("infogan", **{**tiny_overrides("infogan"), **kw})


# ----------------------------------------------------------------------------- the prior


def test_prior_layout_and_ranges():
    p = InfoPrior(5, [10, 3], 2)
    assert p.nz == 5 + 13 + 2
    torch.manual_seed(0)
    z = p.sample(500)
    noise, cats, cont = p.split(z)
    assert noise.shape == (500, 5) and cont.shape == (500, 2)
    for c, k in zip(cats, [10, 3], strict=True):
        assert c.shape == (500, k)
        assert set(c.unique().tolist()) == {0.0, 1.0}
        torch.testing.assert_close(c.sum(1), torch.ones(500))  # exactly one hot
        assert c.argmax(1).unique().numel() == k  # every category is drawn
    assert cont.min() >= -1 and cont.max() <= 1
    assert cont.min() < -0.9 and cont.max() > 0.9  # uniform over the whole range
    assert abs(noise.std().item() - 1) < 0.1
    assert InfoPrior(4, 10, 1).categorical == [10]  # a single int means one code


def test_prior_split_compose_round_trip():
    p = InfoPrior(3, [4, 2], 2)
    z = p.sample(6)
    noise, cats, cont = p.split(z)
    torch.testing.assert_close(p.compose(noise, cats, cont), z, rtol=0, atol=0)
    # categories given as indices make the same latent as one-hots
    idx = [c.argmax(1) for c in cats]
    torch.testing.assert_close(p.compose(noise, idx, cont), z, rtol=0, atol=0)
    assert [i.tolist() for i in p.code_indices(z)] == [i.tolist() for i in idx]


def test_prior_from_seeds_is_per_seed():
    p = InfoPrior(6, 10, 2)
    a = p.from_seeds([3, 7, 11])
    b = p.from_seeds([7])
    c = p.from_seeds([100, 7, 3])
    torch.testing.assert_close(a[1], b[0], rtol=0, atol=0)  # same seed, same latent
    torch.testing.assert_close(a[1], c[1], rtol=0, atol=0)  # whatever the neighbours
    torch.testing.assert_close(a[0], c[2], rtol=0, atol=0)
    assert not torch.equal(a[0], a[1])
    noise, cats, cont = p.split(p.from_seeds(range(200)))
    assert cats[0].sum(1).eq(1).all() and cats[0].argmax(1).unique().numel() == 10
    assert cont.abs().max() <= 1


def test_truncation_redraws_only_the_noise():
    p = InfoPrior(8, 10, 2)
    seeds = list(range(50))
    full = p.split(p.from_seeds(seeds))
    cut = p.split(p.from_seeds(seeds, truncation=0.5))
    assert full[0].abs().max() > 0.5 and cut[0].abs().max() <= 0.5
    torch.testing.assert_close(cut[1][0], full[1][0], rtol=0, atol=0)  # codes kept
    torch.testing.assert_close(cut[2], full[2], rtol=0, atol=0)


def test_with_codes_sets_only_the_chosen_code():
    p = InfoPrior(4, [10], 3)
    z = p.sample(5)
    z2 = p.with_codes(z, categorical={0: 7}, continuous={1: 1.5})
    n, c, k = p.split(z)
    n2, c2, k2 = p.split(z2)
    torch.testing.assert_close(n2, n, rtol=0, atol=0)
    assert c2[0].argmax(1).eq(7).all() and c2[0].sum(1).eq(1).all()
    assert k2[:, 1].eq(1.5).all()
    torch.testing.assert_close(k2[:, [0, 2]], k[:, [0, 2]], rtol=0, atol=0)


def test_generator_carries_the_prior():
    m = tiny()
    prior = prior_of(m.G)
    assert isinstance(prior, InfoPrior)
    assert m.G.z_dim == prior.nz == 8 + 10 + 2
    assert m.G.eval()(prior.from_seeds([0, 1])).shape == (2, 1, 16, 16)


# ----------------------------------------------------------------------------- D and Q


def test_q_head_shares_the_discriminator_body():
    m = tiny()
    D = m.D.eval()
    x = torch.randn(4, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    logit, q = D(x), D.q(x)
    assert logit.shape == (4,)
    assert [t.shape for t in q.cat_logits] == [(4, 10)] and q.cont_mean.shape == (4, 2)
    with torch.no_grad():
        D.body[0].weight.add_(0.05)  # a body weight: both heads see it
    assert not torch.allclose(D(x), logit)
    q2 = D.q(x)
    assert not torch.allclose(q2.cat_logits[0], q.cat_logits[0])
    assert not torch.allclose(q2.cont_mean, q.cont_mean)
    logit2 = D(x)
    with torch.no_grad():
        D.q_head[-1].weight.add_(0.05)  # Q's own head: D's logit does not depend on it
    torch.testing.assert_close(D(x), logit2, rtol=0, atol=0)
    assert not torch.allclose(D.q(x).cat_logits[0], q2.cat_logits[0])


def _grads(net: nn.Module) -> dict[str, torch.Tensor | None]:
    return {n: p.grad for n, p in net.named_parameters()}


def test_info_g_term_trains_g_through_q():
    m = tiny()
    G, D = m.G.train(), m.D.train()
    z = prior_of(G).sample(8)
    fake = G(z)
    D.requires_grad_(False)  # as in the trainer's G update
    loss, logs = MutualInformation().g_term(Step(G, D, None, None, fake, None, z))
    loss.backward()
    g = _grads(G)
    assert all(v is not None and v.abs().sum() > 0 for v in g.values()), [
        k for k, v in g.items() if v is None or v.abs().sum() == 0
    ]
    assert all(p.grad is None for p in D.parameters())
    assert set(logs) == {"info_cat_g", "info_cont_g", "q_acc_g"}


def test_info_d_term_trains_q_and_body_but_not_g():
    m = tiny()
    G, D = m.G.train(), m.D.train()
    z = prior_of(G).sample(8)
    fake = G(z)
    loss, logs = MutualInformation().d_term(Step(G, D, None, None, fake.detach(), None, z))
    loss.backward()
    assert all(p.grad is None for p in G.parameters())  # the fake is detached
    d = _grads(D)
    for name, grad in d.items():
        if name.startswith(("body.", "q_head.")):
            assert grad is not None and grad.abs().sum() > 0, name
        else:  # D's real/fake head plays no part in Q
            assert grad is None, name
    assert set(logs) == {"info_cat", "info_cont", "q_acc"}


class _FixedQ(nn.Module):
    """A D whose Q returns a constructed output, to check the loss by hand."""

    def __init__(self, out: QOutput) -> None:
        super().__init__()
        self.out = out

    def q(self, x: torch.Tensor) -> QOutput:
        return self.out


class _PriorOnly(nn.Module):
    def __init__(self, prior: InfoPrior) -> None:
        super().__init__()
        self.prior = prior
        self.z_dim = prior.nz


def test_info_loss_matches_a_hand_computation():
    prior = InfoPrior(2, [3, 2], 2)
    z = prior.compose(
        torch.zeros(2, 2),
        [torch.tensor([2, 0]), torch.tensor([1, 1])],
        torch.tensor([[0.5, -1.0], [0.0, 0.25]]),
    )
    logits_a = torch.tensor([[1.0, 0.0, 2.0], [0.5, 0.5, -1.0]])
    logits_b = torch.tensor([[0.0, 3.0], [1.0, -1.0]])
    mean = torch.tensor([[0.0, -0.5], [1.0, 0.25]])
    D = _FixedQ(QOutput([logits_a, logits_b], mean))
    reg = create_regularisers("info:weight=2:cont_weight=0.5")[0]
    loss, logs = reg.d_term(Step(_PriorOnly(prior), D, None, None, torch.zeros(2, 1), None, z))

    def nll(logits: list[float], target: int) -> float:
        return -(logits[target] - math.log(sum(math.exp(v) for v in logits)))

    ce_a = (nll([1.0, 0.0, 2.0], 2) + nll([0.5, 0.5, -1.0], 0)) / 2
    ce_b = (nll([0.0, 3.0], 1) + nll([1.0, -1.0], 1)) / 2
    gauss = (0.5 * (0.5**2 + 0.5**2) + 0.5 * (1.0**2 + 0.0)) / 2  # 1/2 (c - mu)^2, summed
    expected = 2.0 * (ce_a + ce_b + 0.5 * gauss)
    torch.testing.assert_close(loss, torch.tensor(expected))
    torch.testing.assert_close(logs["info_cat"], torch.tensor(ce_a + ce_b))
    torch.testing.assert_close(logs["info_cont"], torch.tensor(gauss))
    torch.testing.assert_close(logs["q_acc"], torch.tensor(0.75))  # a: 2/2 right, b: 1/2


def test_info_needs_a_model_with_codes():
    m = create_model("dcgan", **tiny_overrides("dcgan"))
    z = torch.randn(2, 8)
    with pytest.raises(UserError, match="infogan"):
        MutualInformation().d_term(Step(m.G, m.D, None, None, torch.zeros(2, 1, 16, 16), None, z))


def test_info_asks_the_model_spec_before_training():
    """The check reads what the registry entry declares (`codes`), not the networks."""
    dcgan, infogan = (create_model(n, **tiny_overrides(n)).spec for n in ("dcgan", "infogan"))
    with pytest.raises(UserError, match="drop --reg info"):
        create_regularisers("r1,info", model=dcgan)
    assert [r.name for r in create_regularisers("info", model=infogan)] == ["info"]
    assert [r.name for r in create_regularisers("r1:gamma=5", model=dcgan)] == ["r1"]
    assert create_regularisers("info")  # without a model nothing is checked
    MutualInformation().check_model(replace(dcgan, codes=True))  # declared: accepted


def test_training_a_model_without_codes_with_the_info_term_fails_before_any_step(tmp_path):
    """Resolving the config asks the spec, so no run folder is made and no step is taken."""
    with pytest.raises(UserError, match="drop --reg info"):
        resolve_train_config("dcgan", "digits", {"reg": "info"})
    with pytest.raises(UserError, match="drop --reg info"):
        gankit_train(
            "dcgan",
            "digits",
            run_dir=tmp_path / "run",
            reg="info",
            progress=False,
            model_overrides=tiny_overrides("dcgan"),
            kimg=0.016,
            batch_size=8,
        )
    assert not (tmp_path / "run").exists()


def test_q_learns_the_categorical_code():
    """A few dozen info-only steps on G and Q: Q reads the code back far above chance."""
    m = tiny(continuous=1)
    G, D = m.G.train(), m.D.train()
    params = list(G.parameters()) + list(D.body.parameters()) + list(D.q_head.parameters())
    opt = torch.optim.Adam(params, lr=2e-3, betas=(0.5, 0.999))
    reg = MutualInformation()
    torch.manual_seed(0)
    for _ in range(40):
        z = prior_of(G).sample(32)
        loss, _ = reg.g_term(Step(G, D, None, None, G(z), None, z))
        opt.zero_grad()
        loss.backward()
        opt.step()
    z = prior_of(G).sample(500)
    with torch.no_grad():  # in train mode: BN's running statistics lag after so few steps
        guess = D.q(G(z)).cat_logits[0].argmax(1)
    acc = (guess == prior_of(G).code_indices(z)[0]).float().mean().item()
    assert acc > 0.5, acc  # chance is 0.1


# ----------------------------------------------------------------------------- analysis


def test_code_sweep_rows_share_noise_and_columns_vary_one_code():
    m = tiny()
    prior = prior_of(m.G)
    seeds = [4, 9, 2]
    sweep = code_sweep(m.G, "cat", seeds)
    assert sweep.images.shape == (3, 10, 1, 16, 16) and sweep.values == list(range(10))
    noise, cats, cont = prior.split(sweep.z)
    base = prior.split(prior.from_seeds(seeds))
    for r in range(3):  # every image in a row keeps the row seed's noise and other codes
        torch.testing.assert_close(noise[r], base[0][r].expand(10, -1), rtol=0, atol=0)
        torch.testing.assert_close(cont[r], base[2][r].expand(10, -1), rtol=0, atol=0)
    assert cats[0].argmax(-1).tolist() == [list(range(10))] * 3  # column j is category j
    assert not torch.equal(sweep.images[0, 0], sweep.images[0, 1])  # the code does something

    z, values = sweep_latents(prior, "cont:1", seeds, steps=5, span=2.0)
    assert values == pytest.approx([-2.0, -1.0, 0.0, 1.0, 2.0])
    noise, cats, cont = prior.split(z)
    for r in range(3):
        torch.testing.assert_close(noise[r], base[0][r].expand(5, -1), rtol=0, atol=0)
        torch.testing.assert_close(cats[0][r], base[1][0][r].expand(5, -1), rtol=0, atol=0)
        torch.testing.assert_close(cont[r, :, 0], base[2][r, 0].expand(5), rtol=0, atol=0)
        torch.testing.assert_close(cont[r, :, 1], torch.tensor(values))
    with pytest.raises(UserError, match="unknown code"):
        code_sweep(m.G, "cont:2", seeds)
    with pytest.raises(UserError, match="latent codes"):  # a Gaussian prior has no codes
        code_sweep(create_model("dcgan", **tiny_overrides("dcgan")).G, "cat", seeds)


def test_code_sweep_figure(tmp_path):
    m = tiny()
    path = save_code_sweep_figure(m.G, tmp_path / "sweep.png", seeds=range(3), steps=4)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


class _CategoryPainter(nn.Module):
    """A 'generator' whose image is the categorical code's index, permuted, as a grey level:
    a classifier that reads the grey level then sees a known code-to-class map."""

    def __init__(self, prior: InfoPrior, perm: list[int]) -> None:
        super().__init__()
        self.prior, self.z_dim = prior, prior.nz
        self.perm = torch.tensor(perm)
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, z: torch.Tensor, y=None) -> torch.Tensor:
        cls = self.perm[self.prior.code_indices(z)[0]].float()
        return (cls / 10 * 2 - 1).view(-1, 1, 1, 1).expand(-1, 1, 4, 4) + self.dummy


def _read_level(images: torch.Tensor) -> torch.Tensor:
    return (images[:, 0, 0, 0].float() / 255 * 10).round().long()


def test_categorical_purity_counts_majorities_and_distinct_classes():
    prior = InfoPrior(3, 10, 2)
    perm = [3, 1, 4, 0, 5, 9, 2, 6, 8, 7]
    res = categorical_purity(_CategoryPainter(prior, perm), _read_level, n_per_code=20)
    assert res["majority"] == perm and res["distinct_classes"] == 10
    assert res["purity"] == 1.0
    want = [[20 * (k == perm[c]) for k in range(10)] for c in range(10)]
    assert res["counts"] == want  # per category, its samples in each class
    collapsed = [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    res = categorical_purity(_CategoryPainter(prior, collapsed), _read_level, n_per_code=20)
    assert res["distinct_classes"] == 5
    assert [len(c) for c in res["counts"]] == [5] * 10  # padded to the classes seen

    def noisy(images: torch.Tensor) -> torch.Tensor:  # a classifier wrong on every 4th image
        ids = _read_level(images)
        ids[::4] = (ids[::4] + 1) % 10
        return ids

    res = categorical_purity(_CategoryPainter(prior, perm), noisy, n_per_code=20)
    assert res["purity"] == pytest.approx(0.75) and res["majority"] == perm


# ----------------------------------------------------------------------------- training


def test_train_defaults_run_the_info_term_in_the_trainer(tmp_path):
    from gankit.config import RunConfig

    over = {"batch_size": 16, "kimg": 0.016, "precision": "fp32"}  # see test_models' step test
    cfg = resolve_train_config("infogan", "digits", over)
    assert cfg.reg.startswith("info") and (cfg.lr_g, cfg.lr_d, cfg.beta1) == (1e-3, 2e-4, 0.5)
    rc = RunConfig(model="infogan", model_config=tiny_overrides("infogan"), train=cfg)
    tr = Trainer(rc, tmp_path, synthetic_dataset(n=32), progress=False, tensorboard=False)
    d0 = [p.detach().clone() for p in tr.D.parameters()]
    logs = tr.train_step()
    for k in ("info_cat", "info_cont", "info_cat_g", "info_cont_g", "q_acc"):
        assert torch.isfinite(logs[k]), k
    assert all(not torch.equal(a, b) for a, b in zip(d0, tr.D.parameters(), strict=True))
    tr.save()
    run = load(tmp_path)
    images = generate(run, [0, 1, 2, 0])
    assert images.shape == (4, 1, 16, 16)
    assert images.min() >= -1 and images.max() <= 1
    torch.testing.assert_close(images[3], images[0])  # the prior's per-seed draw
