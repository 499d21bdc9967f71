"""Vector arithmetic on G's latents (the DCGAN paper's section 6.3, its Figure 7).

The paper averaged the z of three samples per concept (one sample's z was unstable), formed
mean(a) - mean(b) + mean(c) and showed G at that vector plus eight draws with uniform noise of
scale 0.25 added to it. Groups are given as seeds, or picked by an attribute: a scoring
callable (images in [-1, 1] -> one score per image, higher = more of it) ranks a pool of
candidate seeds and the best k form the group (see `attributes` for the specs the command
takes, such as `class=7:bold`: the boldest samples that the classifier is sure are 7s).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import UserError
from ..viz import save_figure
from .attributes import Attribute
from .latent_walks import arithmetic

NOISE_SCALE = 0.25  # the paper's uniform noise around the result


def pick_seeds(
    render: Callable[[list[int]], torch.Tensor],
    attribute: Attribute,
    candidates: Sequence[int],
    k: int,
    batch_size: int = 256,
) -> tuple[list[int], list[float]]:
    """The k candidate seeds whose samples score highest on `attribute`, with their scores.

    Args:
        render: seeds -> images in [-1, 1] (e.g. `sampling.generate` for a loaded run).
        attribute: images -> scores, higher = more of the attribute.
        candidates: the pool of seeds to search.
        k: how many to keep.
    """
    candidates = list(candidates)
    if k > len(candidates):
        raise UserError(f"cannot pick {k} seeds out of {len(candidates)} candidates")
    scores = torch.cat(
        [
            attribute(render(candidates[i : i + batch_size])).float().cpu()
            for i in range(0, len(candidates), batch_size)
        ]
    )
    top = torch.topk(scores, k).indices.tolist()
    return [candidates[i] for i in top], [float(scores[i]) for i in top]


def noise_around(
    z: torch.Tensor, n: int, scale: float = NOISE_SCALE, seed: int = 0
) -> torch.Tensor:
    """[n, nz]: z itself, then n - 1 draws of z + U(-scale, scale) (the paper's figure)."""
    g = torch.Generator().manual_seed(seed)
    noise = (torch.rand(n - 1, z.shape[-1], generator=g) * 2 - 1) * scale
    return torch.cat([z[None], z[None] + noise])


@dataclass
class ArithmeticResult:
    """Everything a figure or a report needs: the groups, their images and the result."""

    groups: dict[str, list[int]]  # "a", "b", "c" -> seeds
    scores: dict[str, list[float]]  # attribute scores of picked seeds (empty for given seeds)
    members: dict[str, torch.Tensor]  # the group members' images
    means: dict[str, torch.Tensor]  # G(mean z) of each group, [1, C, H, W]
    result: torch.Tensor  # G(a - b + c) first, then the noise draws around it
    z: torch.Tensor  # the result's latent
    noise: float = NOISE_SCALE  # scale of the uniform noise of the draws after the first
    notes: list[str] = field(default_factory=list)


def run_arithmetic(
    G: Any,
    render_z: Callable[[torch.Tensor], torch.Tensor],
    groups: dict[str, list[int]],
    draws: int = 8,
    noise: float = NOISE_SCALE,
    seed: int = 0,
    scores: dict[str, list[float]] | None = None,
) -> ArithmeticResult:
    """a - b + c on averaged latents, rendered with its group members and noise draws.

    Args:
        G: the generator (its prior turns seeds into latents).
        render_z: latents [N, nz] -> images in [-1, 1].
        groups: seeds of "a", "b" and "c".
        draws: images of the result, the first without noise.
        noise: scale of the uniform noise of the other draws.
    """
    from ..latent import prior_of

    prior = prior_of(G)
    members, means = {}, {}
    for name in ("a", "b", "c"):
        zs = prior.from_seeds(groups[name])
        members[name] = render_z(zs)
        means[name] = render_z(zs.mean(0, keepdim=True))
    z = arithmetic(G, groups["a"], groups["b"], groups["c"])
    result = render_z(noise_around(z, draws, noise, seed))
    return ArithmeticResult(groups, scores or {}, members, means, result, z, noise)


def save_arithmetic_figure(
    res: ArithmeticResult, path: str | os.PathLike, titles: dict[str, str] | None = None
) -> Path:
    """The paper's layout: a row per group (members, then G at the group's mean z), and the
    result row (G at a - b + c, then the noise draws around it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    titles = titles or {}
    k = max(len(v) for v in res.groups.values())
    cols = max(k + 2, res.result.shape[0])
    fig, axes = plt.subplots(4, cols, figsize=(1.1 * cols, 4.8), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")

    def show(ax: Any, img: torch.Tensor) -> None:
        x = img.float().add(1).div(2).clamp(0, 1)
        if x.shape[0] == 1:
            ax.imshow(x[0].numpy(), cmap="gray", vmin=0, vmax=1)
        else:
            ax.imshow(x.permute(1, 2, 0).numpy())

    signs = {"a": "", "b": "-", "c": "+"}
    for r, name in enumerate(("a", "b", "c")):
        for i, img in enumerate(res.members[name]):
            show(axes[r, i], img)
        show(axes[r, k + 1], res.means[name][0])
        axes[r, k + 1].set_title("mean z", fontsize=7)
        label = f"{signs[name]} {name}: {titles.get(name, '')}".strip()
        axes[r, 0].set_title(label, fontsize=8, loc="left")
    for i, img in enumerate(res.result):
        show(axes[3, i], img)
    axes[3, 0].set_title("= a - b + c", fontsize=8, loc="left")
    if res.result.shape[0] > 1:
        axes[3, 1].set_title(f"noise +-{res.noise:g} ...", fontsize=7, loc="left")
    fig.tight_layout()

    save_figure(fig, path, dpi=110)
    return Path(path)
