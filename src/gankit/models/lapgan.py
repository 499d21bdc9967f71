"""LapGAN (Denton et al. 2015): a Laplacian pyramid of generative adversarial networks.

An image I_L is stored as its coarsest low-pass image I_0 and the band-pass residuals
h_k = I_k - upsample(I_{k-1}), with I_{k-1} = downsample(I_k) (`build_pyramid`); adding the
residuals back coarse to fine restores it exactly (`collapse_pyramid`). The generator samples
in that order: a base generator G_0 makes I_0 from noise, and each finer G_k looks at the
upsampled coarser image l_k = upsample(I_{k-1}) plus a noise plane (an extra input channel,
as in the paper) and makes only the residual h_k, so I_k = l_k + G_k(z_k, l_k). The
discriminator decomposes its input the same way: D_0 judges I_0 and each D_k judges h_k given
l_k, one logit per level ([N, L+1], `ModelSpec.d_output="levels"`); the objectives average
the loss over all levels, and since the level networks share no parameters, D's update is
the same as updating each D_k on its own level's loss.

Choices made here, and where this differs from the paper:
- Training is end to end. The paper trained each (G_k, D_k) pair on its own, G_k conditioned
  on the *real* low-pass image of a training image; here the generic trainer trains the whole
  pyramid at once, each G_k conditioned on the *generated* coarser image, and G's gradients
  from every D_k flow through all coarser generators. Sampling is the same as the paper's.
- The noise is all derived from z, so `G(z)` in eval mode is a deterministic function of z
  (sampling from seeds must be reproducible). z ([N, nz]) is cut into L+1 disjoint chunks
  (`latent_chunks`): z_0 feeds G_0 and chunk k is mapped to level k's noise plane by a fixed
  random projection (a buffer, not trained), scaled so each pixel is N(0, 1). The paper
  drew every noise plane i.i.d. (uniform); here plane k has only nz / (L+1) degrees of
  freedom, but the levels' noises stay independent of one another.
- Output range: G_0 ends in tanh, the residuals are unbounded (a residual may need to reach
  +-2 to turn a black pixel white), and only the final image is clamped to [-1, 1], the data
  range. Clamped pixels get no gradient, but the convolutions that made them share their
  weights with in-range pixels, and the data's saturated background is reached exactly.
- D_k takes (h_k, l_k) as two channel groups; its first (linear) convolution can form the
  paper's sum h_k + l_k or weigh the two parts separately.
- The pyramid filters are 2x2 average pooling (a box blur, then every second pixel) and
  bilinear upsampling, cheaper than the paper's 5-tap filters; the reconstruction is exact
  by construction whatever the filters.
- G_0 and D_0 are MLPs at the coarsest scale (8x8 by default), as in the paper's CIFAR-10
  model; the finer levels are small convnets at their own resolution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import ModelSpec, UserError, check_resolution_pow2, register_model
from .dcgan import dcgan_init


@dataclass
class LapGANConfig:
    resolution: int = 32
    channels: int = 1
    nz: int = 100  # split into L+1 chunks: z_0 for G_0, one per finer level's noise plane
    ngf: int = 32  # width of each finer G_k (full-resolution 3x3 convs: the costly part)
    ndf: int = 32  # width of each finer D_k (doubling per stride-2 stage)
    hidden: int = 512  # width of the MLPs G_0 and D_0 at the coarsest scale
    base_resolution: int = 8  # size of I_0; levels L = log2(resolution / base_resolution)
    num_classes: int = 0  # unconditional


# ----------------------------------------------------------------------------- the pyramid


def downsample(x: torch.Tensor) -> torch.Tensor:
    """Blur and subsample by 2: the mean of each 2x2 block ([N, C, H, W] -> [N, C, H/2, W/2])."""
    return F.avg_pool2d(x, 2)


def upsample(x: torch.Tensor) -> torch.Tensor:
    """Enlarge by 2 with bilinear interpolation (half-pixel centres): it reproduces a linear
    ramp away from the border, so smooth content leaves (almost) no residual."""
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


def gaussian_pyramid(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """The low-pass images [I_0 (coarsest), ..., I_L = x], I_{k-1} = downsample(I_k)."""
    images = [x]
    for _ in range(levels):
        images.append(downsample(images[-1]))
    return images[::-1]


def decompose(
    x: torch.Tensor, levels: int
) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """`build_pyramid` plus the low-pass images l_k = upsample(I_{k-1}) the residuals are
    taken against (what LapGAN's conditional networks see)."""
    images = gaussian_pyramid(x, levels)
    lows = [upsample(coarse) for coarse in images[:-1]]
    residuals = [fine - low for fine, low in zip(images[1:], lows, strict=True)]
    return images[0], residuals, lows


def build_pyramid(x: torch.Tensor, levels: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Laplacian pyramid of `x` with `levels` band-pass levels.

    Returns:
        (I_0, [h_1, ..., h_L]): the coarsest image, downsampled `levels` times, and the
        residuals h_k = I_k - upsample(I_{k-1}), coarse to fine (h_L has x's size).
    """
    coarsest, residuals, _ = decompose(x, levels)
    return coarsest, residuals


def collapse_pyramid(coarsest: torch.Tensor, residuals: list[torch.Tensor]) -> torch.Tensor:
    """The image a pyramid describes: I_k = upsample(I_{k-1}) + h_k, coarse to fine."""
    image = coarsest
    for h in residuals:
        image = upsample(image) + h
    return image


def pyramid_levels(resolution: int, base_resolution: int) -> int:
    """Band-pass levels L between `base_resolution` and `resolution`; a UserError if none."""
    check_resolution_pow2("lapgan", resolution)
    if base_resolution < 4 or base_resolution & (base_resolution - 1):
        raise UserError(
            f"lapgan's base_resolution must be a power of two >= 4 (got {base_resolution})"
        )
    if base_resolution >= resolution:
        raise UserError(
            f"lapgan needs base_resolution < resolution for at least one pyramid level "
            f"(got {base_resolution} and {resolution}); "
            f"pass --set base_resolution={resolution // 2}"
        )
    return int(math.log2(resolution // base_resolution))


def latent_chunks(nz: int, levels: int) -> list[int]:
    """Sizes of z's L+1 chunks: equal, the remainder to z_0 (G_0's input)."""
    if nz < levels + 1:
        raise UserError(f"lapgan needs nz >= {levels + 1} (one chunk per level), got {nz}")
    each = nz // (levels + 1)
    return [nz - levels * each] + [each] * levels


# ----------------------------------------------------------------------------- generators


class BaseGenerator(nn.Module):
    """G_0: an MLP from z_0 to the coarsest image, tanh-bounded to the data range."""

    def __init__(self, nz: int, hidden: int, channels: int, size: int) -> None:
        super().__init__()
        self.shape = (channels, size, size)
        self.net = nn.Sequential(
            nn.Linear(nz, hidden, bias=False),
            nn.BatchNorm1d(hidden),
            nn.ReLU(True),
            nn.Linear(hidden, hidden, bias=False),
            nn.BatchNorm1d(hidden),
            nn.ReLU(True),
            nn.Linear(hidden, math.prod(self.shape)),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(z.shape[0], *self.shape)


class ResidualGenerator(nn.Module):
    """G_k: a 3-layer convnet at level k's resolution, (l_k, noise plane) -> residual h_k.

    The last layer is linear: a residual is a signed correction, not an image.
    """

    def __init__(self, channels: int, ngf: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels + 1, ngf, 3, 1, 1, bias=False),
            nn.BatchNorm2d(ngf),
            nn.ReLU(True),
            nn.Conv2d(ngf, ngf, 3, 1, 1, bias=False),
            nn.BatchNorm2d(ngf),
            nn.ReLU(True),
            nn.Conv2d(ngf, channels, 3, 1, 1),
        )

    def forward(self, low: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([low, noise.to(low.dtype)], dim=1))


class Generator(nn.Module):
    """The pyramid of generators, sampled coarse to fine; G(z) = clamp(I_L, -1, 1)."""

    def __init__(self, cfg: LapGANConfig) -> None:
        super().__init__()
        self.z_dim, self.num_classes = cfg.nz, 0
        self.levels = pyramid_levels(cfg.resolution, cfg.base_resolution)
        self.chunks = latent_chunks(cfg.nz, self.levels)
        self.base = BaseGenerator(self.chunks[0], cfg.hidden, cfg.channels, cfg.base_resolution)
        self.refine = nn.ModuleList(
            ResidualGenerator(cfg.channels, cfg.ngf) for _ in range(self.levels)
        )
        dcgan_init(self)
        # Fixed maps from each level's z chunk to its noise plane: N(0, 1/d) entries make each
        # pixel N(0, 1) for z ~ N(0, I). Buffers, so checkpoints carry them and they never train.
        for k in range(1, self.levels + 1):
            side = cfg.base_resolution * 2**k
            proj = torch.randn(self.chunks[k], side * side) / math.sqrt(self.chunks[k])
            self.register_buffer(f"noise_proj_{k}", proj)

    def split_latent(self, z: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(z_0 for G_0, [noise plane of level 1, ..., level L] as [N, 1, r_k, r_k])."""
        parts = torch.split(z, self.chunks, dim=1)
        planes = []
        for k, part in enumerate(parts[1:], start=1):
            proj = getattr(self, f"noise_proj_{k}")
            side = math.isqrt(proj.shape[1])
            planes.append((part @ proj.to(part.dtype)).view(-1, 1, side, side))
        return parts[0], planes

    def pyramid(self, z: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Sample coarse to fine: (I_0, [h_1, ..., h_L]), each G_k conditioned on the
        upsampled image that the coarser levels made."""
        z0, planes = self.split_latent(z)
        coarsest = image = self.base(z0)
        residuals = []
        for g_k, noise in zip(self.refine, planes, strict=True):
            low = upsample(image)
            h = g_k(low, noise)
            residuals.append(h)
            image = low + h
        return coarsest, residuals

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        coarsest, residuals = self.pyramid(z)
        # collapse repeats the additions of `pyramid`, so the sum is the same bit for bit
        return collapse_pyramid(coarsest, residuals).clamp(-1.0, 1.0)


# ----------------------------------------------------------------------------- discriminators


class BaseDiscriminator(nn.Module):
    """D_0: an MLP judging the coarsest image I_0."""

    def __init__(self, channels: int, size: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(channels * size * size, hidden),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(hidden, hidden),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(hidden, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1)).squeeze(1)


class ResidualDiscriminator(nn.Module):
    """D_k: strided convolutions over (h_k, l_k) down to 4x4, LeakyReLU(0.2), one logit.

    No batch norm: a gradient penalty (`--reg gp`) is taken per sample.
    """

    def __init__(self, channels: int, ndf: int, size: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width_in, width = 2 * channels, ndf
        while size > 4:
            layers += [nn.Conv2d(width_in, width, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
            width_in, width, size = width, width * 2, size // 2
        layers.append(nn.Conv2d(width_in, 1, 4, 1, 0))
        self.net = nn.Sequential(*layers)

    def forward(self, band: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([band, low], dim=1)).flatten()


class Discriminator(nn.Module):
    """The pyramid of discriminators: D(x) -> [N, L+1] logits, column 0 for I_0, k for h_k."""

    def __init__(self, cfg: LapGANConfig) -> None:
        super().__init__()
        self.num_classes = 0
        self.levels = pyramid_levels(cfg.resolution, cfg.base_resolution)
        self.base = BaseDiscriminator(cfg.channels, cfg.base_resolution, cfg.hidden)
        self.refine = nn.ModuleList(
            ResidualDiscriminator(cfg.channels, cfg.ndf, cfg.base_resolution * 2**k)
            for k in range(1, self.levels + 1)
        )
        dcgan_init(self)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        coarsest, residuals, lows = decompose(x, self.levels)
        scores = [self.base(coarsest)]
        scores += [d_k(h, low) for d_k, h, low in zip(self.refine, residuals, lows, strict=True)]
        return torch.stack(scores, dim=1)


register_model(
    ModelSpec(
        name="lapgan",
        description="LapGAN (Denton et al. 2015): a Laplacian pyramid of GANs, each level "
        "generating the band-pass residual of the upsampled coarser image",
        config_cls=LapGANConfig,
        build=lambda cfg: (Generator(cfg), Discriminator(cfg)),
        d_output="levels",
        train_defaults={"batch_size": 64, "lr_g": 2e-4, "lr_d": 2e-4, "beta1": 0.5},
        recipes={"grey28": {"batch_size": 64, "ema_kimg": 5.0, "precision": "auto"}},
    )
)
