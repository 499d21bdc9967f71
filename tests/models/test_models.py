"""Registry-wide model tests: every registered model is covered without being named here."""

from __future__ import annotations

import pytest
import torch

from gankit.checkpoint import read_checkpoint, save_checkpoint
from gankit.config import RunConfig
from gankit.errors import UserError
from gankit.latent import prior_of
from gankit.models import MODELS, create_model, list_models
from gankit.training.run import resolve_train_config
from gankit.training.trainer import Trainer
from gankit.viz import declared_curves
from tests.conftest import REPO, synthetic_dataset, tiny_overrides

ALL = list_models()


def _inputs(model, batch: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    z = prior_of(model.G).from_seeds(range(seed * batch, (seed + 1) * batch))
    y = (
        torch.randint(model.config.num_classes, (batch,), generator=g)
        if model.spec.conditional
        else None
    )
    return z, y


def n_params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def test_registry_has_the_core_models():
    for name in ("gan", "dcgan", "cgan", "cdcgan"):
        assert name in ALL
        assert MODELS.get(name).description


def test_unknown_model_is_a_user_error():
    with pytest.raises(UserError, match="unknown model 'nope'.*dcgan"):
        create_model("nope")


def test_unknown_model_option_is_a_user_error():
    with pytest.raises(UserError, match="unknown dcgan option 'widht'"):
        create_model("dcgan", widht=3)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_and_ranges(name, channels):
    torch.manual_seed(0)
    m = create_model(name, **tiny_overrides(name, channels=channels))
    m.G.eval()
    m.D.eval()
    z, y = _inputs(m)
    x = m.G(z, y)
    assert x.shape == (4, channels, 16, 16)
    assert x.min() >= -1 and x.max() <= 1  # Tanh output, the data range
    out = m.D(x, y)
    expected = {"logit": (4,), "reconstruction": x.shape}.get(m.spec.d_output)
    if expected is None:  # "levels": one score per image and pyramid level
        assert out.dim() == 2 and out.shape[0] == 4
    else:
        assert out.shape == expected
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ALL)
def test_deterministic_construction_and_forward(name):
    torch.manual_seed(123)
    a = create_model(name, **tiny_overrides(name))
    torch.manual_seed(123)
    b = create_model(name, **tiny_overrides(name))
    torch.testing.assert_close(a.G.state_dict(), b.G.state_dict(), rtol=0, atol=0)
    torch.testing.assert_close(a.D.state_dict(), b.D.state_dict(), rtol=0, atol=0)
    for m in (a, b):
        m.G.eval()
        m.D.eval()
    z, y = _inputs(a)
    torch.testing.assert_close(a.G(z, y), b.G(z, y), rtol=0, atol=0)
    torch.manual_seed(124)
    c = create_model(name, **tiny_overrides(name))
    assert any(
        not torch.equal(p, q) for p, q in zip(a.G.parameters(), c.G.parameters(), strict=True)
    )


@pytest.mark.parametrize("name", ALL)
def test_save_load_round_trip(name, tmp_path):
    torch.manual_seed(0)
    a = create_model(name, **tiny_overrides(name))
    # make the BN statistics non-trivial, so that buffers are tested too
    z, y = _inputs(a, batch=8)
    a.G.train()(z, y)
    tensors = {f"G.{k}": v for k, v in a.G.state_dict().items()}
    tensors.update({f"D.{k}": v for k, v in a.D.state_dict().items()})
    save_checkpoint(tmp_path / "c.safetensors", tensors, {"model": name})
    ck = read_checkpoint(tmp_path / "c.safetensors")
    torch.manual_seed(99)
    b = create_model(name, **tiny_overrides(name))
    b.G.load_state_dict(ck.part("G"))
    b.D.load_state_dict(ck.part("D"))
    a.G.eval()
    b.G.eval()
    a.D.eval()
    b.D.eval()
    x = a.G(z, y)
    torch.testing.assert_close(b.G(z, y), x, rtol=0, atol=0)
    torch.testing.assert_close(b.D(x, y), a.D(x, y), rtol=0, atol=0)


@pytest.mark.parametrize("name", ALL)
def test_one_real_optimisation_step(name, tmp_path):
    ds = synthetic_dataset(n=32)
    overrides = tiny_overrides(name)
    # the model's own training setup (objective, regularisers, optimiser): InfoGAN's Q head,
    # for instance, only learns through its `info` regulariser
    # fp32: in bf16 (a recipe's precision=auto) a near-zero first gradient can round to 0
    # exactly (InfoGAN's logit bias: sigmoid(~0) = 0.5 for real and fake alike)
    over = {"batch_size": 16, "kimg": 0.016, "log_every": 1, "precision": "fp32"}
    train = resolve_train_config(name, "digits", over)
    rc = RunConfig(model=name, model_config=overrides, train=train)
    tr = Trainer(rc, tmp_path, ds, progress=False, tensorboard=False)
    g0 = [p.detach().clone() for p in tr.G.parameters()]
    d0 = [p.detach().clone() for p in tr.D.parameters()]
    e0 = [p.detach().clone() for p in tr.G_ema.parameters()]
    logs = tr.train_step()
    assert tr.step == 1 and tr.nimg == 16 * tr.cfg.n_critic  # every D step sees a real batch
    for k in ("loss_d", "loss_g", "d_real", "d_fake"):
        assert torch.isfinite(logs[k]), k
    # the extra curves the run's objective and regularisers declare are what they log
    for k in declared_curves([tr.objective, *tr.regularisers]):
        assert torch.isfinite(logs[k]), k
    if tr.objective.name in ("nonsaturating", "minimax"):
        assert 0 <= float(logs["d_real"]) <= 1  # a probability only for the BCE objectives
    changed = lambda before, net: sum(  # noqa: E731
        not torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True)
    )
    assert changed(g0, tr.G) == len(g0)  # every G tensor moved
    assert changed(d0, tr.D) == len(d0)
    assert changed(e0, tr.G_ema) > 0  # and the EMA followed
    for p in tr.D.parameters():
        assert p.requires_grad  # restored after the G step


def test_dcgan_reference_parameter_counts():
    m = create_model("dcgan", resolution=64, channels=3, nz=100, ngf=64, ndf=64)
    assert n_params(m.G) == 3_576_704
    assert n_params(m.D) == 2_765_568


def test_cgan_reference_parameter_counts():
    m = create_model("cgan", resolution=28, channels=1, nz=100, num_classes=10)
    assert n_params(m.G) == 1_511_412
    assert n_params(m.D) == 932_965


def test_dcgan_layers_follow_the_design_rules():
    m = create_model("dcgan", resolution=64, channels=3)
    layers = list(m.G.net.main)
    convs = [m_ for m_ in layers if isinstance(m_, torch.nn.ConvTranspose2d)]
    assert [c.out_channels for c in convs] == [512, 256, 128, 64, 3]
    assert all(c.bias is None for c in convs)
    assert isinstance(layers[-1], torch.nn.Tanh)
    assert not any(isinstance(m_, (torch.nn.Linear, torch.nn.MaxPool2d)) for m_ in layers)
    d_layers = list(m.D.net.main)
    assert isinstance(d_layers[1], torch.nn.LeakyReLU)  # no BN on D's input layer
    assert d_layers[1].negative_slope == 0.2
    d_convs = [m_ for m_ in d_layers if isinstance(m_, torch.nn.Conv2d)]
    assert [c.out_channels for c in d_convs] == [64, 128, 256, 512, 1]
    assert [c.stride[0] for c in d_convs] == [2, 2, 2, 2, 1]


@pytest.mark.parametrize("res,stages", [(8, 0), (16, 1), (32, 2), (64, 3), (128, 4)])
def test_dcgan_blocks_are_derived_from_the_resolution(res, stages):
    m = create_model("dcgan", resolution=res, channels=1, ngf=4, ndf=4)
    convs = [x for x in m.G.net.main if isinstance(x, torch.nn.ConvTranspose2d)]
    assert len(convs) == stages + 2
    assert convs[0].out_channels == 4 * 2**stages
    out = m.G.eval()(torch.randn(2, 100))
    assert out.shape == (2, 1, res, res)
    assert m.D.eval()(out).shape == (2,)


def test_dcgan_rejects_a_size_it_cannot_make():
    with pytest.raises(UserError, match="power-of-two resolution.*--resolution 32"):
        create_model("dcgan", resolution=28)


def test_dcgan_init_follows_the_paper():
    torch.manual_seed(0)
    m = create_model("dcgan", resolution=64, channels=3)
    w = torch.cat(
        [c.weight.flatten() for c in m.G.modules() if isinstance(c, torch.nn.ConvTranspose2d)]
    )
    assert abs(w.std().item() - 0.02) < 0.001
    assert abs(w.mean().item()) < 0.001
    bn = [c for c in m.G.modules() if isinstance(c, torch.nn.BatchNorm2d)]
    assert abs(torch.cat([b.weight for b in bn]).mean().item() - 1.0) < 0.01
    assert all(torch.equal(b.bias, torch.zeros_like(b.bias)) for b in bn)


@pytest.mark.parametrize("name", [n for n in ALL if MODELS.get(n).conditional])
def test_conditional_models_use_the_label(name):
    torch.manual_seed(0)
    m = create_model(name, **tiny_overrides(name))
    m.G.eval()
    m.D.eval()
    z = prior_of(m.G).from_seeds([0]).repeat(2, 1)
    x = m.G(z, torch.tensor([0, 1]))
    assert not torch.allclose(x[0], x[1])
    logits = m.D(x[:1].repeat(2, 1, 1, 1), torch.tensor([0, 1]))
    assert not torch.allclose(logits[0], logits[1])


# ----------------------------------------------------------------------------- capabilities
# Each field the registry entry declares is checked against what its networks do, so that the
# CLI, the web page and the plots can trust the entry and never probe a network.


def _eval_model(name: str):
    torch.manual_seed(0)
    m = create_model(name, **tiny_overrides(name))
    m.G.eval()
    m.D.eval()
    return m


@pytest.mark.parametrize("name", ALL)
def test_declared_conditional_matches_the_networks(name):
    m = _eval_model(name)
    assert (m.spec.config_cls().num_classes > 0) == m.spec.conditional
    if m.spec.conditional:
        return  # that G and D use the label: test_conditional_models_use_the_label
    z, _ = _inputs(m)
    labels = torch.zeros(z.shape[0], dtype=torch.long)
    torch.testing.assert_close(m.G(z, labels), m.G(z, None), rtol=0, atol=0)  # ignored


@pytest.mark.parametrize("name", ALL)
def test_declared_truncation_space_matches_the_networks(name):
    m = _eval_model(name)
    z, y = _inputs(m)
    assert m.spec.truncation in ("z", "w")
    if m.spec.truncation == "w":  # psi goes to G, which pulls w towards its average
        psi, x = 0.5, m.G(z, y)
        assert not torch.allclose(m.G(z, y, truncation=psi), x)
        torch.testing.assert_close(m.G(z, y, truncation=1.0), x)
        assert m.spec.split_truncation(psi) == (None, psi)
        assert m.spec.truncation_parameter == "psi"
    else:  # the threshold goes to the prior; G takes no truncation argument
        with pytest.raises(TypeError):
            m.G(z, y, truncation=0.5)
        seeds = list(range(8))
        untruncated = prior_of(m.G).from_seeds(seeds)
        truncated = prior_of(m.G).from_seeds(seeds, truncation=0.5)
        assert not torch.equal(truncated, untruncated)
        assert m.spec.split_truncation(0.5) == (0.5, None)
        assert m.spec.truncation_parameter == "threshold"


@pytest.mark.parametrize("name", ALL)
def test_declared_style_mixing_matches_the_networks(name):
    m = _eval_model(name)
    styles = all(hasattr(m.G, a) for a in ("mapping", "synthesis", "num_ws"))
    assert m.spec.style_mixing == styles
    if styles:
        from gankit.analysis.style_mixing import style_mixing_grid

        images, layout = style_mixing_grid(m.G, [0, 1], [2, 3], None)
        assert images.shape[0] == layout.nrow * (1 + 2) and torch.isfinite(images).all()


@pytest.mark.parametrize("name", ALL)
def test_declared_codes_match_the_networks(name):
    m = _eval_model(name)
    prior = prior_of(m.G)
    codes = all(hasattr(prior, a) for a in ("categorical", "continuous", "with_codes", "split"))
    assert m.spec.codes == codes == hasattr(m.D, "q")
    if codes:
        z = prior.with_codes(prior.from_seeds([0, 1]), categorical={0: 1}, continuous={0: 0.5})
        _, cats, cont = prior.split(z)
        assert cats[0].argmax(1).tolist() == [1, 1] and cont[:, 0].tolist() == [0.5, 0.5]
        cat_logits, _ = m.D.q(m.G(z))
        assert cat_logits[0].shape == (2, prior.categorical[0])


def test_the_test_variant_stays_out_of_processes_that_only_import_test_helpers():
    """benchmarks/ imports helpers from tests/ (and so this conftest): only the suite and the
    workers it spawns register the variant, so no benchmark ever lists it."""
    import os
    import subprocess
    import sys

    from tests.conftest import VARIANT_ENV
    from tests.variant import NAME

    root = REPO
    env = {k: v for k, v in os.environ.items() if k != VARIANT_ENV}
    env["PYTHONPATH"] = os.pathsep.join([str(root), str(root / "src")])
    code = "import tests.conftest; from gankit.models import list_models; print(list_models())"
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    assert "dcgan" in proc.stdout and NAME not in proc.stdout
    assert NAME in ALL  # while this suite has it
