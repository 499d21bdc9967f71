"""`gankit train` and `gankit demo`.

The training flags are made from TrainConfig's fields and their help metadata
(`gankit.config.setting`): a new field is a new flag with no edit here. `--x-y` sets field
x_y; a yes/no field has `--x-y` and `--no-x-y`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from pathlib import Path
from typing import Any

from ..config import TrainConfig, parse_assignments
from ..errors import UserError

# Fields that the command takes another way: the model is the positional argument.
_NOT_FLAGS = frozenset({"model"})


def _flag_type(hint: Any) -> Any:
    """int / float / str (or the same | None) -> the argparse type."""
    args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    return args[0]


def add_config_flags(parser: argparse.ArgumentParser, cls: type = TrainConfig) -> None:
    """One flag per field of `cls` that has help metadata and is not kept to --set."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if f.name in _NOT_FLAGS or not meta.get("flag", False):
            continue
        name = "--" + f.name.replace("_", "-")
        kind = _flag_type(hints[f.name])
        extra: dict[str, Any] = {"default": None, "help": meta["help"], "dest": f.name}
        if kind is bool:
            extra["action"] = argparse.BooleanOptionalAction
        else:
            extra["type"] = kind
            if meta.get("choices"):
                extra["choices"] = list(meta["choices"])
            if meta.get("metavar"):
                extra["metavar"] = meta["metavar"]
        parser.add_argument(name, **extra)


def add_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "train",
        help="train a model into a run folder",
        description="Train a GAN. Every training field has a flag (--batch-size for "
        "batch_size); any config field can also be set with --set key=value (model fields "
        "such as ngf, or training fields such as ema_kimg).",
    )
    p.add_argument("model", nargs="?", help="registry name (see `gankit models`)")
    add_config_flags(p)
    # Flags that are not one training field: model shape, both learning rates, the run.
    p.add_argument("--resolution", type=int, help="image size (square)")
    p.add_argument("--channels", type=int, help="1 (grayscale) or 3 (RGB); default: the data's")
    p.add_argument("--lr", type=float, help="learning rate of both G and D")
    p.add_argument(
        "--nproc",
        type=int,
        help="train on N processes on this machine with DistributedDataParallel (torchrun); "
        "--batch-size is the global batch",
    )
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        default=[],
        help="any model or training config field (repeatable)",
    )
    p.add_argument("--outdir", default="runs", help="parent of auto-numbered run folders")
    p.add_argument("--run-dir", help="exact run folder instead of an auto-numbered one")
    p.add_argument("--resume", metavar="RUN", help="continue a run folder or checkpoint exactly")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --run-dir")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and stop")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    d = sub.add_parser("demo", help="train DCGAN and CGAN on the embedded digits (no download)")
    d.add_argument("--outdir", default="runs/demo")
    d.add_argument(
        "--seconds", type=float, default=150.0, help="training time budget per model (default 150)"
    )
    d.add_argument("--no-progress", action="store_true")


def train_overrides(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split CLI flags and --set pairs into model and training overrides (strictly)."""
    from ..models import MODELS

    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    mo: dict[str, Any] = {}
    if args.resolution is not None:
        mo["resolution"] = args.resolution
    if args.channels is not None:
        mo["channels"] = args.channels
    flagged = train_fields - _NOT_FLAGS - {"data"}  # data is train()'s own argument
    to = {k: getattr(args, k) for k in flagged if getattr(args, k, None) is not None}
    if args.lr is not None:  # --lr-g / --lr-d win over --lr
        to.setdefault("lr_g", args.lr)
        to.setdefault("lr_d", args.lr)
    model_fields: set[str] = set()
    if args.model:
        model_fields = set(MODELS.get(args.model).config_cls.__dataclass_fields__)
    for key, value in parse_assignments(args.set).items():
        k = key.replace("-", "_")
        if k in model_fields:
            mo[k] = value
        elif k in train_fields and k not in ("model", "data"):
            to[k] = value
        elif not args.model and k not in train_fields:
            mo[k] = value  # resuming: checked against the run's own model config
        else:
            valid = sorted(model_fields | train_fields - {"model", "data"})
            raise UserError(f"unknown option {key!r} for --set; valid: {', '.join(valid)}")
    return mo, to


def cmd_train(args: argparse.Namespace) -> int:
    from ..api import train
    from ..training.loop import TrainResult

    if args.resume is None and not args.model:
        raise UserError("name a model to train (see `gankit models`), or pass --resume RUN")
    if args.resume is not None and args.data is not None:
        raise UserError("--data cannot change when resuming; drop it")
    mo, to = train_overrides(args)
    if args.nproc is not None and args.nproc < 1:
        raise UserError(f"--nproc must be >= 1 (got {args.nproc})")
    if args.nproc and args.nproc > 1 and not args.dry_run:
        if args.batch_size is not None and args.batch_size % args.nproc:
            raise UserError(
                f"the global batch ({args.batch_size}) must split evenly over {args.nproc} "
                f"processes; pass a --batch-size divisible by {args.nproc}"
            )
        # Resolve (and so validate) the configuration here, before any process starts.
        train(
            args.model or "",
            args.data or "digits",
            resume=args.resume,
            model_overrides=mo,
            progress=False,
            dry_run=True,
            **to,
        )
        return _launch_processes(args)
    result = train(
        args.model or "",
        args.data or "digits",
        outdir=args.outdir,
        run_dir=args.run_dir,
        resume=args.resume,
        overwrite=args.overwrite,
        model_overrides=mo,
        progress=not args.no_progress,
        dry_run=args.dry_run,
        **to,
    )
    if not isinstance(result, TrainResult):
        print(json.dumps(result.to_json(), indent=2))
        return 0
    from ..distributed import current_world

    if not current_world().is_main:
        return 0
    why = " (time budget reached)" if result.stopped_early else ""
    print(
        f"done{why}: {result.nimg - result.start_nimg} images in {result.seconds:.0f} s "
        f"(~{result.img_per_s:.0f} img/s), {result.nimg} in total -> {result.run_dir}"
    )
    print(
        f"  samples: {result.run_dir / 'samples'}  curves: {result.run_dir / 'losses.png'}  "
        f"animation: {result.run_dir / 'progress.gif'}"
    )
    notes = json.loads((result.run_dir / "config.json").read_text()).get("data", {}).get("notes")
    if notes:  # skipped files, conversions: what the loader did to the user's data
        print(f"  data: {'; '.join(notes)}")
    return 0


def _launch_processes(args: argparse.Namespace) -> int:
    """`gankit train --nproc N ...`: the same command in N processes under torchrun."""
    from ..distributed import launch, launched_by_torchrun

    if launched_by_torchrun():
        raise UserError("--nproc is for starting processes; under torchrun, drop it")
    argv, rest = [], iter(args.argv[args.argv.index("train") + 1 :])
    for a in rest:
        if a == "--nproc":
            next(rest)  # and its value
        elif not a.startswith("--nproc="):
            argv.append(a)
    print(f"gankit: starting {args.nproc} processes (torchrun, DistributedDataParallel)")
    return launch(args.nproc, argv, run_dir=args.run_dir or args.resume)


def cmd_demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    run_demo(
        outdir=Path(args.outdir), seconds_per_model=args.seconds, progress=not args.no_progress
    )
    return 0


COMMANDS = {"train": cmd_train, "demo": cmd_demo}
