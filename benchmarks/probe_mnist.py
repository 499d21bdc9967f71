"""The discriminator as a feature extractor on MNIST (the DCGAN paper's section 5.1).

For each trained run: D's features (every conv layer max-pooled to 4x4, concatenated) for the
6,000 training and 1,000 test digits of ../shared/datasets, then a linear L2-SVM (C chosen by
3-fold cross-validation on the labelled examples only) on k labelled digits per class, scored
on all 1,000 test digits. Baselines in the same run: the same probe on raw pixels and on a
randomly initialised D of the same architecture (seed = training seed + 1). The label draw is
repeated with several seeds; the table gives mean and spread.

    python benchmarks/probe_mnist.py            # -> docs/bench_probe_mnist.json and a table
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from machine_info import machine  # benchmarks/ is on sys.path when a script runs

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT.parent / "runs"
# (name, run folder, label seeds): the first is the headline run, repeated over label draws.
DEFAULT_RUNS = [
    ("dcgan (840 s)", RUNS / "bench-eval" / "dcgan-mnist", (0, 1, 2)),
    ("dcgan (360 s)", RUNS / "bench-family" / "dcgan", (0,)),
    ("cdcgan (840 s)", RUNS / "bench-eval" / "cdcgan-mnist", (0,)),
    ("wgan-gp (360 s)", RUNS / "bench-family" / "wgan-gp", (0,)),
    ("infogan (840 s)", RUNS / "infogan-long", (0,)),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "datasets")
    ap.add_argument("--per-class", default="10,100", help="labelled digits per class")
    ap.add_argument("--n-jobs", type=int, default=2, help="parallel fits of the C search")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "bench_probe_mnist.json")
    args = ap.parse_args()

    import torch

    from gankit.analysis.dfeatures import (
        C_GRID,
        discriminator_features,
        few_labels,
        linear_probe,
        random_discriminator,
    )
    from gankit.data import load_dataset
    from gankit.sampling import load

    per_class = [int(k) for k in args.per_class.split(",")]
    data_cache: dict[int, tuple] = {}

    def digits(resolution: int) -> tuple:
        """(train images, train labels, test images, test labels) at a run's resolution."""
        if resolution not in data_cache:
            common = {"resolution": resolution, "channels": 1, "root": str(args.data_root),
                      "download": False}  # fmt: skip
            tr = load_dataset("mnist", train=True, **common)
            te = load_dataset("mnist", train=False, **common)
            data_cache[resolution] = (tr.batch(torch.arange(len(tr)))[0], tr.labels,
                                      te.batch(torch.arange(len(te)))[0], te.labels)  # fmt: skip
            print(f"MNIST at {resolution}x{resolution}: {len(tr)} training digits to draw "
                  f"labels from, {len(te)} test digits")  # fmt: skip
        return data_cache[resolution]

    rows: list[dict] = []
    pixel_cache: dict[tuple[int, int, int], dict] = {}

    def write(rows: list[dict]) -> None:
        result = {
            "machine": machine(),
            "data": "mnist (../shared/datasets: 6,000 train, 1,000 test)",
            "grid": list(C_GRID),
            "probe": "StandardScaler + LinearSVC (squared hinge, L2); C by 3-fold CV on the "
            "labelled examples",
            "rows": rows,
        }
        args.out.write_text(json.dumps(result, indent=2) + "\n")

    def probe(name: str, f_tr, f_te, y_tr, y_te, k: int, seed: int) -> dict:
        idx = few_labels(y_tr, k, seed)
        t0 = time.time()
        r = linear_probe(f_tr[idx], y_tr[idx], f_te, y_te, C=C_GRID, name=name,
                         n_jobs=args.n_jobs)  # fmt: skip
        print(f"    {name:<10} k={k:<4} seed {seed}: {r.accuracy:.2%} (C {r.C:g}, "
              f"{r.features} dims, {time.time() - t0:.0f} s)", flush=True)  # fmt: skip
        return {"features": name, "per_class": k, "seed": seed, "accuracy": r.accuracy,
                "C": r.C, "cv_accuracy": r.cv_accuracy, "dims": r.features}  # fmt: skip

    for label, path, seeds in DEFAULT_RUNS:
        if not path.exists():
            print(f"skip {label}: {path} is missing")
            continue
        run = load(path)
        res = int(run.checkpoint.meta["run_config"]["model_config"]["resolution"])
        x_tr, y_tr, x_te, y_te = digits(res)
        rand, rseed = random_discriminator(run, None)
        # a conditional D sees label 0 for every digit, never the true label
        cond = run.model.spec.conditional
        y0_tr = torch.zeros(len(x_tr), dtype=torch.long) if cond else None
        y0_te = torch.zeros(len(x_te), dtype=torch.long) if cond else None
        feats = {}
        for name, D in (("trained D", run.model.D), ("random D", rand)):
            feats[name] = (discriminator_features(D, x_tr, y0_tr),
                           discriminator_features(D, x_te, y0_te))  # fmt: skip
        print(f"{label}: {run.checkpoint.nimg:,} images seen; random D seed {rseed}")
        for k in per_class:
            for seed in seeds:
                for name, (f_tr, f_te) in feats.items():
                    rec = probe(name, f_tr, f_te, y_tr, y_te, k, seed)
                    rows.append({"run": label, "path": str(path), "nimg": run.checkpoint.nimg,
                                 "random_d_seed": rseed, **rec})  # fmt: skip
                if (res, k, seed) not in pixel_cache:
                    flat = (x_tr.flatten(1), x_te.flatten(1))
                    pixel_cache[(res, k, seed)] = probe("pixels", *flat, y_tr, y_te, k, seed)
                rows.append({"run": label, "path": str(path), "nimg": run.checkpoint.nimg,
                             "resolution": res, **pixel_cache[(res, k, seed)]})  # fmt: skip
        write(rows)  # after every run, so that a crash keeps what was measured

    def cell(run: str, feat: str, k: int) -> str:
        acc = [r["accuracy"] for r in rows
               if r["run"] == run and r["features"] == feat and r["per_class"] == k]  # fmt: skip
        if not acc:
            return "-"
        if len(acc) == 1:
            return f"{acc[0]:.1%}"
        return f"{statistics.mean(acc):.1%} ± {statistics.stdev(acc):.1%} (n={len(acc)})"

    runs = list(dict.fromkeys(r["run"] for r in rows))
    print("\n| run | labels per class | trained D | random D | pixels |")
    print("|---|---|---|---|---|")
    for run_name in runs:
        for k in per_class:
            print(f"| {run_name} | {k} | {cell(run_name, 'trained D', k)} | "
                  f"{cell(run_name, 'random D', k)} | {cell(run_name, 'pixels', k)} |")  # fmt: skip
    write(rows)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
