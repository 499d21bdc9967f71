"""`gankit probe`, `features`, `filters` and `memorisation`: D and the training data."""

from __future__ import annotations

import argparse
from typing import Any


def add_parsers(sub: Any) -> None:
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
    _add_filters(sub)


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


def cmd_probe(args: argparse.Namespace) -> int:
    from ..analysis import probe_run

    result = probe_run(
        args.run, data=args.data, data_root=args.data_root, download=not args.no_download,
        per_class=args.per_class, seed=args.seed, C=args.C, test=args.test,
        random_seed=args.random_seed, out=args.out,
    )  # fmt: skip
    print("\n".join(result.lines()))
    return 0


def cmd_features(args: argparse.Namespace) -> int:
    from ..analysis import features_run

    result = features_run(
        args.run, data=args.data, split=args.split, n=args.n, random_d=args.random_d,
        seed=args.seed, data_root=args.data_root, download=not args.no_download, out=args.out,
        device=args.device,
    )  # fmt: skip
    print("\n".join(result.lines()))
    return 0


def cmd_filters(args: argparse.Namespace) -> int:
    from ..analysis.filters import filter_report, format_report, parse_channels

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


def cmd_memorisation(args: argparse.Namespace) -> int:
    from ..analysis import memorisation_run

    result = memorisation_run(
        args.run, features=args.features, n=args.n, seed=args.seed, data=args.data,
        data_root=args.data_root, evaluator=args.evaluator,
        inception_weights=args.inception_weights, out=args.out, ema=not args.no_ema,
        device=args.device,
    )  # fmt: skip
    print("\n".join(result.lines()))
    return 0


COMMANDS = {
    "probe": cmd_probe,
    "features": cmd_features,
    "filters": cmd_filters,
    "memorisation": cmd_memorisation,
}
