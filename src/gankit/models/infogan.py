"""InfoGAN (Chen et al. 2016): unsupervised disentangled codes through mutual information.

G's input is split into incompressible noise and structured codes (categorical one-hots and
continuous values in [-1, 1]); a small head Q on D's body guesses the codes back from the
image. Maximising a variational lower bound of I(c; G(z, c)) (the `info` regulariser in
`gankit.regularisers`) makes the codes visible in the image, so on MNIST the 10-way code tends
to pick the digit and the continuous ones its slant and width, without labels.

The networks are the paper's MNIST ones (FC-BN-ReLU, FC to a small feature map, two stride-2
up-convolutions; D mirrors them with Q as one extra FC block on the shared 1024-d features),
with the feature-map size derived from the resolution: res/4 while that is at most 8 (7x7 at
28, as in the paper; 8x8 at 32), one more stride-2 stage per further doubling.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from ..latent import Prior, truncate_normal
from . import ModelSpec, UserError, register_model


class InfoPrior(Prior):
    """z = [noise ~ N(0, I), one-hot codes ~ uniform categorical, continuous codes ~ U(-1, 1)].

    Args:
        noise_dim: size of the Gaussian noise part.
        categorical: the number of categories of each categorical code (an int for one code,
            0 or [] for none).
        continuous: the number of continuous codes.
    """

    def __init__(self, noise_dim: int, categorical: Sequence[int] | int, continuous: int) -> None:
        if isinstance(categorical, int):
            categorical = [categorical] if categorical else []
        self.noise_dim = int(noise_dim)
        self.categorical = [int(k) for k in categorical]
        self.continuous = int(continuous)
        if self.noise_dim < 0 or self.continuous < 0 or any(k < 2 for k in self.categorical):
            raise ValueError(
                "InfoPrior needs noise_dim >= 0, continuous >= 0 and >= 2 categories per code"
            )
        super().__init__(self.noise_dim + sum(self.categorical) + self.continuous)

    # --------------------------------------------------------------------- drawing
    def sample(
        self,
        n: int,
        device: torch.device | str = "cpu",
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """A training batch of latents (the global RNG unless `generator` is given)."""
        noise = torch.randn(n, self.noise_dim, device=device, generator=generator)
        cats = [
            torch.randint(k, (n,), device=device, generator=generator) for k in self.categorical
        ]
        cont = torch.rand(n, self.continuous, device=device, generator=generator) * 2 - 1
        return self.compose(noise, cats, cont)

    def from_seeds(self, seeds: Sequence[int], truncation: float | None = None) -> torch.Tensor:
        """One latent per seed from that seed's own generator (CPU float32).

        Truncation redraws noise components beyond it, after the codes are drawn, so that a
        truncated sample keeps the codes of the untruncated one; the codes themselves are
        bounded and never truncated.
        """
        if truncation is not None and truncation <= 0:
            raise ValueError("truncation must be > 0")
        out = torch.empty(len(seeds), self.nz)
        for i, s in enumerate(seeds):
            g = torch.Generator().manual_seed(int(s))
            cats = [torch.randint(k, (1,), generator=g) for k in self.categorical]
            cont = torch.rand(1, self.continuous, generator=g) * 2 - 1
            noise = torch.randn(1, self.noise_dim, generator=g)
            if truncation is not None:
                noise = truncate_normal(noise, truncation, g)
            out[i] = self.compose(noise, cats, cont)[0]
        return out

    # --------------------------------------------------------------------- layout
    def split(self, z: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
        """z [N, nz] -> (noise [N, noise_dim], [one-hot [N, k] per code], cont [N, continuous])."""
        if z.shape[-1] != self.nz:
            raise ValueError(f"expected latents of size {self.nz}, got {tuple(z.shape)}")
        parts = torch.split(z, [self.noise_dim, *self.categorical, self.continuous], dim=-1)
        return parts[0], list(parts[1:-1]), parts[-1]

    def compose(
        self,
        noise: torch.Tensor,
        categorical: Sequence[torch.Tensor],
        continuous: torch.Tensor,
    ) -> torch.Tensor:
        """The inverse of `split`; a categorical code may be given as indices [N] or one-hots."""
        if len(categorical) != len(self.categorical):
            raise ValueError(f"expected {len(self.categorical)} categorical codes")
        hots = []
        for c, k in zip(categorical, self.categorical, strict=True):
            if c.dim() == 1:
                c = F.one_hot(c.long(), k)
            hots.append(c.to(noise.dtype))
        return torch.cat([noise, *hots, continuous.to(noise.dtype)], dim=-1)

    def with_codes(
        self,
        z: torch.Tensor,
        categorical: dict[int, int | torch.Tensor] | None = None,
        continuous: dict[int, float | torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """A copy of z with chosen codes set (for sweeps): `categorical={0: 3}` makes code 0
        category 3, `continuous={1: 0.5}` sets continuous code 1; values may be per-sample."""
        noise, cats, cont = self.split(z)
        cats = [c.clone() for c in cats]
        cont = cont.clone()
        for i, value in (categorical or {}).items():
            idx = torch.as_tensor(value, device=z.device).long().expand(z.shape[0])
            cats[i] = F.one_hot(idx, self.categorical[i]).to(z.dtype)
        for i, value in (continuous or {}).items():
            cont[:, i] = torch.as_tensor(value, dtype=z.dtype, device=z.device)
        return self.compose(noise, cats, cont)

    def code_indices(self, z: torch.Tensor) -> list[torch.Tensor]:
        """The category of each categorical code, [N] per code."""
        return [c.argmax(-1) for c in self.split(z)[1]]


@dataclass
class InfoGANConfig:
    resolution: int = 32
    channels: int = 1
    nz: int = 62  # Gaussian noise dimensions (the codes come on top)
    # Half the paper's conv widths (its 128-channel map is 2 * 64): with D run five times
    # per step (Q included) this keeps a step cheaper than DCGAN's on a CPU, ample for digits.
    ngf: int = 32  # G's last hidden width; the small feature map has 2 * ngf channels at 32x32
    ndf: int = 32  # D's first width
    hidden: int = 1024  # the FC width on both sides (the paper's 1024)
    q_hidden: int = 128  # Q's own FC width (the paper's 128)
    categories: int = 10  # categories of the one categorical code (0: none)
    continuous: int = 2  # continuous codes in [-1, 1]
    num_classes: int = 0


def feature_plan(name: str, resolution: int) -> tuple[int, int]:
    """(size of the smallest feature map, number of stride-2 stages) for `resolution`."""
    if resolution < 8 or resolution % 4:
        raise UserError(
            f"{name} needs a resolution that is a multiple of 4 and >= 8 (got {resolution}); "
            "pass e.g. --resolution 32"
        )
    size, stages = resolution // 4, 2
    while size > 8 and size % 2 == 0:
        size, stages = size // 2, stages + 1
    return size, stages


def info_init(module: nn.Module) -> None:
    """DCGAN's initialisation, which the InfoGAN paper's networks use too."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class InfoGenerator(nn.Module):
    """G(z): FC-BN-ReLU, FC-BN-ReLU to a small map, stride-2 up-convolutions, Tanh."""

    def __init__(self, cfg: InfoGANConfig) -> None:
        super().__init__()
        if cfg.categories < 2:
            raise UserError(f"infogan needs categories >= 2 (got {cfg.categories})")
        self.prior = InfoPrior(cfg.nz, cfg.categories, cfg.continuous)
        self.z_dim, self.num_classes = self.prior.nz, 0
        self.size, stages = feature_plan("infogan", cfg.resolution)
        width = cfg.ngf * 2 ** (stages - 1)
        self.width = width
        self.fc = nn.Sequential(
            nn.Linear(self.z_dim, cfg.hidden, bias=False),
            nn.BatchNorm1d(cfg.hidden),
            nn.ReLU(True),
            nn.Linear(cfg.hidden, width * self.size**2, bias=False),
            nn.BatchNorm1d(width * self.size**2),
            nn.ReLU(True),
        )
        layers: list[nn.Module] = []
        for _ in range(stages - 1):
            layers += [
                nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(width // 2),
                nn.ReLU(True),
            ]
            width //= 2
        layers += [nn.ConvTranspose2d(width, cfg.channels, 4, 2, 1), nn.Tanh()]
        self.conv = nn.Sequential(*layers)
        info_init(self)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.fc(z).view(z.shape[0], self.width, self.size, self.size)
        return self.conv(h)


class QOutput(NamedTuple):
    """Q's guess of the codes: logits per categorical code, means of the continuous ones (a
    Gaussian of fixed unit variance around them)."""

    cat_logits: list[torch.Tensor]
    cont_mean: torch.Tensor


class InfoDiscriminator(nn.Module):
    """D(x) and Q(c | x) on one shared body: stride-2 convs (BN after the first), FC-BN 1024.

    `D(x)` returns the real/fake logit [N]; `D.q(x)` runs the body again and returns Q's
    `QOutput`. Running the body twice costs one extra D forward per update but keeps the
    registry's D(x, y) -> logit contract, which every objective relies on.
    """

    def __init__(self, cfg: InfoGANConfig) -> None:
        super().__init__()
        self.num_classes = 0
        self.categories = [cfg.categories] if cfg.categories else []
        self.continuous = cfg.continuous
        size, stages = feature_plan("infogan", cfg.resolution)
        layers: list[nn.Module] = [
            nn.Conv2d(cfg.channels, cfg.ndf, 4, 2, 1),
            nn.LeakyReLU(0.1, inplace=True),
        ]
        width = cfg.ndf
        for _ in range(stages - 1):
            layers += [
                nn.Conv2d(width, width * 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(width * 2),
                nn.LeakyReLU(0.1, inplace=True),
            ]
            width *= 2
        layers += [
            nn.Flatten(),
            nn.Linear(width * size**2, cfg.hidden, bias=False),
            nn.BatchNorm1d(cfg.hidden),
            nn.LeakyReLU(0.1, inplace=True),
        ]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(cfg.hidden, 1)
        self.q_head = nn.Sequential(
            nn.Linear(cfg.hidden, cfg.q_hidden, bias=False),
            nn.BatchNorm1d(cfg.q_hidden),
            nn.LeakyReLU(0.1, inplace=True),
            nn.Linear(cfg.q_hidden, sum(self.categories) + self.continuous),
        )
        info_init(self)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.body(x)).flatten()

    def q(self, x: torch.Tensor) -> QOutput:
        """Q's posterior parameters for images x, from the same body features as D(x)."""
        out = self.q_head(self.body(x))
        *cats, cont = torch.split(out, [*self.categories, self.continuous], dim=1)
        return QOutput(list(cats), cont)


register_model(
    ModelSpec(
        name="infogan",
        description="InfoGAN (Chen et al. 2016): a 10-way code and 2 continuous codes that a "
        "Q head on D's body recovers (mutual-information term, --reg info)",
        config_cls=InfoGANConfig,
        build=lambda cfg: (InfoGenerator(cfg), InfoDiscriminator(cfg)),
        objective="nonsaturating",
        codes=True,
        train_defaults={
            "reg": "info:weight=1:cont_weight=0.1",
            "lr_g": 1e-3,
            "lr_d": 2e-4,
            "beta1": 0.5,
            "batch_size": 64,
        },
        recipes={"grey28": {"batch_size": 64, "ema_kimg": 5.0, "precision": "auto"}},
    )
)
