"""BEGAN (Berthelot et al. 2017): the discriminator is an autoencoder.

D scores an image by how well it reconstructs it; the `began` objective (gankit.objectives)
turns the L1 reconstruction errors of real and generated batches into losses and keeps the
equilibrium variable k_t. The networks follow the paper: 3x3 convolutions with ELU, a decoder
that starts from an 8x8 grid and doubles with nearest-neighbour upsampling, and an encoder
that mirrors it with stride-2 convolutions whose width grows linearly (n, 2n, 3n, ...). The
number of stages is derived from the resolution, so one class serves 16x16, 32x32 and 64x64.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from . import ModelSpec, check_resolution_pow2, register_model

BASE = 8  # side of the grid the decoder starts from and the encoder ends at


@dataclass
class BEGANConfig:
    resolution: int = 32
    channels: int = 1
    nz: int = 64  # size of z
    # Widths (the paper's n) scaled to 32x32 digits on a CPU: every 3x3 conv pair runs at full
    # resolution and ELU's CPU kernel is slow, so n = 32 trains at about a third of the speed.
    ngf: int = 16  # G's width
    ndf: int = 16  # D's autoencoder width
    h_dim: int = 64  # D's bottleneck: the code between its encoder and decoder
    num_classes: int = 0  # unconditional; kept so every model has the same fields


def _conv(c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride, 1), nn.ELU(inplace=True)]


# sqrt(1 / E[ELU(x)^2]) for x ~ N(0, 1): the gain that keeps a unit variance through ELU
ELU_GAIN = 1.245  # E[ELU(x)^2] = 0.645


def init_signal_preserving(layers: list[nn.Module]) -> None:
    """He-style init, zero biases: each layer keeps its input's variance (gain ELU_GAIN before
    an ELU, 1 before nothing). PyTorch's default init scales each layer's spread by about 0.55
    here, and BEGAN stacks 9 convs in the encoder and 7 in the decoder: at the default init
    D's reconstruction varied with its input by 1e-7 (G's output with z by 0.005), so D
    started as a constant and sat at the trivial median-digit answer for hundreds of steps."""
    for i, layer in enumerate(layers):
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            before_elu = i + 1 < len(layers) and isinstance(layers[i + 1], nn.ELU)
            fan_in = layer.weight[0].numel()
            nn.init.normal_(layer.weight, std=(ELU_GAIN if before_elu else 1.0) / fan_in**0.5)
            nn.init.zeros_(layer.bias)


def _stages(resolution: int) -> int:
    """Doublings from the 8x8 base to `resolution` (0 at 8x8, 2 at 32x32)."""
    return check_resolution_pow2("began", resolution, minimum=BASE) - 3


class Decoder(nn.Module):
    """h -> FC -> width x 8 x 8, then (conv-ELU-conv-ELU, upsample) per doubling, a last
    conv-ELU pair at full size and a 3x3 conv to the image channels.

    Args:
        resolution: output side (a power of two >= 8).
        channels: output channels.
        in_dim: size of the input vector (z for G, the bottleneck code for D).
        width: channels of every hidden layer (the paper's n).

    The output is linear, in both networks: a tanh cannot reach the -1 of an MNIST
    background, so D would push its pre-activations towards -infinity chasing an L1 error of
    0, and G's tanh saturates (see Generator).
    """

    def __init__(self, resolution: int, channels: int, in_dim: int, width: int) -> None:
        super().__init__()
        stages = _stages(resolution)
        self.width = width
        self.fc = nn.Linear(in_dim, width * BASE * BASE)
        layers: list[nn.Module] = []
        for i in range(stages + 1):
            layers += _conv(width, width) + _conv(width, width)
            if i < stages:
                layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
        layers.append(nn.Conv2d(width, channels, 3, 1, 1))
        self.main = nn.Sequential(*layers)
        init_signal_preserving([self.fc, *self.main])

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.main(self.fc(h).view(h.shape[0], self.width, BASE, BASE))


class Encoder(nn.Module):
    """Image -> conv-ELU, then (conv-ELU-conv-ELU, stride-2 conv-ELU) per halving, with the
    width growing by n at each halving, a last conv-ELU pair at 8x8 and an FC to the code."""

    def __init__(self, resolution: int, channels: int, width: int, h_dim: int) -> None:
        super().__init__()
        stages = _stages(resolution)
        layers = _conv(channels, width)
        for i in range(stages + 1):
            w = width * (i + 1)
            layers += _conv(w, w) + _conv(w, w)
            if i < stages:
                layers += _conv(w, w + width, stride=2)
        self.main = nn.Sequential(*layers)
        self.fc = nn.Linear(width * (stages + 1) * BASE * BASE, h_dim)
        init_signal_preserving([*self.main, self.fc])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.main(x).reshape(x.shape[0], -1))


class Generator(nn.Module):
    """G(z): the BEGAN decoder with a linear output, as in the paper, clamped to the data
    range [-1, 1] in eval mode (samples, metrics, grids).

    A tanh output (our first version) stalls G on digits: D first reconstructs every image
    as a near-median, mostly black digit, so G's quickest gain is a black image; its
    pre-activations run far negative, the tanh saturates and G's gradient is gone for good
    (a 120 s run ended with G at -0.999 on every pixel while D reconstructed that image with
    an error of 0.16). A linear output keeps the gradient; in training D sees G's raw output.
    """

    def __init__(self, cfg: BEGANConfig) -> None:
        super().__init__()
        self.z_dim, self.num_classes = cfg.nz, 0
        self.net = Decoder(cfg.resolution, cfg.channels, cfg.nz, cfg.ngf)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        x = self.net(z)
        return x if self.training else x.clamp(-1.0, 1.0)


class Discriminator(nn.Module):
    """D(x): the autoencoder's reconstruction of x (same shape as x), not a score."""

    def __init__(self, cfg: BEGANConfig) -> None:
        super().__init__()
        self.num_classes = 0
        self.encoder = Encoder(cfg.resolution, cfg.channels, cfg.ndf, cfg.h_dim)
        self.decoder = Decoder(cfg.resolution, cfg.channels, cfg.h_dim, cfg.ndf)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.decoder(self.encoder(x))


register_model(
    ModelSpec(
        name="began",
        description="BEGAN (Berthelot et al. 2017): autoencoder D, L1 reconstruction losses "
        "balanced by k_t (gamma = 0.5)",
        config_cls=BEGANConfig,
        build=lambda cfg: (Generator(cfg), Discriminator(cfg)),
        objective="began",
        objectives=("began",),
        d_output="reconstruction",
        # The paper's Adam lr 1e-4 (it halves lr when M_global stalls; we keep it constant)
        # with the usual GAN betas. Batch 64 rather than the paper's 16: on a CPU the per-step
        # overhead of the three autoencoder passes makes batch 16 much slower per image.
        train_defaults={
            "batch_size": 64,
            "lr_g": 1e-4,
            "lr_d": 1e-4,
            "beta1": 0.5,
            "beta2": 0.999,
        },
        recipes={"grey28": {"batch_size": 64, "ema_kimg": 5.0, "precision": "auto"}},
    )
)
