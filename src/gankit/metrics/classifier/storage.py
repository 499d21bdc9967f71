"""The domain classifier's file: one safetensors file, checked before anything is built.

The file's header holds a JSON document (key `gankit`): format version, network config, data
spec, class names, held-out accuracy and a SHA-256 of the weights and the record (format 2;
format 1 covered the weights only and still loads), verified on load. The record's config is
also checked against the weights' names and shapes on the meta device before the network is
built: a checksum stops accidents, not authors. Nothing is ever pickled. By default it lives in
`$GANKIT_CACHE/evaluators/mnistcnn-{identity}.safetensors` (GANKIT_CACHE defaults to
~/.cache/gankit), keyed by the data's identity (`gankit.data.identity`), so that a classifier
of the 8x8 digits "digits" used to mean is never taken for one of today's digits; the record
names the data and its revision, which the lookup checks.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

import torch

from ...checkpoint import read_verified, seal
from ...checks import state_mismatch
from ...data.identity import EARLIER, current_spec, identity
from ...data.stacked import STACKED_SOURCES
from ...errors import UserError
from ...files import atomic_write_bytes
from .network import NAME, ClassifierConfig, DigitCNN

FORMAT = "gankit-evaluator"
FORMAT_VERSION = 2  # 2: the checksum covers the record too; 1 (still read): the weights only


def cache_root() -> Path:
    """gankit's cache folder: $GANKIT_CACHE, else ~/.cache/gankit."""
    return Path(os.environ.get("GANKIT_CACHE") or "~/.cache/gankit").expanduser()


def canonical_spec(data: str) -> str:
    """`folder:`/`npz:` paths made absolute, so the same data gets the same file from any cwd."""
    kind, sep, rest = data.partition(":")
    if sep and kind in ("folder", "npz") and rest:
        return f"{kind}:{os.path.abspath(os.path.expanduser(rest))}"
    return data


def _slug(data: str) -> str:
    """A safe file-name part for a data spec: the spec itself if it is one already, else a
    cleaned prefix plus a short hash (two specs that clean to the same text stay apart)."""
    spec = canonical_spec(data)
    if re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,63}", spec):
        return spec
    clean = re.sub(r"[^a-z0-9]+", "-", spec.lower()).strip("-")[-40:].strip("-") or "data"
    return f"{clean}-{hashlib.sha256(spec.encode()).hexdigest()[:8]}"


def classifier_data(data: str) -> str:
    """The data set whose classifier measures `data`: Stacked MNIST is classified per channel
    by the classifier of its source digits."""
    return STACKED_SOURCES.get(data, data)


def default_classifier_path(data: str) -> Path:
    """Where `gankit evaluator train --data DATA` stores its classifier by default."""
    return _evaluators() / f"{NAME}-{_slug(identity(classifier_data(data)))}.safetensors"


def legacy_classifier_path(data: str) -> Path | None:
    """Where gankit stored `data`'s classifier before file names were keyed by identity, when
    that differs: sklearn-digits' is mnistcnn-digits.safetensors (today's digits never read it)."""
    source = classifier_data(data)
    old = [name for (name, _), now in EARLIER.items() if now == source]
    return _evaluators() / f"{NAME}-{_slug(old[0])}.safetensors" if old else None


def _evaluators() -> Path:
    return cache_root() / "evaluators"


def trained_on(meta: dict[str, Any]) -> str:
    """The data spec, as it is loaded today, that a classifier's record says it learnt."""
    return current_spec(str(meta.get("data", "")), {"revision": meta.get("data_revision", 1)})


# ----------------------------------------------------------------------------- save / load


def save_classifier(path: str | os.PathLike, net: DigitCNN, meta: dict[str, Any]) -> Path:
    """Write the network and its record to one safetensors file, atomically.

    Args:
        path: destination `.safetensors` file (folders are created).
        net: the trained network.
        meta: JSON-ready record (data spec, accuracy, ...); format, config and checksum are added.
    Returns:
        The path written.
    """
    tensors = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    doc = {"format": FORMAT, "format_version": FORMAT_VERSION, "name": NAME}
    doc.update(meta)
    doc.update(config=net.cfg.to_json())
    atomic_write_bytes(path, seal(tensors, doc, FORMAT_VERSION))
    return Path(path)


def read_classifier_meta(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read and verify a classifier file: (record, tensors); a UserError naming the file if it
    is missing, unreadable, not a gankit classifier, too new, damaged, or if its record does not
    describe its weights (checked on the meta device, before anything is allocated)."""
    meta, tensors = read_verified(
        path,
        fmt=FORMAT,
        version=FORMAT_VERSION,
        what="domain classifier",
        missing_hint="",
        damaged_hint="train it again with `gankit evaluator train`",
    )
    try:
        _check_record(meta, tensors)
    except (ValueError, UserError) as exc:
        detail = " ".join(str(exc).split())[:200]
        raise UserError(
            f"{path} does not hold a network this gankit can build ({detail})"
        ) from None
    return meta, tensors


def _check_record(meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    """The record's config against the weights (names and shapes of a meta-device build), and
    the record fields the extractor reads."""
    if "config" not in meta:
        raise ValueError("no network config in its record")
    cfg = ClassifierConfig.from_json(meta["config"])
    try:
        with torch.device("meta"):  # shapes only: a forged width allocates nothing here
            expected = DigitCNN(cfg).state_dict()
    except (RuntimeError, OverflowError) as exc:  # sizes beyond what torch can even count
        raise ValueError(f"its config cannot be built: {str(exc).splitlines()[0][:80]}") from None
    wrong = state_mismatch(expected, {k: tuple(v.shape) for k, v in tensors.items()})
    if wrong:
        raise ValueError(wrong)
    names = meta.get("class_names")
    if names is not None and not (
        isinstance(names, list) and all(isinstance(n, str) for n in names)
    ):
        raise ValueError("class_names must be a list of strings")
    acc = meta.get("accuracy")
    if acc is not None and (not isinstance(acc, (int, float)) or isinstance(acc, bool)):
        raise ValueError(f"accuracy must be a number (got {acc!r:.40})")
    if not isinstance(meta.get("data", ""), str):
        raise ValueError("its data spec must be a string")
    try:
        trained_on(meta)
    except UserError as exc:
        raise ValueError(str(exc)) from None
