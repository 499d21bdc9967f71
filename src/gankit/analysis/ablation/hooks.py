"""Zeroing feature maps of G inside a `with` block, and running G while reading one layer."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn

from ...errors import UserError
from ...modes import eval_mode
from .layers import GLayer, _device, get_layer


def _check_channels(lay: GLayer, channels: Sequence[int]) -> list[int]:
    out = sorted({int(c) for c in channels})
    bad = [c for c in out if not 0 <= c < lay.channels]
    if bad:
        raise UserError(
            f"channel {bad[0]} is out of range: layer {lay.index} has channels "
            f"0..{lay.channels - 1}"
        )
    return out


@contextlib.contextmanager
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
    with eval_mode(G):
        ctx = ablate(G, layer, channels) if layer is not None else contextlib.nullcontext()
        with ctx:
            dev = _device(G)
            for i in range(0, z.shape[0], batch_size):
                yi = None if y is None else y[i : i + batch_size].to(dev)
                out.append(G(z[i : i + batch_size].to(dev), yi).float().cpu())
    return torch.cat(out)


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
        with eval_mode(G):
            dev = _device(G)
            for i in range(0, z.shape[0], batch_size):
                grabbed.clear()
                yi = None if y is None else y[i : i + batch_size].to(dev)
                img = G(z[i : i + batch_size].to(dev), yi).float()
                each(grabbed[0], img, slice(i, i + img.shape[0]))
    finally:
        handle.remove()
