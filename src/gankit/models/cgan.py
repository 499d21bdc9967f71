"""CGAN (Mirza & Osindero 2014) with the MLP networks of SPEC section 3.

For 1x28x28 MNIST with 10 classes these are exactly 1,511,412 G and 932,965 D parameters,
label embeddings included.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from . import ModelSpec, register_model
from .layers import LabelEmbedding


@dataclass
class CGANConfig:
    resolution: int = 28
    channels: int = 1
    nz: int = 100
    num_classes: int = 10
    embed_dim: int = 10


class CGANGenerator(nn.Module):
    """[z, Embedding(y)] -> 128 -> 256 -> 512 -> 1024 (BN from 256 on, LeakyReLU 0.2) -> Tanh."""

    def __init__(self, cfg: CGANConfig) -> None:
        super().__init__()
        self.z_dim, self.num_classes = cfg.nz, cfg.num_classes
        self.out_shape = (cfg.channels, cfg.resolution, cfg.resolution)
        self.embed = LabelEmbedding(cfg.num_classes, cfg.embed_dim)

        def block(i: int, o: int, bn: bool) -> list[nn.Module]:
            return [nn.Linear(i, o), *([nn.BatchNorm1d(o)] if bn else []), nn.LeakyReLU(0.2)]

        self.net = nn.Sequential(
            *block(cfg.nz + cfg.embed_dim, 128, bn=False),
            *block(128, 256, bn=True),
            *block(256, 512, bn=True),
            *block(512, 1024, bn=True),
            nn.Linear(1024, math.prod(self.out_shape)),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if y is None:
            raise ValueError("cgan's generator needs class labels y")
        h = torch.cat([z, self.embed(y)], dim=1)
        return self.net(h).view(z.shape[0], *self.out_shape)


class CGANDiscriminator(nn.Module):
    """[x, Embedding(y)] -> 512 -> 512 (Dropout 0.4) -> 512 (Dropout 0.4) -> one logit."""

    def __init__(self, cfg: CGANConfig) -> None:
        super().__init__()
        self.num_classes = cfg.num_classes
        self.embed = nn.Embedding(cfg.num_classes, cfg.embed_dim)
        inp = cfg.channels * cfg.resolution * cfg.resolution + cfg.embed_dim
        self.net = nn.Sequential(
            nn.Linear(inp, 512),
            nn.LeakyReLU(0.2),
            nn.Linear(512, 512),
            nn.Dropout(0.4),
            nn.LeakyReLU(0.2),
            nn.Linear(512, 512),
            nn.Dropout(0.4),
            nn.LeakyReLU(0.2),
            nn.Linear(512, 1),
        )

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if y is None:
            raise ValueError("cgan's discriminator needs class labels y")
        h = torch.cat([x.flatten(1), self.embed(y).to(x.dtype)], dim=1)
        return self.net(h).squeeze(1)


register_model(
    ModelSpec(
        name="cgan",
        description="conditional MLP GAN (Mirza & Osindero 2014): label embeddings in G and D",
        config_cls=CGANConfig,
        build=lambda cfg: (CGANGenerator(cfg), CGANDiscriminator(cfg)),
        conditional=True,
        train_defaults={"batch_size": 64},
        recipes={"grey28": {"batch_size": 64, "ema_kimg": 5.0}},
        presets={
            "demo": {
                "resolution": 32,
                "batch_size": 64,
                "kimg": 2000,
                "sample_every_kimg": 20,
                "ckpt_every_kimg": 500,
                "ema_kimg": 5.0,
            },
        },
    )
)
