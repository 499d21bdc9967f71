"""LapGAN: the Laplacian pyramid, coarse-to-fine sampling and the per-level discriminators."""

from __future__ import annotations

import pytest
import torch

from gankit.config import RunConfig
from gankit.errors import UserError
from gankit.models import MODELS, create_model
from gankit.models.lapgan import (
    build_pyramid,
    collapse_pyramid,
    downsample,
    gaussian_pyramid,
    upsample,
)
from gankit.training.run import resolve_train_config
from gankit.training.trainer import Trainer
from tests.conftest import synthetic_dataset, tiny_overrides


def _structured(n: int, channels: int, res: int) -> torch.Tensor:
    """Smooth ramps, a hard-edged disc and a one-pixel checkerboard: every frequency band."""
    i, j = torch.meshgrid(torch.arange(res), torch.arange(res), indexing="ij")
    ramp = (i + 2 * j).float() / (3 * res) * 2 - 1
    disc = (((i - res / 3) ** 2 + (j - res / 2) ** 2) < (res / 4) ** 2).float() * 2 - 1
    checker = ((i + j) % 2).float() * 2 - 1
    planes = torch.stack([ramp, disc, checker, 0.5 * (ramp + disc)])
    idx = torch.arange(n * channels) % len(planes)
    return planes[idx].view(n, channels, res, res)


def _model(resolution: int = 16, channels: int = 1, seed: int = 0):
    torch.manual_seed(seed)
    m = create_model("lapgan", **tiny_overrides("lapgan", resolution, channels))
    m.G.eval()
    m.D.eval()
    return m


# ----------------------------------------------------------------------------- the pyramid


@pytest.mark.parametrize("res,levels", [(16, 2), (32, 3)])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("kind", ["random", "structured"])
def test_build_then_collapse_gives_the_image_back(res, levels, channels, kind):
    g = torch.Generator().manual_seed(res + channels)
    if kind == "random":
        x = torch.rand(3, channels, res, res, generator=g) * 2 - 1
    else:
        x = _structured(3, channels, res)
    coarsest, residuals = build_pyramid(x, levels)
    assert coarsest.shape == (3, channels, res >> levels, res >> levels)
    assert [h.shape[-1] for h in residuals] == [res >> k for k in range(levels - 1, -1, -1)]
    torch.testing.assert_close(collapse_pyramid(coarsest, residuals), x, rtol=0, atol=1e-6)
    # and the residuals are not trivially the image itself: the coarse part carries the mean
    assert residuals[-1].abs().mean() < x.abs().mean()


def test_constant_image_has_no_band_pass_content():
    x = torch.tensor([-0.3, 0.7, 1.0]).view(1, 3, 1, 1).expand(2, 3, 16, 16).contiguous()
    coarsest, residuals = build_pyramid(x, 2)
    torch.testing.assert_close(coarsest, x[..., :4, :4], rtol=0, atol=1e-7)
    for h in residuals:
        torch.testing.assert_close(h, torch.zeros_like(h), rtol=0, atol=1e-7)


def test_downsample_of_a_ramp_is_the_ramp_at_the_block_centres():
    i, j = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    a, b = 0.05, -0.02
    ramp = (a * j + b * i)[None, None]
    ci, cj = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    expected = (a * (2 * cj + 0.5) + b * (2 * ci + 0.5))[None, None]
    torch.testing.assert_close(downsample(ramp), expected, rtol=0, atol=1e-7)


def test_a_linear_ramp_leaves_no_residual_away_from_the_border():
    """Bilinear upsampling reproduces linear content, so a smooth ramp lands in the low-pass
    image; only the image border (where interpolation clamps) leaves a residual."""
    i, j = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    ramp = (0.03 * j - 0.02 * i - 0.4)[None, None]
    _, residuals = build_pyramid(ramp, 2)
    for h in residuals:
        inner = h[..., 1:-1, 1:-1]
        torch.testing.assert_close(inner, torch.zeros_like(inner), rtol=0, atol=1e-6)
        assert h.abs().max() > 1e-3  # the border does differ: the check above is not vacuous


def test_the_finest_frequency_lives_only_in_the_finest_residual():
    i, j = torch.meshgrid(torch.arange(16), torch.arange(16), indexing="ij")
    checker = (((i + j) % 2).float() * 2 - 1)[None, None]
    coarsest, residuals = build_pyramid(checker, 2)
    torch.testing.assert_close(coarsest, torch.zeros_like(coarsest), rtol=0, atol=0)
    torch.testing.assert_close(residuals[0], torch.zeros_like(residuals[0]), rtol=0, atol=0)
    torch.testing.assert_close(residuals[1], checker, rtol=0, atol=0)


# ----------------------------------------------------------------------------- configuration


@pytest.mark.parametrize("res,base,levels", [(16, 8, 1), (16, 4, 2), (32, 8, 2), (32, 4, 3)])
def test_levels_are_derived_from_the_resolutions(res, base, levels):
    m = create_model("lapgan", resolution=res, base_resolution=base, nz=12, ngf=4, ndf=4)
    assert len(m.G.refine) == len(m.D.refine) == levels
    z = torch.randn(2, 12)
    x = m.G.eval()(z)
    assert x.shape == (2, 1, res, res)
    assert m.G.pyramid(z)[0].shape == (2, 1, base, base)
    assert m.D.eval()(x).shape == (2, levels + 1)


@pytest.mark.parametrize(
    "overrides,match",
    [
        ({"resolution": 16, "base_resolution": 16}, "base_resolution < resolution"),
        ({"resolution": 32, "base_resolution": 6}, "power of two"),
        ({"resolution": 32, "base_resolution": 4, "nz": 3}, "nz >= 4"),
    ],
)
def test_configs_without_a_pyramid_are_user_errors(overrides, match):
    with pytest.raises(UserError, match=match):
        create_model("lapgan", **overrides)


# ----------------------------------------------------------------------------- the generator


def _by_hand(G, z):
    """Sample by calling G_0 and each G_k in order, outside G.forward."""
    z0, planes = G.split_latent(z)
    image = coarsest = G.base(z0)
    residuals = []
    for g_k, noise in zip(G.refine, planes, strict=True):
        low = upsample(image)
        residuals.append(g_k(low, noise))
        image = low + residuals[-1]
    return coarsest, residuals


def test_sampling_runs_coarse_to_fine():
    m = _model(resolution=32)  # base 8: two finer levels
    G = m.G
    z = torch.randn(4, G.z_dim, generator=torch.Generator().manual_seed(1))
    coarsest, residuals = _by_hand(G, z)
    assert len(residuals) == 2
    expected = collapse_pyramid(coarsest, residuals).clamp(-1, 1)
    torch.testing.assert_close(G(z), expected, rtol=0, atol=0)
    torch.testing.assert_close(G(z), G(z), rtol=0, atol=0)  # no randomness inside G

    # Perturbing G_0's output must reach every finer level's conditioning input.
    seen: list[list[torch.Tensor]] = [[], []]
    hooks = [
        g_k.register_forward_pre_hook(lambda mod, args, k=k: seen[k].append(args[0].clone()))
        for k, g_k in enumerate(G.refine)
    ]
    clean = G(z)
    bump = G.base.register_forward_hook(lambda mod, args, out: out + 0.5 * torch.sign(out))
    bumped = G(z)
    bump.remove()
    for h in hooks:
        h.remove()
    for k in range(2):
        assert (seen[k][0] - seen[k][1]).abs().mean() > 0.05, k
    torch.testing.assert_close(seen[0][1], upsample(coarsest + 0.5 * torch.sign(coarsest)))
    assert not torch.allclose(clean, bumped)


def test_each_level_is_conditioned_on_the_upsampled_coarser_image():
    m = _model(resolution=32)
    g = torch.Generator().manual_seed(2)
    for k, g_k in enumerate(m.G.refine, start=1):
        side = 8 * 2**k
        noise = torch.randn(2, 1, side, side, generator=g)
        low_a = torch.rand(2, 1, side, side, generator=g) * 2 - 1
        low_b = upsample(downsample(low_a))  # a blurred version of the same image
        out_a, out_b = g_k(low_a, noise), g_k(low_b, noise)
        assert (out_a - out_b).abs().mean() > 1e-3 * out_a.abs().mean()
        # and on its noise plane
        assert not torch.allclose(g_k(low_a, noise), g_k(low_a, torch.randn_like(noise)))


def test_the_noise_planes_come_from_disjoint_chunks_of_z():
    m = _model(resolution=32)
    G = m.G
    assert G.chunks == [4, 2, 2] and sum(G.chunks) == G.z_dim
    z = torch.randn(3, G.z_dim, generator=torch.Generator().manual_seed(3))
    z0, planes = G.split_latent(z)
    assert [p.shape for p in planes] == [(3, 1, 16, 16), (3, 1, 32, 32)]
    z2 = z.clone()
    z2[:, 6:] += 1.0  # only the last level's chunk
    z0b, planes_b = G.split_latent(z2)
    torch.testing.assert_close(z0b, z0, rtol=0, atol=0)
    torch.testing.assert_close(planes_b[0], planes[0], rtol=0, atol=0)
    assert not torch.allclose(planes_b[1], planes[1])
    # unit variance per pixel for z ~ N(0, I)
    many = G.split_latent(torch.randn(4000, G.z_dim, generator=torch.Generator().manual_seed(4)))
    assert 0.9 < float(many[1][1].std(dim=0).mean()) < 1.1


def test_the_output_is_clamped_to_the_data_range():
    m = _model()
    with torch.no_grad():
        m.G.refine[-1].net[-1].bias.fill_(3.0)  # a residual far beyond the range
    x = m.G(torch.randn(2, m.G.z_dim))
    assert x.max() == 1.0 and x.min() >= -1.0


# ----------------------------------------------------------------------------- the discriminator


@pytest.mark.parametrize("res,channels", [(16, 3), (32, 1)])
def test_each_discriminator_sees_its_own_band_and_low_pass(res, channels):
    m = _model(resolution=res, channels=channels)
    D, levels = m.D, len(m.D.refine)
    x = torch.rand(3, channels, res, res, generator=torch.Generator().manual_seed(5)) * 2 - 1
    seen: dict[int, tuple[torch.Tensor, ...]] = {}
    hooks = [D.base.register_forward_pre_hook(lambda mod, args: seen.__setitem__(0, args))]
    hooks += [
        d_k.register_forward_pre_hook(lambda mod, args, k=k: seen.__setitem__(k, args))
        for k, d_k in enumerate(D.refine, start=1)
    ]
    out = D(x)
    for h in hooks:
        h.remove()
    assert out.shape == (3, levels + 1)
    coarsest, residuals = build_pyramid(x, levels)
    torch.testing.assert_close(seen[0][0], coarsest, rtol=0, atol=0)
    torch.testing.assert_close(out[:, 0], D.base(coarsest))
    for k in range(1, levels + 1):
        band, low = seen[k]
        torch.testing.assert_close(band, residuals[k - 1], rtol=0, atol=0)
        # l_k is the upsampled image of the coarser levels, rebuilt here from the pyramid
        expected_low = upsample(collapse_pyramid(coarsest, residuals[: k - 1]))
        torch.testing.assert_close(low, expected_low, rtol=0, atol=1e-6)
        torch.testing.assert_close(out[:, k], D.refine[k - 1](band, low))


def test_the_level_logits_are_independent_networks():
    """Column k's gradient reaches only D_k's parameters: per-level GAN losses."""
    m = _model(resolution=32)
    D = m.D
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    nets = [D.base, *D.refine]
    for k in range(len(nets)):
        D.zero_grad(set_to_none=True)
        D(x)[:, k].sum().backward()
        for j, net in enumerate(nets):
            touched = any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
            assert touched == (j == k), (k, j)


def test_gaussian_pyramid_is_repeated_downsampling():
    x = torch.rand(1, 1, 16, 16)
    images = gaussian_pyramid(x, 2)
    torch.testing.assert_close(images[1], downsample(x), rtol=0, atol=0)
    torch.testing.assert_close(images[0], downsample(downsample(x)), rtol=0, atol=0)
    assert images[2] is x


# ----------------------------------------------------------------------------- training


def test_train_defaults_are_the_papers_adam_setup():
    spec = MODELS.get("lapgan")
    assert spec.d_output == "levels"
    cfg = resolve_train_config("lapgan", "digits", {})
    assert (cfg.optimizer, cfg.lr_g, cfg.lr_d, cfg.beta1, cfg.beta2, cfg.batch_size) == (
        "adam",
        2e-4,
        2e-4,
        0.5,
        0.999,
        64,
    )


def test_one_step_with_a_gradient_penalty_on_all_levels(tmp_path):
    torch.manual_seed(0)
    cfg = resolve_train_config("lapgan", "digits", {"reg": "gp", "batch_size": 8})
    rc = RunConfig(model="lapgan", model_config=tiny_overrides("lapgan"), train=cfg)
    tr = Trainer(rc, tmp_path, synthetic_dataset(n=16), progress=False, tensorboard=False)
    d0 = [p.detach().clone() for p in tr.D.parameters()]
    logs = tr.train_step()
    assert torch.isfinite(logs["gp"]) and float(logs["gp"]) > 0
    assert all(not torch.equal(a, b) for a, b in zip(d0, tr.D.parameters(), strict=True))
