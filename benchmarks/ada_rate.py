"""Diagnostic: does ADA's p rate (`--ada-kimg`) explain ADA's loss on 500 digits?

In benchmarks/small_data.py, `--augment ada` at `--ada-kimg 20` loses to no augmentation on
500 digits, and p shoots to ~0.8 in the first 20k images before settling near 0.35. The
suspicion: early on r_t = E[sign D(real)] is high because G is still bad, not because D
memorises, and a fast rate turns that into heavy augmentation. This trains the same rows
(DCGAN, first 500 MNIST training digits, 300 s, one thread, the small_data recipe) at slower
rates and scores every run, those of small_data.py included, on a validation slice: training
digits 5,000-5,999, which no 500-digit run saw. Settings are judged there, never on the test
digits. Prints a table and writes docs/bench_ada_rate.json.

    python benchmarks/ada_rate.py [--kimgs 100,500] [--seeds 0] \
        [--also n500-none-s0,n500-diffaug-s0,n500-ada-s0]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from machine_info import machine  # benchmarks/ is on sys.path when a script runs

ROOT = Path(__file__).resolve().parent.parent
SIZE = 500
VALIDATION = slice(5000, 6000)  # training digits no 500-digit run saw


def train(run_dir: Path, seed: int, kimg: float, args: argparse.Namespace) -> None:
    cmd = [
        "train", "dcgan", "--data", "mnist", "--data-root", str(args.data_root),
        "--no-download", "--max-images", str(SIZE), "--seed", str(seed), "--kimg", "100000",
        "--max-seconds", str(args.seconds), "--run-dir", str(run_dir), "--overwrite",
        "--no-progress", "--device", "cpu", "--batch-size", "64", "--preset", "demo",
        "--set", "ngf=32", "--set", "ndf=32", "--set", "sample_every_kimg=50",
        "--augment", "ada", "--ada-kimg", str(kimg),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    subprocess.run([sys.executable, "-m", "gankit", *cmd], check=True, cwd=ROOT, env=env)


def validation_score(run_dir: Path, args: argparse.Namespace) -> dict:
    """FD and the rarest class's share of 1,000 G_ema samples, against the validation digits,
    in the MNIST classifier's features; p's path for an ADA run."""
    from gankit.data import load_dataset
    from gankit.data.base import to_uint8
    from gankit.metrics.classifier import find_classifier
    from gankit.metrics.maths import frechet_distance, gaussian_stats
    from gankit.sampling import generate, load

    clf = find_classifier("mnist")
    run = load(run_dir)
    res = run.checkpoint.run_config.resolution
    data = load_dataset("mnist", resolution=res, root=str(args.data_root), download=False)
    val = data.images[VALIDATION]
    fake = to_uint8(generate(run, range(1000)))
    fd = frechet_distance(
        gaussian_stats(clf(val).features.double()),
        gaussian_stats(clf(fake).features.double()),
    )
    counts = clf.classify(fake).argmax(1).bincount(minlength=10).float() / 1000
    recs = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    out = {"val_fd": fd, "rarest_class_share": float(counts.min()), "nimg": recs[-1]["nimg"]}
    if "ada_p" in recs[-1]:
        ps = [r["ada_p"] for r in recs]
        out.update(p_max=max(ps), p_final=ps[-1],
                   p_max_at_kimg=recs[ps.index(max(ps))]["nimg"] / 1000)  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kimgs", default="100,500", help="ADA rates to train")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--also", default="n500-none-s0,n500-diffaug-s0,n500-ada-s0",
                    help="small_data.py rows to score as well (their runs must exist)")  # fmt: skip
    ap.add_argument("--seconds", type=float, default=300.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "datasets")
    ap.add_argument("--runs", type=Path, default=ROOT / "runs")
    ap.add_argument("--out", type=Path, default=ROOT / "docs")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    path = args.out / "bench_ada_rate.json"
    result = json.loads(path.read_text()) if path.is_file() else {"rows": {}}
    result.update(machine=machine(), seconds_per_row=args.seconds, validation="train 5000-5999")
    todo = [(f"ada-kimg{float(k):g}-s{s}", float(k), int(s)) for k in args.kimgs.split(",")
            if k for s in args.seeds.split(",")]  # fmt: skip
    for key, kimg, seed in todo:
        if key in result["rows"]:
            print(f"{key}: done before, skipped")
            continue
        run_dir = args.runs / "bench-ada-rate" / key
        train(run_dir, seed, kimg, args)
        result["rows"][key] = {"ada_kimg": kimg, "seed": seed, **validation_score(run_dir, args)}
        path.write_text(json.dumps(result, indent=1))
    for key in [k for k in args.also.split(",") if k]:
        if key not in result["rows"]:
            run_dir = args.runs / "bench-small-data" / key
            result["rows"][key] = {"small_data_row": key, **validation_score(run_dir, args)}
            path.write_text(json.dumps(result, indent=1))
    print(
        f"{'row':<22} {'val FD':>7} {'rarest':>7} {'p max (at kimg)':>16} {'p end':>6} {'kimg':>5}"
    )
    for key, r in result["rows"].items():
        pmax = f"{r['p_max']:.2f} ({r['p_max_at_kimg']:.0f})" if "p_max" in r else "-"
        pend = f"{r['p_final']:.2f}" if "p_final" in r else "-"
        print(f"{key:<22} {r['val_fd']:>7.1f} {r['rarest_class_share']:>7.1%} {pmax:>16} "
              f"{pend:>6} {r['nimg'] / 1000:>5.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
