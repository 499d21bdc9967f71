"""Benchmark: how well `gankit project` inverts the shipped digit generators.

For pretrained:dcgan-digits and pretrained:cgan-digits (trained on the 4,000 training digits
of `--data digits`), project three sets of 32x32 images with the default options:
  - held-out real digits: the data's test split, never seen in training;
  - training digits, for comparison;
  - G's own samples, whose true z (and class) are known.
It reports the median pixel error (RMS, pixels in [0, 1]) of each set, the ratio held-out /
own samples, how often the domain classifier (mnistcnn, trained on the training digits)
reads the projection as the target's digit, and, for G's own samples, how close the recovered
z is to the true one (cosine similarity, |z* - z| / |z|) and how often a CGAN's class is
found. Targets: held-out error within 2x of own samples' and >= 90% of held-out projections
read as their digit (for G's own unconditional samples: as the classifier reads the sample).
Prints a table, writes docs/bench_projection.json (a model's row replaced, others kept) and
docs/figures/projection.png (held-out digits: target, progress, projection).

    python benchmarks/projection.py [--n 200] [--n-conditional 50] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from machine_info import machine  # benchmarks/ is on sys.path when a script runs

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="dcgan-digits,cgan-digits")
    ap.add_argument("--n", type=int, default=200, help="images per set (unconditional)")
    ap.add_argument(
        "--n-conditional", type=int, default=50, help="images per set (CGAN: 40 starts each)"
    )
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "docs")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from gankit.analysis.projection import ProjectOptions, project, save_projection_figure
    from gankit.data import load_dataset
    from gankit.data.base import to_uint8, to_unit_range
    from gankit.latent import prior_of
    from gankit.metrics.classifier import find_classifier
    from gankit.sampling import generate, load

    opts = ProjectOptions()
    classifier = find_classifier("digits")
    path = args.out / "bench_projection.json"
    result: dict = json.loads(path.read_text()) if path.is_file() else {"models": {}}
    result.update(machine=machine(), options=opts.__dict__)  # rows of other models are kept
    figures = []
    for name in args.models.split(","):
        run = load(f"pretrained:{name}")
        res = run.checkpoint.run_config.resolution
        n = args.n_conditional if run.num_classes else args.n
        sets = {}
        for split, train in (("held_out", False), ("train", True)):
            data = load_dataset("digits", resolution=res, train=train)
            idx = torch.arange(n)  # the digits are interleaved by class: n/10 of each
            sets[split] = (to_unit_range(data.images[idx]).float(), data.labels[idx])
        seeds = list(range(10_000, 10_000 + n))
        own_labels = torch.arange(n) % 10
        own = generate(run, seeds, own_labels if run.num_classes else None)
        if not run.num_classes:  # an unconditional sample's digit is what the classifier reads
            own_labels = classifier.classify(to_uint8(own)).argmax(1).cpu()
        sets["own_samples"] = (own, own_labels)
        row: dict = {"images_per_set": n}
        for split, (x, y) in sets.items():
            t0 = time.perf_counter()
            p = project(run.G, run.model.D, x, num_classes=run.num_classes, options=opts)
            secs = time.perf_counter() - t0
            read = classifier.classify(to_uint8(p.images)).argmax(1).cpu()
            rec = {
                "median_pixel_error": float(p.pixel_error.median()),
                "mean_pixel_error": float(p.pixel_error.mean()),
                "classifier_reads_target_digit": float((read == y).float().mean()),
                "classifier_on_targets": float(
                    (classifier.classify(to_uint8(x)).argmax(1).cpu() == y).float().mean()
                ),
                "seconds_per_image": round(secs / x.shape[0], 3),
            }
            if p.labels is not None:
                rec["class_found"] = float((p.labels == y).float().mean())
            if split == "own_samples":
                z = prior_of(run.G).from_seeds(seeds)
                rec["z_cosine_median"] = float(
                    torch.nn.functional.cosine_similarity(p.latents, z).median()
                )
                rec["z_relative_distance_median"] = float(
                    ((p.latents - z).norm(dim=1) / z.norm(dim=1)).median()
                )
            if split == "held_out":
                figures.append((name, x[:8], p))
            row[split] = rec
            print(f"{name} {split}: {json.dumps(rec)}", flush=True)
        row["ratio_held_out_to_own"] = (
            row["held_out"]["median_pixel_error"] / row["own_samples"]["median_pixel_error"]
        )
        result["models"][name] = row
    (args.out / "figures").mkdir(parents=True, exist_ok=True)
    for name, x, p in figures:
        sub = type(p)(**{**p.__dict__})
        sub.progress, sub.pixel_error = p.progress[:8], p.pixel_error[:8]
        sub.labels = None if p.labels is None else p.labels[:8]
        save_projection_figure(x, sub, args.out / "figures" / f"projection-{name}.png", rows=8)
    path.write_text(json.dumps(result, indent=1))
    print()
    print(f"{'model':<14} {'held-out':>9} {'train':>7} {'own':>7} {'ratio':>6} {'reads':>6} "
          f"{'z cos':>6}")  # fmt: skip
    for name, row in result["models"].items():
        print(
            f"{name:<14} {row['held_out']['median_pixel_error']:>9.4f} "
            f"{row['train']['median_pixel_error']:>7.4f} "
            f"{row['own_samples']['median_pixel_error']:>7.4f} "
            f"{row['ratio_held_out_to_own']:>6.2f} "
            f"{row['held_out']['classifier_reads_target_digit']:>6.1%} "
            f"{row['own_samples']['z_cosine_median']:>6.2f}"
        )


if __name__ == "__main__":
    main()
