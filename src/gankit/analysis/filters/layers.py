"""D's convolutional feature layers: finding them, their shapes, and running D up to one.

Layers are named by index into `dfeatures.feature_layers(D)` (its activation modules in
order: layer 0 is the first).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ...errors import UserError
from ...modes import eval_mode
from ..dfeatures import feature_layers


class _Stop(Exception):
    """Raised by a forward hook once the wanted layer has run: the rest of D is not needed."""


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
        with torch.no_grad(), eval_mode(D):
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
