"""Benchmark: DCGAN and CGAN trained with the CLI defaults on real MNIST for a fixed budget.

Runs `gankit train MODEL --data mnist --data-root ../shared/datasets --max-seconds S` for each
model (one process each, back to back), then `gankit sample` on the result, and records wall
time, images seen and images/s. Writes a JSON file and copies the final grid, the training
animation and the loss curves into docs/figures/. Prints a Markdown table.

    python benchmarks/train_mnist.py --seconds 600          # the published numbers
    python benchmarks/train_mnist.py --seconds 30 --out /tmp/b   # a quick look
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from machine_info import machine  # benchmarks/ is on sys.path when a script runs

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("dcgan", "cgan")


def run(model: str, seconds: float, data_root: Path, runs: Path) -> dict:
    run_dir = runs / f"bench-{model}-mnist"
    cmd = [
        sys.executable,
        "-m",
        "gankit",
        "train",
        model,
        "--data",
        "mnist",
        "--data-root",
        str(data_root),
        "--no-download",
        "--kimg",
        "100000",
        "--max-seconds",
        str(seconds),
        "--run-dir",
        str(run_dir),
        "--overwrite",
        "--no-progress",
        "--device",
        "cpu",
    ]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    cfg = json.loads((run_dir / "config.json").read_text())
    recs = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    last = recs[-1]
    grid = run_dir / "samples.png"
    subprocess.run(
        [sys.executable, "-m", "gankit", "sample", str(run_dir), "--out", str(grid)],
        check=True,
        cwd=ROOT,
    )
    steady = [r["img_per_s"] for r in recs[len(recs) // 10 :]]  # skip warm-up
    return {
        "model": model,
        "command": " ".join(["gankit"] + cmd[3:]),
        "budget_s": seconds,
        "wall_s": round(wall, 1),
        "images_seen": last["nimg"],
        "epochs": last["epoch"],
        "steps": last["step"],
        "img_per_s_overall": round(last["nimg"] / seconds, 1),
        "img_per_s_steady_median": round(sorted(steady)[len(steady) // 2], 1),
        "final": {k: round(last[k], 4) for k in ("loss_d", "loss_g", "d_real", "d_fake")},
        "resolution": cfg["run_config"]["model_config"]["resolution"],
        "batch_size": cfg["run_config"]["train"]["batch_size"],
        "train_images": cfg["data"]["images"],
        "run_dir": str(run_dir),
        "grid": str(grid),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=600.0, help="training budget per model")
    ap.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "datasets")
    ap.add_argument("--runs", type=Path, default=ROOT / "runs")
    ap.add_argument(
        "--out",
        type=Path,
        default=ROOT / "docs",
        help="where the JSON and figures go (docs/ for the published ones)",
    )
    args = ap.parse_args()
    if not (args.data_root / "MNIST" / "raw").is_dir():
        sys.exit(f"no MNIST under {args.data_root}/MNIST/raw; pass --data-root")
    results = [run(m, args.seconds, args.data_root, args.runs) for m in MODELS]
    figs = args.out / "figures"
    figs.mkdir(parents=True, exist_ok=True)
    for r in results:
        src = Path(r["run_dir"])
        for name, dst in (
            ("samples.png", f"{r['model']}-mnist-samples.png"),
            ("progress.gif", f"{r['model']}-mnist-progress.gif"),
            ("losses.png", f"{r['model']}-mnist-losses.png"),
        ):
            shutil.copyfile(src / name, figs / dst)
        r["figures"] = [
            f"figures/{r['model']}-mnist-{x}" for x in ("samples.png", "progress.gif", "losses.png")
        ]
    doc = {
        "benchmark": "train_mnist",
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
        "results": results,
    }
    (args.out / "bench_train_mnist.json").write_text(json.dumps(doc, indent=2) + "\n")
    print(
        "| model | resolution | batch | budget (s) | images seen | epochs | img/s (median) |"
        " final D(x) | final D(G(z)) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['model']} | {r['resolution']} | {r['batch_size']} | {r['budget_s']:.0f} | "
            f"{r['images_seen']:,} | {r['epochs']:.1f} | {r['img_per_s_steady_median']:.0f} | "
            f"{r['final']['d_real']:.2f} | {r['final']['d_fake']:.2f} |"
        )
    print(f"\nwrote {args.out / 'bench_train_mnist.json'} and figures in {figs}")


if __name__ == "__main__":
    main()
