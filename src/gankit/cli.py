"""The `gankit` command: parse, validate, call the API, print. Nothing else lives here.

Usage errors end with one line on stderr and exit code 2; a failed write to the run folder
(disk full, read-only) exits 1, divergence that rollbacks could not cure exits 3; SIGINT or
SIGTERM during training saves a checkpoint of the last complete step and exits 130 or 143.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from .errors import UserError


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (and exit code 2)."""

    def error(self, message: str) -> NoReturn:
        # argparse echoes the user's tokens: escape control characters so that the error
        # stays one line and no terminal escape sequence gets through
        message = "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_train(sub: Any) -> None:
    p = sub.add_parser(
        "train",
        help="train a model into a run folder",
        description="Train a GAN. Any config field can also be set with "
        "--set key=value (model fields such as ngf, or training "
        "fields such as ema_kimg).",
    )
    p.add_argument("model", nargs="?", help="registry name (see `gankit models`)")
    p.add_argument(
        "--data",
        default=None,
        help="digits (default, embedded), mnist, fashion-mnist, cifar10, folder:PATH or npz:PATH",
    )
    p.add_argument("--data-root", help="where torchvision datasets live (default ./data)")
    p.add_argument(
        "--folder-labels",
        action="store_true",
        help="folder:PATH only: class labels from first-level sub-folders",
    )
    p.add_argument("--no-download", action="store_true", help="never try to download data")
    p.add_argument("--max-images", type=int, help="use only the first N training images")
    p.add_argument("--resolution", type=int, help="image size (square)")
    p.add_argument("--channels", type=int, help="1 (grayscale) or 3 (RGB); default: the data's")
    p.add_argument("--epochs", type=float, help="run length in passes over the data")
    p.add_argument("--kimg", type=float, help="run length in thousands of real images")
    p.add_argument("--max-seconds", type=float, help="also stop after this wall time")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float, help="learning rate of both G and D")
    p.add_argument("--lr-g", type=float)
    p.add_argument("--lr-d", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument(
        "--objective", help="GAN loss, with options as in began:gamma=0.7 (`gankit objectives`)"
    )
    p.add_argument(
        "--reg",
        help="regularisers, comma-separated, e.g. r1:gamma=5,ortho; none for none "
        "(`gankit objectives` lists them)",
    )
    p.add_argument("--n-critic", type=int, help="D updates per G update (WGAN: 5)")
    p.add_argument("--optimizer", choices=["adam", "rmsprop"], help="default: the model's")
    p.add_argument("--no-ema", action="store_true", help="do not keep an EMA copy of G")
    p.add_argument("--sample-every-kimg", type=float, help="fixed-noise grid interval")
    p.add_argument("--ckpt-every-kimg", type=float, help="checkpoint interval")
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:N")
    p.add_argument(
        "--eval-every-kimg", type=float, help="score G_ema every N kimg (with --eval-metrics)"
    )
    p.add_argument("--eval-metrics", help="metrics for those evaluations, e.g. fd2k_mnistcnn")
    p.add_argument(
        "--keep-best", metavar="METRIC", help="keep checkpoints/best.safetensors by this metric"
    )
    p.add_argument(
        "--precision",
        choices=["fp32", "bf16", "auto"],
        help="fp32 (default), bf16 autocast, or auto (bf16 where it is fast)",
    )
    p.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        help="NHWC memory layout for convolutions (default: on; faster on CPUs and GPUs)",
    )
    p.add_argument("--compile", action="store_true", help="torch.compile the networks")
    p.add_argument(
        "--optimizer-impl",
        choices=["fused", "foreach", "loop"],
        help="how the optimizer updates the weights (default fused; all give the same maths)",
    )
    p.add_argument(
        "--data-device",
        choices=["auto", "cpu"],
        help="auto (default): keep the uint8 data on the training device when it fits",
    )
    p.add_argument(
        "--nproc",
        type=int,
        help="train on N processes on this machine with DistributedDataParallel (torchrun); "
        "--batch-size is the global batch",
    )
    p.add_argument(
        "--sync-bn",
        action="store_true",
        help="with several processes: batch norm statistics over the global batch",
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
    p.add_argument("--preset", help="a named preset of the model (see `gankit models`)")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and stop")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _train_overrides(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split CLI flags and --set pairs into model and training overrides (strictly)."""
    from .config import TrainConfig, parse_assignments
    from .models import MODELS

    train_fields = set(TrainConfig.__dataclass_fields__)
    mo: dict[str, Any] = {}
    to: dict[str, Any] = {}
    if args.resolution is not None:
        mo["resolution"] = args.resolution
    if args.channels is not None:
        mo["channels"] = args.channels
    flags = {
        "data_root": args.data_root,
        "max_images": args.max_images,
        "epochs": args.epochs,
        "kimg": args.kimg,
        "max_seconds": args.max_seconds,
        "batch_size": args.batch_size,
        "lr_g": args.lr_g,
        "lr_d": args.lr_d,
        "seed": args.seed,
        "objective": args.objective,
        "reg": args.reg,
        "n_critic": args.n_critic,
        "optimizer": args.optimizer,
        "sample_every_kimg": args.sample_every_kimg,
        "ckpt_every_kimg": args.ckpt_every_kimg,
        "device": args.device,
        "preset": args.preset,
        "precision": args.precision,
        "eval_every_kimg": args.eval_every_kimg,
        "eval_metrics": args.eval_metrics,
        "keep_best": args.keep_best,
    }
    if args.lr is not None:
        flags["lr_g"] = flags["lr_g"] if flags["lr_g"] is not None else args.lr
        flags["lr_d"] = flags["lr_d"] if flags["lr_d"] is not None else args.lr
    to.update({k: v for k, v in flags.items() if v is not None})
    if args.folder_labels:
        to["folder_labels"] = True
    if args.no_download:
        to["download"] = False
    if args.no_ema:
        to["ema"] = False
    if args.channels_last is not None:
        to["channels_last"] = args.channels_last
    if args.compile:
        to["compile"] = True
    if args.sync_bn:
        to["sync_bn"] = True
    if args.optimizer_impl is not None:
        to["optimizer_impl"] = args.optimizer_impl
    if args.data_device is not None:
        to["data_device"] = args.data_device
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
    from .api import train
    from .training.trainer import TrainResult

    if args.resume is None and not args.model:
        raise UserError("name a model to train (see `gankit models`), or pass --resume RUN")
    if args.resume is not None and args.data is not None:
        raise UserError("--data cannot change when resuming; drop it")
    mo, to = _train_overrides(args)
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
    from .distributed import current_world

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
    from .distributed import launch, launched_by_torchrun

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


def cmd_sample(args: argparse.Namespace) -> int:
    from .sampling import sample_to_file

    info = sample_to_file(
        args.run,
        args.out or "samples.png",
        seeds=args.seeds,
        label=args.label,
        truncation=args.trunc,
        ema=not args.no_ema,
        device=args.device,
    )
    which = "G_ema" if info["ema"] else "G"
    print(
        f"wrote {info['images']} samples from {which} of {info['checkpoint']} "
        f"({info['nimg']} images seen) -> {', '.join(info['written'][:3])}"
        + (" ..." if len(info["written"]) > 3 else "")
    )
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .metrics import evaluate_real, evaluate_run, format_table, list_metrics

    if args.list:
        print("metric names are KIND COUNT _ FEATURES, e.g. fd5k_mnistcnn, fid10k_inception;")
        print("features: inception, mnistcnn (domain classifier), pixel; ring8/grid25 for modes")
        for kind, desc in list_metrics():
            print(f"  {kind:<6} {desc}")
        return 0
    if not args.run:
        raise UserError("name a run folder or checkpoint to evaluate (or --list)")
    if not args.metrics:
        raise UserError("give --metrics, e.g. --metrics fd5k_mnistcnn,kid5k_mnistcnn (or --list)")
    common = {
        "seed": args.seed,
        "evaluator": args.evaluator,
        "inception_weights": args.inception_weights,
        "device": args.device,
        "use_cache": not args.no_cache,
    }
    records = evaluate_run(
        args.run,
        args.metrics,
        ema=not args.no_ema,
        data=args.data,
        data_root=args.data_root,
        split=args.ref,
        download=False if args.no_download else None,
        append=not args.no_append,
        log=(lambda m: print(f"gankit: {m}", file=sys.stderr)) if args.verbose else None,
        **common,
    )
    if args.floor:
        from .checkpoint import load_checkpoint

        rc = load_checkpoint(args.run).meta["run_config"]
        real = evaluate_real(
            args.data or rc["train"]["data"],
            [r["metric"] for r in records if not r["metric"].startswith(("acc", "modes"))],
            resolution=int(rc["model_config"]["resolution"]),
            channels=int(rc["model_config"]["channels"]),
            data_root=args.data_root or rc["train"].get("data_root"),
            download=not args.no_download and bool(rc["train"].get("download", True)),
            **common,
        )
        records = records + real
    first = records[0] if records else {}
    print(
        f"{first.get('model', '?')} at {first.get('nimg', '?')} images "
        f"({first.get('checkpoint', '?')})"
    )
    print(format_table(records))
    if not args.no_append:
        print(f"appended to {Path(str(first.get('run'))) / 'eval.jsonl'}")
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    import torch

    from .analysis.dfeatures import (
        C_GRID,
        format_probe,
        probe_report,
        random_discriminator,
        save_probe_figure,
    )
    from .data import load_dataset
    from .files import atomic_write_bytes
    from .sampling import load

    run = load(args.run)
    if not run.checkpoint.has("D"):
        raise UserError(f"{run.checkpoint.path} has no D weights to take features from")
    rc = run.checkpoint.meta["run_config"]
    mc, train = rc["model_config"], rc["train"]
    data = args.data or train["data"]
    common = {
        "resolution": int(mc["resolution"]),
        "channels": int(mc["channels"]),
        "root": args.data_root or train.get("data_root"),
        "download": not args.no_download,
    }
    tr = load_dataset(data, train=True, **common)
    te = load_dataset(data, train=False, **common)
    if tr.labels is None or te.labels is None:
        raise UserError(f"{data} has no class labels; a probe needs labelled data")
    n_test = len(te) if args.test is None else min(args.test, len(te))
    random_d, random_seed = random_discriminator(run, args.random_seed)
    results = probe_report(
        run.model.D,
        random_d,
        tr.batch(torch.arange(len(tr)))[0],
        tr.labels,
        te.batch(torch.arange(n_test))[0],
        te.labels[:n_test],
        per_class=args.per_class,
        seed=args.seed,
        C=C_GRID if args.C is None else args.C,
        fixed_label=0 if run.model.spec.conditional else None,
    )
    print(format_probe(results))
    if args.out:
        out = Path(args.out)
    elif Path(args.run).suffix == ".safetensors":
        out = Path(args.run).with_suffix(".probe.json")
    else:
        out = Path(args.run) / "probe.json"
    print(f"(random D: the same architecture initialised with seed {random_seed})")
    report = {"run": str(args.run), "nimg": run.checkpoint.nimg, "data": data,
              "per_class": args.per_class, "label_seed": args.seed, "random_d_seed": random_seed,
              "results": [asdict(r) for r in results]}  # fmt: skip
    atomic_write_bytes(out, (json.dumps(report, indent=2) + "\n").encode())
    title = f"{run.model.name} D ({run.checkpoint.nimg:,} images) as features, {data}"
    fig = save_probe_figure(results, out.with_suffix(".png"), title)
    print(f"report: {out}  figure: {fig}")
    return 0


def cmd_memorisation(args: argparse.Namespace) -> int:
    from .analysis.memorisation import memorisation_report
    from .metrics.protocol import ExtractorOptions

    extractor = None
    if args.features != "pixel":
        from .checkpoint import load_checkpoint

        data = args.data or load_checkpoint(args.run).meta["run_config"]["train"]["data"]
        opts = ExtractorOptions(
            data=data,
            evaluator=args.evaluator,
            inception_weights=args.inception_weights,
            device=args.device,
        )
        extractor = opts.get(args.features)
    report = memorisation_report(
        args.run,
        data=args.data,
        data_root=args.data_root,
        n=args.n,
        seed=args.seed,
        extractor=extractor,
        out_dir=args.out,
        ema=not args.no_ema,
        device=args.device,
    )
    for space, st in report["spaces"].items():
        if st.get("ratio_median") is None:
            st["ratio_median"] = float("nan")  # held-out median 0: every held-out image repeats
        print(
            f"{space:>9}: median distance to the nearest training image: generated "
            f"{st['median_generated']:.4g}, held-out real {st['median_heldout']:.4g} "
            f"(ratio {st['ratio_median']:.3g}); near copies {st['near_copy_fraction']:.1%}"
        )
    for note in report.get("notes", []):
        print(f"note: {note}")
    for space, path in report["figures"].items():
        print(f"figure ({space}): {path}")
    return 0


def _out_prefix(run_arg: str, out: str | None, default: str) -> Path:
    """Where a figure goes: --out (a path without suffix) or RUN/<default> (the run folder of a
    checkpoint file when one was given)."""
    from .checkpoint import run_folder

    if out:
        return Path(out).with_suffix("") if Path(out).suffix in (".png", ".gif") else Path(out)
    return run_folder(run_arg) / default


def _classes(text: str | None) -> list[int] | None:
    from .sampling import parse_seeds

    return None if text is None else parse_seeds(text)


def cmd_interpolate(args: argparse.Namespace) -> int:
    from .analysis.latent_walks import make_walk, save_walk_figures, smoothness, walk_title
    from .data.base import to_uint8
    from .files import atomic_write_json
    from .sampling import load, parse_seeds, render

    run = load(args.run, device=args.device, ema=not args.no_ema)
    seeds, classes = parse_seeds(args.seeds), _classes(args.label)
    if run.num_classes and classes is None:
        classes = [0]
        print("gankit: class-conditional model: walking at class 0 (choose with --class)")
    if classes is not None and not run.num_classes:
        raise UserError(f"{run.model.name} is not class-conditional; drop --class")
    if args.steps < 2 or args.steps > 200:
        raise UserError(f"--steps must be between 2 and 200 (got {args.steps})")
    try:
        walk = make_walk(run.G, seeds, args.steps, args.slerp, classes, run.num_classes)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    frames = render(run, walk.z, walk.y)
    measured = {"pixels": smoothness(frames)}
    if args.features != "pixel":
        from .metrics.protocol import ExtractorOptions

        data = run.checkpoint.meta["run_config"]["train"]["data"]
        opts = ExtractorOptions(data=data, evaluator=args.evaluator, device=args.device)
        measured[args.features] = smoothness(opts.get(args.features)(to_uint8(frames)).features)
    prefix = _out_prefix(args.run, args.out, "interpolate")
    paths = save_walk_figures(frames, walk, prefix, measured)
    report = {
        "run": str(args.run), "checkpoint": str(run.checkpoint.path), "nimg": run.checkpoint.nimg,
        "walk": walk_title(walk), "seeds": walk.seeds, "classes": walk.classes,
        "steps": walk.steps, "slerp": walk.spherical, "frames": int(frames.shape[0]),
        "smoothness": {k: v.to_json() for k, v in measured.items()},
        "figures": {k: str(v) for k, v in paths.items()},
    }  # fmt: skip
    atomic_write_json(prefix.with_name(prefix.name + ".json"), report)
    print(f"{walk_title(walk)}: {frames.shape[0]} frames")
    for name, sm in measured.items():
        print(
            f"  step size ({name}, RMS): mean {sm.mean:.4g}, max {sm.max:.4g}, "
            f"max/mean {sm.max_over_mean:.2f}" + ("  <- a jump" if sm.max_over_mean > 3 else "")
        )
    print(f"  grid: {paths['grid']}  animation: {paths['gif']}  steps: {paths['steps']}")
    return 0


def _domain_classifier(run: Any, evaluator: str | None, data: str | None = None) -> Any:
    """The domain classifier of the run's training data (or `data`, or the file `evaluator`)."""
    from .metrics.classifier import find_classifier

    spec = data or run.checkpoint.meta["run_config"]["train"]["data"]
    return find_classifier(spec, evaluator, device=run.device)


def cmd_arithmetic(args: argparse.Namespace) -> int:
    from .analysis.arithmetic import pick_seeds, run_arithmetic, save_arithmetic_figure
    from .analysis.attributes import ink, make_attribute, parse_attribute
    from .data.base import to_uint8
    from .files import atomic_write_json
    from .sampling import check_class, generate, load, parse_seeds, render

    run = load(args.run, device=args.device, ema=not args.no_ema)
    check_class(run, args.label)
    label = args.label if args.label is not None else (0 if run.num_classes else None)

    def labels_for(n: int) -> list[int] | None:
        return None if label is None else [label] * n

    specs = {}
    for name in ("a", "b", "c"):
        given = getattr(args, name)
        if given is None:
            raise UserError(f"give --{name} (seeds such as 1,2,3 or an attribute such as class=7)")
        specs[name] = None if given[:1].isdigit() else parse_attribute(given)
    classifier = None
    if any(s is not None and s.needs_classifier for s in specs.values()):
        classifier = _domain_classifier(run, args.evaluator)
    pool = parse_seeds(args.pool)
    groups, scores, titles = {}, {}, {}
    for name, spec in specs.items():
        given = getattr(args, name)
        if spec is None:
            groups[name] = parse_seeds(given)
            titles[name] = f"seeds {given}"
            continue
        attr = make_attribute(
            spec, classifier and classifier.classify, classifier and classifier.num_classes
        )
        groups[name], scores[name] = pick_seeds(
            lambda s: generate(run, s, labels_for(len(s))), attr, pool, args.per_group
        )
        titles[name] = f"{given} (seeds {','.join(map(str, groups[name]))})"
    res = run_arithmetic(
        run.G, lambda z: render(run, z, labels_for(z.shape[0])), groups, args.draws, args.noise
    )
    prefix = _out_prefix(args.run, args.out, "arithmetic")
    fig = save_arithmetic_figure(res, prefix.with_name(prefix.name + ".png"), titles)
    report = {
        "run": str(args.run), "nimg": run.checkpoint.nimg, "groups": groups, "scores": scores,
        "titles": titles, "draws": args.draws, "noise": args.noise, "figure": str(fig),
        "ink": {**{f"mean z of {k}": float(ink(v)[0]) for k, v in res.means.items()},
                "result": float(ink(res.result[:1])[0]),
                "result draws (mean)": float(ink(res.result).mean())},
    }  # fmt: skip
    if classifier is not None:
        logits = classifier.classify(to_uint8(res.result))
        counts = logits.argmax(1).bincount(minlength=logits.shape[1]).tolist()
        report["result_classes"] = counts
        print(f"classifier on the {args.draws} result images: {_class_counts(counts)}")
    atomic_write_json(prefix.with_name(prefix.name + ".json"), report)
    for name in ("a", "b", "c"):
        ink_mean = report["ink"][f"mean z of {name}"]
        print(f"  {name}: {titles[name]}; ink of G(mean z) {ink_mean:.3f}")
    print(f"  a - b + c: ink {report['ink']['result']:.3f}")
    print(f"figure: {fig}")
    return 0


def _class_counts(counts: list[int]) -> str:
    return ", ".join(f"{c}: {n}" for c, n in enumerate(counts) if n)


def cmd_codes(args: argparse.Namespace) -> int:
    from .analysis.infogan import categorical_purity, save_code_sweep_figure
    from .files import atomic_write_json
    from .sampling import load, parse_seeds

    run = load(args.run, device=args.device, ema=not args.no_ema)
    if not run.model.spec.codes:
        raise UserError(f"{run.model.name} has no latent codes to sweep (an infogan model has)")
    prefix = _out_prefix(args.run, args.out, "codes")
    fig = save_code_sweep_figure(
        run.G, prefix.with_name(prefix.name + ".png"), parse_seeds(args.seeds), args.steps,
        args.span, title=f"{run.model.name}, {run.checkpoint.nimg:,} images",
    )  # fmt: skip
    print(f"code sweeps: {fig}")
    if args.purity:
        from .metrics.protocol import ExtractorOptions

        data = run.checkpoint.meta["run_config"]["train"]["data"]
        classify = ExtractorOptions(data=data, evaluator=args.evaluator).get("mnistcnn").classify
        purity = categorical_purity(run.G, classify, n_per_code=args.purity)
        atomic_write_json(prefix.with_name(prefix.name + "-purity.json"), purity)
        print(json.dumps(purity, indent=2))
    return 0


def cmd_mixing(args: argparse.Namespace) -> int:
    from .analysis.style_mixing import save_style_mixing_figure
    from .sampling import load, parse_seeds

    run = load(args.run, device=args.device, ema=not args.no_ema)
    if not run.model.spec.style_mixing:
        raise UserError(f"{run.model.name} has no style inputs to mix (a stylegan model has)")
    prefix = _out_prefix(args.run, args.out, "mixing")
    try:
        fig = save_style_mixing_figure(
            run.G, parse_seeds(args.rows), parse_seeds(args.cols),
            prefix.with_name(prefix.name + ".png"), args.crossover, args.trunc,
        )  # fmt: skip
    except ValueError as exc:
        raise UserError(str(exc)) from None
    print(f"style mixing (rows: coarse styles, columns: fine styles): {fig}")
    return 0


def cmd_truncation(args: argparse.Namespace) -> int:
    from .analysis.truncation import save_truncation_figure, truncation_sweep
    from .files import atomic_write_json
    from .sampling import check_class, load, parse_seeds

    run = load(args.run, device=args.device, ema=not args.no_ema)
    check_class(run, args.label)
    try:
        values = [None if v in ("none", "") else float(v) for v in args.values.split(",")]
    except ValueError:
        raise UserError(f"bad --values {args.values!r}; use e.g. 0.5,1,2,none") from None
    sweep = truncation_sweep(run, values, parse_seeds(args.seeds), args.label)
    prefix = _out_prefix(args.run, args.out, "truncation")
    what = "psi in w" if sweep.space == "w" else "threshold in z"
    fig = save_truncation_figure(
        sweep, prefix.with_name(prefix.name + ".png"), f"{run.model.name}: truncation ({what})"
    )
    atomic_write_json(
        prefix.with_name(prefix.name + ".json"),
        {"run": str(args.run), "nimg": run.checkpoint.nimg, "space": sweep.space,
         "values": sweep.values, "variety": sweep.variety, "figure": str(fig)},
    )  # fmt: skip
    for v, var in zip(sweep.values, sweep.variety, strict=True):
        print(f"  {'none' if v is None else v:>6}: variety (mean pixel std) {var:.4f}")
    print(f"figure: {fig}")
    return 0


def cmd_features(args: argparse.Namespace) -> int:
    import io

    import numpy as np
    import torch

    from .analysis.dfeatures import discriminator_features, random_discriminator
    from .data import load_dataset
    from .files import atomic_write_bytes
    from .sampling import load

    run = load(args.run, device=args.device)
    if not run.checkpoint.has("D"):
        raise UserError(f"{run.checkpoint.path} has no D weights to take features from")
    mc, train = run.checkpoint.meta["run_config"]["model_config"], run.checkpoint.meta[
        "run_config"]["train"]  # fmt: skip
    data = args.data or train["data"]
    ds = load_dataset(
        data, train=args.split == "train", resolution=int(mc["resolution"]),
        channels=int(mc["channels"]), root=args.data_root or train.get("data_root"),
        download=not args.no_download,
    )  # fmt: skip
    n = len(ds) if args.n is None else min(args.n, len(ds))
    images, labels = ds.batch(torch.arange(n))
    D = run.model.D
    if args.random_d:
        D, _ = random_discriminator(run, args.seed)
    # A conditional D gets label 0 for every image: its true label would leak into the features.
    fixed = torch.zeros(n, dtype=torch.long) if run.model.spec.conditional else None
    feats = discriminator_features(D, images, fixed)
    out = Path(args.out or "features.npz")
    if out.suffix != ".npz":
        raise UserError(f"--out must end in .npz (got {out.name})")
    buf = io.BytesIO()
    np.savez_compressed(
        buf, x=feats.numpy(),
        y=np.asarray([] if labels is None else labels.numpy(), dtype=np.int64),
    )  # fmt: skip
    atomic_write_bytes(out, buf.getvalue())
    which = "randomly initialised D" if args.random_d else "trained D"
    print(f"{n} {args.split} images of {data} -> {feats.shape[1]} features each ({which}): {out}")
    return 0


def cmd_ablate(args: argparse.Namespace) -> int:
    from .analysis import ablation as ab
    from .sampling import load, parse_seeds

    if args.list:
        print(ab.format_layers(ab.generator_layers(load(args.run, ema=not args.no_ema).G)))
        return 0
    picked = [f for f in ("channels", "region", "attribute") if getattr(args, f) is not None]
    if args.layer is None or not picked:
        raise UserError("give --layer N and --channels, --region or --attribute (or --list)")
    if args.region is not None and args.attribute is not None:
        raise UserError("choose channels by --region or by --attribute, not both")
    report = ab.ablate_run(
        args.run,
        args.layer,
        channels=None if args.channels is None else ab.parse_int_list(args.channels, "channels"),
        region=None if args.region is None else ab.parse_int_list(args.region, "region"),
        attribute=args.attribute,
        label=args.label,
        top=args.top,
        n=args.n,
        seeds=parse_seeds(args.seeds),
        causal=args.causal,
        out=args.out,
        data=args.data,
        evaluator=args.evaluator,
        ema=not args.no_ema,
        device=args.device,
    )
    if report["finder"]:
        f = report["finder"]
        pairs = zip(f["channels"], f["scores"], strict=True)
        print(f"top channels by {f['method']}: " + ", ".join(f"{c} ({s:.3g})" for c, s in pairs))
    print("\n".join(report["summary"]))
    print(f"figure: {report['figure']}\nreport: {report['report']}")
    return 0


def cmd_filters(args: argparse.Namespace) -> int:
    from .analysis.filters import filter_report, format_report, parse_channels

    report = filter_report(
        args.run,
        layer=args.layer,
        channels=parse_channels(args.channels) if args.channels else None,
        top=args.top,
        n=args.n,
        data=args.data,
        data_root=args.data_root,
        download=False if args.no_download else None,
        seed=args.seed,
        random_seed=args.random_seed,
        out_dir=args.out,
        device=args.device,
        count=args.count,
        one_per_image=args.one_per_image,
    )
    print(format_report(report))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from .models import MODELS

    width = max(len(n) for n in MODELS.names())
    for name, spec in MODELS.items():
        tag = " [conditional]" if spec.conditional else ""
        if spec.presets:
            tag += f" (presets: {', '.join(spec.presets)})"
        print(f"{name:<{width}}  {spec.description}{tag}")
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from .data import list_datasets

    rows = list_datasets()
    width = max(len(n) for n, _ in rows)
    for name, desc in rows:
        print(f"{name:<{width}}  {desc}")
    return 0


def cmd_objectives(args: argparse.Namespace) -> int:
    from .objectives import OBJECTIVES
    from .regularisers import REGULARISERS

    for title, registry in (
        ("objectives (--objective)", OBJECTIVES),
        ("regularisers (--reg)", REGULARISERS),
    ):
        print(title)
        for name, cls in registry.items():
            opts = ":".join(f"{k}={v:g}" for k, v in cls.options.items())
            print(f"  {name + (':' + opts if opts else ''):<28}  {cls.description}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """A local web page over a run: samples, classes, truncation, walks, codes, mixing."""
    from .serve.app import ANY_HOST, check_loopback, create_app, serve, served_hosts

    if not 0 <= args.port <= 65535:
        raise UserError(f"--port must be in 0..65535 (got {args.port})")
    hosts = served_hosts(args.host, args.allowed_hosts)
    app = create_app(args.run, device=args.device, allowed_hosts=hosts)  # loads the checkpoint
    if not check_loopback(args.host):
        names = "any host name" if ANY_HOST in hosts else "the host names " + ", ".join(hosts)
        print(
            f"gankit: warning: serving on {args.host}: anyone who can reach this machine can "
            "use the page (the default, 127.0.0.1, is this machine only); it answers to "
            f"{names} (--allowed-hosts adds the names you browse it by)",
            file=sys.stderr,
        )
    shown = f"[{args.host}]" if ":" in args.host else args.host

    def listening(port: int) -> None:  # printed once it accepts connections: scripts wait for it
        print(f"gankit: serving {args.run} at http://{shown}:{port}/ (Ctrl-C to stop)", flush=True)

    serve(app, args.host, args.port, listening)  # until Ctrl-C or SIGTERM: a clean shutdown
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(
        outdir=Path(args.outdir), seconds_per_model=args.seconds, progress=not args.no_progress
    )
    return 0


def _add_evaluator(sub: Any) -> None:
    ev = sub.add_parser(
        "evaluator",
        help="train or inspect the domain classifier (mnistcnn) that metrics measure with",
        description="The domain classifier: a small CNN trained on real data whose features "
        "and logits the metrics use where Inception does not fit (28x28 digits).",
    )
    ev_sub = ev.add_subparsers(dest="evaluator_command", metavar="ACTION", parser_class=_Parser)
    ev_sub.required = True
    t = ev_sub.add_parser(
        "train",
        help="train it on a labelled dataset and report held-out accuracy",
        description="Train the domain classifier on SPEC's training split, measure its "
        "accuracy on held-out images and save it (default: $GANKIT_CACHE/evaluators/).",
    )
    t.add_argument("--data", required=True, help="mnist, digits, fashion-mnist, npz:PATH, ...")
    t.add_argument("--data-root", help="where torchvision datasets live (default ./data)")
    t.add_argument("--no-download", action="store_true", help="never try to download data")
    t.add_argument("--epochs", type=int, help="passes over the training images (default 12)")
    t.add_argument("--batch-size", type=int, help="images per step (default 128)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", help="file to write (default: the cache path metrics look in)")
    t.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    t.add_argument("--max-images", type=int, help="train on only the first N training images")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    s = ev_sub.add_parser("show", help="print a trained classifier's stored record")
    s.add_argument("path", nargs="?", help="classifier .safetensors file")
    s.add_argument("--data", help="show the default classifier for this dataset spec instead")


def cmd_evaluator(args: argparse.Namespace) -> int:
    from .metrics import classifier as clf

    if args.evaluator_command == "show":
        if (args.path is None) == (args.data is None):
            raise UserError("name a classifier file or pass --data SPEC (one of the two)")
        ex = clf.find_classifier(args.data or "", args.path)
        print(json.dumps({"path": str(ex.path), "checksum": ex.checksum, **ex.meta}, indent=2))
        return 0
    opts: dict[str, Any] = {"epochs": args.epochs, "batch_size": args.batch_size}
    result = clf.train_classifier(
        args.data,
        data_root=args.data_root,
        download=not args.no_download,
        seed=args.seed,
        device=args.device,
        out=args.out,
        max_images=args.max_images,
        progress=not args.no_progress,
        **{k: v for k, v in opts.items() if v is not None},
    )
    print(
        f"held-out accuracy {result.accuracy:.2%} on {result.n_test} images "
        f"({result.held_out}); trained on {result.n_train} images in {result.seconds:.0f} s "
        f"-> {result.path}"
    )
    if result.data in clf.MNIST_LIKE and result.accuracy < clf.TARGET_ACCURACY:
        print(
            f"gankit: warning: accuracy is below {clf.TARGET_ACCURACY:.0%}, which a digit "
            "classifier should reach; metrics measured with it will be less reliable "
            "(train longer with --epochs)",
            file=sys.stderr,
        )
    return 0


def _add_inside(sub: Any) -> None:
    """The commands that look inside a trained model (the DCGAN paper's section 6)."""
    common = _Parser(add_help=False)
    common.add_argument("run", help="run folder or checkpoint .safetensors file")
    common.add_argument("--out", help="output path without suffix (default: in the run folder)")
    common.add_argument("--no-ema", action="store_true", help="use G instead of G_ema")
    common.add_argument("--device", default="cpu")
    i = sub.add_parser(
        "interpolate", parents=[common],
        help="a latent walk between seeds (and classes): grid, animation, smoothness",
        description="Walk through the latents of --seeds (and, for a conditional model, the "
        "class embeddings of --class), write a grid (one leg per row), a looping GIF and a "
        "plot of the step sizes, and print how even the steps are: a smooth walk has max/mean "
        "near 1; a jump (a sign of memorisation) shows as a large max/mean.",
    )  # fmt: skip
    i.add_argument("--seeds", default="3,17", help="waypoint seeds, e.g. 3,17,42 (default 3,17)")
    i.add_argument("--steps", type=int, default=10, help="frames per leg, ends included")
    i.add_argument("--slerp", action="store_true", help="spherical instead of linear in z")
    i.add_argument("--class", dest="label", help="class (or one per waypoint, e.g. 1,7)")
    i.add_argument(
        "--features", default="pixel",
        help="also measure step sizes in a feature space: mnistcnn or inception",
    )  # fmt: skip
    i.add_argument("--evaluator", metavar="PATH", help="domain classifier file (mnistcnn)")
    a = sub.add_parser(
        "arithmetic", parents=[common],
        help="vector arithmetic a - b + c on averaged latents",
        description="Average the z of each group, show G at mean(a) - mean(b) + mean(c) with "
        "noise draws around it, beside the group members. A group is seeds (1,2,3) or an "
        "attribute that picks the best --per-group seeds out of --pool: class=K (the domain "
        "classifier's probability), bold or thin (ink), or class=K:bold / class=K:thin.",
    )  # fmt: skip
    for name in ("a", "b", "c"):
        a.add_argument(f"--{name}", metavar="SEEDS|ATTR", help=f"group {name}")
    a.add_argument("--per-group", type=int, default=3, help="seeds per attribute group (3)")
    a.add_argument("--pool", default="0-499", help="candidate seeds for attributes (0-499)")
    a.add_argument("--draws", type=int, default=8, help="result images, the first noise-free")
    a.add_argument("--noise", type=float, default=0.25, help="uniform noise scale of the draws")
    a.add_argument("--class", dest="label", type=int, help="class for a conditional model")
    a.add_argument("--evaluator", metavar="PATH", help="domain classifier file (mnistcnn)")
    c = sub.add_parser(
        "codes", parents=[common], help="InfoGAN: sweep each latent code (rows: seeds)"
    )
    c.add_argument("--seeds", default="0-7", help="one row per seed (default 0-7)")
    c.add_argument("--steps", type=int, default=10, help="columns of a continuous sweep")
    c.add_argument("--span", type=float, default=2.0, help="continuous codes go -span..span")
    c.add_argument(
        "--purity", type=int, metavar="N", help="also measure categorical purity, N per code"
    )
    c.add_argument("--evaluator", metavar="PATH", help="domain classifier file (mnistcnn)")
    mx = sub.add_parser(
        "mixing", parents=[common],
        help="StyleGAN: style mixing grid (coarse styles from rows, fine from columns)",
    )  # fmt: skip
    mx.add_argument("--rows", default="0-4", help="seeds of the coarse styles (default 0-4)")
    mx.add_argument("--cols", default="5-10", help="seeds of the fine styles (default 5-10)")
    mx.add_argument("--crossover", type=int, help="first style input from the column seed")
    mx.add_argument("--trunc", type=float, help="psi in (0, 1]")
    t = sub.add_parser(
        "truncation", parents=[common],
        help="the same seeds at several truncation levels, with their variety",
    )  # fmt: skip
    t.add_argument(
        "--values", default="none,2,1,0.5,0.25",
        help="thresholds in z, or psi in (0, 1] for stylegan; 'none' = no truncation",
    )  # fmt: skip
    t.add_argument("--seeds", default="0-9", help="one column per seed (default 0-9)")
    t.add_argument("--class", dest="label", type=int, help="class for a conditional model")
    f = sub.add_parser(
        "features",
        help="extract D's features (every conv layer max-pooled to 4x4) to an .npz",
        description="The DCGAN paper's feature extractor: every conv layer's activations of "
        "D, max-pooled to 4x4, flattened and concatenated. Writes x [N, F] and labels y.",
    )
    f.add_argument("run", help="run folder or checkpoint .safetensors file")
    f.add_argument("--out", help="output .npz (default features.npz)")
    f.add_argument("--data", help="images to describe (default: the run's data)")
    f.add_argument("--split", choices=["train", "test"], default="test")
    f.add_argument("--n", type=int, help="only the first N images")
    f.add_argument("--random-d", action="store_true", help="a freshly initialised D instead")
    f.add_argument("--seed", type=int, help="random D's seed (default: the training seed + 1)")
    f.add_argument("--data-root")
    f.add_argument("--no-download", action="store_true")
    f.add_argument("--device", default="cpu")


def _add_ablate(sub: Any) -> None:
    a = sub.add_parser(
        "ablate",
        help="zero chosen G feature maps (found by a region or an attribute) against a control",
        description="Remove feature maps of one G layer, as the DCGAN paper removed its window "
        "filters: give the channels, or let them be found by a region of the image "
        "(--region) or by the domain classifier's p(class) (--attribute class=K). Writes a "
        "figure of the same seeds before and after, with the same number of random channels "
        "ablated as a control, and a JSON report (default RUN/ablation-layerN.png/.json).",
    )
    a.add_argument("run", help="run folder or checkpoint .safetensors file")
    a.add_argument("--list", action="store_true", help="list G's ablatable layers and stop")
    a.add_argument("--layer", type=int, help="layer index (see --list)")
    a.add_argument("--channels", help="ablate these channels, e.g. 3,7")
    a.add_argument("--region", help="find channels firing in x0,y0,x1,y1 (output pixels)")
    a.add_argument(
        "--attribute",
        help="find channels driving an attribute: class=K (the classifier's p(K)), bold, thin",
    )
    a.add_argument("--causal", action="store_true", help="score by each channel's own ablation")
    a.add_argument("--top", type=int, default=10, help="channels to ablate (default 10)")
    a.add_argument("--n", type=int, default=500, help="samples to score and measure (500)")
    a.add_argument("--seeds", default="0-31", help="seeds in the figure (default 0-31)")
    a.add_argument("--class", dest="label", type=int, help="class label (conditional models)")
    a.add_argument("--out", help="folder or .png (default: the run folder)")
    a.add_argument("--data", help="data whose domain classifier to use (default: the run's)")
    a.add_argument("--evaluator", metavar="PATH", help="domain classifier file")
    a.add_argument("--no-ema", action="store_true", help="use G instead of G_ema")
    a.add_argument("--device", default="cpu")


def _add_filters(sub: Any) -> None:
    f = sub.add_parser(
        "filters",
        help="what D's filters respond to: first-layer filters, top patches, guided backprop",
        description="The DCGAN paper's filter views of a run's D next to a randomly "
        "initialised D of the same architecture: first-layer filters, the real patches that "
        "excite chosen channels of a layer most (cropped to each unit's receptive field) and "
        "their guided-backpropagation maps. Writes RUN/filters-first-layer.png and "
        "RUN/filters-layerN.png.",
    )
    f.add_argument("run", help="run folder or checkpoint .safetensors file")
    f.add_argument(
        "--layer", type=int, help="D's activation layer, 0 = first (default: deepest conv one)"
    )
    f.add_argument(
        "--channels",
        help="e.g. 3,7,12 or 0-7 (default: the --count with the highest mean top activation, "
        "chosen in each D)",
    )
    f.add_argument("--count", type=int, default=8, help="channels chosen by default (8)")
    f.add_argument("--top", type=int, default=9, help="patches per channel (default 9)")
    f.add_argument("--n", type=int, default=2000, help="real images searched (default 2000)")
    f.add_argument("--one-per-image", action="store_true", help="at most one patch per image")
    f.add_argument("--data", help="real images (default: the run's training data)")
    f.add_argument("--data-root")
    f.add_argument("--no-download", action="store_true")
    f.add_argument("--seed", type=int, default=0, help="which real images are searched")
    f.add_argument(
        "--random-seed", type=int, help="random D's seed (default: the training seed + 1)"
    )
    f.add_argument("--out", help="folder for the figures (default: the run folder)")
    f.add_argument("--device", default="cpu")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gankit", description="Train, sample and inspect GANs.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    _add_train(sub)
    s = sub.add_parser("sample", help="sample images from a run or checkpoint")
    s.add_argument("run", help="run folder or checkpoint .safetensors file")
    s.add_argument("--seeds", help="e.g. 0-63 or 1,5,9 (default 0-63; 0-9 per class row)")
    s.add_argument("--class", dest="label", type=int, help="class label (conditional models)")
    s.add_argument(
        "--trunc",
        type=float,
        help="truncation: threshold for z (e.g. 1.0); psi in w for stylegan (e.g. 0.7)",
    )
    s.add_argument(
        "--out", help="grid .png, .npz, or a folder (ends in /); default samples.png"
    )
    s.add_argument("--no-ema", action="store_true", help="use G instead of G_ema")
    s.add_argument("--device", default="cpu")
    e = sub.add_parser(
        "eval",
        help="score a run: FID/KID/IS, Frechet distance, precision/recall, accuracy, modes",
        description="Score a run's newest checkpoint (G_ema unless --no-ema). Results are "
        "printed and appended to RUN/eval.jsonl with their full protocol.",
    )
    e.add_argument("run", nargs="?", help="run folder or checkpoint .safetensors file")
    e.add_argument("--metrics", help="comma-separated, e.g. fd5k_mnistcnn,kid5k_mnistcnn")
    e.add_argument("--list", action="store_true", help="list the metric kinds and stop")
    e.add_argument("--floor", action="store_true", help="also score real held-out data")
    e.add_argument("--no-ema", action="store_true", help="score G instead of G_ema")
    e.add_argument("--seed", type=int, default=0, help="first latent seed (default 0)")
    e.add_argument("--data", help="reference data (default: the run's training data)")
    e.add_argument("--data-root", help="where the reference data lives")
    e.add_argument("--ref", choices=["train", "test"], default="train", help="reference split")
    e.add_argument("--evaluator", metavar="PATH", help="domain classifier file (mnistcnn)")
    e.add_argument("--inception-weights", metavar="PATH", help="Inception .pth weights file")
    e.add_argument("--no-download", action="store_true", help="never download data or weights")
    e.add_argument("--no-cache", action="store_true", help="do not read or write cached stats")
    e.add_argument("--no-append", action="store_true", help="do not write RUN/eval.jsonl")
    e.add_argument("--device", default="cpu")
    e.add_argument("--verbose", action="store_true", help="say what is being computed")
    pr = sub.add_parser(
        "probe",
        help="D as a feature extractor: a linear probe against random-D and pixel baselines",
        description="Extract D's features as the DCGAN paper did (every conv layer max-pooled "
        "to 4x4, concatenated), train an L2-regularised linear SVM on --per-class labelled "
        "training images per class, and report test accuracy next to the same probe on a "
        "randomly initialised D of the same architecture and on raw pixels.",
    )
    pr.add_argument("run", help="run folder or checkpoint .safetensors file")
    pr.add_argument("--per-class", type=int, default=100, help="labels per class (default 100)")
    pr.add_argument("--test", type=int, help="use only the first N test images")
    pr.add_argument(
        "--C", type=float,
        help="inverse L2 strength (default: chosen from 0.001-1 by 3-fold CV on the labels)",
    )  # fmt: skip
    pr.add_argument("--seed", type=int, default=0, help="which labelled images are drawn")
    pr.add_argument(
        "--random-seed", type=int, help="random D's seed (default: the training seed + 1)"
    )
    pr.add_argument("--data", help="labelled data (default: the run's)")
    pr.add_argument("--data-root")
    pr.add_argument("--no-download", action="store_true")
    pr.add_argument("--out", help="JSON report (default RUN/probe.json)")
    m = sub.add_parser(
        "memorisation",
        help="nearest training image of each sample, against held-out real data",
        description="Does G copy its training images? Compares each sample's distance to its "
        "nearest training image with the same distance for held-out real images, in pixel "
        "space and (with --features) in a feature space, and draws the nearest neighbours.",
    )
    m.add_argument("run", help="run folder or checkpoint .safetensors file")
    m.add_argument("--n", type=int, default=1000, help="generated samples (default 1000)")
    m.add_argument(
        "--features",
        default="pixel",
        help="pixel (default), mnistcnn or inception; pixel space is always measured too",
    )
    m.add_argument("--out", help="folder for the figures (default: the run folder)")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--data", help="training data (default: the run's)")
    m.add_argument("--data-root")
    m.add_argument("--evaluator", metavar="PATH", help="domain classifier file")
    m.add_argument("--inception-weights", metavar="PATH")
    m.add_argument("--no-ema", action="store_true", help="use G instead of G_ema")
    m.add_argument("--device", default="cpu")
    sub.add_parser("models", help="list the registered models")
    sub.add_parser("datasets", help="list the dataset specs")
    sub.add_parser("objectives", help="list the GAN objectives and regularisers")
    _add_evaluator(sub)
    _add_filters(sub)
    _add_ablate(sub)
    _add_inside(sub)
    v = sub.add_parser(
        "serve",
        help="explore a trained generator in the browser",
        description="Start a local web page for a run: sample grids with seeds, classes and "
        "truncation, latent walks, InfoGAN codes, StyleGAN style mixing, the run's facts, "
        "metrics and loss curve.",
    )
    v.add_argument("run", help="run folder or checkpoint .safetensors file")
    v.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    v.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    v.add_argument(
        "--allowed-hosts", metavar="NAMES",
        help="with a --host other than loopback: the comma-separated host names the page is "
        "browsed by, answered besides localhost and the --host address ('*': any name, which "
        "lets a DNS-rebinding page on another site drive the server)",
    )  # fmt: skip
    v.add_argument("--device", default="cpu")
    d = sub.add_parser("demo", help="train DCGAN and CGAN on the embedded digits (no download)")
    d.add_argument("--outdir", default="runs/demo")
    d.add_argument(
        "--seconds", type=float, default=150.0, help="training time budget per model (default 150)"
    )
    d.add_argument("--no-progress", action="store_true")
    _add_overwrite(parser)
    return parser


def _add_overwrite(parser: argparse.ArgumentParser) -> None:
    """`--overwrite` beside every `--out`: an explicit --out that exists is refused without it."""
    options = {o for a in parser._actions for o in a.option_strings}
    if "--out" in options and "--overwrite" not in options:
        parser.add_argument(
            "--overwrite", action="store_true", help="replace what --out names if it exists"
        )
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                _add_overwrite(child)


# What an explicit --out names, per command: "file", "folder", "probe" (a JSON and its figure),
# or the suffixes a figure command adds to its --out prefix.
_OUTPUTS: dict[str, str | tuple[str, ...]] = {
    "features": "file",
    "evaluator": "file",
    "probe": "probe",
    "memorisation": "folder",
    "filters": "folder",
    "interpolate": (".png", ".gif", "-steps.png", ".json"),
    "arithmetic": (".png", ".json"),
    "codes": (".png", "-purity.json"),
    "mixing": (".png",),
    "truncation": (".png", ".json"),
}


def _check_outputs(args: argparse.Namespace) -> None:
    """Refuse an explicit --out that exists (without --overwrite) before any work starts."""
    from .outputs import (
        check_file_target,
        check_folder_target,
        check_prefix_target,
        wants_folder,
    )

    out, overwrite = getattr(args, "out", None), getattr(args, "overwrite", False)
    if not out or args.command == "train":
        return
    kind = _OUTPUTS.get(args.command)
    if args.command in ("sample", "ablate"):
        suffix = "" if wants_folder(out) else Path(out).suffix.lower()
        if suffix == "":
            if args.command == "sample":
                check_folder_target(out, overwrite)
            else:  # ablate writes its named figure and report into the folder
                layer = "" if args.layer is None else str(args.layer)
                stem = Path(out) / f"ablation-layer{layer}"
                check_prefix_target(stem, overwrite, (".png", ".json"))
            return
        if args.command == "ablate":
            check_prefix_target(Path(out).with_suffix(""), overwrite, (".png", ".json"))
            return
        kind = "file"
    if kind == "file":
        check_file_target(out, overwrite)
    elif kind == "probe":
        check_file_target(out, overwrite)
        check_file_target(Path(out).with_suffix(".png"), overwrite)
    elif kind == "folder":
        check_folder_target(out, overwrite)
    elif isinstance(kind, tuple):
        if wants_folder(out):
            raise UserError(f"--out is a path without suffix here, not a folder (got {out})")
        check_prefix_target(_out_prefix(args.run, out, args.command), overwrite, kind)


COMMANDS = {
    "train": cmd_train,
    "sample": cmd_sample,
    "eval": cmd_eval,
    "memorisation": cmd_memorisation,
    "probe": cmd_probe,
    "filters": cmd_filters,
    "features": cmd_features,
    "interpolate": cmd_interpolate,
    "arithmetic": cmd_arithmetic,
    "codes": cmd_codes,
    "mixing": cmd_mixing,
    "truncation": cmd_truncation,
    "models": cmd_models,
    "datasets": cmd_datasets,
    "objectives": cmd_objectives,
    "evaluator": cmd_evaluator,
    "demo": cmd_demo,
    "serve": cmd_serve,
    "ablate": cmd_ablate,
}


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one readable line, not a source excerpt."""
    print(f"gankit: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `gankit` command; returns the exit code."""
    from .terminal import escaped_output

    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv  # `train --nproc N` relaunches itself under torchrun with these
    with escaped_output(), warnings.catch_warnings():
        warnings.showwarning = _one_line_warning
        return _run(args)


# Commands that handle SIGINT/SIGTERM themselves: training stops at a step boundary with a
# checkpoint; uvicorn shuts the server down gracefully.
_OWN_SIGNALS = ("train", "demo", "serve")


def _run(args: argparse.Namespace) -> int:
    """Run one parsed command; every failure ends as one line on stderr and an exit code."""
    from .device import resolve_device
    from .terminal import Interrupted, signals_as_exceptions
    from .training.guards import SIGNAL_NAMES, WRITE_ERRNOS, RunFolderError
    from .training.trainer import TrainingDiverged, TrainingInterrupted

    started = time.time()
    signals = (
        contextlib.nullcontext() if args.command in _OWN_SIGNALS else signals_as_exceptions()
    )
    try:
        with signals:
            if getattr(args, "device", None) is not None and args.command != "train":
                args.device = str(resolve_device(args.device))  # one check for every command
            _check_outputs(args)
            return COMMANDS[args.command](args)
    except (Interrupted, KeyboardInterrupt) as exc:
        signum = exc.signum if isinstance(exc, Interrupted) else int(signal.SIGINT)
        print(
            f"\ngankit: stopped by {SIGNAL_NAMES.get(signum, f'signal {signum}')} after "
            f"{time.time() - started:.0f} s; files already complete were kept, half-written "
            "ones removed",
            file=sys.stderr,
        )
        return 128 + signum
    except TrainingInterrupted as exc:
        from .distributed import current_world

        if not current_world().is_main:  # rank 0 speaks for all
            return 128 + exc.signum
        name = SIGNAL_NAMES.get(exc.signum, f"signal {exc.signum}")
        if exc.checkpoint is None:
            state = "no checkpoint had been written"
        else:
            run = Path(str(exc.checkpoint)).parent.parent
            state = (
                f"state saved to {exc.checkpoint}"
                if exc.saved
                else f"stopped mid-step (second signal); the last checkpoint is {exc.checkpoint}"
            )
            state += f"; continue with: gankit train --resume {run}"
        print(
            f"\ngankit: stopped by {name} after {time.time() - started:.0f} s; {state}",
            file=sys.stderr,
        )
        return 128 + exc.signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM
    except TrainingDiverged as exc:
        print(f"gankit: error: {exc}", file=sys.stderr)
        return 3
    except RunFolderError as exc:
        print(f"gankit: error: {exc}", file=sys.stderr)
        return 1
    except UserError as exc:
        print(f"gankit: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `gankit ... | head`: the reader left; not an error of ours
        # point the real stdout at /dev/null, so that the flush at exit stays quiet
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.__stdout__.fileno())
        return 0
    except OSError as exc:  # a write that failed outside training (config, figures, samples)
        reason = WRITE_ERRNOS.get(exc.errno or 0) or exc.strerror or str(exc)
        where = f" {exc.filename}" if exc.filename else ""
        print(f"gankit: error: cannot write{where}: {reason}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
