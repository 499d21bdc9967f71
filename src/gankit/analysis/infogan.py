"""What an InfoGAN's codes control: code sweeps and how purely the categorical code picks a class.

A sweep fixes each row's noise (and other codes) from a seed and varies one code along the
columns, which is how the InfoGAN paper shows that the 10-way code picks the digit and the
continuous codes its slant and width. `categorical_purity` puts a number on the first claim
with a classifier: if each category of the code makes one digit, and different categories make
different digits, the code has learned the classes without labels.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data.base import to_uint8
from ..errors import UserError
from ..files import atomic_write_json
from ..latent import prior_of
from ..metrics.extractors import ExtractorOptions
from ..models.infogan import InfoPrior
from ..modes import eval_mode
from ..sampling import load, parse_seeds
from ..viz import grid_image, save_figure
from .paths import figure_prefix


@dataclass
class CodeSweep:
    """A sweep of one code: images [rows, cols, C, H, W] in [-1, 1], the latents that made
    them [rows, cols, nz], and the code value of each column."""

    images: torch.Tensor
    z: torch.Tensor
    values: list[float]
    code: str


def _info_prior(G: nn.Module) -> InfoPrior:
    """G's prior with its codes (a run's capability is its ModelSpec's `codes`; a bare G
    declares its codes by the type of its prior)."""
    prior = prior_of(G)
    if not isinstance(prior, InfoPrior):
        raise UserError("code sweeps need a generator with latent codes (an infogan model)")
    return prior


def parse_code(code: str, prior: InfoPrior) -> tuple[str, int]:
    """'cat' / 'cat:i' / 'cont:i' -> (kind, index), checked against the prior's codes."""
    kind, _, index = code.partition(":")
    try:
        i = int(index) if index else 0
    except ValueError:
        i = -1
    count = {"cat": len(prior.categorical), "cont": prior.continuous}.get(kind)
    if count is None or not 0 <= i < count:
        raise UserError(
            f"unknown code {code!r}; this model has cat:0..{len(prior.categorical) - 1} "
            f"and cont:0..{prior.continuous - 1}"
        )
    return kind, i


def sweep_latents(
    prior: InfoPrior, code: str, seeds: Sequence[int], steps: int = 10, span: float = 2.0
) -> tuple[torch.Tensor, list[float]]:
    """Latents [len(seeds), cols, nz]: row r is seed r's latent with `code` set per column.

    Columns are every category of a categorical code (`steps` is then ignored), or `steps`
    evenly spaced values from -span to span of a continuous one (the prior draws them in
    [-1, 1]; the paper goes to 2 to show that the code extrapolates).
    """
    kind, i = parse_code(code, prior)
    base = prior.from_seeds(list(seeds))
    if kind == "cat":
        values: list[float] = [float(v) for v in range(prior.categorical[i])]
        cols = [prior.with_codes(base, categorical={i: int(v)}) for v in values]
    else:
        values = torch.linspace(-span, span, steps).tolist()
        cols = [prior.with_codes(base, continuous={i: v}) for v in values]
    return torch.stack(cols, dim=1), values


@torch.no_grad()
def code_sweep(
    G: nn.Module,
    code: str,
    seeds: Sequence[int],
    steps: int = 10,
    span: float = 2.0,
) -> CodeSweep:
    """Images with rows = seeds (fixed noise and other codes) and columns = values of `code`.

    Args:
        G: an InfoGAN generator (it carries an `InfoPrior`).
        code: 'cat' (or 'cat:i') for a categorical code, 'cont:i' for continuous code i.
        seeds: one row per seed.
        steps: columns of a continuous sweep.
        span: a continuous sweep goes from -span to span.
    """
    prior = _info_prior(G)
    z, values = sweep_latents(prior, code, seeds, steps, span)
    rows, cols = z.shape[:2]
    device = next(G.parameters()).device
    with eval_mode(G):
        images = G(z.flatten(0, 1).to(device)).float().cpu()
    return CodeSweep(images.view(rows, cols, *images.shape[1:]), z, values, code)


def save_code_sweep_figure(
    G: nn.Module,
    path: str | os.PathLike,
    seeds: Sequence[int] = range(8),
    steps: int = 10,
    span: float = 2.0,
    title: str | None = None,
) -> Path:
    """A PNG with one titled panel per code: each categorical code, then each continuous one.

    Returns:
        the path written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    prior = _info_prior(G)
    codes = [f"cat:{i}" for i in range(len(prior.categorical))]
    codes += [f"cont:{i}" for i in range(prior.continuous)]
    fig, axes = plt.subplots(1, len(codes), figsize=(4.2 * len(codes), 4.4), squeeze=False)
    for ax, code in zip(axes[0], codes, strict=True):
        sweep = code_sweep(G, code, seeds, steps, span)
        rows, cols = sweep.images.shape[:2]
        grid = grid_image(sweep.images.flatten(0, 1), nrow=cols)
        cmap = "gray" if grid.mode == "L" else None
        ax.imshow(grid, cmap=cmap, vmin=0, vmax=255, interpolation="nearest")
        kind, i = parse_code(code, prior)
        if kind == "cat":
            label = f"categorical code {i}: category 0..{cols - 1} per column"
        else:
            label = f"continuous code {i}: {-span:g} to {span:g}"
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("code value")
        ax.set_ylabel(f"{rows} seeds (noise fixed per row)")
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)


@torch.no_grad()
def categorical_purity(
    G: nn.Module,
    classifier_fn: Callable[[torch.Tensor], torch.Tensor],
    n_per_code: int = 500,
    seed: int = 0,
    code: int = 0,
    batch_size: int = 250,
) -> dict[str, Any]:
    """How purely each category of categorical code `code` makes one class.

    For each category, `n_per_code` samples with random noise and random other codes are
    classified; the category's purity is the share of its samples in its majority class.

    Args:
        G: an InfoGAN generator.
        classifier_fn: uint8 images [B, C, H, W] -> class ids [B] (or logits [B, K], whose
            argmax is taken), e.g. `find_classifier("mnist").classify`.
        n_per_code: samples per category.
        seed: seeds the draw of noise and other codes.
        code: which categorical code.
        batch_size: images per G forward.
    Returns:
        {"purity": mean purity over categories, "distinct_classes": how many different
        majority classes the categories cover (10 for a one-to-one map on MNIST),
        "majority": majority class per category, "per_code": purity per category,
        "n_per_code": n_per_code}.
    """
    prior = _info_prior(G)
    parse_code(f"cat:{code}", prior)
    device = next(G.parameters()).device
    g = torch.Generator().manual_seed(seed)
    majority: list[int] = []
    purity: list[float] = []
    tallies: list[torch.Tensor] = []
    with eval_mode(G):
        for value in range(prior.categorical[code]):
            ids = []
            for start in range(0, n_per_code, batch_size):
                n = min(batch_size, n_per_code - start)
                z = prior.with_codes(prior.sample(n, generator=g), categorical={code: value})
                out = torch.as_tensor(classifier_fn(to_uint8(G(z.to(device)))))
                ids.append(out.argmax(1) if out.dim() == 2 else out.long())
            counts = torch.bincount(torch.cat(ids).cpu())
            majority.append(int(counts.argmax()))
            purity.append(float(counts.max()) / n_per_code)
            tallies.append(counts)
    width = max(len(c) for c in tallies)
    return {
        "purity": sum(purity) / len(purity),
        "distinct_classes": len(set(majority)),
        "majority": majority,
        "per_code": purity,
        "n_per_code": n_per_code,
        "counts": [torch.nn.functional.pad(c, (0, width - len(c))).tolist() for c in tallies],
    }


@dataclass
class CodesRun:
    """What `codes_run` drew and measured."""

    figure: Path  # PREFIX.png: one sweep per code
    purity: dict[str, Any] | None  # `categorical_purity`, when asked for
    purity_path: Path | None  # PREFIX-purity.json

    def lines(self) -> list[str]:
        """What `gankit codes` prints."""
        out = [f"code sweeps: {self.figure}"]
        if self.purity is not None:
            out += json.dumps(self.purity, indent=2).split("\n")
        return out


def codes_run(
    run: str | os.PathLike,
    *,
    seeds: str | Sequence[int] = "0-7",  # one row per seed
    steps: int = 10,  # columns of a continuous sweep
    span: float = 2.0,  # continuous codes go -span..span
    purity: int | None = None,  # also measure categorical purity with N samples per code
    evaluator: str | None = None,  # domain classifier file (mnistcnn)
    out: str | os.PathLike | None = None,  # path without suffix; default RUN/codes
    ema: bool = True,
    device: str = "cpu",
) -> CodesRun:
    """InfoGAN code sweeps of a saved run (PREFIX.png) and, with `purity`, how purely each
    category of the categorical code makes one class (PREFIX-purity.json)."""
    loaded = load(run, device=device, ema=ema)
    if not loaded.model.spec.codes:
        raise UserError(f"{loaded.model.name} has no latent codes to sweep (an infogan model has)")
    prefix = figure_prefix(run, out, "codes")
    fig = save_code_sweep_figure(
        loaded.G, prefix.with_name(prefix.name + ".png"), parse_seeds(seeds), steps, span,
        title=f"{loaded.model.name}, {loaded.checkpoint.nimg:,} images",
    )  # fmt: skip
    if not purity:
        return CodesRun(fig, None, None)
    data = loaded.checkpoint.run_config.train.data
    classify = (
        ExtractorOptions(data=data, evaluator=evaluator, device=device).get("mnistcnn").classify
    )
    result = categorical_purity(loaded.G, classify, n_per_code=purity)
    path = prefix.with_name(prefix.name + "-purity.json")
    atomic_write_json(path, result)
    return CodesRun(fig, result, path)
