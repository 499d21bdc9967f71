"""The ablation experiment: chosen channels against random ones, on the same latents."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ...errors import UserError
from ...latent import prior_of
from ..attributes import Attribute
from .finder import (
    ChannelScores,
    _attr,
    find_attribute_channels,
    find_region_channels,
    random_channels,
    rect_mask,
)
from .hooks import _check_channels, render
from .layers import GLayer, _num_classes, get_layer

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
