"""Data-parallel training on this machine's CPU: 1 process against N processes (gloo).

Trains DCGAN-32 on MNIST for a fixed number of images with `gankit train --nproc N` (N = 1 runs
plain `gankit train`), each process with cores / N threads, and reports the median images/s
of the logged intervals (the first interval, with start-up, left out). On a CPU the processes
share the same cores, so this shows the cost of the gradient all-reduces, not a speed-up; on
GPUs each process has its own device.

    python benchmarks/ddp_cpu.py --data-root ../shared/datasets   # -> docs/bench_ddp_cpu.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from machine_info import machine  # benchmarks/ is on sys.path when a script runs

ROOT = Path(__file__).resolve().parent.parent


def run(nproc: int, args: argparse.Namespace, tmp: Path) -> dict:
    run_dir = tmp / f"n{nproc}"
    cmd = [sys.executable, "-m", "gankit", "train", "dcgan", "--data", "mnist",
           "--data-root", args.data_root, "--no-download", "--resolution", "32",
           "--batch-size", str(args.batch), "--kimg", str(args.kimg), "--run-dir", str(run_dir),
           "--no-progress", "--set", "log_every=5", "--precision", args.precision]  # fmt: skip
    if args.sync_bn:
        cmd.append("--sync-bn")
    if nproc > 1:
        cmd += ["--nproc", str(nproc)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    recs = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    ips = [r["img_per_s"] for r in recs[1:]]
    return {"nproc": nproc, "img_per_s": statistics.median(ips), "intervals": len(ips)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", default=str(ROOT.parent / "shared" / "datasets"))
    ap.add_argument("--nproc", type=int, action="append", help="default: 1 and 2")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--kimg", type=float, default=12.8)
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--sync-bn", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "bench_ddp_cpu.json")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.nproc or [1, 2]:
            rows.append(run(n, args, Path(tmp)))
            print(f"nproc {n}: {rows[-1]['img_per_s']:.0f} img/s", flush=True)
    print("\n| processes | images/s | vs 1 |\n|---|---|---|")
    for r in rows:
        rel = r["img_per_s"] / rows[0]["img_per_s"]
        print(f"| {r['nproc']} | {r['img_per_s']:.0f} | {rel:.2f}x |")
    doc = {"machine": machine(), "batch": args.batch, "kimg": args.kimg,
           "precision": args.precision, "sync_bn": args.sync_bn, "rows": rows}  # fmt: skip
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
