"""Reproducible sampling from a saved run: seeds -> latents -> images.

Only the checkpoint is needed (never the trainer): `load` rebuilds the networks from the
registry name and config stored in the file and loads G_ema (default) or G.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import viz
from .checkpoint import Checkpoint, load_checkpoint
from .data.base import to_uint8
from .device import resolve_device
from .errors import UserError
from .files import atomic_write_bytes
from .latent import prior_of
from .models import Model, create_model
from .outputs import filling_folder, wants_folder


def parse_seeds(text: str | Sequence[int]) -> list[int]:
    """'0-63' / '1,5,9-11' -> list of ints (order kept; ranges inclusive)."""
    if not isinstance(text, str):
        return [int(s) for s in text]
    seeds: list[int] = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise UserError(f"bad seed list {text!r}; use e.g. 0-63 or 1,5,9-11")
        a = int(m.group(1))
        b = int(m.group(2)) if m.group(2) is not None else a
        if b < a:
            raise UserError(f"bad seed range {part!r}: the end is before the start")
        if b - a >= 100_000 or len(seeds) + b - a >= 100_000:
            raise UserError(f"too many seeds in {text!r} (at most 100,000)")
        seeds.extend(range(a, b + 1))
    if not seeds:
        raise UserError("no seeds given; use e.g. --seeds 0-63")
    if max(seeds) >= 2**63:
        raise UserError("seeds must be below 2**63")
    return seeds


@dataclass
class LoadedRun:
    """A generator ready to sample, with what is known about its training."""

    checkpoint: Checkpoint
    model: Model
    G: nn.Module
    used_ema: bool
    device: torch.device

    @property
    def nz(self) -> int:
        return prior_of(self.G).nz

    @property
    def num_classes(self) -> int:
        return (
            int(getattr(self.model.config, "num_classes", 0) or 0)
            if self.model.spec.conditional
            else 0
        )

    @property
    def class_names(self) -> list[str] | None:
        return self.checkpoint.meta.get("data", {}).get("class_names")


def load(
    run_or_ckpt: str | os.PathLike, device: str | torch.device = "cpu", ema: bool = True
) -> LoadedRun:
    """Load a run folder (newest sound checkpoint) or a checkpoint file for sampling.

    Args:
        run_or_ckpt: run folder or `.safetensors` checkpoint.
        device: where to put the networks.
        ema: use G_ema when the checkpoint has it (the default), else G.
    """
    ck = load_checkpoint(run_or_ckpt)
    rc = ck.run_config  # checked against the file's tensors and the size limit by the loader
    name = rc.model
    model = create_model(name, **rc.train.d_options(), **rc.model_config)
    use_ema = ema and ck.has("G_ema")
    if not use_ema and not ck.has("G"):  # a shipped generator keeps G_ema only
        raise UserError(f"{ck.path} holds G_ema only (no G): drop --no-ema")
    prefix = "G_ema" if use_ema else "G"
    try:
        model.G.load_state_dict(ck.part(prefix))
        if ck.has("D"):
            model.D.load_state_dict(ck.part("D"))
    except RuntimeError as exc:
        raise UserError(
            f"{ck.path}: weights do not fit {name}: {str(exc).splitlines()[0]}"
        ) from None
    dev = resolve_device(device)  # the one check every command's --device gets
    model.G.to(dev).eval()
    model.D.to(dev).eval()
    return LoadedRun(checkpoint=ck, model=model, G=model.G, used_ema=use_ema, device=dev)


def check_class(run: LoadedRun, label: int | None) -> None:
    """A UserError for a class label the model cannot take."""
    if label is None:
        return
    if run.num_classes == 0:
        raise UserError(f"{run.model.name} is not class-conditional; drop --class")
    if not 0 <= label < run.num_classes:
        raise UserError(f"class {label} is outside the model's range 0..{run.num_classes - 1}")


@torch.no_grad()
def generate(
    run: LoadedRun,
    seeds: Sequence[int],
    labels: Sequence[int] | torch.Tensor | None = None,
    truncation: float | None = None,
    batch_size: int = 256,
) -> torch.Tensor:
    """Images in [-1, 1] (CPU, [N, C, H, W]) for the given seeds (and labels, if conditional).

    The same seed (and label) gives the same image whatever else is in the batch: G runs in
    eval mode and each seed has its own noise generator.
    """
    spec = run.model.spec
    low, high = spec.truncation_range  # the one statement of the range (the page reads it too)
    if truncation is not None and not truncation > 0:
        raise UserError(f"truncation must be > 0 (got {truncation})")
    if truncation is not None and not low < truncation <= high:
        raise UserError(
            f"{run.model.name} takes a truncation {spec.truncation_parameter} "
            f"in ({low:g}, {high:g}] (got {truncation})"
        )
    z_trunc, psi = spec.split_truncation(truncation)  # StyleGAN's psi is applied inside G
    z = prior_of(run.G).from_seeds(list(seeds), truncation=z_trunc)
    return render(run, z, labels, psi, batch_size)


@torch.no_grad()
def render(
    run: LoadedRun,
    z: torch.Tensor,
    labels: Sequence[int] | torch.Tensor | None = None,
    w_truncation: float | None = None,
    batch_size: int = 256,
) -> torch.Tensor:
    """Images in [-1, 1] (CPU) for given latents: walks and arithmetic make their own z.

    Args:
        z: [N, nz] latents (from `prior_of(run.G)`).
        labels: for a conditional model, integer labels [N] or float class weights [N, K]
            (a one-hot row is that class; a mix interpolates the class embeddings).
        w_truncation: psi for a model truncated in w (StyleGAN), applied inside G.
    """
    w_kwargs = {"truncation": w_truncation} if w_truncation is not None else {}
    y: torch.Tensor | None = None
    if run.num_classes:
        if labels is None:
            raise UserError(f"{run.model.name} is class-conditional: give class labels")
        y = torch.as_tensor(labels)
        if y.shape[0] != z.shape[0]:
            raise ValueError("one label per latent is needed")
        if y.is_floating_point():
            if y.dim() != 2 or y.shape[1] != run.num_classes:
                raise ValueError(f"class weights must be [N, {run.num_classes}]")
        else:
            y = y.long()
            for c in y.unique().tolist():
                check_class(run, int(c))
    elif labels is not None:
        raise UserError(f"{run.model.name} is not class-conditional; drop --class")
    out = []
    for i in range(0, z.shape[0], batch_size):
        zi = z[i : i + batch_size].to(run.device)
        yi = None if y is None else y[i : i + batch_size].to(run.device)
        out.append(run.G(zi, yi, **w_kwargs).float().cpu())
    return torch.cat(out)


def sample_to_file(
    run_or_ckpt: str | os.PathLike,
    out: str | os.PathLike,
    seeds: str | Sequence[int] | None = None,
    label: int | None = None,
    truncation: float | None = None,
    ema: bool = True,
    device: str = "cpu",
) -> dict[str, Any]:
    """`gankit sample`: a grid PNG, single PNGs in a folder, or an .npz of uint8 images.

    For a conditional model without `label`, every class gets a row (seeds as columns).
    Returns a summary dict (paths, count, whether G_ema was used).
    """
    run = load(run_or_ckpt, device=device, ema=ema)
    check_class(run, label)
    if seeds is None:
        seeds = "0-9" if run.num_classes else "0-63"
    seed_list = parse_seeds(seeds)
    nrow = None
    if run.num_classes and label is None:
        cols = len(seed_list)
        all_seeds = seed_list * run.num_classes
        labels: list[int] | None = [c for c in range(run.num_classes) for _ in range(cols)]
        nrow = cols
    else:
        all_seeds = seed_list
        labels = [label] * len(seed_list) if run.num_classes else None
    folder = wants_folder(out)
    out = Path(out)
    suffix = "" if folder else out.suffix.lower()
    if suffix not in (".png", ".npz", ""):
        raise UserError(
            f"--out must end in .png (grid), .npz (arrays) or be a folder (single "
            f"PNGs; a trailing / always means a folder); got {out.name}"
        )
    if out.is_dir() and suffix:
        raise UserError(f"{out} is a folder; end --out with / to fill it with single PNGs")
    imgs = generate(run, all_seeds, labels, truncation)
    written: list[str] = []
    if suffix == ".png":
        scale = 2 if imgs.shape[-1] <= 32 else 1
        viz.save_grid(imgs, out, nrow=nrow, scale=scale)
        written.append(str(out))
    elif suffix == ".npz":
        u8 = to_uint8(imgs).permute(0, 2, 3, 1).numpy()
        buf = io.BytesIO()
        np.savez_compressed(
            buf,
            x=u8,
            seeds=np.asarray(all_seeds, dtype=np.int64),
            y=np.asarray(labels if labels is not None else [], dtype=np.int64),
        )
        atomic_write_bytes(out, buf.getvalue())
        written.append(str(out))
    else:
        if out.exists() and not out.is_dir():
            raise UserError(f"{out} is a file, but --out asks for a folder there")
        with filling_folder(out) as tmp:  # all the PNGs appear at once, or none
            for i, s in enumerate(all_seeds):
                tag = f"seed{s:04d}" + (f"-class{labels[i]}" if labels is not None else "")
                viz.save_grid(imgs[i : i + 1], tmp / f"{tag}.png", nrow=1)
                written.append(str(out / f"{tag}.png"))
    return {
        "written": written,
        "images": len(all_seeds),
        "ema": run.used_ema,
        "checkpoint": str(run.checkpoint.path),
        "nimg": run.checkpoint.nimg,
    }
