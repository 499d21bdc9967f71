"""G's ablatable layers: the modules whose outputs are [B, C, H, W] feature maps."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from ...errors import UserError
from ...latent import prior_of
from ...modes import eval_mode
from ..dfeatures import ACTIVATIONS


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
        with eval_mode(G):
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
