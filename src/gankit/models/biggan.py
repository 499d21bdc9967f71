"""BigGAN (Brock et al. 2019), scaled down to 32x32 grayscale digits.

What makes it BigGAN, and where it lives:
- G: class-conditional batch norm (`ConditionalBatchNorm`) whose gains and biases are linear
  in [shared class embedding, z chunk]; one embedding (`BigGANGenerator.shared`) serves every
  block, and z is split hierarchically (one chunk for the input linear, one per up-block).
- residual up-blocks (`GBlock`) in G, residual down-blocks (`DBlock`) in D.
- SAGAN self-attention (`SelfAttention`) in both networks at `attention_res`.
- D: global sum pooling, a linear score plus the projection <embed(y), h> (Miyato & Koyama).
- spectral norm on every conv and linear of G and D and on D's class embedding.
- the hinge loss (`objectives.Hinge`), orthogonal regularisation of G (`regularisers.Orthogonal`)
  and the EMA of G (the trainer's) come from the shared pieces; the truncation trick is the
  resampling one in `latent.seed_latents` (`gankit sample --trunc 0.5`).

Widths double per halving of the spatial size (up to 8x the base width), so the default
32x32 model (ngf = ndf = 16) has 128-64-32-16 channels in G (4x4 to 32x32) and 16-32-64 in D,
0.33M G parameters: about DCGAN-32's cost per image (each residual block has two 3x3 convs at
its full size), enough for digits, and a few hundred images/s on a 2-core CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from . import ModelSpec, UserError, check_resolution_pow2, register_model
from .layers import LabelEmbedding

BASE = 4  # G starts from a 4x4 map; D's last block ends there
MAX_MULT = 8  # widths stop doubling at 8x the base width


@dataclass
class BigGANConfig:
    resolution: int = 32
    channels: int = 1
    nz: int = 120  # total z: one chunk per up-block plus one for the input (4 x 30 at 32x32)
    ngf: int = 16  # G's narrowest width (at full resolution)
    ndf: int = 16  # D's width after its first down-block
    num_classes: int = 10
    shared_dim: int = 128  # the shared class embedding that feeds every conditional BN
    attention_res: int | None = None  # feature size of the attention blocks (None: half the image)
    # SAGAN and BigGAN start the attention gain at exactly 0; at 0 the attention convs get no
    # gradient at all until the gain has moved, so we start it at about the size one Adam step
    # from 0 would give (lr_g): the same network in practice, and every weight trains from
    # the first step. Set 0 for the papers' exact start.
    attn_gain_init: float = 1e-4
    # The shared class embedding starts orthogonal (BigGAN's init), so each class's row has
    # norm 1 while a z chunk of 30 has norm ~5.5: in every conditional BN the class moves the
    # gains about a fifth as much as z does at the start. shared_scale multiplies that init
    # (1: BigGAN's exactly), to test whether the class is ignored because it starts small.
    shared_scale: float = 1.0


def sn(module: nn.Module) -> nn.Module:
    """Orthogonal init (BigGAN's) of the raw weight, then spectral norm over it."""
    nn.init.orthogonal_(module.weight)
    return spectral_norm(module)


def z_chunks(nz: int, n: int) -> list[int]:
    """Sizes of the `n` hierarchical z chunks: as equal as possible, the first ones larger."""
    return [nz // n + (1 if i < nz % n else 0) for i in range(n)]


def attention_resolution(cfg: BigGANConfig) -> int:
    """The checked feature size at which G and D attend (both have maps of 4 .. res / 2)."""
    res = cfg.resolution // 2 if cfg.attention_res is None else cfg.attention_res
    top = cfg.resolution // 2
    if res < BASE or res > top or res & (res - 1):
        raise UserError(
            f"biggan's attention_res must be a power of two in [{BASE}, {top}] at resolution "
            f"{cfg.resolution} (got {res}); pass --set attention_res={top}"
        )
    return res


class ConditionalBatchNorm(nn.Module):
    """Batch norm whose per-channel gain and bias are linear in a condition vector (BigGAN's
    [shared class embedding, z chunk]): the class and the latent steer every block's features."""

    def __init__(self, channels: int, cond_dim: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.gain = sn(nn.Linear(cond_dim, channels, bias=False))
        self.bias = sn(nn.Linear(cond_dim, channels, bias=False))

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        gain = 1.0 + self.gain(cond)  # centred on 1, so an untrained layer is plain BN
        return self.bn(x) * gain[:, :, None, None] + self.bias(cond)[:, :, None, None]


class SelfAttention(nn.Module):
    """SAGAN self-attention: every position attends to all positions (softmax over q.k of
    1x1-conv queries and keys, no scaling) and adds gamma * out(attended values) to its input.
    gamma = 0 makes the block the identity, so the network starts convolutional. As in
    BigGAN, keys and values are 2x2 max-pooled (a quarter of the positions to attend to, and
    of the cost: the attention matrix is the most expensive part at our widths)."""

    def __init__(self, channels: int, gain_init: float = 0.0) -> None:
        super().__init__()
        inner = max(1, channels // 8)
        self.value_dim = max(1, channels // 2)
        # no biases: a key bias cancels in the softmax, and BigGAN uses none here
        self.query = sn(nn.Conv2d(channels, inner, 1, bias=False))
        self.key = sn(nn.Conv2d(channels, inner, 1, bias=False))
        self.value = sn(nn.Conv2d(channels, self.value_dim, 1, bias=False))
        self.out = sn(nn.Conv2d(self.value_dim, channels, 1, bias=False))
        self.gamma = nn.Parameter(torch.tensor(float(gain_init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        pool = 2 if h % 2 == 0 and w % 2 == 0 and h * w >= 16 else 1
        q = self.query(x).flatten(2)  # [N, inner, HW]
        k = F.max_pool2d(self.key(x), pool).flatten(2)  # [N, inner, HW / 4]
        v = F.max_pool2d(self.value(x), pool).flatten(2)  # [N, value_dim, HW / 4]
        attn = torch.softmax(torch.bmm(q.transpose(1, 2), k), dim=-1)  # [N, HW, HW / 4]
        o = torch.bmm(v, attn.transpose(1, 2)).view(n, self.value_dim, h, w)
        return x + self.gamma * self.out(o)


class GBlock(nn.Module):
    """BN(c)-ReLU-up-conv3-BN(c)-ReLU-conv3, plus a 1x1-conv skip of the upsampled input."""

    def __init__(self, cin: int, cout: int, cond_dim: int) -> None:
        super().__init__()
        self.bn1 = ConditionalBatchNorm(cin, cond_dim)
        # no conv biases: each output goes into a batch norm (directly or through the
        # residual sum), which removes per-channel constants
        self.conv1 = sn(nn.Conv2d(cin, cout, 3, padding=1, bias=False))
        self.bn2 = ConditionalBatchNorm(cout, cond_dim)
        self.conv2 = sn(nn.Conv2d(cout, cout, 3, padding=1, bias=False))
        self.skip = sn(nn.Conv2d(cin, cout, 1, bias=False))

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = F.interpolate(F.relu(self.bn1(x, cond)), scale_factor=2, mode="nearest")
        h = self.conv2(F.relu(self.bn2(self.conv1(h), cond)))
        # 1x1 conv then nearest upsampling equals the reverse order, at a quarter of the cost
        return h + F.interpolate(self.skip(x), scale_factor=2, mode="nearest")


class DBlock(nn.Module):
    """(ReLU)-conv3-ReLU-conv3-avgpool, plus a 1x1-conv + avgpool skip. The first block takes
    the image itself, so it has no pre-activation (a ReLU would drop the negative pixels)."""

    def __init__(self, cin: int, cout: int, preactivation: bool) -> None:
        super().__init__()
        self.preactivation = preactivation
        self.conv1 = sn(nn.Conv2d(cin, cout, 3, padding=1))
        self.conv2 = sn(nn.Conv2d(cout, cout, 3, padding=1))
        self.skip = sn(nn.Conv2d(cin, cout, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(x) if self.preactivation else x
        h = F.avg_pool2d(self.conv2(F.relu(self.conv1(h))), 2)
        # BigGAN's order: conv then pool after a pre-activation, pool then conv on the image
        if self.preactivation:
            return h + F.avg_pool2d(self.skip(x), 2)
        return h + self.skip(F.avg_pool2d(x, 2))


class BigGANGenerator(nn.Module):
    """z chunk 0 -> linear -> 4x4 map -> up-blocks (each conditioned on [shared(y), its z
    chunk]), attention at `attention_res` -> BN-ReLU-conv3-tanh."""

    def __init__(self, cfg: BigGANConfig) -> None:
        super().__init__()
        self.z_dim, self.num_classes = cfg.nz, cfg.num_classes
        n_blocks = check_resolution_pow2("biggan", cfg.resolution) - 2  # from 4x4
        if cfg.nz < n_blocks + 1:
            raise UserError(
                f"biggan at {cfg.resolution}x{cfg.resolution} splits z into {n_blocks + 1} "
                f"chunks, so nz must be >= {n_blocks + 1} (got {cfg.nz})"
            )
        self.chunks = z_chunks(cfg.nz, n_blocks + 1)
        # width of the map at 4 * 2**k: the base width at full size, doubling per halving
        widths = [cfg.ngf * min(2 ** (n_blocks - k), MAX_MULT) for k in range(n_blocks + 1)]
        self.start_width = widths[0]
        self.shared = LabelEmbedding(cfg.num_classes, cfg.shared_dim)  # one for all blocks
        nn.init.orthogonal_(self.shared.weight)
        if cfg.shared_scale <= 0:
            raise UserError(f"biggan's shared_scale must be > 0 (got {cfg.shared_scale})")
        with torch.no_grad():
            self.shared.weight.mul_(cfg.shared_scale)
        self.linear = sn(nn.Linear(self.chunks[0], widths[0] * BASE * BASE))
        self.blocks = nn.ModuleList(
            GBlock(widths[k], widths[k + 1], cfg.shared_dim + self.chunks[k + 1])
            for k in range(n_blocks)
        )
        # attention follows the map of that size (index 0: the 4x4 input map)
        self.attention_index = attention_resolution(cfg).bit_length() - BASE.bit_length()
        self.attention = SelfAttention(widths[self.attention_index], cfg.attn_gain_init)
        self.out_bn = nn.BatchNorm2d(widths[-1])
        self.out_conv = sn(nn.Conv2d(widths[-1], cfg.channels, 3, padding=1))

    def conditions(
        self, z: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(the input linear's z chunk, one [shared(y), z chunk] condition per up-block)."""
        first, *rest = torch.split(z, self.chunks, dim=1)
        shared = self.shared(y)
        return first, [torch.cat([shared, zc], dim=1) for zc in rest]

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if y is None:
            raise ValueError("biggan's generator needs class labels y")
        z0, conds = self.conditions(z, y)
        h = self.linear(z0).view(z.shape[0], self.start_width, BASE, BASE)
        for k in range(len(self.blocks) + 1):
            if k > 0:
                h = self.blocks[k - 1](h, conds[k - 1])
            if k == self.attention_index:
                h = self.attention(h)
        return torch.tanh(self.out_conv(F.relu(self.out_bn(h))))


class BigGANDiscriminator(nn.Module):
    """Down-blocks to 4x4 (attention at `attention_res`), ReLU, global sum pooling h, then
    linear(h) + <embed(y), h>: the projection discriminator."""

    def __init__(self, cfg: BigGANConfig) -> None:
        super().__init__()
        self.num_classes = cfg.num_classes
        n_blocks = check_resolution_pow2("biggan", cfg.resolution) - 2  # down to 4x4
        widths = [cfg.ndf * min(2**k, MAX_MULT) for k in range(n_blocks)]
        self.blocks = nn.ModuleList(
            DBlock(cfg.channels if k == 0 else widths[k - 1], widths[k], preactivation=k > 0)
            for k in range(n_blocks)
        )
        # after block k the map is resolution / 2**(k + 1)
        res = attention_resolution(cfg)
        self.attention_index = cfg.resolution.bit_length() - res.bit_length() - 1
        self.attention = SelfAttention(widths[self.attention_index], cfg.attn_gain_init)
        # No bias: under the hinge loss its gradient is (#fakes - #reals inside the margin) / N,
        # zero while D is undecided, and a shift of all scores carries no information.
        self.linear = sn(nn.Linear(widths[-1], 1, bias=False))
        self.embed = sn(nn.Embedding(cfg.num_classes, widths[-1]))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """h: the globally sum-pooled features [N, C] that both output terms read."""
        h = x
        for k, block in enumerate(self.blocks):
            h = block(h)
            if k == self.attention_index:
                h = self.attention(h)
        return F.relu(h).sum(dim=(2, 3))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if y is None:
            raise ValueError("biggan's discriminator needs class labels y")
        h = self.features(x)
        return self.linear(h).squeeze(1) + (self.embed(y) * h).sum(dim=1)


register_model(
    ModelSpec(
        name="biggan",
        description="BigGAN (Brock et al. 2019): conditional BN + shared embedding + "
        "hierarchical z, projection D, spectral norm, self-attention, hinge, ortho reg, EMA",
        config_cls=BigGANConfig,
        build=lambda cfg: (BigGANGenerator(cfg), BigGANDiscriminator(cfg)),
        conditional=True,
        objective="hinge",
        truncation="z",
        # BigGAN: Adam(0, 0.999), G lr 5e-5, D lr 2e-4, two D steps per G step, ortho 1e-4.
        # Our runs are minutes long on a CPU: one D step per G step halves the cost of a G
        # update (spectral norm keeps a 1:1 schedule stable, as in SAGAN), and G's lr is
        # SAGAN's 1e-4, twice BigGAN's, because a short run takes few G steps.
        train_defaults={
            "reg": "ortho:weight=1e-4",
            "lr_g": 1e-4,
            "lr_d": 2e-4,
            "beta1": 0.0,
            "beta2": 0.999,
            "n_critic": 1,
            "batch_size": 64,
        },
        # bf16 where the host runs it fast: 347 img/s against 213 in fp32 in the 120 s
        # trials (FD 831 against 1,117); hinge, SN, conditional BN and ortho stay. D's
        # spread plane (`mbstd`) undoes G's collapse onto one shape: 300 s on the validation
        # slice at seed 1, FD 678 against 954 and variety 1.06 against 0.46 (one slow host).
        recipes={"grey28": {"batch_size": 64, "ema_kimg": 5.0, "precision": "auto", "mbstd": True}},
    )
)
