"""Benchmark: training-step speed of gankit's trainer with each speed option.

Times `Trainer.train_step` (one D and one G update, EMA included) on random data for DCGAN at
a given resolution and batch, in fp32, channels_last, bf16 autocast, and both. Prints a table
and writes JSON.

    python benchmarks/speed_options.py                          # DCGAN-32, batch 128
    python benchmarks/speed_options.py --resolution 64 --channels 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from gankit.config import RunConfig, TrainConfig
from gankit.data.base import ImageDataset
from gankit.training.trainer import Trainer

MODES = {
    "fp32": {},
    "fp32 + channels_last": {"channels_last": True},
    "bf16": {"precision": "bf16"},
    "bf16 + channels_last": {"precision": "bf16", "channels_last": True},
}


def measure(
    model: str, resolution: int, channels: int, batch: int, steps: int, warmup: int, **opts
) -> float:
    g = torch.Generator().manual_seed(0)
    n = batch * 4
    ds = ImageDataset(
        images=torch.randint(
            0, 256, (n, channels, resolution, resolution), generator=g, dtype=torch.uint8
        ),
        labels=torch.arange(n) % 10,
        num_classes=10,
        name="random",
    )
    mc = {"resolution": resolution, "channels": channels}
    rc = RunConfig(
        model=model,
        model_config=mc,
        train=TrainConfig(model=model, batch_size=batch, kimg=1e6, device="cpu", **opts),
    )
    return batch * steps / time_train_steps(rc, ds, steps, warmup)


def time_train_steps(rc: RunConfig, ds: ImageDataset, steps: int, warmup: int) -> float:
    """Seconds for `steps` calls of `Trainer.train_step` after `warmup` untimed ones, with one
    host sync at the end, as the trainer does at its log interval."""
    with tempfile.TemporaryDirectory() as tmp:
        tr = Trainer(rc, tmp, ds, progress=False, tensorboard=False)
        for _ in range(warmup):
            tr.train_step()
        if tr.device.type == "cuda":  # start the clock on an idle GPU
            torch.cuda.synchronize(tr.device)
        t0 = time.perf_counter()
        for _ in range(steps):
            logs = tr.train_step()
        float(logs["loss_d"])
        return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="dcgan")
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("docs/bench_speed_options.json"))
    args = ap.parse_args()
    rows = []
    for name, opts in MODES.items():
        ips = measure(
            args.model, args.resolution, args.channels, args.batch, args.steps, args.warmup, **opts
        )
        rows.append({"mode": name, "options": opts, "img_per_s": round(ips, 1)})
    base = rows[0]["img_per_s"]
    print(
        f"{args.model}-{args.resolution} ({args.channels} ch), batch {args.batch}, "
        f"{args.steps} steps after {args.warmup} warm-up, torch {torch.__version__}, "
        f"{os.cpu_count()} cores"
    )
    print("| mode | images/s | vs fp32 |\n|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} | {r['img_per_s']:.0f} | {r['img_per_s'] / base:.2f}x |")
    doc = {
        "benchmark": "speed_options",
        "model": args.model,
        "resolution": args.resolution,
        "channels": args.channels,
        "batch": args.batch,
        "steps": args.steps,
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "torch": torch.__version__,
        },
        "date": time.strftime("%Y-%m-%d"),
        "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
