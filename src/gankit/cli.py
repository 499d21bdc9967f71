"""The `gankit` command: parse, validate, call the API, print. Nothing else lives here.

Usage errors end with one line on stderr and exit code 2; an interrupted training run saves a
checkpoint and exits 130.
"""

from __future__ import annotations

import argparse
import json
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
        action="store_true",
        help="NHWC memory layout for convolutions (faster on CPUs and GPUs)",
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
    if args.channels_last:
        to["channels_last"] = True
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
    from .training import train
    from .training.trainer import TrainResult

    if args.resume is None and not args.model:
        raise UserError("name a model to train (see `gankit models`), or pass --resume RUN")
    if args.resume is not None and args.data is not None:
        raise UserError("--data cannot change when resuming; drop it")
    mo, to = _train_overrides(args)
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


def cmd_sample(args: argparse.Namespace) -> int:
    from .sampling import sample_to_file

    info = sample_to_file(
        args.run,
        args.out,
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

    from .analysis.dfeatures import format_probe, probe_report
    from .checkpoint import atomic_write_bytes
    from .data import load_dataset
    from .models import create_model
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
    torch.manual_seed(args.seed)
    random_d = create_model(run.model.name, **mc).D
    results = probe_report(
        run.model.D,
        random_d,
        tr.batch(torch.arange(len(tr)))[0],
        tr.labels,
        te.batch(torch.arange(n_test))[0],
        te.labels[:n_test],
        per_class=args.per_class,
        seed=args.seed,
        C=args.C,
        y_for_d=run.model.spec.conditional,
    )
    print(format_probe(results))
    if args.out:
        out = Path(args.out)
    elif Path(args.run).suffix == ".safetensors":
        out = Path(args.run).with_suffix(".probe.json")
    else:
        out = Path(args.run) / "probe.json"
    report = {"run": str(args.run), "nimg": run.checkpoint.nimg, "data": data,
              "per_class": args.per_class, "results": [asdict(r) for r in results]}  # fmt: skip
    atomic_write_bytes(out, (json.dumps(report, indent=2) + "\n").encode())
    print(f"report: {out}")
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
    s.add_argument("--out", default="samples.png", help="grid .png, .npz, or a folder")
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
    pr.add_argument("--C", type=float, default=0.01, help="inverse L2 strength (default 0.01)")
    pr.add_argument("--seed", type=int, default=0, help="label draw and random-D seed")
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
    d = sub.add_parser("demo", help="train DCGAN and CGAN on the embedded digits (no download)")
    d.add_argument("--outdir", default="runs/demo")
    d.add_argument(
        "--seconds", type=float, default=150.0, help="training time budget per model (default 150)"
    )
    d.add_argument("--no-progress", action="store_true")
    return parser


COMMANDS = {
    "train": cmd_train,
    "sample": cmd_sample,
    "eval": cmd_eval,
    "memorisation": cmd_memorisation,
    "probe": cmd_probe,
    "models": cmd_models,
    "datasets": cmd_datasets,
    "objectives": cmd_objectives,
    "evaluator": cmd_evaluator,
    "demo": cmd_demo,
}


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one readable line, not a source excerpt."""
    print(f"gankit: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `gankit` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.showwarning = _one_line_warning
    from .training.trainer import TrainingDiverged, TrainingInterrupted

    started = time.time()
    try:
        return COMMANDS[args.command](args)
    except TrainingInterrupted as exc:
        print(
            f"\ngankit: interrupted after {time.time() - started:.0f} s; state saved to "
            f"{exc.checkpoint}; continue with --resume {Path(str(exc.checkpoint)).parent.parent}",
            file=sys.stderr,
        )
        return 130
    except TrainingDiverged as exc:
        print(f"gankit: error: {exc}", file=sys.stderr)
        return 3
    except UserError as exc:
        print(f"gankit: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
