"""StyleGAN's mechanisms, each checked where it lives: mapping and style mixing, truncation in
w space, modulated / demodulated convolutions, noise inputs, the constant input, w_avg, the
style-mixing figure, and one training step with the model's own defaults (R1)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from gankit.analysis.style_mixing import save_style_mixing_figure, style_mixing_grid
from gankit.config import RunConfig
from gankit.errors import UserError
from gankit.latent import prior_of
from gankit.models import create_model
from gankit.models.stylegan import demodulation, modulated_conv2d
from gankit.training.run import resolve_train_config
from gankit.training.trainer import Trainer
from tests.conftest import synthetic_dataset, tiny_overrides


def tiny(**kw):
    torch.manual_seed(0)
    return create_model("stylegan", **{**tiny_overrides("stylegan"), **kw})


def capture(monkeypatch, G):
    """Record every mapping output and every ws passed to synthesis."""
    maps, wss = [], []
    mapping, synthesis = G.mapping, G.synthesis

    def mapping_spy(z):
        w = mapping(z)
        maps.append(w.detach().clone())
        return w

    def synthesis_spy(ws, *a, **kw):
        wss.append(ws.detach().clone())
        return synthesis(ws, *a, **kw)

    monkeypatch.setattr(G, "mapping", mapping_spy)
    monkeypatch.setattr(G, "synthesis", synthesis_spy)
    return maps, wss


def z_batch(n: int = 8, nz: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, nz, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- style mixing
def test_style_mixing_takes_a_second_w_from_a_random_crossover_on(monkeypatch):
    G = tiny(mixing_prob=1.0).G.train()
    maps, wss = capture(monkeypatch, G)
    G(z_batch(64))
    assert len(maps) == 2 and len(wss) == 1  # a second latent was mapped
    w1, w2, ws = maps[0], maps[1], wss[0]
    assert ws.shape == (64, G.num_ws, G.w_dim)
    cuts = []
    for i in range(64):
        same = (ws[i] == w1[i]).all(1)  # [num_ws]: layers that kept the first w
        cut = int(same.long().argmin())  # first layer with another w
        assert 1 <= cut < G.num_ws
        assert same[:cut].all()
        torch.testing.assert_close(ws[i, cut:], w2[i].expand(G.num_ws - cut, -1))
        assert not torch.allclose(w1[i], w2[i])
        cuts.append(cut)
    assert len(set(cuts)) > 1  # the crossover is drawn per sample


def test_no_mixing_with_probability_zero_or_in_eval_mode(monkeypatch):
    for prob, train in ((0.0, True), (1.0, False)):
        G = tiny(mixing_prob=prob).G.train(train)
        maps, wss = capture(monkeypatch, G)
        G(z_batch())
        assert len(maps) == 1
        torch.testing.assert_close(wss[0], maps[0].unsqueeze(1).expand_as(wss[0]))


def test_mixing_prob_must_be_a_probability():
    with pytest.raises(UserError, match="mixing_prob"):
        tiny(mixing_prob=1.5)


# ---------------------------------------------------------------- truncation
def test_truncation_pulls_w_towards_w_avg(monkeypatch):
    G = tiny().G.eval()
    with torch.no_grad():
        G.w_avg.copy_(torch.randn(G.w_dim))
        for name, p in G.named_parameters():  # visible noise: fixed in eval mode too
            if name.endswith("noise_strength"):
                p.fill_(0.3)
    z = z_batch()
    with torch.no_grad():
        x0 = G(z, truncation=0.0)
        x_avg = G.synthesis(G.w_avg.expand(1, G.num_ws, -1))
        torch.testing.assert_close(x0, x_avg.expand_as(x0))  # psi = 0: every sample is w_avg's
        torch.testing.assert_close(G(z, truncation=1.0), G(z))  # psi = 1: untouched
        assert not torch.allclose(G(z, truncation=0.5), G(z))
        w = G.mapping(z)
        _, wss = capture(monkeypatch, G)
        G(z, truncation=0.5)
    half = (w + G.w_avg) / 2
    torch.testing.assert_close(wss[0], half.unsqueeze(1).expand_as(wss[0]))


def test_w_avg_follows_the_batch_mean_of_w_in_training_only():
    G = tiny(mixing_prob=0.0).G
    old = torch.randn(G.w_dim)
    G.w_avg.copy_(old)
    z = z_batch(16)
    with torch.no_grad():
        mean_w = G.mapping(z).mean(0)
        G.eval()(z)
        torch.testing.assert_close(G.w_avg, old, rtol=0, atol=0)
        G.train()(z)
    torch.testing.assert_close(G.w_avg, mean_w + G.w_avg_beta * (old - mean_w))
    assert (G.w_avg - mean_w).norm() < (old - mean_w).norm()


# ---------------------------------------------------------------- modulated convolution
def reference_modconv(x, weight, styles, up=False):
    """The paper's form: one explicitly modulated and demodulated weight per sample."""
    out = []
    for xi, si in zip(x, styles, strict=True):
        if up:  # [I, O, k, k]
            w = weight * si[:, None, None, None]
            w = w / w.square().sum((0, 2, 3), keepdim=True).sqrt()
            out.append(2 * F.conv_transpose2d(xi[None], w, stride=2, padding=1))
        else:  # [O, I, k, k]
            w = weight * si[None, :, None, None]
            w = w / w.square().sum((1, 2, 3), keepdim=True).sqrt()
            out.append(F.conv2d(xi[None], w, padding=1))
    return torch.cat(out)


@pytest.mark.parametrize("up", [False, True])
def test_modulated_conv_equals_per_sample_demodulated_weights(up):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 4, 4, generator=g)
    weight = torch.randn((5, 6, 4, 4) if up else (6, 5, 3, 3), generator=g)
    s = torch.rand(3, 5, generator=g) + 0.5

    def modconv(styles):
        d = demodulation(weight, styles, up=up)
        return modulated_conv2d(x, weight, styles, up=up) * d[:, :, None, None]

    y = modconv(s)
    assert y.shape == (3, 6, 8, 8) if up else (3, 6, 4, 4)
    torch.testing.assert_close(y, reference_modconv(x, weight, s, up))
    torch.testing.assert_close(modconv(3.0 * s), y)  # demodulation removes the style's scale
    undemodulated = modulated_conv2d(x, weight, 3.0 * s, up=up)
    torch.testing.assert_close(undemodulated, 3.0 * modulated_conv2d(x, weight, s, up=up))


def test_each_sample_is_convolved_with_its_own_style():
    G = tiny().G.eval()
    layer = G.blocks[1].convs[1].conv  # a modulated 3x3 convolution
    x = torch.randn(1, layer.weight.shape[1], 8, 8).expand(2, -1, -1, -1)
    w = torch.randn(2, G.w_dim)
    y, d = layer(x, w)
    out = y * d[:, :, None, None]
    assert not torch.allclose(out[0], out[1])  # same input, different styles
    y_same, d_same = layer(x, w[:1].expand(2, -1))
    torch.testing.assert_close((y_same * d_same[:, :, None, None])[1], out[0])


def test_every_style_input_changes_the_image():
    G = tiny().G.eval()
    ws = G.mapping(z_batch(1)).unsqueeze(1).repeat(1, G.num_ws, 1)
    with torch.no_grad():
        x = G.synthesis(ws)
        for i in range(G.num_ws):
            other = ws.clone()
            other[:, i] = torch.randn(G.w_dim)
            assert not torch.allclose(G.synthesis(other), x), i


# ---------------------------------------------------------------- noise, constant input
def test_noise_is_fresh_in_training_and_fixed_in_eval():
    G = tiny().G.train()
    ws = G.mapping(z_batch(4)).detach().unsqueeze(1).repeat(1, G.num_ws, 1)
    with torch.no_grad():
        torch.testing.assert_close(G.synthesis(ws), G.synthesis(ws))  # strengths start at 0
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.5)
        assert not torch.allclose(G.synthesis(ws), G.synthesis(ws))
        G.eval()
        x = G.synthesis(ws)
        torch.testing.assert_close(G.synthesis(ws), x, rtol=0, atol=0)
        assert not torch.allclose(G.synthesis(ws, noise_mode="none"), x)  # the noise is used
        z = z_batch(6)
        torch.testing.assert_close(G(z[:2]), G(z)[:2])  # a sample does not depend on the batch


def test_the_constant_input_is_learned():
    G = tiny().G.train()
    assert any(p is G.const for p in G.parameters())
    assert G.const.shape[-2:] == (4, 4)
    G(z_batch()).square().mean().backward()
    assert G.const.grad is not None and G.const.grad.abs().sum() > 0


# ---------------------------------------------------------------- structure
@pytest.mark.parametrize("res", [8, 16, 32])
def test_blocks_are_derived_from_the_resolution(res):
    m = create_model("stylegan", resolution=res, channels=1, nz=8, ngf=8, ndf=8)
    stages = res.bit_length() - 1
    assert m.G.num_ws == 2 + 3 * (stages - 2)  # 4x4: conv + toRGB; then 2 convs + toRGB
    assert m.G.layer_resolutions[-1] == res and len(m.D.blocks) == stages - 2
    x = m.G.eval()(torch.randn(2, 8))
    assert x.shape == (2, 1, res, res)
    assert m.D.eval()(x).shape == (2,)
    with pytest.raises(UserError, match="power-of-two"):
        create_model("stylegan", resolution=res + 4)


# ---------------------------------------------------------------- style-mixing figure
def test_style_mixing_grid_layout():
    G = tiny().G.eval()
    rows, cols = [1, 2, 3], [4, 5]
    imgs, lay = style_mixing_grid(G, rows, cols)
    assert imgs.shape == (4 * 3, 1, 16, 16) and lay.nrow == 3
    assert 1 <= lay.crossover < G.num_ws
    with torch.no_grad():
        src = G(prior_of(G).from_seeds(rows + cols))
    torch.testing.assert_close(imgs[1:3], src[3:])  # top row: the column sources
    torch.testing.assert_close(imgs[[3, 6, 9]], src[:3])  # left column: the row sources
    mix = imgs[lay.cell(1, 0)]
    assert not torch.allclose(mix, src[1]) and not torch.allclose(mix, src[3])
    everything_coarse, lay = style_mixing_grid(G, rows, cols, crossover=G.num_ws)
    torch.testing.assert_close(everything_coarse[lay.cell(2, 1)], src[2])
    everything_fine, lay = style_mixing_grid(G, rows, cols, crossover=0)
    torch.testing.assert_close(everything_fine[lay.cell(2, 1)], src[4])


def test_style_mixing_figure_is_written(tmp_path):
    G = tiny().G.train()
    path = save_style_mixing_figure(G, [1, 2, 3], [4, 5], tmp_path / "mix.png", crossover=3)
    assert G.training  # the mode is restored
    with Image.open(path) as im:  # 3 x 4 images of 16 px, 2 px padding, scaled 2x
        assert im.size == (2 * (3 * 18 + 2), 2 * (4 * 18 + 2))


# ---------------------------------------------------------------- training defaults
def test_one_step_with_the_model_defaults_runs_r1(tmp_path):
    cfg = resolve_train_config("stylegan", "digits", {"batch_size": 16})
    assert cfg.reg.startswith("r1:") and (cfg.beta1, cfg.beta2) == (0.0, 0.99)
    rc = RunConfig(model="stylegan", model_config=tiny_overrides("stylegan"), train=cfg)
    tr = Trainer(rc, tmp_path, synthetic_dataset(n=32), progress=False, tensorboard=False)
    logs = tr.train_step()
    assert torch.isfinite(logs["r1"]) and logs["r1"] > 0
    assert torch.isfinite(logs["loss_d"]) and torch.isfinite(logs["loss_g"])
    assert tr.G.w_avg.abs().sum() > 0  # the running mean of w moved
    torch.testing.assert_close(tr.G_ema.w_avg, tr.G.w_avg)  # and the EMA copy carries it


def test_sampling_applies_truncation_in_w_space():
    """`gankit sample --trunc psi` on a StyleGAN pulls w towards w_avg, inside G."""
    from gankit.sampling import LoadedRun, generate

    torch.manual_seed(0)
    m = create_model("stylegan", **tiny_overrides("stylegan"))
    m.G.w_avg.normal_()  # a non-trivial average, so that psi -> 0 has somewhere to go
    run = LoadedRun(
        checkpoint=None, model=m, G=m.G.eval(), used_ema=False, device=torch.device("cpu")
    )
    plain = generate(run, [0, 1])
    torch.testing.assert_close(generate(run, [0, 1], truncation=1.0), plain)
    near_avg = generate(run, [0, 1], truncation=1e-6)
    torch.testing.assert_close(near_avg[0], near_avg[1], atol=1e-4, rtol=0)
    assert not torch.allclose(plain[0], plain[1], atol=1e-3)
    with pytest.raises(UserError, match=r"psi in \(0, 1\]"):
        generate(run, [0], truncation=1.5)
