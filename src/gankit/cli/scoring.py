"""`gankit sample`, `eval` and `evaluator`: images from a run and their scores."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import UserError
from .common import Parser


def add_parsers(sub: Any) -> None:
    s = sub.add_parser("sample", help="sample images from a run or checkpoint")
    s.add_argument("run", help="run folder or checkpoint .safetensors file")
    s.add_argument("--seeds", help="e.g. 0-63 or 1,5,9 (default 0-63; 0-9 per class row)")
    s.add_argument("--class", dest="label", type=int, help="class label (conditional models)")
    s.add_argument(
        "--trunc",
        type=float,
        help="truncation: threshold for z (e.g. 1.0); psi in w for stylegan (e.g. 0.7)",
    )
    s.add_argument("--out", help="grid .png, .npz, or a folder (ends in /); default samples.png")
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
    _add_evaluator(sub)


def cmd_sample(args: argparse.Namespace) -> int:
    from ..sampling import sample_to_file

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
    from ..metrics import evaluate_run, format_table, list_metrics

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
    records = evaluate_run(
        args.run,
        args.metrics,
        ema=not args.no_ema,
        data=args.data,
        data_root=args.data_root,
        split=args.ref,
        download=False if args.no_download else None,
        append=not args.no_append,
        floor=args.floor,
        log=(lambda m: print(f"gankit: {m}", file=sys.stderr)) if args.verbose else None,
        seed=args.seed,
        evaluator=args.evaluator,
        inception_weights=args.inception_weights,
        device=args.device,
        use_cache=not args.no_cache,
    )
    first = records[0] if records else {}
    print(
        f"{first.get('model', '?')} at {first.get('nimg', '?')} images "
        f"({first.get('checkpoint', '?')})"
    )
    print(format_table(records))
    if not args.no_append:
        print(f"appended to {Path(str(first.get('run'))) / 'eval.jsonl'}")
    return 0


def _add_evaluator(sub: Any) -> None:
    ev = sub.add_parser(
        "evaluator",
        help="train or inspect the domain classifier (mnistcnn) that metrics measure with",
        description="The domain classifier: a small CNN trained on real data whose features "
        "and logits the metrics use where Inception does not fit (28x28 digits).",
    )
    ev_sub = ev.add_subparsers(dest="evaluator_command", metavar="ACTION", parser_class=Parser)
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
    from ..metrics import classifier as clf

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


COMMANDS = {"sample": cmd_sample, "eval": cmd_eval, "evaluator": cmd_evaluator}
