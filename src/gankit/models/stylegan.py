"""StyleGAN (Karras et al. 2019) with StyleGAN2's modulated convolutions (Karras et al. 2020),
scaled to fit 32x32 grayscale digits on a CPU.

G = mapping network (z -> w) + synthesis network (a learned constant 4x4 input, one modulated
3x3 convolution per layer whose input channels are scaled by a style A(w) and whose outputs
are demodulated, per-layer noise with learned per-channel strengths, skip toRGB outputs).
D = residual blocks of average-pool + convolution down to 4x4, a minibatch standard
deviation feature, one logit. Every weight uses the equalised learning rate of ProGAN
(stored ~N(0, 1), scaled by He's constant at run time), because Adam's per-parameter step
size otherwise makes layers of different fan-in learn at different speeds; the mapping
network also learns 100x slower (lr multiplier 0.01, as in the papers) so that w drifts
slowly under the synthesis network.

Differences from the papers, for the scale and a CPU: 4 mapping layers instead of 8; a
modulated 4x4 stride-2 transposed convolution (kernel divisible by the stride, so no
checkerboard from uneven overlap) instead of a 3x3 one followed by a blur filter; bilinear
up-sampling of the skip images; average pooling + convolution in D instead of blur + strided
convolution; non-saturating logistic loss with R1 every step (no lazy regularisation); a
tanh on G's output (the registry's [-1, 1] contract); one w per style input (`num_ws` counts
toRGB layers too).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import ModelSpec, UserError, check_resolution_pow2, register_model

SQRT2 = math.sqrt(2.0)  # keeps the activations' variance through leaky ReLU (He gain)
NOISE_MODES = ("random", "const", "none")


@dataclass
class StyleGANConfig:
    resolution: int = 32
    channels: int = 1
    nz: int = 64  # size of z and of w
    mapping_layers: int = 4  # 8 in the papers; 4 is plenty for 10 digit classes
    # widths: 64 at 4x4 and 8x8, 32 at 16x16, 16 at 32x32; ngf = 128 triples G's cost on a CPU
    ngf: int = 64  # G's width at 4x4 and 8x8, halving with each further doubling
    ndf: int = 64  # D's width at 8x8 and 4x4, halving with each further doubling
    min_width: int = 16  # no stage is narrower than this (or than ngf / ndf if smaller)
    mixing_prob: float = 0.9  # style mixing regularisation: share of mixed training samples
    mapping_lr_mul: float = 0.01  # the mapping network's learning-rate multiplier
    num_classes: int = 0


def stage_width(res: int, base: int, floor: int) -> int:
    """Channels at resolution `res`: `base` up to 8x8, halved for each doubling beyond."""
    return max(base >> max(0, res.bit_length() - 4), min(base, floor))


class EqualLinear(nn.Module):
    """A linear layer with equalised learning rate and an optional lr multiplier.

    With `act`, the layer is followed by leaky ReLU(0.2) times sqrt(2); as
    leaky(y) sqrt(2) = leaky(sqrt(2) y), the gain is folded into the weight and bias scales.
    """

    def __init__(
        self,
        in_f: int,
        out_f: int,
        bias_init: float = 0.0,
        lr_mul: float = 1.0,
        act: bool = False,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_f, in_f) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_f,), float(bias_init) / lr_mul))
        gain = SQRT2 if act else 1.0
        self.w_gain = gain * lr_mul / math.sqrt(in_f)
        self.b_gain = gain * lr_mul
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.linear(x, self.weight * self.w_gain, self.bias * self.b_gain)
        return F.leaky_relu(x, 0.2, inplace=True) if self.act else x


class EqualConv2d(nn.Module):
    """A same-padded convolution with equalised learning rate (and the activation of
    `EqualLinear` with `act`)."""

    def __init__(
        self, in_ch: int, out_ch: int, kernel: int, bias: bool = True, act: bool = False
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None
        self.gain = (SQRT2 if act else 1.0) / math.sqrt(in_ch * kernel * kernel)
        self.b_gain = SQRT2 if act else 1.0
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = None if self.bias is None else self.bias * self.b_gain
        x = F.conv2d(x, self.weight * self.gain, b, padding=self.weight.shape[-1] // 2)
        return F.leaky_relu(x, 0.2, inplace=True) if self.act else x


def modulated_conv2d(
    x: torch.Tensor,  # [N, I, H, W]
    weight: torch.Tensor,  # [O, I, k, k] (or [I, O, 4, 4] with up=True), shared by the batch
    styles: torch.Tensor,  # [N, I], one scale per sample and input channel
    up: bool = False,  # a stride-2 transposed convolution that doubles H and W
) -> torch.Tensor:
    """StyleGAN2's modulated convolution conv(x, w * s), before demodulation.

    Computed as scale inputs -> one shared batched convolution, which equals the
    per-sample-weight (grouped) form but is a single ordinary convolution, much faster on a
    CPU. Demodulation is then a per-sample output scale (`demodulation`), which the caller
    fuses with its bias and noise.
    """
    x = x * styles[:, :, None, None].to(x.dtype)
    if up:
        # a 4x4 kernel at stride 2 covers every output pixel evenly (no checkerboard from
        # uneven overlap) and costs 4/9 of bilinear up-sampling followed by a 3x3 convolution
        return F.conv_transpose2d(x, weight.to(x.dtype), stride=2, padding=1)
    return F.conv2d(x, weight.to(x.dtype), padding=weight.shape[-1] // 2)


def demodulation(
    weight: torch.Tensor, styles: torch.Tensor, up: bool = False, eps: float = 1e-8
) -> torch.Tensor:
    """[N, O]: 1 / the L2 norm of each sample's modulated weights per output channel.

    Dividing each output channel by it (StyleGAN2) removes the style's overall scale and
    replaces AdaIN's instance normalisation without looking at the activations.

    sum_{i,k} (w_oik s_i)^2 = sum_i s_i^2 sum_k w_oik^2: a small matrix product, no
    per-sample weights. A stride-2 transposed 4x4 convolution feeds each output pixel from a
    quarter of its taps, hence the extra factor 2 (the square root of 4) there.
    """
    w2 = weight.float().square().sum((2, 3))  # [O, I], or [I, O] for a transposed kernel
    norm2 = styles.float().square() @ (w2 if up else w2.t())
    return torch.rsqrt(norm2 + eps) * (2.0 if up else 1.0)


class ModulatedConv2d(nn.Module):
    """A convolution whose input channels are scaled by an affine map A(w) of its style."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: int,
        w_dim: int,
        demodulate: bool = True,
        up: bool = False,
    ) -> None:
        super().__init__()
        self.affine = EqualLinear(w_dim, in_ch, bias_init=1.0)  # styles start at 1
        shape = (in_ch, out_ch, 4, 4) if up else (out_ch, in_ch, kernel, kernel)
        self.weight = nn.Parameter(torch.randn(shape))
        self.gain = 1.0 / math.sqrt(in_ch * shape[2] * shape[3])
        self.demodulate = demodulate
        self.up = up

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(conv of x modulated by A(w), the demodulation scale [N, O] or None)."""
        weight = self.weight * self.gain
        styles = self.affine(w)
        out = modulated_conv2d(x, weight, styles, up=self.up)
        return out, demodulation(weight, styles, self.up) if self.demodulate else None


class StyledConv(nn.Module):
    """Modulated 3x3 convolution (or 4x4 stride-2 transposed one), noise, bias, leaky ReLU:
    one style input."""

    def __init__(self, in_ch: int, out_ch: int, w_dim: int, res: int, up: bool) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, out_ch, 3, w_dim, up=up)
        # Learned per-channel noise strengths start at 0 (the noise is switched on by
        # training); the constant noise image makes eval-mode sampling reproducible.
        self.noise_strength = nn.Parameter(torch.zeros(out_ch))
        self.register_buffer("noise_const", torch.randn(1, 1, res, res))
        self.bias = nn.Parameter(torch.zeros(out_ch))

    def forward(
        self, x: torch.Tensor, w: torch.Tensor, noise_mode: str, noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        """`noise`, when given ([N or 1, 1, res, res]), is used instead of `noise_mode`'s."""
        x, demod = self.conv(x, w)
        assert demod is not None
        # leaky(y) * sqrt(2) = leaky(sqrt(2) y): the gain goes into the small per-channel
        # factors, and demodulation, bias and noise cost two fused passes over x
        dt, c = x.dtype, x.shape[1]
        x = torch.addcmul(
            (self.bias * SQRT2).view(1, c, 1, 1).to(dt), x, (demod * SQRT2)[:, :, None, None].to(dt)
        )
        if noise is not None:
            noise = noise.to(dt)
        elif noise_mode == "random":
            noise = torch.randn(x.shape[0], 1, *x.shape[2:], device=x.device, dtype=dt)
        elif noise_mode == "const":
            noise = self.noise_const.to(dt)
        else:
            noise = None
        if noise is not None:
            x = torch.addcmul(x, noise, (self.noise_strength * SQRT2).view(1, c, 1, 1).to(dt))
        return F.leaky_relu(x, 0.2, inplace=True)


class ToRGB(nn.Module):
    """A modulated 1x1 convolution to image channels, without demodulation (StyleGAN2)."""

    def __init__(self, in_ch: int, out_ch: int, w_dim: int) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, out_ch, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(out_ch))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        out, _ = self.conv(x, w)
        return out + self.bias.view(1, -1, 1, 1).to(out.dtype)


class SynthesisBlock(nn.Module):
    """One resolution of the synthesis network: its styled convolutions and its toRGB."""

    def __init__(self, in_ch: int, out_ch: int, w_dim: int, res: int, channels: int) -> None:
        super().__init__()
        first = res == 4  # the constant input gets one convolution, later blocks two
        convs = [StyledConv(in_ch, out_ch, w_dim, res, up=not first)]
        if not first:
            convs.append(StyledConv(out_ch, out_ch, w_dim, res, up=False))
        self.convs = nn.ModuleList(convs)
        self.torgb = ToRGB(out_ch, channels, w_dim)
        self.num_ws = len(convs) + 1


class Generator(nn.Module):
    """G(z, y=None, truncation=None) = synthesis(ws) with ws from the mapping network.

    In training mode G (i) draws fresh noise images, (ii) mixes the styles of a second latent
    into a random share of the samples from a random crossover layer on (the second z is drawn
    inside forward with `torch.randn_like`, i.e. N(0, I) like the prior), and (iii) updates
    the running average `w_avg` that truncation pulls towards. In eval mode nothing is random:
    the noise images are fixed buffers and styles are never mixed, so one z gives one image
    whatever else is in the batch.
    """

    def __init__(self, cfg: StyleGANConfig) -> None:
        super().__init__()
        if not 0.0 <= cfg.mixing_prob <= 1.0:
            raise UserError(f"mixing_prob must be in [0, 1] (got {cfg.mixing_prob})")
        if not cfg.mapping_lr_mul > 0:
            raise UserError(f"mapping_lr_mul must be > 0 (got {cfg.mapping_lr_mul})")
        stages = check_resolution_pow2("stylegan", cfg.resolution)
        self.z_dim = self.w_dim = cfg.nz
        self.num_classes = 0
        self.mixing_prob = float(cfg.mixing_prob)
        self.w_avg_beta = 0.995  # StyleGAN2's decay of the running average of w
        self.mapping_net = nn.ModuleList(
            EqualLinear(cfg.nz, cfg.nz, lr_mul=cfg.mapping_lr_mul, act=True)
            for _ in range(cfg.mapping_layers)
        )
        self.register_buffer("w_avg", torch.zeros(cfg.nz))
        c4 = stage_width(4, cfg.ngf, cfg.min_width)
        self.const = nn.Parameter(torch.randn(c4, 4, 4))
        blocks, in_ch = [], c4
        self.layer_resolutions: list[int] = []  # the resolution of each style input
        for i in range(2, stages + 1):
            res = 2**i
            out_ch = stage_width(res, cfg.ngf, cfg.min_width)
            blocks.append(SynthesisBlock(in_ch, out_ch, cfg.nz, res, cfg.channels))
            self.layer_resolutions += [res] * blocks[-1].num_ws
            in_ch = out_ch
        self.blocks = nn.ModuleList(blocks)
        self.num_ws = len(self.layer_resolutions)

    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        """z [N, nz] -> w [N, w_dim]: pixel norm, then the leaky-ReLU MLP."""
        x = z * torch.rsqrt(z.float().square().mean(1, keepdim=True) + 1e-8).to(z.dtype)
        for layer in self.mapping_net:
            x = layer(x)
        return x

    def truncate(self, ws: torch.Tensor, psi: float) -> torch.Tensor:
        """w_avg + psi (w - w_avg): the truncation trick in w space (any trailing w_dim)."""
        w_avg = self.w_avg.to(ws.dtype)
        return w_avg + psi * (ws - w_avg)

    def synthesis(
        self,
        ws: torch.Tensor,
        noise_mode: str | None = None,
        noises: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """ws [N, num_ws, w_dim] (one w per style input) -> images [N, C, H, W] in [-1, 1].

        `noise_mode`: "random" (fresh N(0, 1) images), "const" (the fixed buffers) or "none";
        None picks "random" in training mode and "const" in eval mode. `noises`, one map per
        styled convolution (`noise_shapes`), replaces them: the projector optimises them.
        """
        if ws.dim() != 3 or ws.shape[1] != self.num_ws:
            raise ValueError(f"ws must be [N, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}")
        mode = noise_mode or ("random" if self.training else "const")
        if mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES} (got {mode!r})")
        if noises is not None and len(noises) != len(self.noise_shapes):
            raise ValueError(f"noises must be {len(self.noise_shapes)} maps, got {len(noises)}")
        x = self.const.to(ws.dtype).unsqueeze(0).expand(ws.shape[0], -1, -1, -1)
        img: torch.Tensor | None = None
        i = k = 0
        for block in self.blocks:
            for conv in block.convs:
                x = conv(x, ws[:, i], mode, None if noises is None else noises[k])
                i += 1
                k += 1
            rgb = block.torgb(x, ws[:, i])
            i += 1
            if img is not None:  # skip architecture: the image is the sum over resolutions
                rgb = rgb + F.interpolate(img, scale_factor=2, mode="bilinear", align_corners=False)
            img = rgb
        assert img is not None
        return torch.tanh(img)

    @property
    def noise_shapes(self) -> list[tuple[int, int, int]]:
        """(1, res, res) of each styled convolution's noise map, in synthesis order."""
        return [tuple(conv.noise_const.shape[1:]) for block in self.blocks for conv in block.convs]

    @torch.no_grad()
    def _update_w_avg(self, w: torch.Tensor) -> None:
        self.w_avg.copy_(w.detach().float().mean(0).lerp(self.w_avg, self.w_avg_beta))

    def _mix(self, z: torch.Tensor, ws: torch.Tensor) -> torch.Tensor:
        """Style mixing regularisation: each sample is mixed with probability mixing_prob,
        taking a second latent's w from a random crossover layer in [1, num_ws) on. Decided
        per sample with tensors, so there is no host sync."""
        n = z.shape[0]
        w2 = self.mapping(torch.randn_like(z))
        cut = torch.randint(1, self.num_ws, (n,), device=z.device)
        mixed = torch.rand(n, device=z.device) < self.mixing_prob
        cut = torch.where(mixed, cut, torch.full_like(cut, self.num_ws))
        later = torch.arange(self.num_ws, device=z.device)[None, :] >= cut[:, None]
        return torch.where(later[..., None], w2.unsqueeze(1).to(ws.dtype), ws)

    def forward(
        self, z: torch.Tensor, y: torch.Tensor | None = None, truncation: float | None = None
    ) -> torch.Tensor:
        w = self.mapping(z)
        if self.training:
            self._update_w_avg(w)
        ws = w.unsqueeze(1).repeat(1, self.num_ws, 1)
        if self.training and self.mixing_prob > 0:
            ws = self._mix(z, ws)
        if truncation is not None and truncation != 1:
            ws = self.truncate(ws, truncation)
        return self.synthesis(ws)


def minibatch_stddev(x: torch.Tensor, group_size: int = 4) -> torch.Tensor:
    """Append one feature map: the std of the features over groups of samples, averaged.

    Lets D see the variety of a batch, which penalises a G that collapses to few modes. The
    group is the largest size <= group_size that divides the batch.
    """
    n, c, h, w = x.shape
    g = max(d for d in range(1, min(group_size, n) + 1) if n % d == 0)
    y = x.float().view(g, n // g, c, h, w)
    y = (y - y.mean(0)).square().mean(0).add(1e-8).sqrt().mean((1, 2, 3))  # [n // g]
    y = y.view(1, n // g, 1, 1, 1).expand(g, -1, 1, h, w).reshape(n, 1, h, w)
    return torch.cat([x, y.to(x.dtype)], dim=1)


class DBlock(nn.Module):
    """Residual block: conv, down-sample + conv, plus a 1x1-projected down-sampled skip."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv0 = EqualConv2d(in_ch, in_ch, 3, act=True)
        self.conv1 = EqualConv2d(in_ch, out_ch, 3, act=True)
        self.skip = EqualConv2d(in_ch, out_ch, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.skip(F.avg_pool2d(x, 2))
        x = self.conv1(F.avg_pool2d(self.conv0(x), 2))
        return (x + skip) / SQRT2  # keeps the variance of the sum


class Discriminator(nn.Module):
    """StyleGAN2's residual D: fromRGB, residual blocks down to 4x4, minibatch std, a conv,
    two dense layers, one logit."""

    def __init__(self, cfg: StyleGANConfig) -> None:
        super().__init__()
        stages = check_resolution_pow2("stylegan", cfg.resolution)
        self.num_classes = 0
        width = lambda r: stage_width(r, cfg.ndf, cfg.min_width)  # noqa: E731
        self.fromrgb = EqualConv2d(cfg.channels, width(cfg.resolution), 1, act=True)
        self.blocks = nn.ModuleList(
            DBlock(width(2**i), width(2 ** (i - 1))) for i in range(stages, 2, -1)
        )
        c4 = width(4)
        self.conv = EqualConv2d(c4 + 1, c4, 3, act=True)
        self.fc = EqualLinear(c4 * 16, c4, act=True)
        self.out = EqualLinear(c4, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.fromrgb(x)
        for block in self.blocks:
            h = block(h)
        h = self.conv(minibatch_stddev(h))
        return self.out(self.fc(h.flatten(1))).flatten()


register_model(
    ModelSpec(
        name="stylegan",
        description="StyleGAN2 (Karras et al. 2019/2020): mapping net, constant input, "
        "modulated convs, noise, style mixing, w truncation; residual D with R1",
        config_cls=StyleGANConfig,
        build=lambda cfg: (Generator(cfg), Discriminator(cfg)),
        objective="nonsaturating",  # StyleGAN's logistic loss
        truncation="w",
        truncation_range=(0.0, 1.0),  # psi: 1 is no truncation
        style_mixing=True,
        # The papers' Adam(0, 0.99) at lr 2e-3 for both networks and batch 64 (StyleGAN2-ADA
        # uses 32-64 at low resolution). R1 gamma = 1: StyleGAN2-ADA's heuristic
        # 0.0002 * res^2 / batch gives ~0.003 at 32x32, tuned for runs of tens of millions of
        # images on varied data; MNIST's near-binary digits on an exactly constant background
        # let D grow steep gradients quickly in a short CPU run, so a stronger penalty (the
        # bottom of the 1-10 range Mescheder et al. used) is the safer default.
        train_defaults={
            "lr_g": 2e-3,
            "lr_d": 2e-3,
            "beta1": 0.0,
            "beta2": 0.99,
            "batch_size": 64,
            "reg": "r1:gamma=1",
        },
        # bf16 where the host runs it fast: 347 img/s against 279 in fp32 in the 120 s trials
        recipes={
            "grey28": {
                "batch_size": 64,
                "ngf": 32,
                "ndf": 32,
                "ema_kimg": 5.0,
                "precision": "auto",
            }
        },
    )
)
