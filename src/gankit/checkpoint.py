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
checks everything the metadata asks later code to build or allocate (model name, strictly parsed
configs, the size limit `train` has, the networks' tensor names and shapes counted on the meta
device, optimiser and RNG tensors, the training state) before anything real is built from it.
Every command loads through it.

This module sits below training: sampling, metrics and the CLI load a run without the trainer.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as st_save

from .config import RunConfig, to_dict
from .errors import UserError

# Re-exported: these lived here before gankit.files; older code imports them from here.
from .files import atomic_write_bytes, atomic_write_json, atomic_write_text  # noqa: F401
from .models import MODELS, Model, check_size, make_config

FORMAT = "gankit-checkpoint"
# 2: the checksum covers the JSON document too; 1 (still read): it covers the tensors only.
FORMAT_VERSION = 2
# The tensors a checkpoint holds: networks, optimiser states and RNG states.
TENSOR_PREFIXES = ("G.", "D.", "G_ema.", "optim.G.", "optim.D.", "rng.")
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
    file the run folder that holds its checkpoints/ (else the file's own folder)."""
    p = Path(run_or_file)
    if p.is_dir():
        return p
    return p.parent.parent if p.parent.name == "checkpoints" else p.parent


def load_checkpoint(run_or_file: str | os.PathLike) -> Checkpoint:
    """Load a checkpoint file, or the newest sound checkpoint of a run folder: the one loader
    behind every command (sample, eval, serve, the analyses, resume).

    A run folder whose newest checkpoint is damaged, or does not match its own metadata, falls
    back to the newest sound one, with a one-line warning.
    """
    p = Path(run_or_file)
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
                errors.append(_one_line(str(exc)))
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


# ----------------------------------------------------------------------------- metadata checks

# Every int a checkpoint's training state holds is a count: within 64 bits, as torch needs.
_MAX_COUNT = 2**63


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _short(value: Any, limit: int = 60) -> str:
    try:
        text = repr(value)
    except ValueError:  # an int of more than 4300 digits has no repr
        return f"a {type(value).__name__} too large to show"
    return text if len(text) <= limit else f"{text[: limit - 5]}...{text[-2:]}"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _same_values(given: Any, parsed: dict[str, Any], what: str) -> None:
    """Refuse values that strict parsing would have converted ("8" for 8, 8.0 for an int):
    a file states its values exactly, so a converted one is a wrong type."""
    for key, value in given.items():
        want = parsed[key.replace("-", "_")]
        same_type = type(value) is type(want) or (_is_int(value) and isinstance(want, float))
        if not same_type or value != want:
            raise UserError(f"{what} {key} must be {type(want).__name__} (got {_short(value)})")


def check_run_config(
    run_config: Any, *, where: str | os.PathLike | None = None, max_modules: int | None = None
) -> tuple[RunConfig, Model]:
    """A run's configuration as read from a file, strictly parsed, and refused when its model
    is bigger than `train` allows; the networks are built on the meta device only.

    Args:
        run_config: the JSON object (model, model_config, train).
        where: the file it came from, named in errors.
        max_modules: see `models.meta_model` (default: its limit).
    Returns:
        (the RunConfig, model config completed with its defaults; the model on the meta device).
    Raises:
        UserError: an unknown model, objective or regulariser, an unknown key or a wrong type,
            an invalid value, or networks over the size limit.
    """
    from .objectives import create_objective
    from .regularisers import create_regularisers

    try:
        rc = RunConfig.from_json(run_config)
        _same_values(run_config["train"], to_dict(rc.train), "training option")
        rc.train.validate()
        spec = MODELS.get(rc.model)
        if rc.train.model != rc.model:
            raise UserError(f"its training config names model {rc.train.model!r}, not {rc.model!r}")
        cfg = make_config(rc.model, rc.model_config)
        _same_values(rc.model_config, to_dict(cfg), f"{rc.model} option")
        spec.check_objective(create_objective(rc.train.objective or spec.objective).name)
        create_regularisers(rc.train.reg)
        kw = {} if max_modules is None else {"max_modules": max_modules}
        model = check_size(
            rc.model, to_dict(cfg), strict=True, advice="its metadata cannot be right", **kw
        )
    except UserError as exc:
        if where is None:
            raise
        raise UserError(f"{where}: {_one_line(str(exc))}") from None
    assert model is not None  # strict: built, or a UserError
    return RunConfig(model=rc.model, model_config=to_dict(cfg), train=rc.train), model


def check_checkpoint(
    path: str | os.PathLike, meta: dict[str, Any], tensors: dict[str, torch.Tensor]
) -> RunConfig | None:
    """Check what a checkpoint's metadata asks for against its tensors, before anything is
    built from it: the checksum is no defence (an author can recompute it), this is.

    In order: the model's registry name, its config and the training config strictly parsed,
    the size limit of `train`, the networks built on the meta device with their state_dict
    names and shapes compared with the G., D. and G_ema. tensors, the optimiser tensors
    (`optim.G.N.key` must fit parameter N), the RNG states and the training state (counts,
    objective state). A file without a run config is a bare set of tensors: only their names
    are checked, and nothing can be sampled or resumed from it.

    Returns:
        The checked RunConfig (None for a bare file).
    Raises:
        UserError: one line naming the file and the first thing that does not fit.
    """
    try:
        return _check_checkpoint(meta, tensors)
    except UserError as exc:
        raise UserError(f"{path}: {_one_line(str(exc))}") from None


def _check_checkpoint(meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> RunConfig | None:
    for name in tensors:
        if not name.startswith(TENSOR_PREFIXES):
            raise UserError(
                f"unexpected tensor {name!r} (a checkpoint holds G., D., G_ema., optim. "
                "and rng. tensors only)"
            )
    if "run_config" not in meta:  # bare tensors: nothing will be built from them
        name = meta.get("model")
        if name is not None:
            MODELS.get(name if isinstance(name, str) else _short(name))  # a name, if any
        return None
    raw = meta["run_config"]
    if isinstance(raw, dict) and meta.get("model") != raw.get("model"):
        raise UserError(f"its model {_short(meta.get('model'))} is not its run config's")
    count = {p: sum(k.startswith(p + ".") for k in tensors) for p in ("G", "D")}
    for net in ("G", "D"):
        if not count[net]:
            raise UserError(f"holds no {net} weights")
    # A build registers about two parameters and modules per state_dict entry; far more means
    # a config (a layer count) that does not describe these tensors, and is stopped early.
    rc, model = check_run_config(raw, max_modules=4 * (count["G"] + count["D"]) + 256)
    _check_weights(rc, model, tensors)
    _check_optimizers(model, meta.get("optim"), tensors)
    _check_rng(tensors)
    _check_training_state(rc, meta)
    return rc


def _check_weights(rc: RunConfig, model: Model, tensors: dict[str, torch.Tensor]) -> None:
    """The file's network tensors against the meta networks: names and shapes, both ways."""
    expected = {"G": model.G.state_dict(), "D": model.D.state_dict()}
    if rc.train.ema:
        expected["G_ema"] = expected["G"]
    elif any(k.startswith("G_ema.") for k in tensors):
        raise UserError("holds G_ema weights but its run config has ema off")
    for prefix, sd in expected.items():
        p = prefix + "."
        have = {k[len(p) :]: tuple(v.shape) for k, v in tensors.items() if k.startswith(p)}
        wrong = state_mismatch(sd, have, prefix=p, owner=f"the {rc.model} config")
        if wrong:
            raise UserError(wrong)


def state_mismatch(
    expected: Mapping[str, torch.Tensor],
    have: Mapping[str, tuple[int, ...]],
    *,
    prefix: str = "",
    owner: str = "its config",
) -> str | None:
    """The first difference between a network's state_dict (built on the meta device) and the
    shapes a file holds, both ways, or None: what checkpoints and classifiers are checked by."""
    for key, t in expected.items():
        if key not in have:
            return f"tensor {prefix}{key} is missing ({owner} has it)"
        if have[key] != tuple(t.shape):
            shape = list(t.shape)
            return f"tensor {prefix}{key} has shape {list(have[key])}, {owner} gives {shape}"
    for key in have:
        if key not in expected:
            return f"unexpected tensor {prefix}{key} (not in {owner})"
    return None


def _is_index(text: str, n: int) -> bool:
    """Whether `text` is a parameter number below `n` (short: int() of 5,000 digits raises)."""
    return text.isascii() and text.isdigit() and len(text) <= 18 and int(text) < n


def _json_setting(value: Any) -> bool:
    """An optimiser hyper-parameter: a JSON scalar or a short list of numbers (betas)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return not isinstance(value, str) or len(value) <= 64
    return isinstance(value, list) and len(value) <= 8 and all(map(_is_number, value))


def _check_optimizers(model: Model, optim: Any, tensors: dict[str, torch.Tensor]) -> None:
    """Each optimiser's JSON part and its tensors against the parameters of its network."""
    if not isinstance(optim, dict):
        raise UserError("holds no optimiser state (optim)")
    for name, net in (("G", model.G), ("D", model.D)):
        shapes = [tuple(q.shape) for q in net.parameters()]
        doc = optim.get(name)
        if not isinstance(doc, dict) or not isinstance(doc.get("param_groups"), list):
            raise UserError(f"its optim.{name} has no param_groups")
        listed: list[Any] = []
        for group in doc["param_groups"]:
            if not isinstance(group, dict) or not isinstance(group.get("params"), list):
                raise UserError(f"its optim.{name} has a param group without params")
            for key, value in group.items():
                if key != "params" and not _json_setting(value):
                    raise UserError(f"its optim.{name} setting {key!r} is {_short(value)}")
            listed += group["params"]
        if [type(i) for i in listed] != [int] * len(listed) or listed != list(range(len(shapes))):
            raise UserError(
                f"its optim.{name} lists parameters {_short(listed)}, but {name} has {len(shapes)}"
            )
        scalars = doc.get("scalars", {})
        if not isinstance(scalars, dict):
            raise UserError(f"its optim.{name} scalars are {_short(scalars)}")
        for idx, extra in scalars.items():
            if not _is_index(idx, len(shapes)):
                raise UserError(f"its optim.{name} scalars name parameter {_short(idx)}")
            if not isinstance(extra, dict) or not all(map(_json_setting, extra.values())):
                raise UserError(f"its optim.{name} scalars of {idx} are {_short(extra)}")
        p = f"optim.{name}."
        for key, t in tensors.items():
            if not key.startswith(p):
                continue
            idx, _, what = key[len(p) :].partition(".")
            if not (what and _is_index(idx, len(shapes))):
                raise UserError(f"unexpected tensor {key} ({name} has {len(shapes)} parameters)")
            want = () if what == "step" else shapes[int(idx)]
            if tuple(t.shape) != want:
                raise UserError(
                    f"tensor {key} has shape {list(t.shape)}, parameter {idx} of {name} "
                    f"gives {list(want)}"
                )


def _check_rng(tensors: dict[str, torch.Tensor]) -> None:
    """RNG states are byte vectors: the CPU one of torch's own size, CUDA ones small."""
    cpu_size = torch.get_rng_state().numel()
    for key, t in tensors.items():
        if not key.startswith("rng."):
            continue
        cuda = re.fullmatch(r"rng\.cuda\.\d{1,4}", key, flags=re.ASCII) is not None
        if key != "rng.cpu" and not cuda:
            raise UserError(f"unexpected tensor {key}")
        ok = t.dtype == torch.uint8 and t.dim() == 1
        ok = ok and (t.numel() == cpu_size if key == "rng.cpu" else 0 < t.numel() <= 4096)
        if not ok:
            raise UserError(f"tensor {key} is not an RNG state ({t.dtype}, {list(t.shape)})")


def _check_training_state(rc: RunConfig, meta: dict[str, Any]) -> None:
    """The counters, objective state and records a resumed run (or a report) takes from the
    document: of the right types and in range."""
    from .objectives import create_objective

    for key in ("step", "nimg", "batch_index"):
        value = meta.get(key)
        if not (_is_int(value) and 0 <= value < _MAX_COUNT):
            raise UserError(f"its {key} must be a count (got {_short(value)})")
    if meta["nimg"] != meta["batch_index"] * rc.train.batch_size:
        raise UserError(
            f"its nimg ({meta['nimg']}) is not batch_index ({meta['batch_index']}) x batch_size "
            f"({rc.train.batch_size})"
        )
    spec = MODELS.get(rc.model)
    objective = create_objective(rc.train.objective or spec.objective)
    if meta.get("objective", objective.name) != objective.name:
        raise UserError(
            f"its objective {_short(meta.get('objective'))} is not the run's ({objective.name})"
        )
    state = meta.get("objective_state", {})
    if not isinstance(state, dict):
        raise UserError(f"its objective_state is {_short(state)}")
    try:
        objective.load_state_dict(state)
    except (ValueError, TypeError, KeyError, OverflowError) as exc:
        raise UserError(f"its objective_state does not fit {objective.name}: {exc}") from None
    for key, test in (("lr_scale", _is_number), ("peak_diversity", _is_number)):
        if key in meta and not test(meta[key]):
            raise UserError(f"its {key} must be a number (got {_short(meta[key])})")
    if "lr_scale" in meta and not 0 < meta["lr_scale"] <= 1:
        raise UserError(f"its lr_scale must be in (0, 1] (got {_short(meta['lr_scale'])})")
    rollbacks = meta.get("rollbacks", 0)
    if not (_is_int(rollbacks) and 0 <= rollbacks < _MAX_COUNT):
        raise UserError(f"its rollbacks must be a count (got {_short(rollbacks)})")
    best = meta.get("best")
    if best is not None and not (
        isinstance(best, dict)
        and isinstance(best.get("metric"), str)
        and _is_number(best.get("value"))
        and _is_int(best.get("nimg"))
    ):
        raise UserError(f"its best record is {_short(best)}")
    data = meta.get("data", {})
    if not isinstance(data, dict):
        raise UserError(f"its data record is {_short(data)}")
    for key in ("num_classes", "channels", "resolution", "images"):
        if key in data and not (_is_int(data[key]) and 0 <= data[key] < _MAX_COUNT):
            raise UserError(f"its data {key} must be a count (got {_short(data[key])})")
    if "name" in data and not isinstance(data["name"], str):
        raise UserError(f"its data name must be a string (got {_short(data['name'])})")
    names = data.get("class_names")
    if names is not None and not (
        isinstance(names, list) and all(isinstance(n, str) for n in names)
    ):
        raise UserError(f"its class_names must be a list of strings (got {_short(names)})")


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
