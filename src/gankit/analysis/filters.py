"""What D's filters respond to: the DCGAN paper's "opening the black box", for any conv D.

Radford et al. showed that a trained discriminator has learned features (its deep units fire
on parts of objects) where a randomly initialised one has not. Three views make that visible:

* `first_layer_filters`: the weights of D's first convolution as little images.
* `top_activations` + `layer_view`: the real image patches that excite chosen channels of a
  deeper layer most. Each unit sees only its receptive field, found generically from the
  gradient of that one unit with respect to the input (`receptive_field`), so the crop is
  right for any convolutional D, not only for a chain of known kernel sizes and strides.
* guided backpropagation (Springenberg et al. 2015) of the same units: in the backward pass
  every ReLU / LeakyReLU lets through only positive gradients where its input was positive,
  which leaves a sharp picture of the input pattern the unit detects (`unit_gradient`).

Activation rules are applied with a `TorchFunctionMode` that intercepts ReLU and LeakyReLU
calls (modules and functional forms) for the duration of a `with` block, so the network is
never modified: nothing to restore, and in-place activations (DCGAN's) behave as before.

`filter_report` runs everything for a saved run and for a randomly initialised D of the same
architecture (the paper's baseline), and writes two figures: trained | random side by side.

Layers are named by index into `dfeatures.feature_layers(D)` (its activation modules in
order: layer 0 is the first). Channels default to the `count` with the highest mean top-k
activation, chosen separately in each D (channel numbers of two networks do not correspond).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from ..checkpoint import run_folder
from ..errors import UserError
from ..viz import save_figure
from .dfeatures import feature_layers

RULES = ("guided", "linear")

# ----------------------------------------------------------------------------- activation rules

_RELU = {torch.relu, torch.Tensor.relu, F.relu}
_LEAKY = {F.leaky_relu}
_INPLACE = {torch.relu_, torch.Tensor.relu_, F.relu_, F.leaky_relu_}


class _RuleActivation(torch.autograd.Function):
    """Leaky ReLU forward (slope 0: ReLU) with a replaced backward rule."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, slope: float, rule: str) -> torch.Tensor:
        ctx.rule = rule
        ctx.positive = x > 0  # an intermediate, not an input: kept on ctx, not saved tensors
        return F.leaky_relu(x, slope) if slope else F.relu(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        if ctx.rule == "guided":  # positive gradients through positive inputs only
            return grad.clamp(min=0) * ctx.positive, None, None
        return grad, None, None  # "linear": every path counts, whatever the input's sign


class _ActivationRule(TorchFunctionMode):
    """Routes every ReLU / LeakyReLU call through `_RuleActivation` while active."""

    def __init__(self, rule: str) -> None:
        super().__init__()
        self.rule = rule

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        kwargs = kwargs or {}
        if func in _RELU or func in _LEAKY or func in _INPLACE:
            x = args[0]
            if func is F.leaky_relu or func is F.leaky_relu_:
                slope = args[1] if len(args) > 1 else kwargs.get("negative_slope", 0.01)
            else:
                slope = 0.0
            out = _RuleActivation.apply(x, float(slope), self.rule)
            if func in _INPLACE or kwargs.get("inplace", False):
                return x.copy_(out)  # callers of in-place forms may rely on x being changed
            return out
        return func(*args, **kwargs)


@contextmanager
def activation_rule(rule: str) -> Iterator[None]:
    """Within the block, ReLU / LeakyReLU backward passes follow `rule`; forward is unchanged.

    "guided": Springenberg et al.'s guided backpropagation (grad.clamp(min=0) where the
    forward input was > 0, else 0). "linear": gradients pass unchanged, so that the support
    of an input gradient is a unit's whole receptive field even where activations are off.
    Nothing in the network is modified; leaving the block ends the rule.
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES} (got {rule!r})")
    with _ActivationRule(rule):
        yield


def guided_backprop() -> Any:
    """`activation_rule("guided")`: a context in which gradients are guided."""
    return activation_rule("guided")


# ----------------------------------------------------------------------------- layers


class _Stop(Exception):
    """Raised by a forward hook once the wanted layer has run: the rest of D is not needed."""


@contextmanager
def _eval(D: nn.Module) -> Iterator[None]:
    """D in eval mode (batch norm with running statistics) for the block, then as it was."""
    was = D.training
    D.eval()
    try:
        yield
    finally:
        D.train(was)


def first_conv(D: nn.Module) -> nn.Module:
    """D's first convolution: the first nn.Conv2d, else the first module with a 4D weight."""
    for m in D.modules():
        if isinstance(m, nn.Conv2d):
            return m
    for m in D.modules():
        w = getattr(m, "weight", None)
        if isinstance(w, torch.Tensor) and w.dim() == 4:
            return m
    raise UserError(
        f"{type(D).__name__} has no convolutional layers: filter views need a convolutional D "
        "(dcgan, cdcgan, ...); MLP models such as gan and cgan, and 2D-point models, see flat "
        "vectors"
    )


def conv_layers(D: nn.Module) -> list[nn.Module]:
    """`feature_layers(D)` after checking that D is convolutional at all (a clear error)."""
    first_conv(D)
    return feature_layers(D)


def _run_to(
    D: nn.Module, module: nn.Module, x: torch.Tensor, y: torch.Tensor | None
) -> torch.Tensor:
    """The output of `module` when D sees x (D stops there)."""
    got: list[torch.Tensor] = []

    def hook(_m: nn.Module, _i: tuple, out: torch.Tensor) -> None:
        got.append(out)
        raise _Stop

    handle = module.register_forward_hook(hook)
    try:
        D(x, y)
    except _Stop:
        pass
    finally:
        handle.remove()
    if not got:
        raise UserError(f"{type(module).__name__} layer was not run by {type(D).__name__}")
    return got[0]


def layer_shapes(
    D: nn.Module, image: torch.Tensor, label: torch.Tensor | None = None
) -> list[tuple[int, ...]]:
    """The output shape (without the batch) of each feature layer for one image [C, H, W]."""
    layers = conv_layers(D)
    shapes: dict[int, tuple[int, ...]] = {}

    def record(k: int) -> Any:
        def hook(_m: nn.Module, _i: tuple, out: torch.Tensor) -> None:  # None: output kept
            shapes.setdefault(k, tuple(out.shape[1:]))

        return hook

    hooks = [m.register_forward_hook(record(k)) for k, m in enumerate(layers)]
    device = next(D.parameters()).device
    try:
        with torch.no_grad(), _eval(D):
            D(image[None].to(device).float(), _one(label, device))
    finally:
        for h in hooks:
            h.remove()
    return [shapes.get(k, ()) for k in range(len(layers))]


def check_layer(shapes: Sequence[tuple[int, ...]], layer: int | None) -> int:
    """`layer`, or the deepest convolutional feature layer when None (the paper's choice)."""
    conv = [k for k, s in enumerate(shapes) if len(s) == 3]
    if not conv:
        raise UserError("D has no convolutional feature layers (4D activations) to look at")
    if layer is None:
        return conv[-1]
    if not 0 <= layer < len(shapes):
        raise UserError(
            f"--layer {layer} is out of range: D has {len(shapes)} feature layers "
            f"(0-{len(shapes) - 1}; convolutional: {_ranges(conv)})"
        )
    if len(shapes[layer]) != 3:
        raise UserError(
            f"layer {layer} is not convolutional (output {list(shapes[layer])}); "
            f"pick one of {_ranges(conv)}"
        )
    return layer


def _ranges(ks: Sequence[int]) -> str:
    return f"{ks[0]}-{ks[-1]}" if list(ks) == list(range(ks[0], ks[-1] + 1)) else str(list(ks))


def _one(label: torch.Tensor | int | None, device: torch.device) -> torch.Tensor | None:
    if label is None:
        return None
    return torch.as_tensor(label, device=device).reshape(1).long()


# ----------------------------------------------------------------------------- gradients


def unit_gradient(
    D: nn.Module,
    image: torch.Tensor,  # [C, H, W] in [-1, 1]
    layer: int,  # index into feature_layers(D)
    channel: int,
    y: int,  # position in the layer's output map
    x: int,
    label: torch.Tensor | int | None = None,  # for a conditional D
    rule: str | None = None,  # None: the plain gradient; "guided" or "linear"
) -> torch.Tensor:
    """d activation[channel, y, x] / d image, [C, H, W] on the CPU (D in eval mode).

    D's parameters get no gradient (only the input is differentiated).
    """
    module = conv_layers(D)[layer]
    device = next(D.parameters()).device
    inp = image[None].to(device).float().clone().requires_grad_(True)
    with torch.enable_grad(), _eval(D):
        if rule is None:
            out = _run_to(D, module, inp, _one(label, device))
        else:
            with activation_rule(rule):
                out = _run_to(D, module, inp, _one(label, device))
        if out.dim() != 4:
            raise UserError(f"layer {layer} is not convolutional (output {list(out.shape)})")
        (grad,) = torch.autograd.grad(out[0, channel, y, x], inp)
    return grad[0].detach().float().cpu()


def receptive_field(
    D: nn.Module,
    image: torch.Tensor,
    layer: int,
    y: int,
    x: int,
    channel: int = 0,
    label: torch.Tensor | int | None = None,
) -> tuple[int, int, int, int]:
    """The input pixels unit (channel, y, x) of `layer` depends on, as (top, left, bottom,
    right), bottom/right exclusive, clipped to the image.

    The bounding box of the input gradient's support, with activations made linear so that
    switched-off units do not hide parts of the field. Right for any stack of convolutions,
    strides, paddings and normalisations, unlike a formula over known kernel sizes.
    """
    g = unit_gradient(D, image, layer, channel, y, x, label, rule="linear")
    support = g.abs().sum(0) > 0
    rows = torch.nonzero(support.any(1)).flatten()
    cols = torch.nonzero(support.any(0)).flatten()
    if rows.numel() == 0:
        raise UserError(f"unit ({channel}, {y}, {x}) of layer {layer} does not see the input")
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


# ----------------------------------------------------------------------------- first layer


def first_layer_filters(D: nn.Module, image_channels: int | None = None) -> torch.Tensor:
    """D's first-layer filters as images: [out, in, k, k] in [0, 1].

    Each filter is scaled by its own largest |weight| so that 0.5 (mid-grey) is a zero weight:
    the sign of each tap stays readable. `image_channels` keeps only the first input channels
    (a conditional DCGAN's extra input is a label plane, not part of the image). Three
    channels are drawn in colour, one in grey.
    """
    w = first_conv(D).weight.detach().float().cpu()
    if image_channels is not None:
        w = w[:, :image_channels]
    scale = w.abs().flatten(1).amax(1).clamp(min=1e-12).view(-1, 1, 1, 1)
    return (w / scale * 0.5 + 0.5).clamp(0, 1)


# ----------------------------------------------------------------------------- top activations


@dataclass
class TopActivations:
    """Per channel, the k strongest units of a layer over a set of images."""

    values: torch.Tensor  # [C, k] float32, strongest first
    image: torch.Tensor  # [C, k] index into the images given
    y: torch.Tensor  # [C, k] position in the layer's map
    x: torch.Tensor  # [C, k]
    mean: torch.Tensor  # [C] mean activation over all images and positions
    std: torch.Tensor  # [C] its standard deviation
    shape: tuple[int, int, int]  # the layer's output (C, H, W)
    n_images: int


@torch.no_grad()
def top_activations(
    D: nn.Module,
    images: torch.Tensor,  # [N, C, H, W] in [-1, 1]
    layer: int,
    k: int = 9,
    labels: torch.Tensor | None = None,  # for a conditional D
    *,
    batch_size: int = 256,
    one_per_image: bool = False,  # at most one unit (the image's strongest) per image
) -> TopActivations:
    """The k highest activations of every channel of `layer` over all images and positions.

    Only a running top-k per channel is kept, so N is bounded by time, not memory.
    """
    if k < 1:
        raise UserError(f"top must be at least 1 (got {k})")
    module = conv_layers(D)[layer]
    device = next(D.parameters()).device
    best_v = best_i = None
    s1 = s2 = None
    count = 0
    shape: tuple[int, int, int] = (0, 0, 0)
    with _eval(D):
        for start in range(0, images.shape[0], batch_size):
            xb = images[start : start + batch_size].to(device).float()
            yb = None if labels is None else labels[start : start + batch_size].to(device)
            a = _run_to(D, module, xb, yb).float()
            if a.dim() != 4:
                raise UserError(f"layer {layer} is not convolutional (output {list(a.shape)})")
            b, c, h, w = a.shape
            shape = (c, h, w)
            flat = a.permute(1, 0, 2, 3).reshape(c, b, h * w)
            s1 = flat.double().sum((1, 2)) + (0 if s1 is None else s1)
            s2 = flat.double().square().sum((1, 2)) + (0 if s2 is None else s2)
            count += b * h * w
            if one_per_image:
                v, pos = flat.max(2)
                idx = (torch.arange(b, device=device) + start).view(1, b) * (h * w) + pos
            else:
                v = flat.reshape(c, b * h * w)
                idx = (torch.arange(b * h * w, device=device) + start * h * w).expand(c, -1)
            if best_v is not None:
                v, idx = torch.cat([best_v, v], 1), torch.cat([best_i, idx], 1)
            best_v, order = v.topk(min(k, v.shape[1]), dim=1)
            best_i = idx.gather(1, order)
    if best_v is None:
        raise UserError("no images to look at")
    if best_v.shape[1] < k:
        raise UserError(
            f"only {best_v.shape[1]} units per channel in {images.shape[0]} images; "
            f"lower --top to {best_v.shape[1]} or use more images"
        )
    _, h, w = shape
    mean = s1 / count
    std = (s2 / count - mean.square()).clamp(min=0).sqrt()
    best_i = best_i.cpu()
    return TopActivations(
        values=best_v.cpu(),
        image=best_i // (h * w),
        y=(best_i % (h * w)) // w,
        x=best_i % w,
        mean=mean.float().cpu(),
        std=std.float().cpu(),
        shape=shape,
        n_images=int(images.shape[0]),
    )


def choose_channels(top: TopActivations, count: int = 8) -> list[int]:
    """The `count` channels with the highest mean top-k activation, strongest first.

    The channels whose best responses are strongest are the ones D relies on most; a dead
    channel (never positive) can never be chosen ahead of a live one.
    """
    score = top.values.double().mean(1)
    order = torch.argsort(score, descending=True, stable=True)
    return [int(c) for c in order[: max(1, count)]]


def parse_channels(text: str) -> list[int]:
    """ "3,7,12" or "0-7" (or a mix) -> channel numbers, in the order given."""
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                a, b = part.split("-", 1)
                lo, hi = int(a), int(b)
                if hi < lo:
                    raise ValueError
                out.extend(range(lo, hi + 1))
            else:
                out.append(int(part))
        except ValueError:
            raise UserError(f"--channels takes numbers like 3,7,12 or 0-7 (got {text!r})") from None
    if len(set(out)) != len(out):
        raise UserError(f"--channels lists a channel twice ({text!r})")
    return out


# ----------------------------------------------------------------------------- views


@dataclass
class UnitView:
    """One of a channel's top units: where it is, what it sees, and its guided gradient."""

    channel: int
    rank: int
    image_index: int  # into the images given to `layer_view`
    y: int
    x: int
    activation: float
    box: tuple[int, int, int, int]  # (top, left, bottom, right) in input pixels, clipped
    patch: torch.Tensor  # [C, fh, fw] the input over the full field, zero beyond the image
    guided: torch.Tensor  # [C, fh, fw] the guided-backprop gradient over the same window


@dataclass
class ChannelView:
    channel: int
    top_mean: float  # mean of the top-k activations
    mean: float  # mean activation over all units of the channel
    std: float
    units: list[UnitView]

    @property
    def z(self) -> float:
        """How many standard deviations the top-k stand out from the channel's typical unit."""
        return (self.top_mean - self.mean) / self.std if self.std > 0 else float("nan")


@dataclass
class LayerView:
    layer: int
    module: str  # the activation module's name, e.g. LeakyReLU
    shape: tuple[int, int, int]  # (C, H, W) of the layer's output
    field: tuple[int, int]  # the full receptive field (rows, cols) of a central unit
    k: int
    top: TopActivations
    channels: list[ChannelView]

    @property
    def z_all(self) -> torch.Tensor:
        """Every channel's z (see ChannelView.z), for a layer-wide comparison."""
        t = self.top
        return (t.values.mean(1) - t.mean) / t.std.clamp(min=1e-12)


def _anchor(lo: int, hi: int, full: int, size: int) -> int:
    """The first row (or column) of a full-size window around the clipped span [lo, hi)."""
    if hi - lo >= full:
        return lo
    if lo == 0 and hi == size:
        return -((full - size) // 2)  # clipped on both sides: centre the image
    return hi - full if lo == 0 else lo


def _window(img: torch.Tensor, top: int, left: int, fh: int, fw: int) -> torch.Tensor:
    """img[:, top:top + fh, left:left + fw], zeros where the window leaves the image (which
    is what D's zero padding sees, and mid-grey in [-1, 1])."""
    c, h, w = img.shape
    out = img.new_zeros(c, fh, fw)
    t0, l0 = max(top, 0), max(left, 0)
    t1, l1 = min(top + fh, h), min(left + fw, w)
    if t1 > t0 and l1 > l0:
        out[:, t0 - top : t1 - top, l0 - left : l1 - left] = img[:, t0:t1, l0:l1]
    return out


def layer_view(
    D: nn.Module,
    images: torch.Tensor,  # [N, C, H, W] in [-1, 1]
    layer: int,
    channels: Sequence[int] | None = None,  # default: choose_channels(top, count)
    k: int = 9,
    labels: torch.Tensor | None = None,  # true labels, for a conditional D
    *,
    count: int = 8,
    one_per_image: bool = False,
    batch_size: int = 256,
) -> LayerView:
    """Top-k real patches and their guided-backprop maps for channels of `layer`."""
    top = top_activations(
        D, images, layer, k, labels, batch_size=batch_size, one_per_image=one_per_image
    )
    c_all, h_map, w_map = top.shape
    chosen = list(channels) if channels is not None else choose_channels(top, count)
    bad = [c for c in chosen if not 0 <= c < c_all]
    if bad:
        raise UserError(
            f"channel {bad[0]} does not exist: layer {layer} has channels 0-{c_all - 1}"
        )
    _, h_img, w_img = images.shape[1:]

    def label_of(i: int) -> torch.Tensor | None:
        return None if labels is None else labels[i]

    c0, i0 = chosen[0], int(top.image[chosen[0], 0])
    t, left, b, r = receptive_field(D, images[i0], layer, h_map // 2, w_map // 2, c0, label_of(i0))
    fh, fw = b - t, r - left
    views = []
    for c in chosen:
        units = []
        for j in range(k):
            i, y, x = int(top.image[c, j]), int(top.y[c, j]), int(top.x[c, j])
            box = receptive_field(D, images[i], layer, y, x, c, label_of(i))
            top_row = _anchor(box[0], box[2], fh, h_img)
            left_col = _anchor(box[1], box[3], fw, w_img)
            guided = unit_gradient(D, images[i], layer, c, y, x, label_of(i), rule="guided")
            units.append(
                UnitView(
                    channel=c,
                    rank=j,
                    image_index=i,
                    y=y,
                    x=x,
                    activation=float(top.values[c, j]),
                    box=box,
                    patch=_window(images[i].float().cpu(), top_row, left_col, fh, fw),
                    guided=_window(guided, top_row, left_col, fh, fw),
                )
            )
        views.append(
            ChannelView(
                channel=c,
                top_mean=float(top.values[c].mean()),
                mean=float(top.mean[c]),
                std=float(top.std[c]),
                units=units,
            )
        )
    module = conv_layers(D)[layer]
    return LayerView(layer, type(module).__name__, top.shape, (fh, fw), k, top, views)


# ----------------------------------------------------------------------------- figures


def _rgb(tile: torch.Tensor) -> Any:
    """[C, h, w] in [0, 1] -> an h x w x 3 array (grey replicated)."""
    arr = tile.clamp(0, 1).permute(1, 2, 0).numpy()
    return arr.repeat(3, axis=2) if arr.shape[2] == 1 else arr[..., :3]


def _mosaic(rows: Sequence[Sequence[torch.Tensor]], pad: int = 1) -> Any:
    """Tiles [C, h, w] in [0, 1] (equal sizes) in rows, on a white background."""
    import numpy as np

    h, w = rows[0][0].shape[1:]
    ncol = max(len(r) for r in rows)
    out = np.ones((len(rows) * (h + pad) + pad, ncol * (w + pad) + pad, 3), dtype=np.float32)
    for i, row in enumerate(rows):
        for j, tile in enumerate(row):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            out[y : y + h, x : x + w] = _rgb(tile)
    return out


def _filter_tiles(filters: torch.Tensor) -> list[list[torch.Tensor]]:
    """Filters [out, in, k, k] as rows of tiles: colour or grey, else one tile per channel."""
    n, c = filters.shape[:2]
    if c in (1, 3):
        per_row = max(1, math.ceil(math.sqrt(n)))
        tiles = list(filters)
        return [tiles[i : i + per_row] for i in range(0, n, per_row)]
    return [[f[j : j + 1] for j in range(c)] for f in filters]


def _save(fig: Any, path: str | os.PathLike) -> Path:
    save_figure(fig, path, dpi=110)
    return Path(path)


def first_layer_figure(
    filters: dict[str, torch.Tensor],  # name ("trained D", "random D") -> first_layer_filters
    path: str | os.PathLike,
    title: str = "",
) -> Path:
    """A PNG with each D's first-layer filters as a grid, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3.4 * len(filters), 3.9))
    axes = fig.subplots(1, len(filters), squeeze=False)[0]
    for ax, (name, f) in zip(axes, filters.items(), strict=True):
        ax.imshow(_mosaic(_filter_tiles(f)), interpolation="nearest")
        ax.set_title(f"{name}: {f.shape[0]} filters {f.shape[2]}x{f.shape[3]}", fontsize=8)
        ax.axis("off")
    fig.suptitle(
        (title + "\n" if title else "")
        + "first-layer filters, each scaled to its own max |w| (grey = 0)",
        fontsize=8,
    )
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.84, wspace=0.05)
    return _save(fig, path)


def _guided_tile(g: torch.Tensor) -> torch.Tensor:
    """A guided gradient shown around mid-grey, scaled by its own max |g|."""
    return g / g.abs().max().clamp(min=1e-20) * 0.5 + 0.5


def layer_figure(
    views: dict[str, LayerView],  # name ("trained D", "random D") -> layer_view
    path: str | os.PathLike,
    title: str = "",
    first_layer: dict[str, torch.Tensor] | None = None,  # optional first row: the filters
) -> Path:
    """A PNG with one column per D: (first-layer filters,) top-k patches, guided maps.

    Patch rows are channels (label: channel and its mean top-k activation), columns the k
    strongest units, strongest left. Patches are shown on the data's scale; guided maps each
    scaled to their own max |g| around grey.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    blocks: list[str] = (["filters"] if first_layer else []) + ["patches", "guided"]
    any_view = next(iter(views.values()))
    n_ch = max(len(v.channels) for v in views.values())
    fh, fw = any_view.field
    tile_in = max(0.28, min(0.6, 2.2 / max(fh, fw) * 3))
    col_w = max(3.8, any_view.k * tile_in + 0.9)
    heights = [n_ch * tile_in * (fh + 1) / (fw + 1) for _ in ("patches", "guided")]
    if first_layer:
        heights = [col_w * 0.75, *heights]
    fig = Figure(figsize=(2 * col_w + 0.4, sum(heights) + 0.45 * len(blocks) + 0.8))
    axes = fig.subplots(
        len(blocks), len(views), squeeze=False, gridspec_kw={"height_ratios": heights}
    )
    for col, (name, v) in enumerate(views.items()):
        for row, block in enumerate(blocks):
            ax = axes[row, col]
            if block == "filters":
                f = first_layer[name]
                ax.imshow(_mosaic(_filter_tiles(f)), interpolation="nearest")
                ax.set_title(
                    f"{name}: first-layer filters ({f.shape[0]}, {f.shape[2]}x{f.shape[3]})",
                    fontsize=8,
                )
                ax.axis("off")
                continue
            if block == "patches":
                tiles = [[(u.patch + 1) / 2 for u in ch.units] for ch in v.channels]
                what = f"top-{v.k} real patches ({fh}x{fw} px)"
            else:
                tiles = [[_guided_tile(u.guided) for u in ch.units] for ch in v.channels]
                what = "guided backprop, same units"
            ax.imshow(_mosaic(tiles), interpolation="nearest")
            ax.set_title(f"{name}: {what}", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([1 + (fh + 1) * (i + 0.5) for i in range(len(v.channels))])
            ax.set_yticklabels(
                [f"ch {ch.channel}\n{ch.top_mean:.3g}" for ch in v.channels], fontsize=6
            )
            ax.tick_params(length=0, pad=2)
            for s in ax.spines.values():
                s.set_visible(False)
    c, h, w = any_view.shape
    fig.suptitle(
        (title + "\n" if title else "")
        + f"layer {any_view.layer} ({any_view.module}, {c} channels x {h}x{w}); rows: channels "
        f"(number, mean top-{any_view.k} activation),\ncolumns: their strongest units over "
        f"{any_view.top.n_images} real images, strongest left",
        fontsize=8,
    )
    top_in = 1.1
    fig.subplots_adjust(
        left=0.07,
        right=0.99,
        bottom=0.01,
        top=1 - top_in / fig.get_figheight(),
        hspace=0.25,
        wspace=0.22,
    )
    return _save(fig, path)


# ----------------------------------------------------------------------------- report


@dataclass
class FilterReport:
    """What `filter_report` computed and wrote."""

    run: str
    nimg: int  # images the run's D had seen
    data: str
    n_images: int
    layer: int
    views: dict[str, LayerView]  # "trained D", "random D"
    filters: dict[str, torch.Tensor]  # first-layer filters, same keys
    figures: dict[str, Path]  # "first_layer", "layer"
    random_seed: int
    random_is_init: bool  # the random D is this run's own initial D (same seed as training)
    first_layer_change: float  # |W_trained - W_random| / |W_random| of the first convolution


def filter_report(
    run_dir: str | os.PathLike,
    *,
    layer: int | None = None,  # default: the deepest convolutional feature layer
    channels: Sequence[int] | None = None,  # default: `count` chosen per D
    top: int = 9,
    n: int = 2000,  # real training images searched (a seeded random subset)
    data: str | None = None,  # default: the run's data
    data_root: str | None = None,
    download: bool | None = None,  # default: as the run was trained
    seed: int = 0,  # picks the images
    random_seed: int | None = None,  # the random D's; default: the training seed + 1
    out_dir: str | os.PathLike | None = None,  # default: the run folder
    device: str = "cpu",
    count: int = 8,
    one_per_image: bool = False,
) -> FilterReport:
    """Filter views of a run's D and of a random D of the same architecture; two figures.

    Writes OUT/filters-first-layer.png (first-layer filters, trained | random) and
    OUT/filters-layer{N}.png (top-k patches and guided-backprop maps, trained | random).
    """
    from ..data import load_dataset
    from ..sampling import load
    from .dfeatures import random_discriminator

    if n < 1:
        raise UserError(f"--n must be at least 1 (got {n})")
    if top < 1:
        raise UserError(f"--top must be at least 1 (got {top})")
    if count < 1:
        raise UserError(f"count must be at least 1 (got {count})")
    run = load(run_dir, device=device)
    ck = run.checkpoint
    if not ck.has("D"):
        raise UserError(f"{ck.path} has no D weights to look at")
    trained = run.model.D
    conv_layers(trained)  # MLPs fail here, before any data is loaded
    rc = ck.run_config
    mc = dict(rc.model_config)
    spec = data if data is not None else rc.train.data
    ds = load_dataset(
        spec,
        train=True,
        resolution=int(mc["resolution"]),
        channels=int(mc["channels"]),
        root=data_root if data_root is not None else rc.train.data_root,
        download=rc.train.download if download is None else download,
    )
    if getattr(ds, "images", None) is None or ds.images.dim() != 4:
        raise UserError(f"{spec} is not image data; filter views need images")
    conditional = run.model.spec.conditional
    if conditional and ds.labels is None:
        raise UserError(f"{run.model.name}'s D needs class labels and {spec} has none")
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(ds), generator=g)[: min(n, len(ds))].sort().values
    images, labels = ds.batch(idx)
    if not conditional:
        labels = None

    random, random_seed = random_discriminator(run, random_seed)
    nets = {"trained D": trained, "random D": random}
    # The trainer seeds torch with its seed and then builds the model, so with the training
    # seed the random D is exactly where this D started: the change is then training's alone.
    random_is_init = int(rc.train.seed) == random_seed
    w_t, w_r = (first_conv(D).weight.detach().float().cpu() for D in (trained, random))
    change = float((w_t - w_r).norm() / w_r.norm().clamp(min=1e-12))
    first_label = None if labels is None else labels[0]
    layer = check_layer(layer_shapes(trained, images[0], first_label), layer)
    views = {
        name: layer_view(
            D, images, layer, channels, top, labels, count=count, one_per_image=one_per_image
        )
        for name, D in nets.items()
    }
    for v in views.values():  # report image numbers in the dataset, not in the subset
        for ch in v.channels:
            for u in ch.units:
                u.image_index = int(idx[u.image_index])
    filters = {name: first_layer_filters(D, int(mc["channels"])) for name, D in nets.items()}
    out = Path(out_dir) if out_dir is not None else run_folder(run_dir)
    init = "= its own initial weights" if random_is_init else "independent of this run"
    title = (
        f"{run.model.name} D after {ck.nimg / 1000:g} kimg vs a random D "
        f"(seed {random_seed}, {init}); {spec}"
    )
    figures = {
        "first_layer": first_layer_figure(filters, out / "filters-first-layer.png", title),
        "layer": layer_figure(views, out / f"filters-layer{layer}.png", title, first_layer=filters),
    }
    return FilterReport(
        run=str(run_dir),
        nimg=ck.nimg,
        data=spec,
        n_images=len(idx),
        layer=layer,
        views=views,
        filters=filters,
        figures=figures,
        random_seed=random_seed,
        random_is_init=random_is_init,
        first_layer_change=change,
    )


def format_report(report: FilterReport) -> str:
    """A short text summary: per chosen channel, trained next to random."""
    tr, rn = report.views["trained D"], report.views["random D"]
    c, h, w = tr.shape
    k = tr.k
    lines = [
        f"layer {report.layer}: {tr.module} output, {c} channels x {h}x{w}, receptive field "
        f"{tr.field[0]}x{tr.field[1]} px; top {k} units per channel over {report.n_images} "
        f"real {report.data} images",
        "z = (mean top-k - channel mean) / channel std: how far the best units stand out",
        f"{'':>4}  {'trained D':<32}  random D",
        (
            f"{'rank':>4}  " + f"{'channel':>7} {'top-1':>8} {f'top-{k} mean':>10} {'z':>5}  " * 2
        ).rstrip(),
    ]
    for r in range(max(len(tr.channels), len(rn.channels))):
        row = f"{r:>4}  "
        for v in (tr, rn):
            if r < len(v.channels):
                ch = v.channels[r]
                row += (
                    f"{ch.channel:>7} {ch.units[0].activation:>8.3g} {ch.top_mean:>10.3g} "
                    f"{ch.z:>5.1f}  "
                )
            else:
                row += " " * 34
        lines.append(row.rstrip())
    zt, zr = tr.z_all.median(), rn.z_all.median()
    lines.append(f"median z over all {c} channels: trained {zt:.2f}, random {zr:.2f}")
    init = (
        f"this run's own initial D (training seed {report.random_seed}; pass another "
        "--random-seed for an independent one)"
        if report.random_is_init
        else "independent of this run's initialisation"
    )
    lines.append(f"random D: seed {report.random_seed}, {init}")
    lines.append(
        f"first-layer weights moved by {report.first_layer_change:.1%} of their norm in training"
        if report.random_is_init
        else f"first-layer weights: |trained - random| / |random| = {report.first_layer_change:.3g}"
    )
    for name, path in report.figures.items():
        lines.append(f"figure ({name.replace('_', ' ')}): {path}")
    return "\n".join(lines)
