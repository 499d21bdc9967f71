"""Diagnostic: which of ADA's ops cost it on 500 digits?

benchmarks/ada_rate.py found that ADA loses to no augmentation on 500 MNIST digits even at a
slow p rate (`--ada-kimg` 100). The suspects left were the many ops active at p ~ 0.3 and the
ops themselves: x-flips and 90-degree turns change a digit's identity, lumaflip turns the
black background white. This trains the small_data recipe (DCGAN, the first 500 MNIST training
digits, `--preset demo`, ngf = ndf = 32, batch 64, one thread) with each op set for the same
image budget (`--kimg`, so the host's load does not change what a row saw), two runs side by
side, and scores every run on the validation slice of ada_rate.py (training digits
5,000-5,999, which no 500-digit run saw). Settings are judged there, never on the test digits.
Prints a table and writes docs/bench_ada_ops.json and docs/figures/ada-ops.png (each seed-0
row's last G_ema grid, side by side in the table's order).

    python benchmarks/ada_ops.py [--kimg 150] [--seeds 0] [--only ada-geom]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from ada_rate import validation_score  # one definition of the validation slice and its FD
from machine_info import machine  # benchmarks/ is on sys.path when a script runs

ROOT = Path(__file__).resolve().parent.parent
SIZE = 500
ADA_KIMG = 100.0  # the slow rate of ada_rate.py, so the op set is what differs between rows
# row -> --augment spec (None: no augmentation)
ROWS: dict[str, str | None] = {
    "none": None,
    "diffaug": "diffaug",
    "ada": "ada",  # the paper's bgc: 12 ops
    "ada-geom": "ada:xint,scale,rotate,aniso,xfrac",  # no flips, no 90-degree turns, no colour
    "ada-xint": "ada:xint",  # integer translation only
    "ada-xint-bc": "ada:xint,brightness,contrast",  # translation and mild colour, no lumaflip
}


def command(run_dir: Path, seed: int, spec: str | None, args: argparse.Namespace) -> list[str]:
    cmd = [
        sys.executable, "-m", "gankit",
        "train", "dcgan", "--data", "mnist", "--data-root", str(args.data_root),
        "--no-download", "--max-images", str(SIZE), "--seed", str(seed),
        "--kimg", str(args.kimg), "--run-dir", str(run_dir), "--overwrite",
        "--no-progress", "--device", "cpu", "--batch-size", "64", "--preset", "demo",
        "--set", "ngf=32", "--set", "ndf=32", "--set", "sample_every_kimg=50",
    ]  # fmt: skip
    if spec:
        cmd += ["--augment", spec]
    if spec and spec.startswith("ada"):
        cmd += ["--ada-kimg", str(ADA_KIMG)]
    return cmd


def figure(rows: dict, runs: Path, out: Path) -> None:
    """Each seed-0 run's last sample grid, side by side."""
    from PIL import Image

    grids = []
    for key, r in rows.items():
        if r["seed"] != 0:
            continue
        path = runs / "bench-ada-ops" / key / "samples" / f"fakes{r['nimg']:09d}.png"
        if path.is_file():
            grids.append(Image.open(path).convert("RGB"))
    if not grids:
        return
    w, h = grids[0].size
    sheet = Image.new("RGB", (len(grids) * (w + 12) - 12, h), "white")
    for i, g in enumerate(grids):
        sheet.paste(g, (i * (w + 12), 0))
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    print(f"wrote {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kimg", type=float, default=150.0, help="thousand images per run")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--only", help="comma-separated rows (default: all)")
    ap.add_argument("--parallel", type=int, default=2, help="runs at a time, one thread each")
    ap.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "datasets")
    ap.add_argument("--runs", type=Path, default=ROOT / "runs")
    ap.add_argument("--out", type=Path, default=ROOT / "docs")
    args = ap.parse_args()
    torch.set_num_threads(1)
    path = args.out / "bench_ada_ops.json"
    result = json.loads(path.read_text()) if path.is_file() else {"rows": {}}
    result.update(machine=machine(), kimg_per_row=args.kimg, ada_kimg=ADA_KIMG,
                  validation="train 5000-5999")  # fmt: skip
    names = args.only.split(",") if args.only else list(ROWS)
    todo = [(f"{n}-s{s}", n, int(s)) for n in names for s in args.seeds.split(",")]
    todo = [t for t in todo if t[0] not in result["rows"]]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for i in range(0, len(todo), args.parallel):
        wave = todo[i : i + args.parallel]
        procs = []
        for key, name, seed in wave:
            run_dir = args.runs / "bench-ada-ops" / key
            print(f"{key}: training ({ROWS[name] or 'no augmentation'})", flush=True)
            procs.append(subprocess.Popen(command(run_dir, seed, ROWS[name], args), cwd=ROOT,
                                          env=env))  # fmt: skip
        for p in procs:
            if p.wait():
                raise SystemExit(f"a training run failed (exit {p.returncode})")
        for key, name, seed in wave:
            run_dir = args.runs / "bench-ada-ops" / key
            score = validation_score(run_dir, argparse.Namespace(data_root=args.data_root))
            result["rows"][key] = {"augment": ROWS[name], "seed": seed, **score}
            path.write_text(json.dumps(result, indent=1) + "\n")
    figure(result["rows"], args.runs, args.out / "figures" / "ada-ops.png")
    print(f"{'row':<16} {'augment':<36} {'val FD':>7} {'rarest':>7} {'p max':>6} {'p end':>6}")
    for key, r in result["rows"].items():
        pmax = f"{r['p_max']:.2f}" if "p_max" in r else "-"
        pend = f"{r['p_final']:.2f}" if "p_final" in r else "-"
        print(f"{key:<16} {r['augment'] or '-':<36} {r['val_fd']:>7.1f} "
              f"{r['rarest_class_share']:>7.1%} {pmax:>6} {pend:>6}")  # fmt: skip


if __name__ == "__main__":
    main()
