"""Benchmark: mode collapse of the MLP `gan` on the 2D mixtures ring8 and grid25.

Trains `gan` on each mixture with every registered objective (read from the registry, so a
new objective is included without editing this file), for the same fixed budget of real
images (with a wall-time cap as a safety net), then draws 2,500 samples from G_ema and
counts modes covered, the fraction of high-quality samples (within 3 std of a mode) and the
KL of the mode histogram to uniform (`gankit.metrics.mixtures`, the VEEGAN/PacGAN protocol).

Target (issue 20): 8/8 ring modes and 25/25 grid modes, each with >= 80% high-quality
samples, for at least one setup within 300 s. The table says where it is missed; the metric and its
thresholds are fixed and are never adjusted to the model.

    OMP_NUM_THREADS=1 python benchmarks/mixtures.py                  # the published numbers
    OMP_NUM_THREADS=1 python benchmarks/mixtures.py --kimg 100 --out /tmp/b   # a quick look
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from gankit import viz
from gankit.data import load_dataset
from gankit.data.mixtures import get_mixture, to_points
from gankit.errors import UserError
from gankit.metrics.mixtures import (
    DEFAULT_MIN_COUNT,
    DEFAULT_SAMPLES,
    DEFAULT_THRESHOLD_STD,
    evaluate_mixture_run,
)
from gankit.objectives import list_objectives
from gankit.sampling import generate, load
from gankit.training.run import train
from machine_info import machine  # benchmarks/ is on sys.path when a script runs

ROOT = Path(__file__).resolve().parent.parent
DATASETS = ("ring8", "grid25")
# Modes a run must cover, and the high-quality fraction it must reach, to meet the target.
# (Issue 20 asks for all 25 grid modes; the first table, bench_mixtures.json of 2026-11-23,
# was judged at 23.)
TARGET_MODES = {"ring8": 8, "grid25": 25}
TARGET_HQ = 0.8

# Chosen once, before any result was seen, after Unrolled GAN's ring setup (2 x 128 ReLU G,
# 256-d noise, batch 512, Adam lr 1e-4, beta1 0.5), within what the MLP `gan` exposes: its D
# also has two hidden layers (LeakyReLU 0.2), and both nets use the same width. No dropout
# (the core `gan` defaults to 0.1; neither paper uses it in G).
MODEL = {"hidden": 128, "nz": 256, "dropout": 0.0}
TRAIN = {
    "batch_size": 512,
    "lr_g": 1e-4,
    "lr_d": 1e-4,
    "beta1": 0.5,
    "beta2": 0.999,
    "seed": 0,
    "device": "cpu",
}


# The setups compared: every objective that fits a score D, and PacGAN's packing (D judges
# `pack` samples at once). WGAN-GP's critic takes 5 steps per G step, as in its paper.
SETUPS: dict[str, dict[str, Any]] = {
    "nonsaturating": {"objective": "nonsaturating"},
    "minimax": {"objective": "minimax"},
    "least-squares": {"objective": "least-squares"},
    "hinge": {"objective": "hinge"},
    "wasserstein-gp": {"objective": "wasserstein", "reg": "gp:weight=10", "n_critic": 5},
    "nonsaturating-pack2": {"objective": "nonsaturating", "pack": 2},
    "nonsaturating-pack4": {"objective": "nonsaturating", "pack": 4},
    "minimax-pack4": {"objective": "minimax", "pack": 4},
}


def target_met(data: str, stats: dict[str, Any]) -> bool:
    return (
        stats["modes_covered"] >= TARGET_MODES[data] and stats["high_quality_fraction"] >= TARGET_HQ
    )


def scatter(run_dir: Path, data: str, stats: dict[str, Any], path: Path) -> None:
    """The evaluated samples (same seeds, same generator) over as many real points."""
    run = load(run_dir, ema=stats["generator"] == "G_ema")
    first, last = (int(s) for s in stats["seeds"].split("-"))
    points = to_points(generate(run, range(first, last + 1)), data)
    reals = load_dataset(data, resolution=1, train=False, max_images=stats["n"]).points
    title = (
        f"{data}, {stats['objective']}: {stats['modes_covered']}/{stats['num_modes']} modes, "
        f"{100 * stats['high_quality_fraction']:.1f}% HQ"
    )
    viz.save_scatter(points, path, reference=reals, limit=get_mixture(data).scale, title=title)


def bench_one(data: str, objective: str, args: argparse.Namespace) -> dict[str, Any]:
    """One setup (a key of SETUPS, or a bare objective name) on one mixture."""
    run_dir = args.runs / f"mixtures-{data}-{objective}"
    setup = SETUPS.get(objective, {"objective": objective})
    t0 = time.perf_counter()
    try:
        res = train(
            "gan",
            data,
            run_dir=run_dir,
            overwrite=True,
            model_overrides=MODEL,
            progress=False,
            tensorboard=False,
            kimg=args.kimg,
            max_seconds=args.seconds,
            sample_every_kimg=args.kimg / 20,  # 21 frames in progress.gif
            ckpt_every_kimg=args.kimg,
            **{**TRAIN, **setup},
        )
    except UserError as exc:  # e.g. diverged: recorded, the other runs go on
        return {"data": data, "objective": objective, "error": str(exc)}
    seconds = time.perf_counter() - t0
    row: dict[str, Any] = {
        "data": data,
        "objective": objective,
        "images": res.nimg,
        "steps": res.steps,
        "train_seconds": round(res.seconds, 1),
        "seconds": round(seconds, 1),
        "stopped_by_time_cap": res.stopped_early,
        "run_dir": str(run_dir),
    }
    for ema in (True, False):
        stats = evaluate_mixture_run(run_dir, n=args.samples, ema=ema)
        stats["objective"] = objective
        stats["target_met"] = target_met(data, stats)
        row["G_ema" if ema else "G"] = stats
    figure = args.out / "figures" / f"mixtures-{data}-{objective}.png"
    scatter(run_dir, data, row["G_ema"], figure)
    row["figure"] = str(figure.relative_to(args.out)) if figure.is_relative_to(args.out) else ""
    return row


def table(rows: list[dict[str, Any]], which: str = "G_ema") -> str:
    lines = [
        "| data | objective | modes covered | high-quality | KL to uniform | target met "
        "| images | seconds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['data']} | {r['objective']} | failed: {r['error']} | | | no | | |")
            continue
        s = r[which]
        kl = "n/a" if s["kl_to_uniform"] is None else f"{s['kl_to_uniform']:.3f}"
        met = "yes" if s["target_met"] else f"**no** (needs {TARGET_MODES[r['data']]}+, 80%)"
        capped = " (time cap)" if r["stopped_by_time_cap"] else ""
        lines.append(
            f"| {r['data']} | {r['objective']} | {s['modes_covered']}/{s['num_modes']} | "
            f"{100 * s['high_quality_fraction']:.1f}% | {kl} | {met} | "
            f"{r['images']:,}{capped} | {r['seconds']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kimg", type=float, default=4096.0, help="real images per run, thousands")
    ap.add_argument("--seconds", type=float, default=300.0, help="wall-time cap per run")
    ap.add_argument("--samples", type=int, default=DEFAULT_SAMPLES, help="evaluation samples")
    ap.add_argument("--data", default=",".join(DATASETS), help="comma-separated mixtures")
    ap.add_argument(
        "--objectives",
        default=None,
        help="comma-separated setups (SETUPS) or objective names (default: every setup)",
    )
    ap.add_argument("--json", default="bench_mixtures.json", help="file name of the JSON in --out")
    ap.add_argument("--runs", type=Path, default=ROOT / "runs")
    ap.add_argument("--out", type=Path, default=ROOT / "docs", help="where the JSON and figures go")
    args = ap.parse_args()
    objectives = args.objectives.split(",") if args.objectives else list(SETUPS)
    unknown = [o for o in objectives if o not in SETUPS and o not in list_objectives()]
    if unknown:
        raise SystemExit(f"unknown setups {unknown}; choose from {list(SETUPS)}")
    datasets = args.data.split(",")
    (args.out / "figures").mkdir(parents=True, exist_ok=True)
    rows = []
    for data in datasets:
        for objective in objectives:
            print(f"training gan on {data} with {objective} ...", flush=True)
            rows.append(bench_one(data, objective, args))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    doc = {
        "benchmark": "mixtures",
        "command": "OMP_NUM_THREADS=1 python "
        + shlex.join(["benchmarks/mixtures.py", *sys.argv[1:]]),
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
        "protocol": {
            "samples": args.samples,
            "seeds": f"0-{args.samples - 1}",
            "generator": "G_ema (the table); G in each row's 'G' entry",
            "high_quality": f"Euclidean distance to the nearest mean < {DEFAULT_THRESHOLD_STD} std",
            "mode_covered": f">= {DEFAULT_MIN_COUNT} high-quality sample(s)",
            "kl": "KL(high-quality mode histogram || uniform), nats",
            "target": {"modes": TARGET_MODES, "high_quality_fraction": TARGET_HQ},
        },
        "model": {"name": "gan", **MODEL},
        "train": {**TRAIN, "kimg": args.kimg, "max_seconds": args.seconds},
        "setups": {o: SETUPS.get(o, {"objective": o}) for o in objectives},
        "results": rows,
    }
    out = args.out / args.json
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print()
    print(table(rows))
    met = [r for r in rows if "error" not in r and r["G_ema"]["target_met"]]
    for data in datasets:
        ok = sorted({r["objective"] for r in met if r["data"] == data})
        print(f"{data}: target {'met by ' + ', '.join(ok) if ok else 'MISSED by every objective'}")
    print(f"\nwrote {out} and figures in {args.out / 'figures'}")


if __name__ == "__main__":
    main()
