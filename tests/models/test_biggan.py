"""BigGAN's mechanisms, one test each: spectral norm, conditional BN with a shared embedding and
hierarchical z, the projection discriminator, self-attention, truncation and orthogonal
regularisation, plus one training step with the model's own training defaults."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from gankit.config import RunConfig
from gankit.errors import UserError
from gankit.latent import Prior, prior_of
from gankit.models import MODELS, create_model
from gankit.models.biggan import SelfAttention, z_chunks
from gankit.regularisers import Orthogonal, Step, ortho_weights
from gankit.sampling import LoadedRun, generate
from gankit.training.run import resolve_train_config
from gankit.training.trainer import Trainer
from tests.conftest import synthetic_dataset, tiny_overrides


def tiny(**extra):
    torch.manual_seed(0)
    return create_model("biggan", **{**tiny_overrides("biggan"), **extra})


def inputs(m, batch: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, m.config.nz, generator=g)
    y = torch.randint(m.config.num_classes, (batch,), generator=g)
    return z, y


def sn_modules(net: nn.Module) -> list[nn.Module]:
    return [m for m in net.modules() if parametrize.is_parametrized(m, "weight")]


def test_blocks_and_z_chunks_follow_the_resolution():
    m = create_model("biggan")  # the default: 32x32 digits
    assert (m.config.resolution, m.config.channels, m.config.num_classes) == (32, 1, 10)
    assert len(m.G.blocks) == 3 and len(m.D.blocks) == 3  # 4 -> 32 and 32 -> 4
    assert m.G.chunks == [30, 30, 30, 30]  # one z chunk for the input, one per block
    assert z_chunks(8, 3) == [3, 3, 2]
    z, y = inputs(m, batch=2)
    x = m.G.eval()(z, y)
    assert x.shape == (2, 1, 32, 32)
    assert m.D.eval()(x, y).shape == (2,)
    with pytest.raises(UserError, match="attention_res must be a power of two"):
        create_model("biggan", attention_res=32)
    with pytest.raises(UserError, match="nz must be >= 4"):
        create_model("biggan", nz=3)
    with pytest.raises(UserError, match="power-of-two resolution"):
        create_model("biggan", resolution=28)


def test_spectral_norm_on_every_weight():
    m = tiny()
    for net, extra in ((m.G, ()), (m.D, (m.D.embed,))):
        layers = [x for x in net.modules() if isinstance(x, (nn.Conv2d, nn.Linear))]
        assert set(sn_modules(net)) == set(layers) | set(extra)
    # random raw weights, far from norm 1; the power iteration runs once per train forward
    with torch.no_grad():
        for mod in sn_modules(m.G) + sn_modules(m.D):
            mod.parametrizations.weight.original.normal_(0.0, 0.7)
    z, y = inputs(m, batch=8)
    m.G.train()
    m.D.train()
    for _ in range(30):
        with torch.no_grad():
            m.D(m.G(z, y), y)
    for mod in sn_modules(m.G) + sn_modules(m.D):
        raw = mod.parametrizations.weight.original.detach().flatten(1)
        assert torch.linalg.matrix_norm(raw, ord=2) > 1.5  # the raw weight is not normalised
        sigma = torch.linalg.matrix_norm(mod.weight.detach().flatten(1), ord=2)
        assert abs(float(sigma) - 1.0) < 0.1, mod


def test_copy_and_state_dict_keep_the_spectral_norm_state():
    m = tiny()
    z, y = inputs(m, batch=8)
    m.G.train()(z, y)  # moves the power-iteration vectors and the BN statistics
    G2 = copy.deepcopy(m.G)  # what the trainer's EMA does
    assert len(sn_modules(G2)) == len(sn_modules(m.G))
    keys = m.G.state_dict().keys()
    assert any(k.endswith("parametrizations.weight.original") for k in keys)
    assert any(k.endswith("parametrizations.weight.0._u") for k in keys)
    torch.manual_seed(1)
    G3 = create_model("biggan", **tiny_overrides("biggan")).G
    G3.load_state_dict(m.G.state_dict())
    for net in (m.G, G2, G3):
        net.eval()
    torch.testing.assert_close(G2(z, y), m.G(z, y), rtol=0, atol=0)
    torch.testing.assert_close(G3(z, y), m.G(z, y), rtol=0, atol=0)


def test_conditional_batch_norm_uses_the_shared_embedding_and_its_z_chunk():
    m = tiny()
    G = m.G.eval()
    assert sum(isinstance(x, nn.Embedding) for x in G.modules()) == 1  # one shared embedding
    z, _ = inputs(m, batch=2)
    y0, y1 = torch.tensor([0, 0]), torch.tensor([1, 1])
    _, conds = G.conditions(z, y0)
    assert len(conds) == len(G.blocks)
    shared = G.shared(y0)
    for c in conds:  # every block reads the same class embedding
        torch.testing.assert_close(c[:, : shared.shape[1]], shared)
    torch.manual_seed(1)
    for i, block in enumerate(G.blocks):
        bn = block.bn1
        x = torch.randn(2, bn.bn.num_features, 4, 4)
        base = bn(x, G.conditions(z, y0)[1][i])
        other_class = bn(x, G.conditions(z, y1)[1][i])
        assert not torch.allclose(base, other_class)
        # change this block's z chunk (chunk i + 1; chunk 0 feeds the input linear) ...
        lo, hi = sum(G.chunks[: i + 1]), sum(G.chunks[: i + 2])
        z_own = z.clone()
        z_own[:, lo:hi] += 1.0
        assert not torch.allclose(bn(x, G.conditions(z_own, y0)[1][i]), base)
        # ... and every other chunk: this block's normalisation does not see them
        z_rest = z + 1.0
        z_rest[:, lo:hi] = z[:, lo:hi]
        torch.testing.assert_close(bn(x, G.conditions(z_rest, y0)[1][i]), base)
        # the gradient of each block's BN output reaches the one shared embedding
        G.zero_grad()
        bn(x, G.conditions(z, y0)[1][i]).square().sum().backward()
        assert G.shared.weight.grad is not None and G.shared.weight.grad[0].abs().sum() > 0


def test_shared_scale_scales_the_orthogonal_class_embedding():
    """shared_scale=1 is BigGAN's orthogonal init (rows of norm 1 with 10 classes <= 128 dims);
    another scale multiplies that same init, and a non-positive one is refused."""
    base = tiny().G.shared.weight.detach()
    torch.testing.assert_close(base @ base.t(), torch.eye(base.shape[0]), atol=1e-5, rtol=0)
    scaled = tiny(shared_scale=4.0).G.shared.weight.detach()
    torch.testing.assert_close(scaled, 4.0 * base)
    with pytest.raises(UserError, match="shared_scale"):
        tiny(shared_scale=0.0)


def test_projection_discriminator():
    m = tiny()
    D = m.D.eval()
    torch.manual_seed(1)
    x = torch.rand(3, 1, 16, 16) * 2 - 1
    y0, y1 = torch.tensor([0, 1, 2]), torch.tensor([1, 2, 0])
    out0 = D(x, y0)
    assert not torch.allclose(out0, D(x, y1))  # the score depends on the class
    # h is the global sum pool of the last block's ReLU'd map
    seen = {}
    D.blocks[-1].register_forward_hook(lambda mod, a, out: seen.update(last=out))
    h = D.features(x)
    torch.testing.assert_close(h, F.relu(seen["last"]).sum(dim=(2, 3)))
    # by hand: w . h + <E[y], h>, with the spectrally normalised w and E
    w = D.linear.weight.detach()  # [1, C]
    E = D.embed.weight.detach()  # [classes, C]
    expected = h @ w[0] + (E[y0] * h).sum(dim=1)
    torch.testing.assert_close(out0, expected, rtol=1e-5, atol=1e-5)


def test_self_attention_is_the_identity_at_zero_gain_and_mixes_positions_otherwise():
    torch.manual_seed(0)
    att = SelfAttention(16, gain_init=0.0)
    assert float(att.gamma.detach()) == 0.0
    x = torch.randn(2, 16, 8, 8)
    torch.testing.assert_close(att(x), x, rtol=0, atol=0)
    with torch.no_grad():
        att.gamma.fill_(1.0)
    x2 = x.clone()
    x2[:, :, 0, 0] += 3.0  # change one position
    diff = (att(x2) - att(x)).abs()
    assert diff[:, :, 4:, 4:].amax() > 1e-4  # positions far from it change too
    # in both networks the attention sits at attention_res (half the image by default)
    m = tiny()
    sizes = {}
    for name, net in (("G", m.G), ("D", m.D)):
        net.attention.register_forward_hook(lambda mod, a, out, n=name: sizes.update({n: a[0]}))
    z, y = inputs(m)
    m.G.eval()
    m.D.eval()
    m.D(m.G(z, y), y)
    assert sizes["G"].shape[-1] == sizes["D"].shape[-1] == 8
    assert create_model("biggan", attention_res=8).G.attention_index == 1  # 4x4 -> 8x8


def test_truncation_resamples_a_gaussian_z():
    m = tiny()
    assert MODELS.get("biggan").truncation == "z"
    prior = prior_of(m.G)
    assert type(prior) is Prior and prior.nz == m.config.nz  # plain N(0, I) z
    seeds = list(range(64))
    full = prior.from_seeds(seeds)
    trunc = prior.from_seeds(seeds, truncation=0.5)
    assert trunc.abs().max() <= 0.5
    inside = full.abs() <= 0.5
    assert inside.float().mean() < 0.6  # most of a N(0, 1) z lies outside 0.5
    torch.testing.assert_close(trunc[inside], full[inside])  # kept as they were
    assert (trunc[~inside].abs() < 0.5).all()  # redrawn, not clamped onto the bound ...
    assert not torch.allclose(trunc, full * 0.5 / full.abs().max())  # ... nor scaled
    # gankit.sampling.generate feeds exactly these latents to G
    cpu = torch.device("cpu")
    run = LoadedRun(checkpoint=None, model=m, G=m.G.eval(), used_ema=False, device=cpu)
    fed = []
    m.G.register_forward_pre_hook(lambda mod, args: fed.append(args[0]))
    imgs = generate(run, seeds[:8], [0, 1, 2, 0, 1, 2, 0, 1], truncation=0.5)
    assert imgs.shape == (8, 1, 16, 16)
    z = torch.cat(fed)
    assert z.abs().max() <= 0.5
    torch.testing.assert_close(z, trunc[:8])


def test_orthogonal_regulariser_on_the_raw_spectral_norm_weights():
    m = tiny()
    G = m.G
    weights = list(ortho_weights(G))
    raw = [x.parametrizations.weight.original for x in sn_modules(G)]
    assert len(weights) == len(raw) and all(any(w is r for r in raw) for w in weights)
    reg = Orthogonal()
    step = Step(G, m.D, None, None, torch.zeros(1), None, torch.zeros(1))

    def value() -> torch.Tensor:
        return reg.g_term(step)[0]

    torch.manual_seed(1)
    with torch.no_grad():
        for w in weights:
            w.normal_()
    v = value()
    assert v > 0
    G.zero_grad()
    v.backward()
    for w in raw:  # the gradient reaches every raw (not normalised) weight with 2+ rows
        assert w.grad is not None and (w.grad.abs().sum() > 0) == (w.shape[0] > 1)
    with torch.no_grad():  # on the raw weights: it scales as |W|^4, no normalisation between
        for w in weights:
            w.mul_(2.0)
    torch.testing.assert_close(value(), 16 * v.detach(), rtol=1e-4, atol=0)
    with torch.no_grad():  # rows orthogonal (of any norms): nothing to penalise
        for w in weights:
            flat = torch.zeros(w.shape[0], w[0].numel())
            k = min(flat.shape)
            flat[torch.arange(k), torch.arange(k)] = torch.linspace(0.5, 2.0, k)
            w.copy_(flat.view_as(w))
    torch.testing.assert_close(value(), torch.zeros(()), rtol=0, atol=1e-8)


def test_one_step_with_the_models_own_training_defaults(tmp_path):
    cfg = resolve_train_config("biggan", "digits", {"batch_size": 16})
    assert (cfg.reg, cfg.beta1, cfg.beta2, cfg.n_critic) == ("ortho:weight=1e-4", 0.0, 0.999, 1)
    assert cfg.lr_d > cfg.lr_g  # BigGAN's two time-scale setup
    rc = RunConfig(model="biggan", model_config=tiny_overrides("biggan"), train=cfg)
    tr = Trainer(rc, tmp_path, synthetic_dataset(n=32), progress=False, tensorboard=False)
    assert tr.objective.name == "hinge"
    g0 = [p.detach().clone() for p in tr.G.parameters()]
    logs = tr.train_step()
    assert torch.isfinite(logs["loss_d"]) and torch.isfinite(logs["loss_g"])
    assert float(logs["ortho"]) > 0
    assert all(not torch.equal(a, b) for a, b in zip(g0, tr.G.parameters(), strict=True))
