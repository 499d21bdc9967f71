"""Scaling: gankit's DCGAN training throughput against batch size and resolution on this machine.

Times `Trainer.train_step` (via `speed_options.time_train_steps`) for DCGAN with 3 channels at
resolutions 32, 64 and 128 and batch sizes 16 to 256, in fp32 and bf16 (both channels_last),
each point in its own process so that one point's allocator and oneDNN caches do not help the
next. Data are seeded random uint8 images (batch * 2 of them): loading is not what this measures.

Timed steps adapt to the cost of a point, so that cheap points are not lost in timer noise and
expensive ones do not blow the budget: a point gets `--steps` timed steps (default 4), raised to
reach about `--min-seconds` (default 2 s) of timed work when a step is estimated to be short,
capped at 100. The estimate scales measured costs (DCGAN-64, batch 128, 2 cores: ~1.8 s/step
fp32, ~1.0 s/step bf16) by batch and resolution squared, plus 30 ms a step; the default grid
(30 points) is estimated at about 8 minutes on a 2-core CPU, printed before it starts.

Prints a markdown table (images/s; rows resolution x mode, columns batch sizes), writes JSON
after every point (so an interrupted run keeps what it measured) and draws the figure.

    python benchmarks/scaling.py                          # full grid -> docs/ (long: idle machine)
    python benchmarks/scaling.py --quick --out /tmp/s.json --figure /tmp/s.png   # does it work?
    python benchmarks/scaling.py --resolution 64 --batch 128 --mode "bf16 + channels_last"
    python benchmarks/scaling.py --plot-only              # redraw the figure from the JSON
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

from machine_info import machine, peak_rss_mib  # benchmarks/ is on sys.path

ROOT = Path(__file__).resolve().parent.parent
MODEL, CHANNELS = "dcgan", 3
RESOLUTIONS = (32, 64, 128)
BATCHES = (16, 32, 64, 128, 256)
MODES = {
    "fp32 + channels_last": {"channels_last": True},
    "bf16 + channels_last": {"precision": "bf16", "channels_last": True},
}
# Seconds per step of DCGAN-64 at batch 128 on the 2-core dev machine: only used to choose how
# many steps to time, so being off by 2x costs time, not correctness.
REF_SECONDS = {"fp32 + channels_last": 1.8, "bf16 + channels_last": 1.0}
OVERHEAD_S = 0.03  # per-step fixed cost (Python, optimisers, EMA) that dominates tiny batches
MAX_STEPS = 100
REF_BATCH = 128  # the batch of the right panel (the DCGAN paper's and the tutorial's)


def estimate_seconds(mode: str, resolution: int, batch: int) -> float:
    """Rough seconds per training step: a fixed cost plus one that grows with batch and with
    pixels per image."""
    return OVERHEAD_S + REF_SECONDS[mode] * (batch / 128) * (resolution / 64) ** 2


def choose_steps(est: float, steps: int, min_seconds: float) -> int:
    """Timed steps for a point: at least `steps`, more (up to MAX_STEPS) when a step is cheap,
    so that every point times about `min_seconds` of work."""
    return max(steps, min(MAX_STEPS, math.ceil(min_seconds / est)))


def child(argv: list[str]) -> None:
    """One point in this process; prints one JSON line."""
    import torch

    from gankit.config import RunConfig, TrainConfig
    from gankit.data.base import ImageDataset
    from speed_options import time_train_steps

    mode, (res, batch, steps, warmup) = argv[0], map(int, argv[1:])
    g = torch.Generator().manual_seed(0)
    n = batch * 2
    images = torch.randint(0, 256, (n, CHANNELS, res, res), generator=g, dtype=torch.uint8)
    ds = ImageDataset(images=images, labels=None, num_classes=0, name="random")
    rc = RunConfig(
        model=MODEL,
        model_config={"resolution": res, "channels": CHANNELS},
        train=TrainConfig(model=MODEL, batch_size=batch, kimg=1e6, device="cpu", **MODES[mode]),
    )
    seconds = time_train_steps(rc, ds, steps, warmup)
    out = {
        "seconds": seconds,
        "images": steps * batch,
        "threads": torch.get_num_threads(),
        "max_rss_mib": peak_rss_mib(),
    }
    print(json.dumps(out))


def run_point(mode: str, res: int, batch: int, steps: int, warmup: int) -> dict:
    """Time one point in a fresh subprocess; a failure (e.g. out of memory) is recorded, not
    raised, so that one bad point does not throw away a long grid."""
    cmd = [sys.executable, __file__, "--child", mode, str(res), str(batch), str(steps),
           str(warmup)]  # fmt: skip
    point = {"resolution": res, "batch": batch, "mode": mode, "options": MODES[mode]}
    point["steps"] = steps
    proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
    if proc.returncode != 0:
        point["error"] = proc.stderr.strip()[-1000:] or f"exit code {proc.returncode}"
        return point
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    point.update(
        images_per_s=r["images"] / r["seconds"],
        ms_per_step=1000 * r["seconds"] / steps,
        seconds=r["seconds"],
        max_rss_mib=r["max_rss_mib"],
        threads=r["threads"],
    )
    return point


def table(points: list[dict]) -> str:
    """Markdown table of images/s: one row per (resolution, mode), one column per batch."""
    ok = [p for p in points if "error" not in p]
    batches = sorted({p["batch"] for p in points})
    rows = sorted({(p["resolution"], p["mode"]) for p in points}, key=lambda k: (k[0], k[1]))
    cell = {(p["resolution"], p["mode"], p["batch"]): p["images_per_s"] for p in ok}
    lines = [
        "| resolution | mode | " + " | ".join(f"batch {b}" for b in batches) + " |",
        "|---|---|" + "---|" * len(batches),
    ]
    for res, mode in rows:
        vals = [cell.get((res, mode, b)) for b in batches]
        txt = ["-" if v is None else f"{v:.0f}" if v >= 100 else f"{v:.1f}" for v in vals]
        lines.append(f"| {res} | {mode} | " + " | ".join(txt) + " |")
    return "\n".join(lines)


def _plain_log_y(ax) -> None:
    """Label a log y axis with plain numbers (not 2.8x10^2), minor ticks included: throughputs
    span one to two decades, too few for major ticks alone. Over a decade only 2x and 5x are
    labelled, so that labels do not collide."""
    from matplotlib.ticker import FuncFormatter

    lo, hi = ax.get_ylim()

    def minor(v: float, _pos: int) -> str:
        lead = round(v / 10 ** math.floor(math.log10(v)), 6)
        return f"{v:g}" if hi / lo < 10 or lead in (2, 5) else ""

    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(minor))


def plot(doc: dict, path: Path) -> None:
    """Left: images/s against batch, one line per resolution (solid bf16, dashed fp32), to show
    where a larger batch stops paying. Right: images/s against resolution at batch 128, with a
    constant-work line from the 32x32 point, to show how close the cost is to quadratic."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    points = [p for p in doc["points"] if "error" not in p]
    style = {"bf16 + channels_last": "-", "fp32 + channels_last": "--"}
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.8))
    resolutions = sorted({p["resolution"] for p in points})
    for i, res in enumerate(resolutions):
        for mode, ls in style.items():
            pts = sorted((p["batch"], p["images_per_s"]) for p in points
                         if p["resolution"] == res and p["mode"] == mode)  # fmt: skip
            if pts:
                ax1.plot([b for b, _ in pts], [v for _, v in pts], ls, marker="o", color=f"C{i}")
    batches = sorted({p["batch"] for p in points})
    ax1.set_xscale("log", base=2)
    ax1.set_yscale("log")
    ax1.set_xticks(batches, [str(b) for b in batches])
    ax1.set_xlabel("batch size")
    ax1.set_ylabel("images / s (training)")
    ax1.set_title("throughput against batch size")
    _plain_log_y(ax1)
    ax1.grid(True, which="both", alpha=0.3)
    # Colour is the resolution, line style the mode: five entries instead of one per line.
    handles = [Line2D([], [], color=f"C{i}", marker="o", label=f"{r}x{r}")
               for i, r in enumerate(resolutions)]  # fmt: skip
    handles += [Line2D([], [], color="grey", linestyle=ls, label=m) for m, ls in style.items()]
    ax1.legend(handles=handles, fontsize=8)

    # Batch 128 when measured; otherwise (e.g. --quick) the largest batch there is.
    ref = REF_BATCH if REF_BATCH in batches else max(batches, default=REF_BATCH)
    for j, (mode, ls) in enumerate(style.items()):
        pts = sorted((p["resolution"], p["images_per_s"]) for p in points
                     if p["batch"] == ref and p["mode"] == mode)  # fmt: skip
        if not pts:
            continue
        x, y = [r for r, _ in pts], [v for _, v in pts]
        color = f"C{len(resolutions) + j}"
        ax2.plot(x, y, ls, marker="o", color=color, label=mode)
        r0, ips0 = pts[0]
        ax2.plot(x, [ips0 * (r0 / r) ** 2 for r in x], ":", color=color, alpha=0.7,
                 label=f"constant work from {r0}x{r0} ({mode.split()[0]})")  # fmt: skip
    ax2.set_xscale("log", base=2)
    ax2.set_yscale("log")
    ax2.set_xticks(resolutions, [str(r) for r in resolutions])
    ax2.set_xlabel("resolution (pixels per side)")
    ax2.set_ylabel("images / s (training)")
    ax2.set_title(f"throughput against resolution, batch {ref}")
    _plain_log_y(ax2)
    ax2.grid(True, which="both", alpha=0.3)
    ax2.legend(fontsize=8)

    m = doc["machine"]
    peak = doc.get("peak_gflops") or {}
    peak_txt = (f"\nmeasured peak (3x3 conv): fp32 {peak['fp32']:.0f}, bf16 {peak['bf16']:.0f} "
                "GFLOP/s") if peak else ""  # fmt: skip
    fig.suptitle(
        f"gankit DCGAN, {doc['channels']} channels, training step (D + G + EMA) on "
        f"{m['cpu']}: {m['cores']} cores, {m['threads']} torch thread(s), torch {m['torch']}"
        + peak_txt
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resolution", type=int, action="append", help="default: 32, 64, 128")
    ap.add_argument("--batch", type=int, action="append", help="default: 16 ... 256")
    ap.add_argument("--mode", action="append", choices=list(MODES), help="default: both")
    ap.add_argument("--steps", type=int, default=4, help="fewest timed steps per point")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--min-seconds", type=float, default=2.0, help="timed work per point")
    ap.add_argument("--quick", action="store_true", help="res 32, batch 16 and 32, 1 step")
    ap.add_argument("--plot-only", action="store_true", help="redraw the figure from --out")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "bench_scaling.json")
    ap.add_argument("--figure", type=Path, default=ROOT / "docs" / "figures" / "speed-scaling.png")
    ap.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child)
        return
    if args.plot_only:
        doc = json.loads(args.out.read_text())
        print(table(doc["points"]))
        plot(doc, args.figure)
        print(f"wrote {args.figure}")
        return
    from gankit.files import atomic_write_json

    resolutions = args.resolution or list(RESOLUTIONS)
    batches = args.batch or list(BATCHES)
    modes = args.mode or list(MODES)
    if args.quick:
        resolutions, batches = [32], [16, 32]
    grid = [(r, b, m) for r in resolutions for b in batches for m in modes]
    plan = {}
    for r, b, m in grid:
        est = estimate_seconds(m, r, b)
        plan[r, b, m] = 1 if args.quick else choose_steps(est, args.steps, args.min_seconds)
    total = sum(estimate_seconds(m, r, b) * (plan[r, b, m] + args.warmup) for r, b, m in grid)
    total += 5 * len(grid)  # process start, imports and model construction
    info = machine()
    from speed import peak_gflops  # benchmarks/ is on sys.path

    # The peak tells hosts apart: the shared machines this runs on differ (bf16 above or below
    # fp32), so a figure is only comparable with one measured on a host with the same peaks.
    peak = {} if args.quick else {d: peak_gflops(d) for d in ("fp32", "bf16")}
    if peak:
        print(f"peak: fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s", flush=True)
    print(f"{len(grid)} points, estimated {total / 60:.1f} min on a 2-core CPU; "
          f"{info['threads']} torch threads", flush=True)  # fmt: skip
    doc = {
        "benchmark": "scaling",
        "model": MODEL,
        "channels": CHANNELS,
        "machine": info,
        "torch": info["torch"],
        "threads": info["threads"],
        "peak_gflops": peak,
        "steps": 1 if args.quick else args.steps,  # the fewest per point; each point has its own
        "min_seconds": args.min_seconds,
        "warmup": args.warmup,
        "quick": args.quick,
        "date": time.strftime("%Y-%m-%d"),
        "points": [],
    }
    for r, b, m in grid:
        p = run_point(m, r, b, plan[r, b, m], args.warmup)
        doc["points"].append(p)
        atomic_write_json(args.out, doc)
        if "error" in p:
            print(f"{r:>4} batch {b:>4} {m:<22} FAILED: {p['error'].splitlines()[-1]}", flush=True)
        else:
            print(f"{r:>4} batch {b:>4} {m:<22} {p['images_per_s']:8.1f} img/s "
                  f"{p['ms_per_step']:8.0f} ms/step {p['steps']:>4} steps "
                  f"{p['max_rss_mib']:6.0f} MiB", flush=True)  # fmt: skip
    print()
    print(table(doc["points"]))
    plot(doc, args.figure)
    print(f"\nwrote {args.out} and {args.figure}")


if __name__ == "__main__":
    main()
