"""Typed configuration: small dataclasses, named presets and strict overrides.

An unknown key or a value of the wrong type is a `UserError`, never silently ignored. The
resolved configuration is written into every run folder, and a resume refuses changes to
anything but the run's length and its reporting intervals.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

from .errors import UserError

C = TypeVar("C")

MAX_KIMG = 1e9  # run lengths and intervals (kimg or epochs): a trillion images is plenty
MAX_SEED = 2**32 - 1


def setting(
    default: Any,
    help: str,
    *,
    choices: tuple[str, ...] | None = None,
    metavar: str | None = None,
    flag: bool = True,
) -> Any:
    """A config field with its help text (and allowed values) as metadata.

    The `gankit train` flags are generated from this metadata, so a new field needs its one
    line here and nothing in the CLI. `flag=False` keeps a field to `--set key=value` only.
    """
    meta = {"help": help, "choices": choices, "metavar": metavar, "flag": flag}
    return field(default=default, metadata=meta)


def choice_text(choices: tuple[str, ...]) -> str:
    """('a', 'b', 'c') -> 'a, b or c', for messages."""
    return ", ".join(choices[:-1]) + " or " + choices[-1] if len(choices) > 1 else choices[0]


@dataclass
class TrainConfig:
    """Everything about a training run that is not the networks' shape."""

    model: str = setting("dcgan", "registry name of the model (see `gankit models`)", flag=False)
    preset: str | None = setting(None, "a named preset of the model (see `gankit models`)")
    data: str = setting(
        "digits",
        "digits (default: 28x28 MNIST digits, embedded), sklearn-digits (8x8, embedded), "
        "mnist, fashion-mnist, cifar10, folder:PATH or npz:PATH (`gankit datasets`)",
    )
    data_root: str | None = setting(
        None, "where torchvision datasets live (default $GANKIT_DATA or ./data)"
    )
    folder_labels: bool = setting(
        False, "folder:PATH only: class labels from first-level sub-folders"
    )
    download: bool = setting(True, "try to download torchvision datasets that are missing")
    max_images: int | None = setting(None, "use only the first N training images")
    objective: str | None = setting(
        None, "GAN loss, with options as in began:gamma=0.7 (`gankit objectives`)"
    )
    reg: str | None = setting(
        None,
        "regularisers, comma-separated, e.g. r1:gamma=5,ortho; none for none "
        "(`gankit objectives` lists them)",
    )
    n_critic: int = setting(1, "D updates per G update (WGAN: 5)")
    pack: int = setting(
        1, "PacGAN: D judges this many samples at once, stacked (unconditional models)"
    )
    mbstd: bool = setting(
        False,
        "minibatch std (ProGAN): D also sees how much its batch's images vary, as one more "
        "input plane; per label for conditional models, against collapse within a class",
    )
    augment: str | None = setting(
        None,
        "augment every image D sees, for small data: diffaug[:color,translation,cutout] "
        "(DiffAugment) or ada[:OPS] (adaptive; logit objectives only)",
        metavar="SPEC",
    )
    # stylegan2-ada lets p cross 0 -> 1 in 500 kimg, some 2% of GPU runs of 25,000 kimg. DCGAN
    # on 32x32 digits trains at ~400 images/s on 2 CPU cores (docs/bench_eval_mnist.json): a
    # 5-minute run shows D ~120 kimg. At 20 kimg p can cross its range in under a minute, a
    # sixth of such a run, and each update (4 batches of 64: 256 signs) moves it by ~0.013.
    ada_kimg: float = setting(20.0, "--augment ada: thousands of real images for p to go 0 -> 1")
    ada_target: float = setting(0.6, "--augment ada: the target of r_t = E[sign(D(real))]")
    optimizer: str = setting(
        "adam", "default: the model's; rmsprop for WGAN", choices=("adam", "rmsprop")
    )
    epochs: float | None = setting(None, "run length in passes over the data (or --kimg)")
    kimg: float | None = setting(None, "run length in thousands of real images shown to D")
    max_seconds: float | None = setting(None, "also stop (with a checkpoint) after this wall time")
    batch_size: int = setting(128, "images per step (all processes together)")
    lr_g: float = setting(2e-4, "G's learning rate")
    lr_d: float = setting(2e-4, "D's learning rate")
    beta1: float = setting(0.5, "Adam's beta1 (the DCGAN paper's 0.5)")
    beta2: float = setting(0.999, "Adam's beta2")
    seed: int = setting(0, "seed of the weights, the data order and the noise")
    ema: bool = setting(True, "keep an exponential moving average of G (G_ema) for sampling")
    ema_kimg: float = setting(10.0, "EMA half-life, in thousands of images")
    ema_rampup: float | None = setting(
        0.05, "early in training the half-life is at most rampup x images seen"
    )
    log_every: int = setting(20, "steps between progress/metrics lines (the only host syncs)")
    sample_every_kimg: float = setting(10.0, "fixed-noise grid interval")
    ckpt_every_kimg: float = setting(50.0, "checkpoint interval")
    keep_checkpoints: int = setting(2, "newest checkpoints kept; older ones are deleted")
    grid_size: int = setting(64, "fixed-noise samples in each progress grid")
    device: str = setting("auto", "auto (default), cpu, cuda, cuda:N")
    precision: str = setting(
        "fp32",
        "fp32 (default), bf16 autocast, or auto (bf16 where it is fast)",
        choices=("fp32", "bf16", "auto"),
    )
    channels_last: bool = setting(
        True, "NHWC memory layout for convolutions (default: on; faster on CPUs and GPUs)"
    )
    compile: bool = setting(False, "torch.compile the networks (pays off on GPUs, not CPUs)")
    optimizer_impl: str = setting(
        "fused",
        "how the optimizer updates the weights (default fused; all give the same maths)",
        choices=("fused", "foreach", "loop"),
    )
    data_device: str = setting(
        "auto",
        "auto (default): keep the uint8 data on the training device when it fits",
        choices=("auto", "cpu"),
    )
    sync_bn: bool = setting(
        False, "with several processes: batch norm statistics over the global batch"
    )
    eval_every_kimg: float | None = setting(
        None, "score G_ema every N kimg and at the end (with --eval-metrics)"
    )
    eval_metrics: str | None = setting(
        None, "metrics for those evaluations, comma-separated, e.g. fd2k_mnistcnn"
    )
    eval_ref: str = setting(
        "train",
        "the real split those evaluations compare with: train (default) or test (held out)",
        choices=("train", "test"),
    )
    keep_best: str | None = setting(
        None, "keep checkpoints/best.safetensors, best by this metric", metavar="METRIC"
    )
    nan_check: str = setting(
        "step", "when to look for NaN/Inf losses and gradients", choices=("step", "log")
    )
    nan_retries: int = setting(3, "roll back to the last good state at most this often")
    nan_lr_factor: float = setting(0.5, "each rollback multiplies both learning rates by this")
    collapse_threshold: float = setting(
        0.1, "warn when sample diversity / data diversity drops below this (0: never)"
    )
    deterministic: bool = setting(
        False, "deterministic kernels only (for GPUs; CPU runs already are)"
    )

    def d_options(self) -> dict[str, Any]:
        """What the run changes in D itself (`create_model`'s keywords): every place that
        builds a run's model passes these, so a loaded D is the one that was trained."""
        return {"pack": self.pack, "mbstd": self.mbstd}

    def validate(self) -> None:
        """Raise a UserError for values that make no sense."""
        positive = {
            "batch_size": self.batch_size,
            "lr_g": self.lr_g,
            "lr_d": self.lr_d,
            "log_every": self.log_every,
            "grid_size": self.grid_size,
            "ema_kimg": self.ema_kimg,
            "sample_every_kimg": self.sample_every_kimg,
            "ckpt_every_kimg": self.ckpt_every_kimg,
            "keep_checkpoints": self.keep_checkpoints,
            "n_critic": self.n_critic,
            "pack": self.pack,
        }
        for key, value in positive.items():
            if not (value > 0) or (isinstance(value, float) and not math.isfinite(value)):
                raise UserError(f"{key} must be > 0 (got {value}); pass a positive value")
        for key in ("beta1", "beta2"):
            value = getattr(self, key)
            if not 0.0 <= value < 1.0:
                raise UserError(f"{key} must be in [0, 1) (got {value})")
        if self.epochs is not None and self.kimg is not None:
            raise UserError("give the run length as --epochs or --kimg, not both")
        for key in ("epochs", "kimg", "max_seconds"):
            value = getattr(self, key)
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise UserError(f"{key} must be > 0 (got {value})")
        # The trainer turns these into whole image counts (kimg * 1000); past ~1e305 that is
        # infinite and int() fails mid-run, so refuse absurd lengths here.
        for key in ("epochs", "kimg", "sample_every_kimg", "ckpt_every_kimg", "eval_every_kimg"):
            value = getattr(self, key)
            if value is not None and value > MAX_KIMG:
                raise UserError(f"{key} must be at most {MAX_KIMG:g} (got {value})")
        # torch seeds must fit in 64 bits, and the trainer seeds each epoch's shuffle with
        # seed * 1_000_003 + epoch, so keep seeds to the usual unsigned 32-bit range.
        if not 0 <= self.seed <= MAX_SEED:
            raise UserError(f"seed must be in 0..{MAX_SEED} (got {self.seed})")
        if self.batch_size % self.pack:
            raise UserError(
                f"batch_size ({self.batch_size}) must be a multiple of pack ({self.pack})"
            )
        if self.max_images is not None and self.max_images <= 0:
            raise UserError(f"max_images must be > 0 (got {self.max_images})")
        for f in fields(self):
            allowed, value = f.metadata.get("choices"), getattr(self, f.name)
            if allowed and value not in allowed:
                raise UserError(f"{f.name} must be {choice_text(allowed)} (got {value!r})")
        if self.eval_every_kimg is not None:
            if not (self.eval_every_kimg > 0 and math.isfinite(self.eval_every_kimg)):
                raise UserError(f"eval_every_kimg must be > 0 (got {self.eval_every_kimg})")
            if not self.eval_metrics:
                raise UserError("eval_every_kimg needs eval_metrics, e.g. fd2k_mnistcnn")
        names = [m.strip() for m in (self.eval_metrics or "").split(",") if m.strip()]
        if names and self.eval_every_kimg is None:
            raise UserError("eval_metrics needs eval_every_kimg (how often to evaluate)")
        if self.keep_best is not None and self.keep_best not in names:
            raise UserError(
                f"keep_best={self.keep_best} must be one of the eval_metrics ({', '.join(names)})"
            )
        if self.nan_retries < 0:
            raise UserError(f"nan_retries must be >= 0 (got {self.nan_retries})")
        if not 0.0 < self.nan_lr_factor <= 1.0:
            raise UserError(f"nan_lr_factor must be in (0, 1] (got {self.nan_lr_factor})")
        if not 0.0 <= self.collapse_threshold < 1.0:
            raise UserError(
                f"collapse_threshold must be in [0, 1) (got {self.collapse_threshold}); 0 turns "
                "the mode-collapse warning off"
            )
        if self.ema_rampup is not None and not self.ema_rampup > 0:
            raise UserError(f"ema_rampup must be > 0 or None (got {self.ema_rampup})")
        if not (self.ada_kimg > 0 and math.isfinite(self.ada_kimg)):
            raise UserError(f"ada_kimg must be > 0 (got {self.ada_kimg})")
        if not 0.0 <= self.ada_target < 1.0:
            raise UserError(f"ada_target must be in [0, 1) (got {self.ada_target})")


# Keys that may differ when a run is resumed: its length and how it reports, nothing that
# changes the maths of the steps already taken.
RESUMABLE_KEYS = frozenset(
    {
        "epochs",
        "kimg",
        "max_seconds",
        "log_every",
        "sample_every_kimg",
        "ckpt_every_kimg",
        "keep_checkpoints",
        "device",
        "precision",
        "channels_last",
        "compile",
        "optimizer_impl",
        "data_device",
        "sync_bn",
        "data_root",
        "download",
        "eval_every_kimg",
        "eval_metrics",
        "eval_ref",
        "keep_best",
        "nan_check",
        "nan_retries",
        "nan_lr_factor",
        "collapse_threshold",
        "deterministic",
    }
)


def _type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert `value` (often a string from the command line) to type `tp`, strictly."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        is_none = value is None or (isinstance(value, str) and value.lower() in ("none", "null"))
        if is_none and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except UserError as exc:
                errors.append(str(exc))
        raise UserError(errors[0] if errors else f"{key}: cannot take {_short(value)}")
    if origin in (tuple, list):
        raise UserError(f"{key}: sequence values are not supported here")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
            return False
        raise UserError(f"{key} must be true or false (got {_short(value)})")
    if tp is int:
        number = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, float) and value.is_integer():
            number = int(value)
        elif isinstance(value, str):
            with contextlib.suppress(ValueError):  # also strings of more than 4300 digits
                number = int(value)
        if number is None:
            raise UserError(f"{key} must be an integer (got {_short(value)})")
        # Every int field is a size, a count or a seed: beyond 64 bits torch cannot take it.
        if not -(2**63) <= number < 2**63:
            raise UserError(f"{key} must be an integer within +-2**63 (got {_short(value)})")
        return number
    if tp is float:
        if isinstance(value, bool):
            raise UserError(f"{key} must be a number (got {value!r})")
        try:
            if isinstance(value, (int, float, str)):
                return float(value)
        except (ValueError, OverflowError):  # OverflowError: an int beyond float's range
            pass
        raise UserError(f"{key} must be a number (got {_short(value)})")
    if tp is str:
        if isinstance(value, str):
            return value
        raise UserError(f"{key} must be a string (got {_short(value)})")
    raise UserError(f"{key}: unsupported type {tp}")


def _short(value: Any, limit: int = 80) -> str:
    """repr(value), cut to `limit` characters so an error stays one readable line."""
    try:
        text = repr(value)
    except ValueError:  # an int of more than 4300 digits (or a list of them) has no repr
        if isinstance(value, int):
            return f"an integer of {value.bit_length()} bits"
        return f"a {type(value).__name__} holding a huge integer"
    return text if len(text) <= limit else f"{text[: limit - 5]}...{text[-2:]}"


def apply_overrides(cfg: C, overrides: Mapping[str, Any], *, what: str = "option") -> C:
    """Return a copy of dataclass `cfg` with `overrides` applied, each key and type checked.

    Args:
        cfg: a dataclass instance.
        overrides: key -> value; string values are parsed to the field's type.
        what: word used in error messages ("model option", "training option").
    Returns:
        A new dataclass instance.
    """
    if not isinstance(overrides, Mapping):
        raise UserError(f"{what}s must be key: value pairs (got {_short(overrides)})")
    hints = _type_hints(type(cfg))
    names = [f.name for f in fields(cfg)]  # type: ignore[arg-type]
    changes = {}
    for key, value in overrides.items():
        if not isinstance(key, str):
            raise UserError(f"unknown {what} {_short(key)}; valid: {', '.join(names)}")
        key_norm = key.replace("-", "_")
        if key_norm not in names:
            raise UserError(f"unknown {what} {key!r}; valid: {', '.join(names)}")
        changes[key_norm] = _coerce(value, hints[key_norm], key_norm)
    return dataclasses.replace(cfg, **changes)  # type: ignore[type-var]


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass."""
    return dataclasses.asdict(cfg)


def from_dict(cls: type[C], data: Mapping[str, Any], *, what: str = "option") -> C:
    """Build dataclass `cls` from a dict, strictly (unknown keys and wrong types are errors)."""
    return apply_overrides(cls(), data, what=what)  # type: ignore[call-arg]


def parse_assignments(items: list[str] | None) -> dict[str, str]:
    """Parse ["key=value", ...] from `--set` into a dict."""
    out: dict[str, str] = {}
    for item in items or []:
        if "=" not in item:
            raise UserError(f"--set expects key=value (got {item!r})")
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    return out


@dataclass
class RunConfig:
    """The resolved configuration of a run: model name, its constructor config and training."""

    model: str
    model_config: dict[str, Any]
    train: TrainConfig = field(default_factory=TrainConfig)

    @property
    def resolution(self) -> int:
        """The image side the model was built for (every registered model has one)."""
        return int(self.model_config["resolution"])

    @property
    def channels(self) -> int:
        """Image channels the model was built for."""
        return int(self.model_config["channels"])

    @property
    def num_classes(self) -> int:
        """Classes the model was built for; 0 for an unconditional model."""
        return int(self.model_config.get("num_classes", 0) or 0)

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "model_config": dict(self.model_config),
            "train": to_dict(self.train),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunConfig:
        hint = "is this a gankit run?"
        if not isinstance(data, Mapping):
            raise UserError(f"config is a {type(data).__name__}, not a JSON object; {hint}")
        missing = [k for k in ("model", "model_config", "train") if k not in data]
        if missing:
            raise UserError(f"config is missing {', '.join(map(repr, missing))}; {hint}")
        for key in ("model_config", "train"):
            if not isinstance(data[key], Mapping):
                raise UserError(
                    f"config {key!r} is a {type(data[key]).__name__}, not a JSON object; {hint}"
                )
        if not isinstance(data["model"], str):
            raise UserError(f"config 'model' must be a name (got {_short(data['model'])}); {hint}")
        return cls(
            model=data["model"],
            model_config=dict(data["model_config"]),
            train=from_dict(TrainConfig, data["train"], what="training option"),
        )
