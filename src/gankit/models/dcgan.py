"""DCGAN (Radford et al. 2015) and its class-conditional form.

The stride-2 stages are derived from the resolution: at 64x64 the networks are exactly the
PyTorch tutorial's (3,576,704 G and 2,765,568 D parameters for RGB, nz = ngf = ndf = 64/100);
each doubling of the resolution adds one stage and doubles the widest layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from . import ModelSpec, UserError, check_resolution_pow2, register_model
from .layers import LabelEmbedding


@dataclass
class DCGANConfig:
    resolution: int = 64
    channels: int = 3
    nz: int = 100
    ngf: int = 64
    ndf: int = 64
    num_classes: int = 0
    d_norm: str = "batch"  # D's normalisation: batch (the paper), layer or none (WGAN-GP)


@dataclass
class CDCGANConfig:
    resolution: int = 32
    channels: int = 1
    nz: int = 100
    ngf: int = 64
    ndf: int = 64
    num_classes: int = 10
    embed_dim: int = 50  # size of G's label embedding, concatenated with z


def dcgan_init(module: nn.Module) -> None:
    """The paper's initialisation: conv weights N(0, 0.02); BN scale N(1, 0.02), bias 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class DCGANGenerator(nn.Module):
    """Transposed convolutions from a 1x1 latent to the image; BN + ReLU; Tanh output."""

    def __init__(
        self, resolution: int, channels: int, nz: int, ngf: int, in_dim: int | None = None
    ) -> None:
        super().__init__()
        stages = check_resolution_pow2("dcgan", resolution) - 3  # stride-2 blocks before output
        width = ngf * 2**stages  # 8 * ngf at 64x64
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(in_dim or nz, width, 4, 1, 0, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(True),
        ]
        for _ in range(stages):
            layers += [
                nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(width // 2),
                nn.ReLU(True),
            ]
            width //= 2
        layers += [nn.ConvTranspose2d(width, channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)
        dcgan_init(self)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.main(h.view(h.shape[0], -1, 1, 1))


D_NORMS = ("batch", "layer", "none")


def d_norm_layer(kind: str, width: int) -> nn.Module:
    """D's normalisation after each inner convolution. A gradient penalty is taken per sample,
    which batch norm breaks (each output depends on the whole batch), hence layer norm (over
    C, H, W, as WGAN-GP's authors suggest) or none for penalised critics."""
    if kind == "batch":
        return nn.BatchNorm2d(width)
    if kind == "layer":
        return nn.GroupNorm(1, width)
    if kind == "none":
        return nn.Identity()
    raise UserError(f"d_norm must be one of {', '.join(D_NORMS)} (got {kind!r})")


class DCGANDiscriminator(nn.Module):
    """Strided convolutions down to 4x4, BN (not on the input layer) + LeakyReLU(0.2), one logit."""

    def __init__(self, resolution: int, channels: int, ndf: int, norm: str = "batch") -> None:
        super().__init__()
        stages = check_resolution_pow2("dcgan", resolution) - 3
        layers: list[nn.Module] = [
            nn.Conv2d(channels, ndf, 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        width = ndf
        for _ in range(stages):
            layers += [
                nn.Conv2d(width, width * 2, 4, 2, 1, bias=norm == "none"),
                d_norm_layer(norm, width * 2),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            width *= 2
        layers += [nn.Conv2d(width, 1, 4, 1, 0, bias=False)]
        self.main = nn.Sequential(*layers)
        dcgan_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x).flatten()


class Generator(nn.Module):
    """DCGAN generator with the registry's G(z, y) signature."""

    def __init__(self, cfg: DCGANConfig) -> None:
        super().__init__()
        self.z_dim, self.num_classes = cfg.nz, 0
        self.net = DCGANGenerator(cfg.resolution, cfg.channels, cfg.nz, cfg.ngf)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(z)


class Discriminator(nn.Module):
    def __init__(self, cfg: DCGANConfig) -> None:
        super().__init__()
        self.num_classes = 0
        self.net = DCGANDiscriminator(cfg.resolution, cfg.channels, cfg.ndf, cfg.d_norm)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(x)


class ConditionalGenerator(nn.Module):
    """G(z | y): a learned label embedding concatenated with z feeds the DCGAN generator."""

    def __init__(self, cfg: CDCGANConfig) -> None:
        super().__init__()
        self.z_dim, self.num_classes = cfg.nz, cfg.num_classes
        self.embed = LabelEmbedding(cfg.num_classes, cfg.embed_dim)
        self.net = DCGANGenerator(
            cfg.resolution, cfg.channels, cfg.nz, cfg.ngf, in_dim=cfg.nz + cfg.embed_dim
        )

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if y is None:
            raise ValueError("cdcgan's generator needs class labels y")
        return self.net(torch.cat([z, self.embed(y)], dim=1))


class ConditionalDiscriminator(nn.Module):
    """D(x | y): the label, embedded as one extra image-sized plane, joins the input channels."""

    def __init__(self, cfg: CDCGANConfig) -> None:
        super().__init__()
        self.num_classes = cfg.num_classes
        self.resolution = cfg.resolution
        self.embed = nn.Embedding(cfg.num_classes, cfg.resolution * cfg.resolution)
        self.net = DCGANDiscriminator(cfg.resolution, cfg.channels + 1, cfg.ndf)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if y is None:
            raise ValueError("cdcgan's discriminator needs class labels y")
        plane = self.embed(y).view(-1, 1, self.resolution, self.resolution).to(x.dtype)
        if x.is_contiguous(memory_format=torch.channels_last):
            plane = plane.contiguous(memory_format=torch.channels_last)
        return self.net(torch.cat([x, plane], dim=1))


# The grey28 recipes of the models on the DCGAN networks (28-32 px greyscale data on a
# 2-core CPU; docs/family.md gives the trials behind them): half the tutorial's widths see
# ~2x the images in the same time, batch 64 gives twice the G updates per image, bf16 where
# the host runs it fast. The variant's own objective, regularisers and optimiser stay.
GREY28_DCGAN = {
    "resolution": 32,
    "ngf": 32,
    "ndf": 32,
    "batch_size": 64,
    "ema_kimg": 5.0,
    "precision": "auto",
}
# G five times faster than D (InfoGAN's MNIST learning rates): in 120 s trials on the
# validation slice it took DCGAN from FD 149 to 89 and LSGAN from 246 to 105; the conditional
# DCGAN collapsed within each class with it (variety 0.09), so cdcgan keeps one rate.
GREY28_SPLIT_LR = {**GREY28_DCGAN, "lr_g": 1e-3, "lr_d": 2e-4}
# DCGAN's own recipe keeps the tutorial's G width: at ngf 32 its FD stopped improving after
# ~170k images (75-77 in training from 120 s to 300 s on the validation slice), at ngf 64 it
# was 58 and still falling at 300 s with a third fewer images (ngf 128: a third of the speed).
# Lazy R1 on D (gamma 1, every 4th D update) stops D from winning: 200 kimg on the validation
# slice, FD 37.6 / 39.7 (seeds 0, 1) against 61.7 / 60.3 without it, at 85% of the speed;
# gamma 0.01 / 0.1 / 1 every update gave 50.5 / 36.6 / 37.0 at 60% of the speed, every 16th
# 54.0 (docs/family.md, "R1 on the D of DCGAN and LSGAN").
LAZY_R1 = "r1:gamma=1:every=4"
GREY28_DCGAN_G64 = {**GREY28_SPLIT_LR, "ngf": 64, "reg": LAZY_R1}
# LSGAN (ngf 32) gains from the same R1: FD 54.9 / 74.0 against 99.0 / 86.3 (seeds 0, 1).
GREY28_LSGAN = {**GREY28_SPLIT_LR, "reg": LAZY_R1}
# The conditional DCGAN gains from G's full width too: at ngf 64 FD 58 against 76 (ngf 32)
# on the validation slice in 120 s, class accuracy 99.3% against 97.8%, variety 0.70 (0.72).
# Its risk, at seed 1 a collapse within each class (variety 0.18; ngf 32: 0.81), is what D's
# spread plane (`mbstd`) removes: 300 s on the validation slice, ~90k images on one host, FD
# 15.0 and 16.6 against 173.3 and 161.7 without it (seeds 1, 0), variety 1.00 against 0.35.
GREY28_CDCGAN = {**GREY28_DCGAN, "ngf": 64, "mbstd": True}

register_model(
    ModelSpec(
        name="dcgan",
        description="DCGAN (Radford et al. 2015): all-convolutional G and D with batch norm",
        config_cls=DCGANConfig,
        build=lambda cfg: (Generator(cfg), Discriminator(cfg)),
        presets={
            # 32x32 digits on a 2-core CPU in minutes: half the tutorial's widths (the shipped
            # dcgan-digits' recipe; it sees ~2x the images of ngf = ndf = 64 in the same time
            # and draws cleaner digits within the demo's 150 s), batch 64, a short EMA
            # half-life because the run is short, frequent grids for a smooth animation, bf16
            # where it is fast.
            "demo": {
                "resolution": 32,
                "ngf": 32,
                "ndf": 32,
                "batch_size": 64,
                "kimg": 400,
                "sample_every_kimg": 4,
                "ckpt_every_kimg": 100,
                "ema_kimg": 2.0,
                "precision": "auto",
                "channels_last": True,
            },
            # the PyTorch DCGAN tutorial's setup (64x64, batch 128, 5 epochs)
            "tutorial": {"resolution": 64, "batch_size": 128, "epochs": 5},
        },
        recipes={"grey28": GREY28_DCGAN_G64},
    )
)

register_model(
    ModelSpec(
        name="cdcgan",
        description="class-conditional DCGAN: label embedding with z in G, a label plane in D",
        config_cls=CDCGANConfig,
        build=lambda cfg: (ConditionalGenerator(cfg), ConditionalDiscriminator(cfg)),
        conditional=True,
        recipes={"grey28": GREY28_CDCGAN},
    )
)


def _dcgan_networks(cfg: DCGANConfig) -> tuple[nn.Module, nn.Module]:
    return Generator(cfg), Discriminator(cfg)


register_model(
    ModelSpec(
        name="lsgan",  # the DCGAN networks under the least-squares objective
        description="LSGAN (Mao et al. 2017): DCGAN networks, least-squares loss "
        "(a, b, c = 0, 1, 1)",
        config_cls=DCGANConfig,
        build=_dcgan_networks,
        objective="least-squares",
        train_defaults={"lr_g": 2e-4, "lr_d": 2e-4, "beta1": 0.5},
        recipes={"grey28": GREY28_LSGAN},
    )
)

register_model(
    ModelSpec(
        name="wgan",
        description="WGAN (Arjovsky et al. 2017): DCGAN critic, weight clipping c=0.01, RMSprop, "
        "n_critic=5",
        config_cls=DCGANConfig,
        build=_dcgan_networks,
        objective="wasserstein",
        train_defaults={
            "optimizer": "rmsprop",
            "lr_g": 5e-5,
            "lr_d": 5e-5,
            "n_critic": 5,
            "reg": "clip:c=0.01",
        },
        # RMSprop at lr_g 1e-3 / lr_d 2e-4 (the paper's 5e-5 both): FD 585 -> 177 on the
        # validation slice in 120 s (2e-4 both: 265; 5e-4 both: 203); clipping, RMSprop and
        # n_critic = 5 stay
        recipes={"grey28": GREY28_SPLIT_LR},
        defining=("optimizer", "n_critic"),
    )
)


@dataclass
class WGANGPConfig(DCGANConfig):
    d_norm: str = "layer"  # no batch norm in a gradient-penalised critic


register_model(
    ModelSpec(
        name="wgan-gp",
        description="WGAN-GP (Gulrajani et al. 2017): gradient penalty 10, Adam(0, 0.9), "
        "n_critic=5, layer norm instead of batch norm in the critic",
        config_cls=WGANGPConfig,
        build=_dcgan_networks,
        objective="wasserstein",
        train_defaults={
            "lr_g": 1e-4,
            "lr_d": 1e-4,
            "beta1": 0.0,
            "beta2": 0.9,
            "n_critic": 5,
            "reg": "gp:weight=10",
        },
        # The paper's MNIST critic has no normalisation; with layer norm G stalled in the
        # 120 s trials (FD flat at 1,374 over 281 G updates; 1,099 and falling without it).
        # A critic of half the width (ndf 16: 1,463 img/s against 1,015) with lr_g 1e-3 /
        # lr_d 2e-4 and beta1 0.5 took FD to 505; the penalty and n_critic = 5 stay.
        recipes={
            "grey28": {
                **GREY28_SPLIT_LR,
                "ndf": 16,
                "beta1": 0.5,
                "precision": "fp32",
                "d_norm": "none",
            }
        },
        defining=("n_critic",),
    )
)
