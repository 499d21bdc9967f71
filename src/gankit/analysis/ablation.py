"""Generator feature-map ablation and a channel finder (DCGAN paper, section 6.2).

Radford et al. found the G filters that draw windows by fitting a logistic regression to
predict, from the feature maps, whether a location lies inside hand-drawn window boxes; then
they dropped those feature maps and showed the same z before and after: the windows vanished or
turned into other objects. This module does the same for any G whose layers make 4D maps:

- `generator_layers(G)` names the layers that can be ablated (by index, with sizes);
- `ablate(G, layer, channels)` zeroes chosen feature maps inside a `with` block;
- `find_region_channels` ranks channels by how much more they fire inside a region than outside;
- `find_attribute_channels` ranks channels by how they go with an attribute of the image (e.g.
  the domain classifier's p(class)), or causally, by the drop when each is ablated alone;
- `ablation_experiment` runs the whole comparison (chosen channels against the same number of
  randomly chosen channels as a control) and `ablation_figure` draws it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import run_folder
from ..errors import UserError
from ..latent import prior_of
from ..viz import save_figure
from .attributes import Attribute, make_attribute, parse_attribute
from .dfeatures import ACTIVATIONS

# ----------------------------------------------------------------------------- layers


@dataclass
class GLayer:
    """One ablatable layer of G: a module whose output is a [B, C, H, W] feature map."""

    index: int
    name: str  # the module's path in G (e.g. "net.main.5")
    kind: str  # the module's class name
    channels: int
    height: int
    width: int
    module: nn.Module = field(repr=False, compare=False)

    def describe(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("module")
        return d


def _device(G: nn.Module) -> torch.device:
    p = next(iter(G.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def _num_classes(G: nn.Module) -> int:
    return int(getattr(G, "num_classes", 0) or 0)


@contextmanager
def _eval_mode(G: nn.Module) -> Iterator[None]:
    """Eval mode (batch norm on running statistics, so a sample does not depend on its batch),
    restored afterwards."""
    was = G.training
    G.eval()
    try:
        yield
    finally:
        G.train(was)


@torch.no_grad()
def _probe(G: nn.Module, modules: Sequence[tuple[str, nn.Module]]) -> list[tuple[str, Any]]:
    """(name, first output shape or None) of each module that runs in one small forward pass,
    in the order they first ran."""
    order: list[tuple[str, Any]] = []
    seen: set[int] = set()

    def make_hook(name: str) -> Callable[..., None]:
        def hook(m: nn.Module, _i: tuple, out: Any) -> None:
            if id(m) not in seen:
                seen.add(id(m))
                order.append((name, tuple(out.shape) if torch.is_tensor(out) else None))

        return hook

    handles = [m.register_forward_hook(make_hook(n)) for n, m in modules]
    try:
        with _eval_mode(G):
            z = prior_of(G).from_seeds([0, 1]).to(_device(G))
            y = torch.zeros(2, dtype=torch.long, device=z.device) if _num_classes(G) else None
            img = G(z, y)
    finally:
        for h in handles:
            h.remove()
    order.append(("", tuple(img.shape)))  # G's own output: the image
    return order


def generator_layers(G: nn.Module) -> list[GLayer]:
    """G's ablatable layers, in the order they run: its activation modules (ReLU, LeakyReLU,
    ELU, ... as `dfeatures.feature_layers` takes for D) whose outputs are 4D maps, so zeroing a
    channel removes exactly what the next layer would see. A G with functional activations
    (StyleGAN, BigGAN) falls back to its outermost modules with 4D outputs (its blocks). Maps
    with as many channels as the image (to-RGB layers, the output) are left out.

    Raises:
        UserError: G makes no 4D feature maps (a fully connected G such as `gan` or `cgan`).
    """
    named = dict(G.named_modules())
    acts = [(n, m) for n, m in named.items() if n and isinstance(m, ACTIVATIONS)]
    probed = _probe(G, acts)
    image_shape = probed.pop()[1]
    img_c = image_shape[1] if image_shape is not None and len(image_shape) == 4 else None

    def keep(shape: Any) -> bool:
        return shape is not None and len(shape) == 4 and shape[1] != img_c

    picked = [(n, s) for n, s in probed if keep(s)]
    if not picked:
        probed = _probe(G, [(n, m) for n, m in named.items() if n])
        probed.pop()
        maps = [(n, s) for n, s in probed if keep(s)]
        names = {n for n, _ in maps}
        picked = [
            (n, s)
            for n, s in maps
            if not any(n.startswith(other + ".") for other in names if other != n)
        ]
    if not picked:
        raise UserError(
            f"{type(G).__name__} makes no convolutional feature maps (its layers are fully "
            "connected), so there are no feature maps to ablate; use a convolutional model "
            "such as dcgan"
        )
    return [
        GLayer(i, n, type(named[n]).__name__, s[1], s[2], s[3], named[n])
        for i, (n, s) in enumerate(picked)
    ]


def get_layer(G: nn.Module, layer: int | GLayer) -> GLayer:
    """The layer with index `layer` (a UserError naming the valid range if there is none)."""
    if isinstance(layer, GLayer):
        return layer
    layers = generator_layers(G)
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < len(layers):
        raise UserError(
            f"layer {layer} is out of range: this G has layers 0..{len(layers) - 1} "
            "(list them with --list)"
        )
    return layers[layer]


def format_layers(layers: Sequence[GLayer]) -> str:
    """A small text table of `generator_layers`."""
    lines = [f"{'layer':>5}  {'module':<24}  {'kind':<10}  {'channels':>8}  size"]
    for L in layers:
        lines.append(
            f"{L.index:>5}  {L.name:<24}  {L.kind:<10}  {L.channels:>8}  {L.height}x{L.width}"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- ablation


def _check_channels(lay: GLayer, channels: Sequence[int]) -> list[int]:
    out = sorted({int(c) for c in channels})
    bad = [c for c in out if not 0 <= c < lay.channels]
    if bad:
        raise UserError(
            f"channel {bad[0]} is out of range: layer {lay.index} has channels "
            f"0..{lay.channels - 1}"
        )
    return out


@contextmanager
def ablate(G: nn.Module, layer: int | GLayer, channels: Sequence[int]) -> Iterator[GLayer]:
    """Zero the chosen feature maps of one layer for every forward pass of G inside the block.

    A forward hook replaces the layer's output by a copy with those channels set to 0 (a copy,
    not in place, because ReLU(inplace=True) outputs may be shared); the hook is removed on
    exit, so G is unchanged afterwards. No channels: nothing changes.

    Yields:
        the GLayer ablated.
    """
    lay = get_layer(G, layer)
    idx = _check_channels(lay, channels)
    if not idx:
        yield lay
        return

    def hook(_m: nn.Module, _i: tuple, out: torch.Tensor) -> torch.Tensor:
        if out.dim() != 4:
            raise RuntimeError(f"layer {lay.index} ({lay.name}) gave a {out.dim()}D output")
        return out.index_fill(1, torch.tensor(idx, device=out.device), 0.0)

    handle = lay.module.register_forward_hook(hook)
    try:
        yield lay
    finally:
        handle.remove()


@torch.no_grad()
def render(
    G: nn.Module,
    z: torch.Tensor,
    y: torch.Tensor | None = None,
    layer: int | GLayer | None = None,
    channels: Sequence[int] = (),
    batch_size: int = 256,
) -> torch.Tensor:
    """Images in [-1, 1] (CPU float) for latents `z`, G in eval mode, with `channels` of
    `layer` ablated (none: plain samples)."""
    out = []
    with _eval_mode(G):
        ctx = ablate(G, layer, channels) if layer is not None else _nothing()
        with ctx:
            dev = _device(G)
            for i in range(0, z.shape[0], batch_size):
                yi = None if y is None else y[i : i + batch_size].to(dev)
                out.append(G(z[i : i + batch_size].to(dev), yi).float().cpu())
    return torch.cat(out)


@contextmanager
def _nothing() -> Iterator[None]:
    yield


@torch.no_grad()
def _forward_with_maps(
    G: nn.Module,
    lay: GLayer,
    z: torch.Tensor,
    y: torch.Tensor | None,
    batch_size: int,
    each: Callable[[torch.Tensor, torch.Tensor, slice], None],
) -> None:
    """Run G over z in batches; call each(feature map, images, batch slice) per batch."""
    grabbed: list[torch.Tensor] = []
    # a copy: a later in-place op (inplace LeakyReLU after a block) must not change it
    handle = lay.module.register_forward_hook(
        lambda _m, _i, o: grabbed.append(o.detach().float().clone())
    )
    try:
        with _eval_mode(G):
            dev = _device(G)
            for i in range(0, z.shape[0], batch_size):
                grabbed.clear()
                yi = None if y is None else y[i : i + batch_size].to(dev)
                img = G(z[i : i + batch_size].to(dev), yi).float()
                each(grabbed[0], img, slice(i, i + img.shape[0]))
    finally:
        handle.remove()


# ----------------------------------------------------------------------------- the finder


@dataclass
class ChannelScores:
    """A channel ranking of one layer: the top channels first, with every channel's score."""

    layer: int
    method: str
    channels: list[int]  # the top-k, best first
    scores: list[float]  # their scores
    all_scores: list[float]  # one per channel of the layer

    def describe(self) -> dict[str, Any]:
        return asdict(self)


def _rank(scores: torch.Tensor, top: int, layer: int, method: str) -> ChannelScores:
    scores = torch.nan_to_num(scores.double(), nan=float("-inf"))
    order = torch.argsort(scores, descending=True, stable=True)[: max(0, top)]
    return ChannelScores(
        layer=layer,
        method=method,
        channels=[int(c) for c in order],
        scores=[float(scores[c]) for c in order],
        all_scores=[float(s) for s in scores],
    )


def rect_mask(rect: Sequence[int], height: int, width: int) -> torch.Tensor:
    """A bool [H, W] mask of the rectangle x0,y0,x1,y1 in pixels (x1, y1 exclusive).

    Raises:
        UserError: the rectangle is empty, outside the image, or covers all of it.
    """
    if len(rect) != 4:
        raise UserError(f"a region is x0,y0,x1,y1 in pixels (got {list(rect)})")
    x0, y0, x1, y1 = (int(v) for v in rect)
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise UserError(
            f"region {x0},{y0},{x1},{y1} must satisfy 0 <= x0 < x1 <= {width} and "
            f"0 <= y0 < y1 <= {height} (the image is {width}x{height} pixels)"
        )
    m = torch.zeros(height, width, dtype=torch.bool)
    m[y0:y1, x0:x1] = True
    if bool(m.all()):
        raise UserError("the region covers the whole image; mark a part of it")
    return m


@torch.no_grad()
def find_region_channels(
    G: nn.Module,
    layer: int | GLayer,
    z: torch.Tensor,
    masks: torch.Tensor,
    y: torch.Tensor | None = None,
    top: int = 10,
    batch_size: int = 128,
) -> ChannelScores:
    """Rank a layer's channels by how much more they fire inside a region than outside it.

    Each channel's map is upsampled (bilinear) to the image size and its magnitude |a| averaged
    over the pixels inside the masks and over those outside, pooled over all N samples. The
    score is (mean inside - mean outside) divided by the layer's mean magnitude (one number for
    all its channels, so scores compare across layers and channels keep their relative size).

    Why a contrast and not the paper's logistic regression: with one rectangle for all samples
    (the CLI's case) a regression on locations only relearns the rectangle, needs a
    regularisation strength to be chosen, and spreads weight between correlated channels; the
    contrast needs no fitting and ranks a channel by the very thing ablation removes - its
    activation inside the region - so a strong channel that draws there beats a faint one that
    merely happens to be localised.

    Args:
        G: the generator (run in eval mode, restored afterwards).
        layer: layer index or GLayer.
        z: latents [N, nz].
        masks: bool [H, W] (one region for all samples) or [N, H, W] at the image's size.
        y: class labels for a conditional G.
        top: how many channels to return.
    """
    lay = get_layer(G, layer)
    masks = masks.bool()
    C = lay.channels
    in_sum = torch.zeros(C, dtype=torch.float64)
    out_sum = torch.zeros(C, dtype=torch.float64)
    counts = torch.zeros(2, dtype=torch.float64)  # pixels inside, outside (summed over samples)
    total = torch.zeros((), dtype=torch.float64)
    n_maps = torch.zeros((), dtype=torch.float64)

    def each(a: torch.Tensor, img: torch.Tensor, sl: slice) -> None:
        nonlocal total, n_maps
        H, W = img.shape[-2:]
        m = masks if masks.dim() == 2 else masks[sl]
        if m.shape[-2:] != (H, W):
            raise ValueError(f"masks are {tuple(m.shape[-2:])}, the images {H}x{W}")
        m = m.to(a.device).expand(a.shape[0], H, W).unsqueeze(1).to(a.dtype)
        up = F.interpolate(a.abs(), size=(H, W), mode="bilinear", align_corners=False)
        in_sum.add_((up * m).sum((0, 2, 3)).double().cpu())
        out_sum.add_((up * (1 - m)).sum((0, 2, 3)).double().cpu())
        inside = float(m.sum())
        counts.add_(torch.tensor([inside, a.shape[0] * H * W - inside], dtype=torch.float64))
        total = total + a.abs().double().sum().cpu()
        n_maps = n_maps + a.numel()

    _forward_with_maps(G, lay, z, y, batch_size, each)
    if counts[0] == 0 or counts[1] == 0:
        raise UserError("the region must cover part of the image, neither none nor all of it")
    scale = (total / n_maps).clamp_min(1e-12)
    scores = (in_sum / counts[0] - out_sum / counts[1]) / scale
    return _rank(scores, top, lay.index, "region contrast")


def _pearson(x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """Correlation of each column of x [N, C] with a [N]; 0 where either does not vary."""
    x = x.double() - x.double().mean(0)
    a = a.double() - a.double().mean()
    den = x.norm(dim=0) * a.norm()
    return torch.where(den > 0, (x * a[:, None]).sum(0) / den.clamp_min(1e-300), 0.0)


@torch.no_grad()
def find_attribute_channels(
    G: nn.Module,
    layer: int | GLayer,
    z: torch.Tensor,
    attribute: Attribute,
    y: torch.Tensor | None = None,
    top: int = 10,
    causal: bool = False,
    batch_size: int = 128,
) -> ChannelScores:
    """Rank a layer's channels by how they drive an attribute of the image.

    Correlational (default): the Pearson correlation, over the N samples, between each
    channel's spatially averaged activation and `attribute(images)`. Highest first: channels
    whose activity goes with the attribute, so ablating them should lower it. Cheap (one pass).

    Causal (`causal=True`): each channel is ablated alone and scored by the mean drop of the
    attribute, mean(attribute before - attribute after); this sees what the network does with a
    channel rather than what merely co-occurs with it, at one pass over N per channel.

    Args:
        attribute: images [N, C, H, W] in [-1, 1] -> scores [N] (e.g. p(class) of a classifier).
    """
    lay = get_layer(G, layer)
    means = torch.empty(z.shape[0], lay.channels, dtype=torch.float64)
    images = []

    def each(a: torch.Tensor, img: torch.Tensor, sl: slice) -> None:
        means[sl] = a.mean((2, 3)).double().cpu()
        images.append(img.cpu())

    _forward_with_maps(G, lay, z, y, batch_size, each)
    base = _attr(attribute, torch.cat(images))
    if not causal:
        return _rank(_pearson(means, base), top, lay.index, "correlation")
    drops = torch.empty(lay.channels, dtype=torch.float64)
    for c in range(lay.channels):
        after = _attr(attribute, render(G, z, y, lay, [c], batch_size))
        drops[c] = (base - after).mean()
    return _rank(drops, top, lay.index, "causal drop")


def _attr(attribute: Attribute, images: torch.Tensor) -> torch.Tensor:
    a = torch.as_tensor(attribute(images)).detach().double().cpu().flatten()
    if a.numel() != images.shape[0]:
        raise ValueError(f"attribute gave {a.numel()} values for {images.shape[0]} images")
    return a


def random_channels(n_channels: int, k: int, exclude: Sequence[int], seed: int) -> list[int]:
    """k channels drawn at random (seeded) from those not in `exclude`: the control."""
    pool = torch.tensor([c for c in range(n_channels) if c not in set(exclude)], dtype=torch.long)
    if pool.numel() < k:  # fewer left than asked for: draw from all channels instead
        pool = torch.arange(n_channels)
    g = torch.Generator().manual_seed(int(seed))
    return sorted(int(c) for c in pool[torch.randperm(pool.numel(), generator=g)[:k]])


# ----------------------------------------------------------------------------- the experiment


FINDER_SEED0 = 1_000_000  # the finder's samples: seeds disjoint from those measured and shown


@dataclass
class AblationResult:
    """What `ablation_experiment` found and measured (JSON-ready via `describe`)."""

    layer: GLayer
    channels: list[int]
    control_channels: list[list[int]]  # one list per control draw; the first is drawn
    finder: ChannelScores | None
    n: int
    measures: dict[str, Any]
    before: torch.Tensor = field(repr=False)  # the shown seeds' images
    after: torch.Tensor = field(repr=False)
    control: torch.Tensor = field(repr=False)
    seeds: list[int] = field(default_factory=list)
    region: list[int] | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "layer": self.layer.describe(),
            "channels": self.channels,
            "control_channels": self.control_channels,
            "finder": None if self.finder is None else self.finder.describe(),
            "n": self.n,
            "seeds": self.seeds,
            "region": self.region,
            "measures": self.measures,
        }


def _measure(
    before: torch.Tensor,
    after: torch.Tensor,
    region: torch.Tensor | None,
    attribute: Attribute | None,
    base_attr: torch.Tensor | None,
) -> dict[str, float]:
    """Numbers for one ablation: pixel change (inside/outside a region) and the attribute."""
    diff = (after - before).abs().mean(1)  # [N, H, W], mean over image channels
    out: dict[str, float] = {"pixel_change": float(diff.mean())}
    if region is not None:
        m = region.expand_as(diff)
        out["pixel_change_inside"] = float(diff[m].mean())
        out["pixel_change_outside"] = float(diff[~m].mean())
    if attribute is not None and base_attr is not None:
        a = _attr(attribute, after)
        out["attribute"] = float(a.mean())
        out["attribute_drop"] = float((base_attr - a).mean())
    return out


def _mean_dicts(ds: Sequence[dict[str, float]]) -> dict[str, float]:
    return {k: sum(d[k] for d in ds) / len(ds) for k in ds[0]}


def ablation_experiment(
    G: nn.Module,
    layer: int | GLayer,
    *,
    channels: Sequence[int] | None = None,
    region: Sequence[int] | None = None,
    attribute: Attribute | None = None,
    class_share: Callable[[torch.Tensor], torch.Tensor] | None = None,
    labels: int | None = None,
    top: int = 10,
    n: int = 500,
    seeds: Sequence[int] = tuple(range(32)),
    causal: bool = False,
    controls: int = 5,
    control_seed: int = 0,
    batch_size: int = 128,
) -> AblationResult:
    """Choose channels (given, by region or by attribute), ablate them, and compare with the
    same number of random channels of the layer.

    The finder sees N samples from seeds FINDER_SEED0.., the numbers are measured on N other
    samples (seeds 0..N-1), so a channel is not judged on the samples that chose it. Control
    numbers are averaged over `controls` random draws; the figure shows the first draw.

    Args:
        channels: ablate these (no finder); a region or attribute is then only measured.
        region: x0,y0,x1,y1 in output pixels (region mode).
        attribute: images -> [N] scores (attribute mode).
        class_share: images -> bool [N] "is the class" (for the share of samples classified as
            the attribute's class, before and after).
        labels: the class for a conditional G (None: samples cycle through the classes).
        seeds: the seeds drawn in the figure.
    Returns:
        an AblationResult (its `measures` has "before", "ablated" and "control").
    """
    lay = get_layer(G, layer)
    if region is not None and attribute is not None:
        raise UserError("choose channels by a region or by an attribute, not both")
    if channels is None and region is None and attribute is None:
        raise UserError("give channels to ablate, a region, or an attribute to find them by")
    if n < 2:
        raise UserError(f"n must be at least 2 (got {n})")
    if top < 1:
        raise UserError(f"top must be at least 1 (got {top})")
    prior = prior_of(G)
    nc = _num_classes(G)

    def latents(s: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor | None]:
        s = list(s)
        if not nc:
            return prior.from_seeds(s), None
        y = torch.full((len(s),), labels) if labels is not None else torch.tensor(s) % nc
        return prior.from_seeds(s), y.long()

    probe_img = render(G, *latents([0]))
    H, W = probe_img.shape[-2:]
    mask = rect_mask(region, H, W) if region is not None else None

    finder = None
    if channels is None:
        zf, yf = latents(range(FINDER_SEED0, FINDER_SEED0 + n))
        if mask is not None:
            finder = find_region_channels(G, lay, zf, mask, yf, top, batch_size)
        else:
            assert attribute is not None
            finder = find_attribute_channels(G, lay, zf, attribute, yf, top, causal, batch_size)
        chosen = finder.channels
    else:
        chosen = _check_channels(lay, channels)
        if not chosen:
            raise UserError("no channels given to ablate")
    k = len(chosen)
    ctrl = [random_channels(lay.channels, k, chosen, control_seed + i) for i in range(controls)]

    z, y = latents(range(n))
    before = render(G, z, y, batch_size=batch_size)
    base_attr = _attr(attribute, before) if attribute is not None else None
    measures: dict[str, Any] = {}
    if base_attr is not None:
        measures["before"] = {"attribute": float(base_attr.mean())}
    after = render(G, z, y, lay, chosen, batch_size)
    measures["ablated"] = _measure(before, after, mask, attribute, base_attr)
    per_draw = [
        _measure(before, render(G, z, y, lay, c, batch_size), mask, attribute, base_attr)
        for c in ctrl
    ]
    measures["control"] = _mean_dicts(per_draw)
    measures["control_draws"] = per_draw
    if class_share is not None:
        measures.setdefault("before", {})["class_share"] = float(class_share(before).float().mean())
        measures["ablated"]["class_share"] = float(class_share(after).float().mean())
        measures["control"]["class_share"] = sum(
            float(class_share(render(G, z, y, lay, c, batch_size)).float().mean()) for c in ctrl
        ) / len(ctrl)

    zs, ys = latents(seeds)
    return AblationResult(
        layer=lay,
        channels=chosen,
        control_channels=ctrl,
        finder=finder,
        n=n,
        measures=measures,
        before=render(G, zs, ys, batch_size=batch_size),
        after=render(G, zs, ys, lay, chosen, batch_size),
        control=render(G, zs, ys, lay, ctrl[0], batch_size),
        seeds=list(seeds),
        region=None if region is None else [int(v) for v in region],
    )


# ----------------------------------------------------------------------------- the figure


def summary_lines(result: AblationResult, attribute_name: str = "attribute") -> list[str]:
    """The before / after / control numbers as short lines (for the figure and the CLI)."""
    m = result.measures
    a, c = m["ablated"], m["control"]
    lines = [
        f"layer {result.layer.index} ({result.layer.name}, {result.layer.channels} channels, "
        f"{result.layer.height}x{result.layer.width}); n = {result.n}",
        f"ablated channels {','.join(map(str, result.channels))}",
        f"control: {len(result.control_channels)} random draws of {len(result.channels)}, "
        f"e.g. {','.join(map(str, result.control_channels[0]))}",
    ]
    if "attribute" in a:
        lines.append(
            f"{attribute_name}: before {m['before']['attribute']:.3f}, ablated "
            f"{a['attribute']:.3f}, control {c['attribute']:.3f}"
        )
    if "class_share" in a:
        lines.append(
            f"classified as that class: before {m['before']['class_share']:.1%}, ablated "
            f"{a['class_share']:.1%}, control {c['class_share']:.1%}"
        )
    if "pixel_change_inside" in a:
        lines.append(
            f"mean |pixel change| inside region: ablated {a['pixel_change_inside']:.3f}, "
            f"control {c['pixel_change_inside']:.3f}"
        )
        lines.append(
            f"mean |pixel change| outside region: ablated {a['pixel_change_outside']:.3f}, "
            f"control {c['pixel_change_outside']:.3f}"
        )
    else:
        lines.append(
            f"mean |pixel change|: ablated {a['pixel_change']:.3f}, control {c['pixel_change']:.3f}"
        )
    return lines


def ablation_figure(
    result: AblationResult,
    path: str | os.PathLike,
    title: str = "",
    attribute_name: str = "attribute",
) -> Path:
    """A PNG: the same seeds before, with the chosen channels ablated, and with random
    channels ablated (top row); the two |differences| and the numbers (bottom row)."""
    import matplotlib

    matplotlib.use("Agg")

    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from ..viz import grid_image

    nrow = min(len(result.seeds), max(1, math.ceil((2 * len(result.seeds)) ** 0.5)))  # wide
    diff_a = (result.after - result.before).abs().mean(1, keepdim=True) * 2 - 1
    diff_c = (result.control - result.before).abs().mean(1, keepdim=True) * 2 - 1
    panels = [
        ("before", result.before),
        (f"ablated ({len(result.channels)} chosen channels)", result.after),
        (f"control ({len(result.channels)} random channels)", result.control),
        (None, None),
        ("|ablated - before|", diff_a),
        ("|control - before|", diff_c),
    ]
    H, W = result.before.shape[-2:]
    rows = math.ceil(len(result.seeds) / nrow)
    aspect = (rows * (H + 2) + 2) / (nrow * (W + 2) + 2)  # of one grid, height / width
    fig, axes = plt.subplots(2, 3, figsize=(13, 2 * (4.2 * aspect + 0.5) + 0.5))
    for ax, (name, imgs) in zip(axes.flat, panels, strict=True):
        ax.set_axis_off()
        if imgs is None:
            text = "\n".join(summary_lines(result, attribute_name))
            ax.text(-0.05, 0.5, text, va="center", ha="left", fontsize=7.5, family="monospace")
            continue
        grid = grid_image(imgs.clamp(-1, 1), nrow=nrow)
        ax.imshow(grid, cmap="gray" if grid.mode == "L" else None, vmin=0, vmax=255)
        ax.set_title(name, fontsize=10)
        if result.region is not None and name in ("before", "|ablated - before|"):
            x0, y0, x1, y1 = result.region
            for i in range(imgs.shape[0]):
                r, c = divmod(i, nrow)
                ox, oy = 2 + c * (W + 2), 2 + r * (H + 2)  # grid_image's 2-pixel padding
                ax.add_patch(
                    Rectangle(
                        (ox + x0 - 0.5, oy + y0 - 0.5), x1 - x0, y1 - y0,
                        fill=False, edgecolor="red", linewidth=0.6,
                    )
                )  # fmt: skip
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    return Path(path)


# ----------------------------------------------------------------------------- a saved run


def parse_int_list(text: str, what: str) -> list[int]:
    """'3,7,12' -> [3, 7, 12] (a UserError naming `what` otherwise)."""
    try:
        vals = [int(v) for v in text.replace(" ", "").split(",") if v != ""]
    except ValueError:
        raise UserError(f"bad {what} {text!r}: use comma-separated whole numbers") from None
    if not vals:
        raise UserError(f"no {what} given")
    return vals


def ablate_run(
    run_or_ckpt: str | os.PathLike,
    layer: int,
    *,
    channels: Sequence[int] | None = None,
    region: Sequence[int] | None = None,
    attribute: str | None = None,
    label: int | None = None,
    top: int = 10,
    n: int = 500,
    seeds: Sequence[int] = tuple(range(32)),
    causal: bool = False,
    out: str | os.PathLike | None = None,
    data: str | None = None,
    evaluator: str | os.PathLike | None = None,
    ema: bool = True,
    device: str = "cpu",
) -> dict[str, Any]:
    """`gankit ablate`: run `ablation_experiment` on a saved run and write the figure and a
    JSON report (default RUN/ablation-layerN.png and .json; `out` may be a folder or a .png).

    `attribute` is a spec of `analysis.attributes` (class=K, bold, thin, class=K:bold|thin).
    A class uses the domain classifier of the run's training data (or `data`, or the file
    `evaluator`): the attribute is then p(class K) and the class share argmax = K.
    Returns:
        the report (as written), with "figure" and "report" paths.
    """
    from ..files import atomic_write_json
    from ..sampling import check_class, load

    run = load(run_or_ckpt, device=device, ema=ema)
    lay = get_layer(run.G, layer)
    check_class(run, label)
    score = class_share = None
    attr_name = "attribute"
    clf_info: dict[str, Any] | None = None
    if attribute is not None:
        spec = parse_attribute(attribute)
        attr_name = spec.text
        ex = None
        if spec.needs_classifier:
            from ..metrics.classifier import find_classifier

            ex = find_classifier(
                data or run.checkpoint.meta["run_config"]["train"]["data"], evaluator, device=device
            )
            clf_info = {"path": str(ex.path), "checksum": ex.checksum, "data": ex.data}
        score = make_attribute(spec, ex and ex.classify, ex and ex.num_classes)
        if ex is not None and spec.style is None:
            k = int(spec.cls)  # type: ignore[arg-type]

            def class_share(images: torch.Tensor) -> torch.Tensor:
                from ..data.base import to_uint8

                return ex.classify(to_uint8(images)).argmax(1) == k

            attr_name = f"p(class {ex.class_names[k]})"
    result = ablation_experiment(
        run.G,
        lay,
        channels=channels,
        region=region,
        attribute=score,
        class_share=class_share,
        labels=label,
        top=top,
        n=n,
        seeds=seeds,
        causal=causal,
    )
    base = Path(run_or_ckpt)
    folder = run_folder(base)
    stem = f"ablation-layer{lay.index}"
    if out is None:
        png = folder / f"{stem}.png"
    elif Path(out).suffix.lower() == ".png":
        png = Path(out)
    elif Path(out).suffix:
        raise UserError(f"--out must be a folder or a .png file (got {out})")
    else:
        png = Path(out) / f"{stem}.png"
    mode = "channels" if channels is not None else ("region" if region is not None else "attribute")
    title = f"{run.model.name}: ablating {len(result.channels)} feature maps of layer {lay.index}"
    if mode == "attribute":
        title += f" chosen by {result.finder.method if result.finder else ''} with {attr_name}"
    elif mode == "region":
        title += " that fire in the red box"
    ablation_figure(result, png, title=title, attribute_name=attr_name)
    report = {
        "run": str(run_or_ckpt),
        "checkpoint": str(run.checkpoint.path),
        "nimg": run.checkpoint.nimg,
        "model": run.model.name,
        "ema": run.used_ema,
        "mode": mode,
        "attribute": attribute,
        "attribute_name": attr_name if attribute is not None else None,
        "classifier": clf_info,
        "class": label,
        "causal": causal,
        "finder_seeds": f"{FINDER_SEED0}-{FINDER_SEED0 + n - 1}" if result.finder else None,
        "measured_seeds": f"0-{n - 1}",
        **result.describe(),
        "summary": summary_lines(result, attr_name),
    }
    json_path = png.with_suffix(".json")
    report["figure"], report["report"] = str(png), str(json_path)
    atomic_write_json(json_path, report)
    return report
