"""What a gankit file's metadata asks for, checked before anything is built from it.

The checksum of a checkpoint catches accidents, not authors: anyone can recompute it. So every
loader checks what the metadata asks later code to build or allocate (model name, strictly
parsed configs, the size limit `train` has, the networks' tensor names and shapes counted on
the meta device, optimiser and RNG tensors, the training state), and refuses in one line.
`check_run_config` also guards a resumed run's config.json; `state_mismatch` the classifiers.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import torch

from .config import RunConfig, to_dict
from .data.identity import current_run_config
from .errors import UserError
from .models import MODELS, Model, check_size, make_config
from .objectives import create_objective
from .regularisers import create_regularisers

# The tensors a checkpoint holds: networks, optimiser states and RNG states.
TENSOR_PREFIXES = ("G.", "D.", "G_ema.", "optim.G.", "optim.D.", "rng.")

# Every int a checkpoint's training state holds is a count: within 64 bits, as torch needs.
_MAX_COUNT = 2**63


def one_line(text: str) -> str:
    """`text` with every run of whitespace (newlines too) one space."""
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
            rc.model,
            to_dict(cfg),
            strict=True,
            advice="its metadata cannot be right",
            **rc.train.d_options(),
            **kw,
        )
    except UserError as exc:
        if where is None:
            raise
        raise UserError(f"{where}: {one_line(str(exc))}") from None
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
        raise UserError(f"{path}: {one_line(str(exc))}") from None


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
    count = {p: sum(k.startswith(p + ".") for k in tensors) for p in ("G", "D", "G_ema")}
    # A shipped generator (gankit/pretrained) may leave out G: it is sampled from G_ema only.
    sampling_only = "pretrained" in meta and not count["G"] and count["G_ema"] > 0
    for net in ("G", "D"):
        if not count[net] and not (net == "G" and sampling_only):
            raise UserError(f"holds no {net} weights")
    # A build registers about two parameters and modules per state_dict entry; far more means
    # a config (a layer count) that does not describe these tensors, and is stopped early.
    g = count["G_ema"] if sampling_only else count["G"]
    rc, model = check_run_config(raw, max_modules=4 * (g + count["D"]) + 256)
    _check_weights(rc, model, tensors, sampling_only)
    _check_optimizers(model, meta.get("optim"), tensors)
    _check_rng(tensors)
    _check_training_state(rc, meta)
    # An older run's data by today's name (its "digits" were scikit-learn's 8x8 set).
    return current_run_config(rc, meta.get("data"))


def _check_weights(
    rc: RunConfig, model: Model, tensors: dict[str, torch.Tensor], sampling_only: bool = False
) -> None:
    """The file's network tensors against the meta networks: names and shapes, both ways
    (a sampling-only file: G_ema and D, without G)."""
    expected = {"G": model.G.state_dict(), "D": model.D.state_dict()}
    if rc.train.ema:
        expected["G_ema"] = expected["G"]
    elif any(k.startswith("G_ema.") for k in tensors):
        raise UserError("holds G_ema weights but its run config has ema off")
    if sampling_only:
        del expected["G"]
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
