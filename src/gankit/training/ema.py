"""Exponential moving average of G's weights, with a half-life counted in images."""

from __future__ import annotations

import copy

import torch
from torch import nn


def make_ema(G: nn.Module) -> nn.Module:
    """A frozen copy of G in eval mode."""
    G_ema = copy.deepcopy(G).eval()
    G_ema.requires_grad_(False)
    return G_ema


def ema_beta(batch_size: int, nimg: int, half_life_kimg: float, rampup: float | None) -> float:
    """Decay per step so that the average halves every `half_life_kimg` thousand images.

    Early in training the half-life is capped at `rampup` * images seen, so the average is not
    dominated by the random initial weights (as in StyleGAN2-ADA).
    """
    ema_nimg = half_life_kimg * 1000.0
    if rampup is not None:
        ema_nimg = min(ema_nimg, nimg * rampup)
    return 0.5 ** (batch_size / max(ema_nimg, 1e-8))


@torch.no_grad()
def update_ema(G_ema: nn.Module, G: nn.Module, beta: float) -> None:
    """p_ema <- beta * p_ema + (1 - beta) * p; buffers (BN statistics) are copied."""
    ema_params = [p for p in G_ema.parameters()]
    params = [p.detach() for p in G.parameters()]
    if ema_params:
        torch._foreach_lerp_(ema_params, params, 1.0 - beta)
    for b_ema, b in zip(G_ema.buffers(), G.buffers(), strict=True):
        b_ema.copy_(b)
