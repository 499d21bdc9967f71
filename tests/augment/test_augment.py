"""DiffAugment, the ADA pipeline and ADA's p controller (gankit.augment)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from gankit.augment import (
    ADA,
    AdaController,
    DiffAugment,
    ada_augment,
    diff_augment,
    parse_augment,
)
from gankit.augment import diffaug as da
from gankit.augment.ada import GROUPS, OPS
from gankit.errors import UserError

DIFF_OPS = [da.brightness, da.saturation, da.contrast, da.translation, da.cutout]


def images(channels: int = 1, n: int = 8, size: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, channels, size, size, generator=g) * 2 - 1


def gen(seed: int = 1) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- gradients reach G
class TinyG(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.c = channels
        self.fc = nn.Linear(4, channels * 16 * 16)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.fc(z)).view(-1, self.c, 16, 16)


def grad_of_g(augment, channels: int) -> torch.Tensor:
    torch.manual_seed(0)
    G = TinyG(channels)
    x = augment(G(torch.randn(8, 4)))
    # a D-like readout that weighs every pixel differently, so no op's gradient cancels
    w = torch.linspace(-1, 2, x[0].numel()).view_as(x[0])
    (x * w).sum().backward()
    return G.fc.weight.grad


@pytest.mark.parametrize("op", DIFF_OPS, ids=lambda f: f.__name__)
def test_diffaug_ops_pass_gradients_to_g(op):
    grad = grad_of_g(lambda x: op(x, gen()), channels=3)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("channels", [1, 3])
def test_ada_ops_pass_gradients_to_g(op, channels):
    grad = grad_of_g(lambda x: ada_augment(x, 1.0, (op,), gen()), channels)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_ada_gradient_is_the_op_s_own():
    # xflip at p=1 with both outcomes: the input gradient is the flipped output gradient
    x = images(n=64).requires_grad_(True)
    y = ada_augment(x, 1.0, ("xflip",), gen(3))
    flipped = (y - x).flatten(1).abs().amax(1) > 1e-6
    assert 0 < flipped.sum() < 64
    w = torch.randn_like(y)
    (y * w).sum().backward()
    expect = torch.where(flipped[:, None, None, None], w.flip(-1), w)
    assert_close(x.grad, expect, atol=1e-5, rtol=0)


# ---------------------------------------------------------------- identities, shapes, ranges
@pytest.mark.parametrize("op", DIFF_OPS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("channels", [1, 3])
def test_diffaug_ops_are_identities_at_strength_0(op, channels):
    x = images(channels)
    assert_close(op(x, gen(), strength=0.0), x)


@pytest.mark.parametrize("channels", [1, 3])
def test_ada_is_the_identity_at_p_0(channels):
    x = images(channels, size=28)
    assert_close(ada_augment(x, 0.0, OPS, gen()), x, atol=0, rtol=0)
    assert_close(ada_augment(x, torch.tensor(0.0), GROUPS["bgc"]), x, atol=0, rtol=0)


def test_saturation_of_one_channel_is_skipped():
    x, g = images(1), gen()
    before = g.get_state()
    assert da.saturation(x, g) is x
    assert torch.equal(g.get_state(), before)  # nothing drawn


@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_and_dtypes_are_kept(channels):
    for x in (images(channels, size=20), images(channels, size=20).to(torch.bfloat16)):
        for out in (
            diff_augment(x, tuple(da.POLICY), gen()),
            ada_augment(x, 0.7, OPS, gen()),
        ):
            assert out.shape == x.shape and out.dtype == x.dtype


@pytest.mark.parametrize("ops", [("translation",), ("cutout",)], ids=lambda ops: ops[0])
def test_diffaug_geometry_keeps_the_range(ops):
    x = images(n=64)
    out = diff_augment(x, ops, gen())
    assert out.min() >= -1 and out.max() <= 1
    assert not torch.equal(out, x)


def test_ada_geometry_keeps_the_range():
    # resampling is a convex combination of pixels (reflection, not zero padding)
    x = images(n=64) * 0.5 + 0.25  # in [-0.25, 0.75]
    out = ada_augment(x, 1.0, GROUPS["blit"] + GROUPS["geom"] + ("cutout",), gen())
    assert out.min() >= -0.25 - 1e-5 and out.max() <= 0.75 + 1e-5


def test_ada_blits_are_exact():
    x = images(n=32)
    out = ada_augment(x, 1.0, ("rotate90",), gen(4))
    for a, b in zip(x, out, strict=True):
        assert min((torch.rot90(a, k, (1, 2)) - b).abs().max() for k in range(4)) < 1e-5
    lumaflip = ada_augment(x, 1.0, ("lumaflip",), gen(5))  # 1 channel: an inversion
    for a, b in zip(x, lumaflip, strict=True):
        assert min((a - b).abs().max(), (a + b).abs().max()) < 1e-5


def test_ada_applies_each_op_with_probability_p():
    x = images(n=4000, size=8)
    for p in (0.2, 0.8):
        out = ada_augment(x, p, ("xflip",), gen(6))
        changed = ((out - x).flatten(1).abs().amax(1) > 1e-6).float().mean()
        assert abs(float(changed) - p / 2) < 0.03  # half the flips draw "no flip"


# ---------------------------------------------------------------- the authors' DiffAugment
def authors_translation(x, g, ratio=0.125):
    """DiffAugment_pytorch.py's rand_translation, drawing from `g`."""
    sx, sy = int(x.size(2) * ratio + 0.5), int(x.size(3) * ratio + 0.5)
    tx = torch.randint(-sx, sx + 1, size=[x.size(0), 1, 1], generator=g)
    ty = torch.randint(-sy, sy + 1, size=[x.size(0), 1, 1], generator=g)
    gb, gx, gy = torch.meshgrid(
        torch.arange(x.size(0)), torch.arange(x.size(2)), torch.arange(x.size(3)), indexing="ij"
    )
    gx = torch.clamp(gx + tx + 1, 0, x.size(2) + 1)
    gy = torch.clamp(gy + ty + 1, 0, x.size(3) + 1)
    pad = torch.nn.functional.pad(x, [1, 1, 1, 1, 0, 0, 0, 0])
    return pad.permute(0, 2, 3, 1).contiguous()[gb, gx, gy].permute(0, 3, 1, 2)


def authors_cutout(x, g, ratio=0.5):
    """DiffAugment_pytorch.py's rand_cutout, drawing from `g`."""
    size = int(x.size(2) * ratio + 0.5), int(x.size(3) * ratio + 0.5)
    ox = torch.randint(0, x.size(2) + (1 - size[0] % 2), size=[x.size(0), 1, 1], generator=g)
    oy = torch.randint(0, x.size(3) + (1 - size[1] % 2), size=[x.size(0), 1, 1], generator=g)
    gb, gx, gy = torch.meshgrid(
        torch.arange(x.size(0)), torch.arange(size[0]), torch.arange(size[1]), indexing="ij"
    )
    gx = torch.clamp(gx + ox - size[0] // 2, min=0, max=x.size(2) - 1)
    gy = torch.clamp(gy + oy - size[1] // 2, min=0, max=x.size(3) - 1)
    mask = torch.ones(x.size(0), x.size(2), x.size(3))
    mask[gb, gx, gy] = 0
    return x * mask.unsqueeze(1)


@pytest.mark.parametrize("shape", [(300, 1, 32, 32), (200, 3, 28, 28), (100, 2, 9, 9)])
def test_translation_and_cutout_match_the_authors_code(shape):
    x = torch.randn(shape)
    assert torch.equal(da.translation(x, gen(1)), authors_translation(x, gen(1)))
    assert torch.equal(da.cutout(x, gen(2)), authors_cutout(x, gen(2)))


def test_randomness_comes_from_the_generator_or_the_global_rng():
    x = images(3)
    assert torch.equal(
        diff_augment(x, tuple(da.POLICY), gen(7)), diff_augment(x, tuple(da.POLICY), gen(7))
    )
    assert torch.equal(ada_augment(x, 0.5, OPS, gen(7)), ada_augment(x, 0.5, OPS, gen(7)))
    torch.manual_seed(8)
    a = ada_augment(x, 0.5, OPS)
    torch.manual_seed(8)
    assert torch.equal(a, ada_augment(x, 0.5, OPS))


# ---------------------------------------------------------------- the p controller
def feed(ctl: AdaController, logits: float | torch.Tensor, steps: int, batch: int = 16) -> None:
    for _ in range(steps):
        out = logits if isinstance(logits, torch.Tensor) else torch.full((batch, 1), logits)
        ctl.observe(out)
        ctl.after_d_step()


def test_p_rises_when_r_t_is_above_target_and_falls_below():
    ctl = AdaController(batch_size=16, kimg=1.0, target=0.6)
    rate = 16 * 4 / 1000
    feed(ctl, 2.0, 3)
    assert float(ctl.p) == 0.0  # p moves every 4 D steps only
    feed(ctl, 2.0, 1)
    assert_close(ctl.p, torch.tensor(rate))
    feed(ctl, 2.0, 4 * 4)
    assert_close(ctl.p, torch.tensor(5 * rate))
    # r_t = 0.5 (3 of 4 positive, 1 negative... here 12 of 16 positive): below 0.6, p falls
    mixed = torch.cat([torch.ones(12), -torch.ones(4)])
    assert_close(mixed.sign().mean(), torch.tensor(0.5))
    feed(ctl, mixed, 8)
    assert_close(ctl.p, torch.tensor(3 * rate))
    assert_close(ctl.r_t, torch.tensor(0.5))


def test_p_is_clipped_to_0_and_1_and_crosses_in_ada_kimg():
    ctl = AdaController(batch_size=50, kimg=1.0)  # 1000 images: 20 D steps, 5 updates
    feed(ctl, -1.0, 40, batch=50)
    assert float(ctl.p) == 0.0
    feed(ctl, 1.0, 20, batch=50)
    assert_close(ctl.p, torch.tensor(1.0))
    feed(ctl, 1.0, 8, batch=50)
    assert float(ctl.p) == 1.0


def test_controller_state_round_trips_exactly():
    torch.manual_seed(0)
    stream = [torch.randn(16, 1) + 1.0 for _ in range(23)]  # r_t near 0.6
    a = AdaController(batch_size=16, kimg=1.0)
    for out in stream[:13]:  # stop mid-interval, with sums pending
        a.observe(out)
        a.after_d_step()
    b = AdaController(batch_size=16, kimg=1.0)
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    assert b.state_dict() == a.state_dict()
    for out in stream[13:]:
        for ctl in (a, b):
            ctl.observe(out)
            ctl.after_d_step()
    assert torch.equal(a.p, b.p) and torch.equal(a.r_t, b.r_t)
    assert 0 < float(a.p) < 1
    with pytest.raises(ValueError, match="keys"):
        b.load_state_dict({"p": 0.5})


def test_reduce_sees_the_interval_s_sums():
    ctl = AdaController(batch_size=4, kimg=1.0)
    seen = []

    def reduce(t: torch.Tensor) -> torch.Tensor:
        seen.append(t.clone())
        return t

    for _ in range(4):
        ctl.observe(torch.tensor([1.0, 1.0, -1.0, 0.0]))
        ctl.after_d_step(reduce)
    assert len(seen) == 1 and seen[0].tolist() == [4.0, 16.0]


# ---------------------------------------------------------------- the spec
def test_parse_augment_builds_what_the_spec_names():
    assert parse_augment(None) is None and parse_augment("none") is None
    full = parse_augment("diffaug")
    assert isinstance(full, DiffAugment) and full.policy == ("color", "translation", "cutout")
    part = parse_augment("diffaug:cutout,color")
    assert part.policy == ("color", "cutout") and part.spec() == "diffaug:color,cutout"
    ada = parse_augment("ada", batch_size=32, ada_kimg=2.0, ada_target=0.7)
    assert isinstance(ada, ADA) and ada.ops == GROUPS["bgc"] and ada.spec() == "ada"
    assert ada.controller.rate == 32 * 4 / 2000 and ada.controller.target == 0.7
    assert ada.needs_sign_logit and not full.needs_sign_logit
    assert set(ada.logs()) == set(ada.curves) == {"ada_p", "ada_rt"}
    assert parse_augment("ada:cutout,xflip").ops == ("xflip", "cutout")
    assert parse_augment("ada:blit,noise").ops == ("xflip", "rotate90", "xint", "noise")


@pytest.mark.parametrize(
    "text, words",
    [
        ("diffaug:colour", "unknown op 'colour'"),
        ("diffaug:color,color", "twice"),
        ("ada:shear", "unknown op 'shear'"),
        ("ada:", "no ops"),
        ("stylegan", "unknown augmentation 'stylegan'"),
    ],
)
def test_parse_augment_refuses_unknown_ops_in_one_line(text, words):
    with pytest.raises(UserError, match=words) as err:
        parse_augment(text)
    assert "\n" not in str(err.value)


def test_ada_object_state_and_device():
    ada = parse_augment("ada", batch_size=8, ada_kimg=0.1, generator=gen(9))
    x = images(n=8)
    assert_close(ada(x), x, atol=1e-5, rtol=0)  # p starts at 0
    for _ in range(4):
        ada.observe_real(torch.ones(8, 1))
        ada.after_d_step()
    assert float(ada.p) > 0 and not torch.allclose(ada(x), x)
    other = parse_augment("ada", batch_size=8, ada_kimg=0.1).to("cpu")
    other.load_state_dict(ada.state_dict())
    assert torch.equal(other.p, ada.p)
    with pytest.raises(ValueError):
        DiffAugment().load_state_dict({"p": 1.0})
