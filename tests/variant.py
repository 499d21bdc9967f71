"""A model variant that only the test suite registers: its model file and its registry entry.

It proves that adding a model needs nothing else: conftest calls `register` before
collection, so every registry-parametrised test, the CLI, sampling and the web page take it
up with no edit of their own. Importing this module registers nothing, and nothing under src/
imports tests/, so a normal process (`gankit models`, the benchmarks) never lists it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from gankit.models import MODELS, ModelSpec, register_model

NAME = "test-mlp"


@dataclass
class VariantConfig:
    resolution: int = 16
    channels: int = 1
    nz: int = 16
    hidden: int = 32
    num_classes: int = 10  # conditional: each class gets an embedding added to the hidden layer


class VariantGenerator(nn.Module):
    """z -> Linear -> (+ class embedding) -> ReLU -> Linear -> Tanh, reshaped to an image."""

    def __init__(self, cfg: VariantConfig) -> None:
        super().__init__()
        self.z_dim = cfg.nz
        self.out_shape = (cfg.channels, cfg.resolution, cfg.resolution)
        self.inp = nn.Linear(cfg.nz, cfg.hidden)
        self.embed = nn.Linear(cfg.num_classes, cfg.hidden, bias=False)
        self.out = nn.Linear(cfg.hidden, math.prod(self.out_shape))

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.inp(z)
        if y is not None:  # integer labels or [N, K] class weights (sampling mixes classes)
            w = y if y.is_floating_point() else nn.functional.one_hot(y, self.embed.in_features)
            h = h + self.embed(w.to(h.dtype))
        return torch.tanh(self.out(torch.relu(h))).view(z.shape[0], *self.out_shape)


class VariantDiscriminator(nn.Module):
    """Image -> Linear -> LeakyReLU -> one logit, plus a projection of the class embedding."""

    def __init__(self, cfg: VariantConfig) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Flatten(), nn.Linear(cfg.channels * cfg.resolution**2, cfg.hidden), nn.LeakyReLU(0.2)
        )
        self.head = nn.Linear(cfg.hidden, 1)
        self.embed = nn.Embedding(cfg.num_classes, cfg.hidden)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.body(x)
        out = self.head(h).squeeze(1)
        return out if y is None else out + (self.embed(y) * h).sum(1)


def register() -> ModelSpec:
    """Register the variant once (the pytest process and its spawned workers both call it)."""
    if NAME in MODELS:
        return MODELS.get(NAME)
    return register_model(
        ModelSpec(
            name=NAME,
            description="a two-layer conditional MLP that only the test suite registers",
            config_cls=VariantConfig,
            build=lambda cfg: (VariantGenerator(cfg), VariantDiscriminator(cfg)),
            conditional=True,
            train_defaults={"batch_size": 16},
            recipes={"grey28": {"hidden": 48, "ema_kimg": 1.0}},  # a model's recipe, as any
        )
    )
