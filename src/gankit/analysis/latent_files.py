"""Projected latents on disk: the .npz `gankit project` writes, read back by the walks and the
arithmetic in place of seeds ("FILE.npz" or "FILE.npz:0,3"), and rendered in their own space
(z through G, w through StyleGAN's synthesis network)."""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import UserError
from ..files import atomic_write_bytes
from ..latent import prior_of

if TYPE_CHECKING:
    from ..sampling import LoadedRun
    from .projection import Projection

SPACES = ("z", "w")


def save_latents(path: str | os.PathLike, proj: Projection, meta: dict[str, Any]) -> Path:
    """PATH.npz: the latents (`z` or `w`), `labels` (-1 for none), the pixel errors, the
    noise maps of a w projection, and `meta` (model, nz, sources) as JSON text."""
    arrays: dict[str, np.ndarray] = {
        proj.space: proj.latents.numpy().astype(np.float32),
        "labels": (
            proj.labels.numpy() if proj.labels is not None else np.full(len(proj.latents), -1)
        ).astype(np.int64),
        "pixel_error": proj.pixel_error.numpy().astype(np.float32),
        "meta": np.array(json.dumps({**meta, "space": proj.space})),
    }
    for k, nmap in enumerate(proj.noises or []):
        arrays[f"noise{k}"] = nmap.numpy().astype(np.float32)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue())
    return path


@dataclass
class LatentSet:
    """Latents read back from a projection file, for walks and arithmetic."""

    space: str
    latents: torch.Tensor  # [N, dim]
    labels: list[int] | None  # one class per latent for a conditional model
    names: list[str]  # "FILE:i" for each latent, for titles
    meta: dict[str, Any] = field(default_factory=dict)


def read_latents(text: str, model: str, dim: int) -> LatentSet:
    """'FILE.npz' (every latent in it) or 'FILE.npz:0,3' (those, in that order).

    Checks that the file was projected for a model of the same name and latent size.
    """
    path, _, pick = text.partition(".npz")
    path += ".npz"
    pick = pick.lstrip(":")
    try:
        with np.load(path, allow_pickle=False) as f:
            meta = json.loads(str(f["meta"]))
            space = meta.get("space")
            if space not in SPACES or space not in f:
                raise UserError(f"{path}: not a projection file written by `gankit project`")
            values = torch.from_numpy(np.array(f[space], dtype=np.float32))
            labels = np.array(f["labels"], dtype=np.int64)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"{path}: not a projection file ({exc})") from None
    if meta.get("model") != model or values.ndim != 2 or values.shape[1] != dim:
        raise UserError(
            f"{path} holds {meta.get('model')} latents of size {values.shape[-1]}; "
            f"this run is {model} with latents of size {dim}"
        )
    from ..sampling import parse_seeds

    idx = parse_seeds(pick) if pick else list(range(values.shape[0]))
    if max(idx) >= values.shape[0]:
        raise UserError(f"{path} holds {values.shape[0]} latents (0..{values.shape[0] - 1})")
    labs = None if (labels < 0).all() else [int(labels[i]) for i in idx]
    return LatentSet(space, values[idx], labs, [f"{Path(path).name}:{i}" for i in idx], meta)


def is_latent_file(text: str | None) -> bool:
    """Whether a waypoint or group argument names a projection file rather than seeds."""
    return isinstance(text, str) and ".npz" in text


def latent_size(run: LoadedRun) -> int:
    """The size of the latents a projection of this run holds (z's, which is w's in StyleGAN)."""
    return prior_of(run.G).nz


@torch.no_grad()
def render_latents(
    run: LoadedRun,
    latents: torch.Tensor,
    labels: torch.Tensor | None,
    space: str = "z",
    batch_size: int = 256,
) -> torch.Tensor:
    """Images in [-1, 1] (CPU) of latents in `space`: z through G, w through the synthesis
    network with one w for every style input and G's fixed noise maps (a projection's own
    optimised noise belongs to its image, not to the points between)."""
    from ..sampling import render

    if space == "z":
        return render(run, latents, labels, batch_size=batch_size)
    if not run.model.spec.style_mixing:
        raise UserError(f"{run.model.name} has no w space; these latents were projected into w")
    G = run.G
    out = []
    for i in range(0, latents.shape[0], batch_size):
        w = latents[i : i + batch_size].to(run.device)
        out.append(G.synthesis(w.unsqueeze(1).repeat(1, G.num_ws, 1), "const").float().cpu())
    return torch.cat(out)
