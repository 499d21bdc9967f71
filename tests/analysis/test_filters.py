"""Filter views of D: receptive fields, guided backprop, top-k units, first-layer filters, CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from gankit.analysis.filters import (
    choose_channels,
    first_layer_filters,
    guided_backprop,
    layer_view,
    parse_channels,
    receptive_field,
    top_activations,
    unit_gradient,
)
from gankit.cli import main
from gankit.errors import UserError
from gankit.models import create_model
from tests.conftest import tiny_overrides

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _dcgan_d(seed: int = 0, **kw) -> nn.Module:
    torch.manual_seed(seed)
    cfg = {**tiny_overrides("dcgan", resolution=32), **kw}
    return create_model("dcgan", **cfg).D.eval()


def _images(n: int, channels: int = 1, side: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, channels, side, side, generator=g) * 2 - 1


class ReluD(nn.Module):
    """conv 3x3 s1 p1 -> ReLU -> conv 3x3 s2 p1 -> ReLU, with D's (x, y) signature."""

    def __init__(self, bias: float | None = None) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.c1 = nn.Conv2d(1, 4, 3, 1, 1)
        self.a1 = nn.ReLU(inplace=True)
        self.c2 = nn.Conv2d(4, 4, 3, 2, 1)
        self.a2 = nn.ReLU(inplace=True)
        if bias is not None:
            nn.init.constant_(self.c1.bias, bias)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.a2(self.c2(self.a1(self.c1(x)))).flatten(1).sum(1)


# ----------------------------------------------------------------------------- receptive field

# DCGAN's D at 32x32: conv k4 s2 p1 three times. A unit at position i of layer l sees input
# rows start_l + jump_l * i .. + size_l: size 4, 4 + 3*2 = 10, 10 + 3*4 = 22; jump 2, 4, 8;
# start -1 (padding), 2*(-1) - 1 = -3, 2*(-3) - 1 = -7.
HAND = {0: (4, 2, -1), 1: (10, 4, -3), 2: (22, 8, -7)}


def _hand_box(layer: int, y: int, x: int, side: int = 32) -> tuple[int, int, int, int]:
    size, jump, start = HAND[layer]
    t, left = start + jump * y, start + jump * x
    return max(t, 0), max(left, 0), min(t + size, side), min(left + size, side)


@pytest.mark.parametrize("layer", [1, 2])
def test_receptive_field_matches_the_hand_computation(layer: int) -> None:
    D = _dcgan_d()
    img = _images(1)[0]
    side = 32 >> (layer + 1)
    for y in range(side):
        for x in range(side):
            assert receptive_field(D, img, layer, y, x, channel=3) == _hand_box(layer, y, x)
    # layer 0 spot checks, at the border and inside
    for y, x in [(0, 0), (3, 5), (15, 15), (15, 0)]:
        assert receptive_field(D, img, 0, y, x, channel=1) == _hand_box(0, y, x)


def test_receptive_field_of_a_conditional_d_ignores_the_label_plane() -> None:
    torch.manual_seed(0)
    D = create_model("cdcgan", **tiny_overrides("cdcgan", resolution=32)).D.eval()
    img = _images(1)[0]
    for y, x in [(0, 0), (2, 3), (7, 7)]:
        assert receptive_field(D, img, 1, y, x, label=2) == _hand_box(1, y, x)


def test_receptive_field_sees_through_switched_off_units() -> None:
    D = ReluD(bias=-100.0).eval()  # every first-layer unit is off: the plain gradient is 0
    img = _images(1, side=16)[0]
    assert torch.count_nonzero(unit_gradient(D, img, 1, 0, 3, 4)) == 0
    # conv 3x3 s2 p1 over conv 3x3 s1 p1: size 5, jump 2, start -2
    assert receptive_field(D, img, 1, 3, 4) == (4, 6, 9, 11)
    assert receptive_field(D, img, 1, 0, 7) == (0, 12, 3, 16)


# ----------------------------------------------------------------------------- guided backprop

OPS = {
    "ReLU(inplace)": lambda x: nn.ReLU(inplace=True)(x),
    "LeakyReLU(inplace)": lambda x: nn.LeakyReLU(0.2, inplace=True)(x),
    "LeakyReLU": lambda x: nn.LeakyReLU(0.1)(x),
    "F.relu": lambda x: F.relu(x),
    "F.leaky_relu(inplace)": lambda x: F.leaky_relu(x, 0.2, inplace=True),
    "torch.relu": torch.relu,
    "Tensor.relu_": lambda x: x.relu_(),
}


@pytest.mark.parametrize("name", list(OPS))
def test_guided_rule_on_each_activation_form(name: str) -> None:
    op = OPS[name]
    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(200, generator=g).requires_grad_(True)
    grad_out = torch.randn(200, generator=g)
    plain_out = op(x0 * 1.0)
    with guided_backprop():
        out = op(x0 * 1.0)  # a non-leaf copy, so the in-place forms are legal
    torch.testing.assert_close(out, plain_out, rtol=0, atol=0)  # forward is untouched
    out.backward(grad_out)
    expected = grad_out.clamp(min=0) * (x0.detach() > 0)
    torch.testing.assert_close(x0.grad, expected, rtol=0, atol=0)
    x0.grad = None
    op(x0 * 1.0).backward(grad_out)  # outside the block: ordinary gradients again
    assert not torch.equal(x0.grad, expected)


def test_guided_gradient_of_a_network_follows_the_rule_by_hand() -> None:
    D = ReluD().eval()
    img = _images(1, side=16)[0]
    xin = img[None].clone().requires_grad_(True)
    a = D.c1(xin)
    h = F.relu(a)
    b = D.c2(h)
    c = 2
    y, x = divmod(int(b[0, c, 1:-1, 1:-1].argmax()), 6)  # the strongest inner unit: on
    y, x = y + 1, x + 1
    assert b[0, c, y, x] > 0
    g_b = torch.zeros_like(b)
    g_b[0, c, y, x] = 1.0  # the unit's own ReLU passes 1 (positive, input positive)
    (g_h,) = torch.autograd.grad(b, h, g_b, retain_graph=True)
    g_a = g_h.clamp(min=0) * (a > 0)
    assert torch.count_nonzero(g_a) < torch.count_nonzero(g_h)  # the rule removed something
    (g_x,) = torch.autograd.grad(a, xin, g_a)
    guided = unit_gradient(D, img, 1, c, y, x, rule="guided")
    torch.testing.assert_close(guided, g_x[0])
    plain = unit_gradient(D, img, 1, c, y, x)
    assert (plain - guided).abs().max() > 1e-3


def test_guided_backprop_leaves_the_network_as_it_was() -> None:
    D = _dcgan_d(seed=2, channels=3)
    D.train()  # unit_gradient switches to eval and must switch back
    modules_before = [(n, id(m), type(m)) for n, m in D.named_modules()]
    state_before = {k: v.clone() for k, v in D.state_dict().items()}
    imgs = _images(4, channels=3, seed=5)
    D.eval()
    with torch.no_grad():
        out_before = D(imgs)
    D.train()
    top = top_activations(D, imgs, 2, k=1)
    c = choose_channels(top, 1)[0]
    i, y, x = int(top.image[c, 0]), int(top.y[c, 0]), int(top.x[c, 0])
    plain = unit_gradient(D, imgs[i], 2, c, y, x)
    guided = unit_gradient(D, imgs[i], 2, c, y, x, rule="guided")
    assert (plain - guided).abs().max() > 1e-3 * plain.abs().max()
    assert torch.count_nonzero(guided) > 0
    assert D.training
    assert [(n, id(m), type(m)) for n, m in D.named_modules()] == modules_before
    for k, v in D.state_dict().items():
        torch.testing.assert_close(v, state_before[k], rtol=0, atol=0)
    assert all(p.grad is None for p in D.parameters())
    D.eval()
    with torch.no_grad():
        torch.testing.assert_close(D(imgs), out_before, rtol=0, atol=0)
        with guided_backprop():  # forward inside the block is the same network
            torch.testing.assert_close(D(imgs), out_before, rtol=0, atol=0)
    torch.testing.assert_close(unit_gradient(D, imgs[i], 2, c, y, x), plain, rtol=0, atol=0)
    with pytest.raises(RuntimeError, match="boom"), guided_backprop():
        raise RuntimeError("boom")
    torch.testing.assert_close(unit_gradient(D, imgs[i], 2, c, y, x), plain, rtol=0, atol=0)


# ----------------------------------------------------------------------------- top k


def _all_activations(D: nn.Module, images: torch.Tensor, layer: int) -> torch.Tensor:
    from gankit.analysis.dfeatures import feature_layers

    got = []
    h = feature_layers(D)[layer].register_forward_hook(lambda _m, _i, o: got.append(o.clone()))
    with torch.no_grad():
        D(images)
    h.remove()
    return got[0]


@pytest.mark.parametrize("one_per_image", [False, True])
def test_top_k_equals_a_brute_force_search(one_per_image: bool) -> None:
    D = _dcgan_d(seed=4)
    imgs = _images(37, seed=6)
    k = 5
    top = top_activations(D, imgs, 1, k, batch_size=8, one_per_image=one_per_image)
    act = _all_activations(D, imgs, 1)  # [N, C, H, W]
    n, c, h, w = act.shape
    assert top.shape == (c, h, w) and top.values.shape == (c, k)
    per_channel = act.permute(1, 0, 2, 3).reshape(c, n, h * w)
    if one_per_image:
        vals, pos = per_channel.max(2)
        best, img_idx = vals.topk(k, dim=1)
        flat = img_idx * h * w + pos.gather(1, img_idx)
    else:
        best, flat = per_channel.reshape(c, -1).topk(k, dim=1)
    torch.testing.assert_close(top.values, best)
    torch.testing.assert_close(top.image, flat // (h * w))
    torch.testing.assert_close(top.y, flat % (h * w) // w)
    torch.testing.assert_close(top.x, flat % w)
    torch.testing.assert_close(top.mean, per_channel.mean((1, 2)))
    torch.testing.assert_close(top.std, per_channel.std((1, 2), correction=0), rtol=1e-4, atol=1e-6)
    # the units found carry exactly those activations
    for ch in range(c):
        for j in range(k):
            i, yy, xx = int(top.image[ch, j]), int(top.y[ch, j]), int(top.x[ch, j])
            assert act[i, ch, yy, xx] == top.values[ch, j]
    if one_per_image:
        assert all(len(set(top.image[ch].tolist())) == k for ch in range(c))


def test_a_planted_pattern_is_found_and_cropped() -> None:
    D = ReluD().eval()
    imgs = _images(20, side=16, seed=8) * 0.1
    # plant the input pattern that maximises unit (c, 5, 2) of layer 1 into image 13
    c, y, x = 1, 5, 2
    g = unit_gradient(D, imgs[13], 1, c, y, x, rule="linear")
    t, left, b, r = receptive_field(D, imgs[13], 1, y, x, c)
    imgs[13, :, t:b, left:r] = g[:, t:b, left:r].sign()
    view = layer_view(D, imgs, 1, channels=[c], k=3)
    u = view.channels[0].units[0]
    assert (u.image_index, u.y, u.x) == (13, y, x)
    assert u.box == (t, left, b, r) and view.field == (5, 5)
    torch.testing.assert_close(u.patch, imgs[13, :, t:b, left:r])
    # a corner unit sees 3x3 pixels; its patch is padded with zeros where D pads
    g = unit_gradient(D, imgs[4], 1, 3, 0, 0, rule="linear")
    imgs[4, :, :3, :3] = g[:, :3, :3].sign() * 3
    u = layer_view(D, imgs, 1, channels=[3], k=1).channels[0].units[0]
    assert (u.image_index, u.y, u.x, u.box) == (4, 0, 0, (0, 0, 3, 3))
    torch.testing.assert_close(u.patch[:, 2:, 2:], imgs[4, :, :3, :3])
    assert torch.count_nonzero(u.patch[:, :2]) == 0 and torch.count_nonzero(u.patch[:, :, :2]) == 0


def test_choose_channels_and_parse_channels() -> None:
    D = _dcgan_d(seed=4)
    top = top_activations(D, _images(10), 2, k=3)
    chosen = choose_channels(top, 4)
    scores = top.values.mean(1)
    assert chosen == scores.argsort(descending=True)[:4].tolist()
    assert parse_channels("3,7, 12") == [3, 7, 12] and parse_channels("0-2,9") == [0, 1, 2, 9]
    for bad in ("3,x", "5-2", "1,1"):
        with pytest.raises(UserError, match="--channels"):
            parse_channels(bad)
    with pytest.raises(UserError, match="channel 99 does not exist"):
        layer_view(D, _images(4), 2, channels=[99], k=2)


def test_conditional_d_gets_the_labels() -> None:
    torch.manual_seed(0)
    D = create_model("cdcgan", **tiny_overrides("cdcgan", resolution=32)).D.eval()
    imgs, labels = _images(12), torch.arange(12) % 3
    view = layer_view(D, imgs, 1, k=2, labels=labels, count=2)
    assert len(view.channels) == 2 and view.channels[0].units[0].guided.shape == (1, 10, 10)
    other = top_activations(D, imgs, 1, k=2, labels=(labels + 1) % 3)
    assert not torch.equal(other.values, view.top.values)


# ----------------------------------------------------------------------------- first layer


def test_first_layer_filters_are_the_weights_scaled_per_filter() -> None:
    D = _dcgan_d(channels=3)
    w = D.net.main[0].weight.detach()
    f = first_layer_filters(D)
    assert f.shape == (8, 3, 4, 4) and f.min() >= 0 and f.max() <= 1
    torch.testing.assert_close((f - 0.5).abs().flatten(1).amax(1), torch.full((8,), 0.5))
    torch.testing.assert_close(f - 0.5, w / w.abs().flatten(1).amax(1).view(-1, 1, 1, 1) / 2)
    torch.manual_seed(0)
    C = create_model("cdcgan", **tiny_overrides("cdcgan", resolution=32)).D
    assert C.net.main[0].weight.shape[1] == 2  # image + label plane
    assert first_layer_filters(C, image_channels=1).shape == (8, 1, 4, 4)


@pytest.mark.parametrize("name", ["gan", "cgan"])
def test_a_model_without_convolutions_is_a_clear_error(name: str) -> None:
    D = create_model(name, **tiny_overrides(name)).D
    with pytest.raises(UserError, match="no convolutional layers"):
        first_layer_filters(D)
    with pytest.raises(UserError, match="no convolutional layers"):
        top_activations(D, _images(2, side=16), 0)


# ----------------------------------------------------------------------------- command


def _png_ok(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_MAGIC
    with Image.open(path) as im:
        im.verify()


def test_cli_writes_the_figures_and_a_summary(
    digits_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(["filters", str(digits_run), "--n", "60", "--top", "4", "--count", "3"])
    out = capsys.readouterr().out
    assert rc == 0
    # 16x16 dcgan: activation layers at 8x8 and 4x4; the default is the deepest (1)
    for name in ("filters-first-layer.png", "filters-layer1.png"):
        _png_ok(digits_run / name)
        assert str(digits_run / name) in out
    assert "layer 1: LeakyReLU output, 16 channels x 4x4, receptive field 10x10 px" in out
    assert "median z over all 16 channels" in out
    rc = main(
        ["filters", str(digits_run), "--layer", "0", "--channels", "1,5", "--n", "20",
         "--top", "3", "--out", str(tmp_path / "f")]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0
    _png_ok(tmp_path / "f" / "filters-layer0.png")
    rows = [line.split() for line in out.splitlines() if line.split()[:1] in (["0"], ["1"])]
    assert [r[1] for r in rows] == ["1", "5"]  # the trained D's channels, as asked


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--layer", "7"], "--layer 7 is out of range: D has 2 feature layers"),
        (["--channels", "40"], "channel 40 does not exist"),
        (["--top", "0"], "--top must be at least 1"),
    ],
)
def test_cli_bad_input_is_one_line(
    digits_run: Path, capsys: pytest.CaptureFixture[str], args: list[str], fragment: str
) -> None:
    rc = main(["filters", str(digits_run), "--n", "10", "--top", "2", *args])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and fragment in err
