"""Run folders and checkpoints: safetensors + JSON, written atomically; the one loader.

A checkpoint is one `.safetensors` file. Its tensors are the weights of G, D and G_ema
(prefixes `G.`, `D.`, `G_ema.`), the optimiser states (`optim.G.`, `optim.D.`) and the RNG
states (`rng.`); its header metadata holds one JSON document (key `gankit`) with the model
name and config, the training config, step, images seen, objective state, optimiser
hyper-parameters, format version and a SHA-256 of the tensors and of the document itself (format
2; format 1 covered the tensors only and still loads), verified on load. One file means one
atomic rename: a crash leaves either the old checkpoint set or the new one, never a half-written
file that a loader would pick up. Nothing is ever unpickled.

The checksum catches accidents, not authors: anyone can recompute it. So `read_checkpoint` also
checks everything the metadata asks later code to build or allocate (`gankit.checks`) before
anything real is built from it. Every command loads through it.

This module sits below training: sampling, metrics and the CLI load a run without the trainer.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as st_save

from .checks import check_checkpoint, one_line
from .config import RunConfig
from .errors import UserError

# Re-exported: these lived here before gankit.files; older code imports them from here.
from .files import atomic_write_bytes, atomic_write_json, atomic_write_text  # noqa: F401
from .pretrained import is_pretrained, pretrained_path

FORMAT = "gankit-checkpoint"
# 2: the checksum covers the JSON document too; 1 (still read): it covers the tensors only.
FORMAT_VERSION = 2
CKPT_DIR = "checkpoints"
CKPT_RE = re.compile(r"^ckpt-(\d{9,})\.safetensors$")


# ----------------------------------------------------------------------------- tensors <-> file


def _hash_tensors(h: Any, tensors: dict[str, torch.Tensor]) -> None:
    for key in sorted(tensors):
        t = tensors[key].detach().cpu().contiguous().reshape(-1)
        h.update(key.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")


def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes, in name order (format 1's checksum)."""
    h = hashlib.sha256()
    _hash_tensors(h, tensors)
    return h.hexdigest()


def file_sha256(tensors: dict[str, torch.Tensor], doc: dict[str, Any], version: int) -> str:
    """The checksum a gankit file of format `version` stores.

    From format 2 on it covers the JSON document (all of it but the checksum, in one fixed
    spelling: sorted keys, no spaces) after the tensors, so accidental damage to the metadata
    is caught too; format 1 covered the tensors only.
    """
    h = hashlib.sha256()
    _hash_tensors(h, tensors)
    if version >= 2:
        rest = {k: v for k, v in doc.items() if k != "sha256"}
        h.update(b"\x00gankit-document\x00")
        h.update(json.dumps(rest, sort_keys=True, separators=(",", ":")).encode())
    return h.hexdigest()


def seal(tensors: dict[str, torch.Tensor], doc: dict[str, Any], version: int) -> bytes:
    """The bytes of a safetensors file holding `tensors`, with `doc` and its checksum as the
    gankit metadata (checkpoints and domain classifiers alike)."""
    doc = json.loads(json.dumps(doc))  # checksum what a reader will parse (tuples -> lists)
    doc["sha256"] = file_sha256(tensors, doc, version)
    return st_save(tensors, metadata={"gankit": json.dumps(doc)})


def save_checkpoint(
    path: str | os.PathLike, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> Path:
    """Write one checkpoint file atomically.

    Args:
        path: destination `.safetensors` file.
        tensors: name -> tensor (moved to CPU, made contiguous).
        meta: JSON-ready document; format, version and checksum are added.
    Returns:
        The path written.
    """
    flat = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    doc = dict(meta)
    doc.update(format=FORMAT, format_version=FORMAT_VERSION)
    atomic_write_bytes(path, seal(flat, doc, FORMAT_VERSION))
    return Path(path)


@dataclass
class Checkpoint:
    """A loaded checkpoint: its JSON document and its tensors (on the CPU).

    `config` is the run's configuration as `read_checkpoint` checked it against the tensors
    (None for a file without one, and for the trainer's in-memory snapshots).
    """

    path: Path
    meta: dict[str, Any]
    tensors: dict[str, torch.Tensor]
    config: RunConfig | None = None

    def part(self, prefix: str) -> dict[str, torch.Tensor]:
        """Tensors under `prefix.` with the prefix removed (e.g. a network's state_dict)."""
        p = prefix + "."
        return {k[len(p) :]: v for k, v in self.tensors.items() if k.startswith(p)}

    def has(self, prefix: str) -> bool:
        p = prefix + "."
        return any(k.startswith(p) for k in self.tensors)

    @property
    def run_config(self) -> RunConfig:
        """The run's configuration (the checked one when the file was read from disk)."""
        if self.config is not None:
            return self.config
        if "run_config" not in self.meta:
            raise UserError(f"{self.path} holds no run config (model and training settings)")
        return RunConfig.from_json(self.meta["run_config"])

    @property
    def nimg(self) -> int:
        return int(self.meta["nimg"])


def read_verified(
    path: str | os.PathLike,
    *,
    fmt: str,
    version: int,
    what: str,
    missing_hint: str,
    damaged_hint: str,
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read a gankit safetensors file and check its format tag, version and SHA-256.

    The one reader behind checkpoints and domain classifiers: a UserError naming the file for
    anything that is not a sound file of kind `fmt` (nothing is ever unpickled).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} {path} does not exist{missing_hint}")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            header = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open API)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise UserError(
            f"{path} is not a readable safetensors {what} ({str(exc).splitlines()[0][:80]}); "
            f"it may be truncated or in another format (gankit never unpickles files)"
        ) from None
    not_ours = UserError(
        f"{path} is a safetensors file but not a gankit {what} (no gankit metadata)"
    )
    if "gankit" not in header:
        raise not_ours
    try:
        meta = json.loads(header["gankit"])
    except (json.JSONDecodeError, RecursionError):
        raise UserError(
            f"{path}: its gankit metadata is not valid JSON: the file is damaged; {damaged_hint}"
        ) from None
    if not isinstance(meta, dict) or meta.get("format") != fmt:
        raise not_ours
    found = meta.get("format_version", 1)
    if not isinstance(found, int) or isinstance(found, bool) or found < 1:
        raise UserError(
            f"{path} has an invalid {what} format version ({str(found)[:20]!r}); "
            f"the file is damaged; {damaged_hint}"
        )
    if found > version:
        raise UserError(
            f"{path} has {what} format {found}, newer than this gankit reads ({version}); "
            "upgrade gankit"
        )
    if file_sha256(tensors, meta, found) != meta.get("sha256"):
        raise UserError(f"{path} fails its checksum: the file is damaged; {damaged_hint}")
    return meta, tensors


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Load and verify one checkpoint file; a UserError for anything that is not a sound one.

    Sound means: the checksum matches, and what the metadata declares fits the tensors and the
    size limit (`check_checkpoint`), checked before anything is built or allocated from it.
    """
    meta, tensors = read_verified(
        path,
        fmt=FORMAT,
        version=FORMAT_VERSION,
        what="checkpoint",
        missing_hint="; pass a run folder or a .safetensors file",
        damaged_hint="use an older checkpoint",
    )
    config = check_checkpoint(path, meta, tensors)
    return Checkpoint(path=Path(path), meta=meta, tensors=tensors, config=config)


def _read_run_checkpoint(path: Path) -> Checkpoint:
    """`read_checkpoint`, refusing files that hold no run (nothing could be built from them)."""
    ck = read_checkpoint(path)
    if ck.config is None:
        raise UserError(
            f"{path} is a gankit checkpoint without a run config (model and training "
            "settings); it cannot be sampled or resumed"
        )
    return ck


def list_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoint files of a run, oldest first (temp files are never listed)."""
    d = Path(run_dir) / CKPT_DIR
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := CKPT_RE.match(p.name))]
    return [p for _, p in sorted(found)]


def checkpoint_path(run_dir: str | os.PathLike, nimg: int) -> Path:
    return Path(run_dir) / CKPT_DIR / f"ckpt-{nimg:09d}.safetensors"


def run_folder(run_or_file: str | os.PathLike) -> Path:
    """Where analyses of a run write their figures: the run folder itself, or for a checkpoint
    file the run folder that holds its checkpoints/ (else the file's own folder); for a shipped
    `pretrained:NAME`, the current folder (never the installed package)."""
    if is_pretrained(run_or_file):
        return Path(".")
    p = Path(run_or_file)
    if p.is_dir():
        return p
    return p.parent.parent if p.parent.name == "checkpoints" else p.parent


def load_checkpoint(run_or_file: str | os.PathLike) -> Checkpoint:
    """Load a checkpoint file, or the newest sound checkpoint of a run folder: the one loader
    behind every command (sample, eval, serve, the analyses, resume).

    A run folder whose newest checkpoint is damaged, or does not match its own metadata, falls
    back to the newest sound one, with a one-line warning. `pretrained:NAME` is the file of a
    generator shipped with gankit (`gankit.pretrained`), read like any other.
    """
    p = pretrained_path(run_or_file) or Path(run_or_file)
    if p.is_dir():
        ckpts = list_checkpoints(p)
        if not ckpts:
            raise UserError(
                f"{p} holds no checkpoint (looked in {p / CKPT_DIR}); "
                "is it a gankit run folder that has saved one?"
            )
        errors = []
        for c in reversed(ckpts):
            try:
                ck = _read_run_checkpoint(c)
            except UserError as exc:
                errors.append(one_line(str(exc)))
                continue
            if errors:
                warnings.warn(
                    f"skipped {len(errors)} damaged or invalid checkpoint(s), loaded "
                    f"{ck.path.name} instead: {'; '.join(errors)}",
                    stacklevel=2,
                )
            return ck
        raise UserError(f"no sound checkpoint in {p}: {errors[0]}")
    return _read_run_checkpoint(p)


# ----------------------------------------------------------------------------- optimiser / RNG


def pack_optimizer(
    prefix: str, opt: torch.optim.Optimizer
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimiser's state_dict into tensors and a JSON-ready remainder."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, state in sd["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"{prefix}.{idx}.{key}"] = value
            else:
                scalars.setdefault(str(idx), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def unpack_optimizer(
    prefix: str, opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> None:
    """Inverse of `pack_optimizer`: load the state into `opt`."""
    state: dict[int, dict[str, Any]] = {}
    p = prefix + "."
    for name, value in tensors.items():
        if name.startswith(p):
            idx, key = name[len(p) :].split(".", 1)
            state.setdefault(int(idx), {})[key] = value
    for idx, extra in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(extra)
    groups = meta["param_groups"]
    for g in groups:  # JSON turned tuples into lists; optimisers expect the original types
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    opt.load_state_dict({"state": state, "param_groups": groups})
    # Saved state is contiguous; a channels_last weight needs its moments in its own layout,
    # since the fused optimizers walk parameter and state memory in step (else they pair up
    # the wrong elements and a resumed run silently differs).
    for group in opt.param_groups:
        for param in group["params"]:
            st = opt.state.get(param, {})
            for key, value in st.items():
                if torch.is_tensor(value) and value.shape == param.shape:
                    st[key] = torch.empty_like(param, dtype=value.dtype).copy_(value)


def pack_rng() -> dict[str, torch.Tensor]:
    """The global torch RNG states (CPU and every CUDA device)."""
    out = {"rng.cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            out[f"rng.cuda.{i}"] = s
    return out


def unpack_rng(tensors: dict[str, torch.Tensor]) -> None:
    if "rng.cpu" in tensors:
        torch.set_rng_state(tensors["rng.cpu"])
    cuda = sorted(
        (int(k.rsplit(".", 1)[1]), v) for k, v in tensors.items() if k.startswith("rng.cuda.")
    )
    if cuda and torch.cuda.is_available():
        states = [v for _, v in cuda][: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(states)
