"""From a model name, a dataset and overrides to a finished run folder.

This resolves the configuration (model defaults, then the model's customary training setup,
then the user's overrides; data-derived fields such as channels and number of classes filled
from the data), creates an auto-numbered run folder, and drives the trainer. Resuming refuses
any change that would alter the steps already taken.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..augment import create_augmentation
from ..checkpoint import Checkpoint, load_checkpoint
from ..checks import check_run_config
from ..config import RESUMABLE_KEYS, RunConfig, TrainConfig, apply_overrides, to_dict
from ..data import load_dataset
from ..data.base import ImageDataset
from ..device import resolve_device
from ..distributed import current_world
from ..errors import UserError
from ..models import (
    DATA_KINDS,
    MODELS,
    PAPER,
    check_mbstd,
    check_pack,
    check_size,
    create_model,
    make_config,
    meta_model,
)
from ..objectives import create_objective
from ..pretrained import is_pretrained
from ..regularisers import create_regularisers
from ..resolved import ResolvedRun, resolve_run
from .build import run_precision, training_device
from .folder import main_makes_run_dir, new_run_dir, resume_history, unstarted_run, write_config
from .trainer import EvalHook, Trainer, TrainResult, check_batch_size, total_images

# What builds a run's evaluation hook (None when the run asks for no evaluation). Training
# imports no metrics: the layer above passes this in (gankit.api.eval_hook, behind gankit.train).
MakeEvalHook = Callable[[RunConfig, Path], EvalHook | None]

# The size each named dataset is trained at unless --resolution says otherwise (the 8x8
# sklearn digits are upsampled); power-of-two models round up (MNIST 28 -> 32).
# The 2D mixtures are points, seen as 1x1 images with 2 channels.
DEFAULT_RESOLUTION = {
    "digits": 28,
    "sklearn-digits": 32,
    "mnist": 28,
    "fashion-mnist": 28,
    "cifar10": 32,
    "stacked-mnist": 28,
    "stacked-digits": 28,
    "stacked-sklearn-digits": 28,
    "ring8": 1,
    "grid25": 1,
}


def _pow2_ceil(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def _tiny(model: str) -> dict[str, Any]:
    """Smallest widths for a quick shape check (only fields the model has)."""
    cfg = MODELS.get(model).config_cls()
    return {k: 4 for k in ("ngf", "ndf", "hidden") if hasattr(cfg, k)}


def _shape_error(model: str, mo: Mapping[str, Any], res: int) -> UserError | None:
    """Why the networks cannot take `res` (None when they can), from one build of tiny widths
    on the meta device. An error counts only if the same tiny model builds at the model's
    default resolution; otherwise the probe itself is at fault and the full check decides."""
    spec = MODELS.get(model)
    probe = {**mo, **_tiny(model), "resolution": res}
    probe.setdefault("channels", 1)
    if spec.conditional:
        probe.setdefault("num_classes", 2)
    try:
        meta_model(model, probe)  # on meta: a forged layer count cannot allocate or hang
    except UserError as exc:
        try:
            meta_model(model, {**probe, "resolution": spec.config_cls().resolution})
        except UserError:
            return None
        return exc
    return None


def choose_resolution(model: str, data: str, mo: Mapping[str, Any]) -> int:
    """The image side to train at: `mo`'s resolution, else the data's customary size (or the
    power of two above it, for networks that take no other), else the model's default.

    Refused, before any data is read and resized, when the networks cannot take it.
    """
    if mo.get("resolution") is not None:
        tries = [int(mo["resolution"])]
    elif data in DEFAULT_RESOLUTION:
        base = DEFAULT_RESOLUTION[data]
        tries = list(dict.fromkeys([base, _pow2_ceil(base)]))
    else:
        tries = [MODELS.get(model).config_cls().resolution]
    for res in tries:
        if res <= 0:
            raise UserError(f"resolution must be > 0 (got {res})")
        err = _shape_error(model, mo, res)
        if err is None:
            return res
    raise err


def preset_overrides(model: str, preset: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """A model's named preset or recipe, split into (model fields, training fields)."""
    if preset is None:
        return {}, {}
    spec = MODELS.get(model)
    model_fields = set(spec.config_cls.__dataclass_fields__)
    values = dict(spec.setup(preset))
    return (
        {k: v for k, v in values.items() if k in model_fields},
        {k: v for k, v in values.items() if k not in model_fields},
    )


def choose_preset(model: str, data: str, asked: str | None) -> str | None:
    """The preset a fresh run starts from: the one asked for, else the data's recipe."""
    return asked if asked is not None else MODELS.get(model).recipe_for(data)


def describe_setup(model: str, data: str, preset: str | None) -> str:
    """One line on which setup a run uses, printed at its start."""
    spec = MODELS.get(model)
    if preset is not None and preset in spec.recipes:
        return (
            f"gankit: recipe {preset} for {model} on {data} ({DATA_KINDS[preset][0]}); "
            "--preset paper for the paper's setup"
        )
    if preset == PAPER or preset is None:
        kind = spec.recipe_for(data)
        why = "as asked" if preset == PAPER else f"no {model} recipe for {data}"
        hint = f"; --preset {kind} for the recipe" if kind and preset == PAPER else ""
        return f"gankit: {model}'s paper setup (its defaults), {why}{hint}"
    return f"gankit: preset {preset} for {model}"


def resolve_train_config(model: str, data: str, overrides: Mapping[str, Any]) -> TrainConfig:
    """Defaults < the model's customary setup < its preset (if any) < the user's overrides."""
    spec = MODELS.get(model)
    cfg = TrainConfig(model=model, data=data)
    cfg = apply_overrides(cfg, spec.train_defaults, what="training option")
    overrides = {**overrides, "preset": choose_preset(model, data, overrides.get("preset"))}
    _, preset_train = preset_overrides(model, overrides["preset"])
    cfg = apply_overrides(cfg, preset_train, what="training option")
    # the user's run length replaces a preset's, whichever unit each one used
    if overrides.get("epochs") is not None:
        cfg = apply_overrides(cfg, {"kimg": None})
    if overrides.get("kimg") is not None:
        cfg = apply_overrides(cfg, {"epochs": None})
    cfg = apply_overrides(cfg, overrides, what="training option")
    cfg.validate()
    objective = create_objective(cfg.objective or spec.objective)  # a typo fails here
    spec.check_objective(objective.name)
    check_pack(spec, cfg.pack)  # PacGAN packs only a D that scores unlabelled images
    check_mbstd(spec, cfg.mbstd, cfg.pack)
    create_regularisers(cfg.reg, model=spec)  # a term the model cannot take fails here
    create_augmentation(cfg, objective)  # an unknown op, or ADA with a critic, fails here
    return cfg


def _load_data(cfg: TrainConfig, resolution: int, channels: int | None) -> ImageDataset:
    return load_dataset(
        cfg.data,
        resolution=resolution,
        channels=channels,
        root=cfg.data_root,
        train=True,
        download=cfg.download,
        folder_labels=cfg.folder_labels,
        max_images=cfg.max_images,
    )


def _record(rc: RunConfig) -> ResolvedRun:
    """What the run will use, with the precision its device comes to; every rank calls this
    (with precision=auto they all take rank 0's choice)."""
    world = current_world()
    precision = run_precision(rc.train, training_device(rc.train, world), world)
    return resolve_run(rc, precision.chosen)


def prepare_training(
    model: str,
    data: str,
    *,
    model_overrides: Mapping[str, Any] | None = None,
    train_overrides: Mapping[str, Any] | None = None,
) -> tuple[RunConfig, ImageDataset]:
    """Resolve the full configuration of a fresh run and load its data (nothing is written)."""
    spec = MODELS.get(model)
    tcfg = resolve_train_config(model, data, train_overrides or {})
    mo, _ = preset_overrides(model, tcfg.preset)
    mo.update({k.replace("-", "_"): v for k, v in (model_overrides or {}).items()})
    make_config(model, mo)  # unknown keys / wrong types fail before any data is read
    res = choose_resolution(model, data, mo)
    channels = mo.get("channels")
    ds = _load_data(tcfg, res, None if channels is None else int(channels))
    mo["resolution"] = res
    mo.setdefault("channels", ds.channels)
    if spec.conditional:
        if ds.labels is None:
            raise UserError(
                f"{model} is class-conditional but {data} has no labels; use "
                "labelled data (e.g. folder:PATH with --folder-labels)"
            )
        n_cls = int(mo.setdefault("num_classes", ds.num_classes))
        top = int(ds.labels.max()) if len(ds) else -1
        if top >= n_cls:
            raise UserError(
                f"{data} has label {top}, outside the model's {n_cls} classes; "
                f"pass --set num_classes={top + 1} or drop that class"
            )
    cfg = make_config(model, mo)
    # Shapes and size checked on the meta device, before a folder is made or a weight is
    # allocated; a config the meta build cannot take is left to a real build to refuse.
    if check_size(model, to_dict(cfg), **tcfg.d_options()) is None:
        create_model(model, **tcfg.d_options(), **to_dict(cfg))
    _check_runnable(tcfg, ds)
    return RunConfig(model=model, model_config=to_dict(cfg), train=tcfg), ds


def _check_runnable(cfg: TrainConfig, ds: ImageDataset) -> None:
    """What the trainer would refuse, refused before a run folder is made or changed."""
    resolve_device(cfg.device)
    check_batch_size(cfg.batch_size, len(ds))


def train(
    model: str = "dcgan",
    data: str = "digits",
    *,
    outdir: str | Path = "runs",
    run_dir: str | Path | None = None,
    resume: str | Path | None = None,
    overwrite: bool = False,
    model_overrides: Mapping[str, Any] | None = None,
    progress: bool = True,
    tensorboard: bool = True,
    dry_run: bool = False,
    evaluate: MakeEvalHook | None = None,
    **train_overrides: Any,
) -> TrainResult | RunConfig:
    """Train a model; `gankit.train` is this with `evaluate` filled in.

    Args:
        model: registry name (see `list_models()`).
        data: dataset spec: digits, sklearn-digits, mnist, cifar10, folder:PATH, npz:PATH, ...
        outdir: parent of auto-numbered run folders.
        run_dir: an exact run folder instead of an auto-numbered one.
        resume: a run folder or checkpoint file to continue exactly.
        overwrite: replace an existing `run_dir`.
        model_overrides: network config fields (resolution, channels, nz, ngf, ...).
        progress: show a progress bar.
        tensorboard: also log to TensorBoard when installed.
        dry_run: resolve and return the configuration without training.
        evaluate: builds the evaluation hook from the resolved config and run folder; needed
            when eval_every_kimg is set (gankit.train passes gankit.api.eval_hook).
        **train_overrides: TrainConfig fields (epochs, kimg, batch_size, lr_g, seed, ...).
    Returns:
        The TrainResult (or the resolved RunConfig for a dry run).
    """
    if resume is not None:
        return _resume(
            resume, model_overrides or {}, train_overrides, progress, tensorboard, dry_run,
            evaluate,
        )  # fmt: skip
    rc, ds = prepare_training(
        model, data, model_overrides=model_overrides, train_overrides=train_overrides
    )
    if current_world().is_main:  # a dry run's stdout is the config's JSON alone
        print(describe_setup(model, data, rc.train.preset), file=sys.stderr if dry_run else None)
    if dry_run:
        return rc
    _check_evaluate(rc, evaluate)
    resolved = _record(rc)
    path = main_makes_run_dir(
        lambda: Path(run_dir) if run_dir is not None else new_run_dir(outdir, model, data),
        overwrite,
        lambda p: write_config(p, resolved, ds),
    )
    hook = evaluate(rc, path) if evaluate is not None else None
    trainer = Trainer(rc, path, ds, progress=progress, tensorboard=tensorboard, evaluate=hook)
    if progress:
        _announce(trainer, "training")
    return trainer.train()


def _check_evaluate(rc: RunConfig, evaluate: MakeEvalHook | None) -> None:
    """Refuse a run that asks for evaluation without a way to evaluate, rather than skip it."""
    if evaluate is None and rc.train.eval_every_kimg is not None:
        raise UserError(
            "eval_every_kimg needs the metrics: train through gankit.train (or `gankit train`), "
            "or pass evaluate=gankit.api.eval_hook"
        )


def _announce(trainer: Trainer, verb: str) -> None:
    """One line on what is about to happen, and what the loader did to the data."""
    if not trainer.is_main:
        return
    ds, rc = trainer.dataset, trainer.run_config
    if trainer.world.distributed:
        print(
            f"gankit: {trainer.world.size} processes, {trainer.local_batch} images each per "
            f"step (global batch {trainer.cfg.batch_size}), sync_bn={trainer.cfg.sync_bn}"
        )
    print(
        f"gankit: {verb} {trainer.run_config.model} on {ds.name} ({len(ds)} images, "
        f"{rc.channels}x{rc.resolution}x{rc.resolution}) for "
        f"{trainer.total_nimg / 1000:g} kimg -> {trainer.run_dir}"
    )
    for note in ds.notes:
        print(f"gankit: data: {note}")
    hint = small_data_hint(len(ds), rc.train.augment)
    if hint:
        print(hint)


# Below this many training images, a run without augmentation is nudged towards --augment:
# on 500 MNIST digits D memorises the set and DCGAN's FD gets 2-4x worse between 100 and 400
# kimg, where DiffAugment and ADA keep improving (benchmarks/small_data.py --tag grey28-400k).
SMALL_DATA = 1000


def small_data_hint(n_images: int, augment: str | None) -> str | None:
    """The line that tells a user training on a small set without augmentation what to add."""
    if augment is not None or n_images >= SMALL_DATA:
        return None
    return (
        f"gankit: hint: {n_images} training images is a small set: over a long run D "
        "memorises it and G's samples get worse; add --augment diffaug, or for digits "
        "--augment ada:xint,brightness,contrast (docs/small_data.md)"
    )


def _resume(
    resume: str | Path,
    model_overrides: Mapping[str, Any],
    train_overrides: Mapping[str, Any],
    progress: bool,
    tensorboard: bool,
    dry_run: bool,
    evaluate: MakeEvalHook | None,
) -> TrainResult | RunConfig:
    if is_pretrained(resume):  # it would resume into the installed package
        raise UserError(
            f"{resume} is a generator shipped with gankit, without optimiser state: it can be "
            "sampled, served and evaluated, not resumed; train your own with gankit train"
        )
    ck: Checkpoint | None = None
    unstarted = unstarted_run(Path(resume))
    if unstarted is not None:  # killed before its first checkpoint: start it again
        # config.json is as untrusted as a checkpoint: the same checks before anything is built
        rc, _ = check_run_config(unstarted.to_json(), where=Path(resume) / "config.json")
        run_dir = Path(resume)
    else:
        ck = load_checkpoint(resume)
        rc = ck.run_config
        run_dir = ck.path.parent.parent
    start_nimg = ck.nimg if ck is not None else 0
    for key, value in model_overrides.items():
        key = key.replace("-", "_")
        old = rc.model_config.get(key)
        new = apply_overrides(make_config(rc.model, rc.model_config), {key: value})
        if getattr(new, key) != old:
            raise UserError(
                f"cannot change {key} when resuming (run has {old!r}); start a new run instead"
            )
    new_train = apply_overrides(rc.train, train_overrides, what="training option")
    old_d, new_d = to_dict(rc.train), to_dict(new_train)
    changed = [k for k in new_d if new_d[k] != old_d[k] and k not in RESUMABLE_KEYS]
    if changed:
        k = changed[0]
        raise UserError(
            f"cannot change {k} when resuming (run has {old_d[k]!r}, asked "
            f"{new_d[k]!r}); only the length and reporting intervals may change"
        )
    if "epochs" in train_overrides and new_train.kimg is not None:
        new_train = apply_overrides(new_train, {"kimg": None})
    if "kimg" in train_overrides and new_train.epochs is not None:
        new_train = apply_overrides(new_train, {"epochs": None})
    new_train.validate()
    rc = RunConfig(model=rc.model, model_config=rc.model_config, train=new_train)
    if dry_run:
        return rc
    _check_evaluate(rc, evaluate)
    ds = _load_data(new_train, rc.resolution, rc.channels)
    _check_runnable(new_train, ds)
    if start_nimg >= total_images(new_train, len(ds)):  # checked before config.json is rewritten
        raise UserError(
            f"{run_dir} already trained for {start_nimg} images; pass a longer "
            "--kimg or --epochs to continue"
        )
    # Built (and restored) before config.json is rewritten, so a checkpoint that does not fit
    # leaves the run as it was.
    trainer = Trainer(
        rc,
        run_dir,
        ds,
        resume=ck,
        progress=progress,
        tensorboard=tensorboard,
        evaluate=evaluate(rc, run_dir) if evaluate is not None else None,
    )
    if not trainer.is_main:  # rank 0 rewrites the config
        return trainer.train()
    if ck is None:  # what the killed first attempt logged or drew is not part of this run
        (run_dir / "metrics.jsonl").unlink(missing_ok=True)
        for f in (run_dir / "samples").glob("fakes*.png"):
            f.unlink()
    write_config(
        run_dir,
        resolve_run(rc, trainer.precision.chosen),
        ds,
        {
            "resumed_from": str(ck.path) if ck is not None else None,
            "history": [*resume_history(run_dir), start_nimg],
        },
    )
    if progress:
        _announce(
            trainer,
            f"resuming at {start_nimg / 1000:g} kimg:"
            if ck is not None
            else "no checkpoint had been saved; starting again:",
        )
    return trainer.train()
