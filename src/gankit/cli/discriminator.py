"""`gankit probe`, `features`, `filters` and `memorisation`: D and the training data."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..errors import UserError


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
    from dataclasses import asdict

    import torch

    from ..analysis.dfeatures import (
        C_GRID,
        format_probe,
        probe_report,
        random_discriminator,
        save_probe_figure,
    )
    from ..data import load_dataset
    from ..files import atomic_write_bytes
    from ..sampling import load

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


def cmd_features(args: argparse.Namespace) -> int:
    import io

    import numpy as np
    import torch

    from ..analysis.dfeatures import discriminator_features, random_discriminator
    from ..data import load_dataset
    from ..files import atomic_write_bytes
    from ..sampling import load

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
    from ..analysis.memorisation import memorisation_report
    from ..metrics.protocol import ExtractorOptions

    extractor = None
    if args.features != "pixel":
        from ..checkpoint import load_checkpoint

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


COMMANDS = {
    "probe": cmd_probe,
    "features": cmd_features,
    "filters": cmd_filters,
    "memorisation": cmd_memorisation,
}
