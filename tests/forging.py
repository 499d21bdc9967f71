"""Forging gankit files as a hostile author would: metadata edited, checksum recomputed.

Shared by the checkpoint and classifier tests. The format-2 checksum is written out here
rather than imported from gankit, so that the scheme itself is tested.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save as st_save

from gankit.checkpoint import tensors_sha256


def read_raw(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """A gankit file's JSON document and tensors, unchecked."""
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["gankit"])
        return meta, {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open API)


def sha256_v2(tensors: dict[str, torch.Tensor], doc: dict[str, Any]) -> str:
    """Format 2's checksum: each tensor (name order) as name, dtype, shape and bytes, then a
    separator and the document without its checksum as compact JSON with sorted keys."""
    h = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key].contiguous().reshape(-1)
        h.update(key.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    rest = {k: v for k, v in doc.items() if k != "sha256"}
    h.update(b"\x00gankit-document\x00")
    h.update(json.dumps(rest, sort_keys=True, separators=(",", ":")).encode())
    return h.hexdigest()


def forge(
    src: Path,
    dst: Path,
    meta_edit: Callable[[dict[str, Any]], object] | None = None,
    tensors_edit: Callable[[dict[str, torch.Tensor]], object] | None = None,
    version: int = 2,
) -> Path:
    """A copy of the gankit file `src` as format `version`, edited, with a valid checksum.
    Format 1 is issue 17's own case: its checksum covers the tensors only."""
    meta, tensors = read_raw(src)
    meta["format_version"] = version
    if meta_edit is not None:
        meta_edit(meta)
    if tensors_edit is not None:
        tensors_edit(tensors)
    meta["sha256"] = sha256_v2(tensors, meta) if version == 2 else tensors_sha256(tensors)
    dst.write_bytes(st_save(tensors, metadata={"gankit": json.dumps(meta)}))
    return dst
