"""The ADA augmentation pipeline (Karras et al. 2020, "Training Generative Adversarial Networks
with Limited Data"), after stylegan2-ada-pytorch's training/augment.py.

Each op is applied to each image independently with probability p (the controller's), with
the paper's ranges. Implemented, 14 of the paper's 18:
  pixel blitting   xflip, rotate90, xint (integer translation up to 1/8)
  geometric        scale (isotropic), rotate (arbitrary), aniso (anisotropic), xfrac
                   (fractional translation)
  colour           brightness, contrast, lumaflip, hue, saturation
  corruption       noise, cutout
Not implemented: the image-space filtering (4 frequency bands). The geometric ops compose one
matrix per image and resample once with grid_sample (bilinear, reflection padding); unlike the
original they skip its 2x up/down-sampling with a wavelet filter against aliasing, which costs
several times the resampling itself. For 1-channel images the colour matrix is reduced as in
the original: lumaflip inverts the image, hue and saturation do nothing and draw nothing.
"ada" alone is the paper's default set "bgc" (blitting, geometric, colour).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .rng import rand, randn

Gen = torch.Generator | None

BLIT = ("xflip", "rotate90", "xint")
GEOM = ("scale", "rotate", "aniso", "xfrac")
COLOR = ("brightness", "contrast", "lumaflip", "hue", "saturation")
CORRUPT = ("noise", "cutout")
OPS = BLIT + GEOM + COLOR + CORRUPT
GROUPS = {"bgc": BLIT + GEOM + COLOR, "blit": BLIT, "geom": GEOM, "color": COLOR}

# The ranges of stylegan2-ada's AugmentPipe defaults.
XINT_MAX, SCALE_STD, ROTATE_MAX, ANISO_STD, XFRAC_STD = 0.125, 0.2, 1.0, 0.2, 0.125
BRIGHTNESS_STD, CONTRAST_STD, HUE_MAX, SATURATION_STD = 0.2, 0.5, 1.0, 1.0
NOISE_STD, CUTOUT_SIZE = 0.1, 0.5


def _batch_eye(n: int, size: int, x: torch.Tensor) -> torch.Tensor:
    return torch.eye(size, device=x.device).expand(n, size, size).clone()


def _matrix(n: int, x: torch.Tensor, rows: list[list[torch.Tensor | float]]) -> torch.Tensor:
    """A [n, 3, 3] matrix from rows of per-image tensors [n] or constants."""
    cols = [
        torch.as_tensor(v, dtype=torch.float32, device=x.device).expand(n)
        for row in rows
        for v in row
    ]
    return torch.stack(cols, dim=1).reshape(n, len(rows), len(rows[0]))


def _translate(tx: torch.Tensor, ty: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    n = tx.size(0)
    return _matrix(n, x, [[1, 0, tx], [0, 1, ty], [0, 0, 1]])


def _scale(sx: torch.Tensor, sy: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    n = sx.size(0)
    return _matrix(n, x, [[sx, 0, 0], [0, sy, 0], [0, 0, 1]])


def _rotate(cos: torch.Tensor, sin: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    n = cos.size(0)
    return _matrix(n, x, [[cos, -sin, 0], [sin, cos, 0], [0, 0, 1]])


def _geometry(x: torch.Tensor, p: torch.Tensor, ops: frozenset[str], gen: Gen) -> torch.Tensor:
    """The inverse transform of each image (output pixel -> input pixel, in pixels about the
    centre), as in the original: each op's matrix multiplied on the right, in its order."""
    n, _, h, w = x.shape
    m = _batch_eye(n, 3, x)

    def chance() -> torch.Tensor:
        return rand((n,), x, gen) < p

    if "xflip" in ops:
        i = torch.floor(rand((n,), x, gen) * 2)
        i = torch.where(chance(), i, torch.zeros_like(i))
        m = m @ _scale(1 - 2 * i, torch.ones_like(i), x)
    if "rotate90" in ops:
        i = torch.floor(rand((n,), x, gen) * 4)
        i = torch.where(chance(), i, torch.zeros_like(i)).long()
        # exact cos and sin of quarter turns, so that these stay pixel blits
        cos = torch.tensor([1.0, 0.0, -1.0, 0.0], device=x.device)[i]
        sin = torch.tensor([0.0, 1.0, 0.0, -1.0], device=x.device)[i]
        m = m @ _rotate(cos, sin, x)
    if "xint" in ops:
        t = (rand((n, 2), x, gen) * 2 - 1) * XINT_MAX
        t = torch.where((rand((n, 1), x, gen) < p), t, torch.zeros_like(t))
        m = m @ _translate(-torch.round(t[:, 0] * w), -torch.round(t[:, 1] * h), x)
    if "scale" in ops:
        s = torch.exp2(randn((n,), x, gen) * SCALE_STD)
        s = torch.where(chance(), s, torch.ones_like(s))
        m = m @ _scale(1 / s, 1 / s, x)
    # Rotation is drawn before and after the anisotropic scaling, each with the probability
    # that makes P(either) = p, as in the original.
    p_rot = 1 - torch.sqrt((1 - p).clamp(0, 1))

    def rotation() -> torch.Tensor:
        theta = (rand((n,), x, gen) * 2 - 1) * math.pi * ROTATE_MAX
        theta = torch.where(rand((n,), x, gen) < p_rot, theta, torch.zeros_like(theta))
        return _rotate(torch.cos(theta), torch.sin(theta), x)

    if "rotate" in ops:
        m = m @ rotation()
    if "aniso" in ops:
        s = torch.exp2(randn((n,), x, gen) * ANISO_STD)
        s = torch.where(chance(), s, torch.ones_like(s))
        m = m @ _scale(1 / s, s, x)
    if "rotate" in ops:
        m = m @ rotation()
    if "xfrac" in ops:
        t = randn((n, 2), x, gen) * XFRAC_STD
        t = torch.where(rand((n, 1), x, gen) < p, t, torch.zeros_like(t))
        m = m @ _translate(-t[:, 0] * w, -t[:, 1] * h, x)
    return m


def _resample(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """x resampled through the pixel-space inverse transforms `m` [n, 3, 3]."""
    n, c, h, w = x.shape
    # align_corners=False: normalised = centred pixels * 2 / size, for input and output alike
    to_norm = torch.diag(torch.tensor([2.0 / w, 2.0 / h, 1.0], device=x.device))
    from_norm = torch.diag(torch.tensor([w / 2.0, h / 2.0, 1.0], device=x.device))
    theta = (to_norm @ m @ from_norm)[:, :2, :]
    grid = F.affine_grid(theta, [n, c, h, w], align_corners=False)
    out = F.grid_sample(
        x.float(), grid, mode="bilinear", padding_mode="reflection", align_corners=False
    ).to(x.dtype)
    # Resampling through the identity is exact only up to rounding (~1e-6); the images that
    # drew no transform (all of them at p=0) are passed through as they are.
    same = (m == torch.eye(3, device=m.device)).flatten(1).all(1)
    return torch.where(same.view(n, 1, 1, 1), x, out)


def _color(x: torch.Tensor, p: torch.Tensor, ops: frozenset[str], gen: Gen) -> torch.Tensor:
    """Brightness, contrast, luma flip, hue rotation and saturation as one 4x4 matrix per image
    on (r, g, b, 1); a 1-channel image takes the mean of its rows (a scale and an offset)."""
    n, c, h, w = x.shape
    colour = c == 3
    C = _batch_eye(n, 4, x)
    eye = torch.eye(4, device=x.device)
    v = torch.tensor([1.0, 1.0, 1.0, 0.0], device=x.device) / math.sqrt(3)  # the luma axis
    vv = torch.outer(v, v)

    def chance(*shape: int) -> torch.Tensor:
        return rand((n, *shape), x, gen) < p

    if "brightness" in ops:
        b = randn((n,), x, gen) * BRIGHTNESS_STD
        b = torch.where(chance(), b, torch.zeros_like(b))
        t = eye.expand(n, 4, 4).clone()
        t[:, :3, 3] = b[:, None]
        C = t @ C
    if "contrast" in ops:
        s = torch.exp2(randn((n,), x, gen) * CONTRAST_STD)
        s = torch.where(chance(), s, torch.ones_like(s))
        C = torch.diag_embed(torch.stack([s, s, s, torch.ones_like(s)], 1)) @ C
    if "lumaflip" in ops:
        i = torch.floor(rand((n, 1, 1), x, gen) * 2)
        i = torch.where(chance(1, 1), i, torch.zeros_like(i))
        C = (eye - 2 * vv * i) @ C  # Householder reflection along the luma axis
    if "hue" in ops and colour:
        theta = (rand((n,), x, gen) * 2 - 1) * math.pi * HUE_MAX
        theta = torch.where(chance(), theta, torch.zeros_like(theta))
        C = _rotate_about(v[:3], theta) @ C
    if "saturation" in ops and colour:
        s = torch.exp2(randn((n, 1, 1), x, gen) * SATURATION_STD)
        s = torch.where(chance(1, 1), s, torch.ones_like(s))
        C = (vv + (eye - vv) * s) @ C
    flat = x.reshape(n, c, h * w)
    C = C.to(x.dtype)
    if colour:
        out = C[:, :3, :3] @ flat + C[:, :3, 3:]
    else:
        rows = C[:, :3, :].mean(dim=1, keepdim=True)  # [n, 1, 4]
        out = flat * rows[:, :, :3].sum(dim=2, keepdim=True) + rows[:, :, 3:]
    return out.reshape(n, c, h, w)


def _rotate_about(axis: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """[n, 4, 4] rotations by `theta` about the unit 3-vector `axis` (Rodrigues)."""
    n = theta.size(0)
    ax, ay, az = axis.tolist()
    k = torch.tensor([[0.0, -az, ay], [az, 0.0, -ax], [-ay, ax, 0.0]], device=theta.device)
    s, c = torch.sin(theta)[:, None, None], torch.cos(theta)[:, None, None]
    r = torch.eye(3, device=theta.device) + s * k + (1 - c) * (k @ k)
    out = torch.eye(4, device=theta.device).expand(n, 4, 4).clone()
    out[:, :3, :3] = r
    return out


def _corrupt(x: torch.Tensor, p: torch.Tensor, ops: frozenset[str], gen: Gen) -> torch.Tensor:
    n, c, h, w = x.shape
    if "noise" in ops:
        sigma = randn((n, 1, 1, 1), x, gen).abs() * NOISE_STD
        sigma = torch.where(rand((n, 1, 1, 1), x, gen) < p, sigma, torch.zeros_like(sigma))
        x = x + (randn((n, c, h, w), x, gen) * sigma).to(x.dtype)
    if "cutout" in ops:
        size = torch.where(rand((n, 1, 1), x, gen) < p, CUTOUT_SIZE, 0.0)
        centre = rand((n, 2, 1, 1), x, gen)
        cx = (torch.arange(w, device=x.device).reshape(1, 1, -1) + 0.5) / w
        cy = (torch.arange(h, device=x.device).reshape(1, -1, 1) + 0.5) / h
        keep = ((cx - centre[:, 0]).abs() >= size / 2) | ((cy - centre[:, 1]).abs() >= size / 2)
        x = x * keep.unsqueeze(1).to(x.dtype)
    return x


def ada_augment(
    x: torch.Tensor, p: torch.Tensor | float, ops: tuple[str, ...], gen: Gen = None
) -> torch.Tensor:
    """`x` (NCHW, [-1, 1]) with each op of `ops` applied to each image with probability `p`.

    Differentiable in `x`; `p` may be a tensor on x's device (no host sync).
    """
    p = torch.as_tensor(p, dtype=torch.float32, device=x.device)
    chosen = frozenset(ops)
    if chosen & set(BLIT + GEOM):
        x = _resample(x, _geometry(x, p, chosen, gen))
    if chosen & set(COLOR):
        x = _color(x, p, chosen, gen)
    if chosen & set(CORRUPT):
        x = _corrupt(x, p, chosen, gen)
    return x
