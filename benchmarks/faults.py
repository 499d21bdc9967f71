"""Fault campaign: kill -9 a training run many times, resume it each time, and check that
nothing was lost (the end state equals an uninterrupted run's, bit for bit).

The same as tests/training/test_faults.py's kill test, longer and with a tally: how many kills fell
before the run's first checkpoint, how many in the middle of a checkpoint write (seen as the
temp file left behind), how many damaged files a loader was ever shown (must be 0). Every kill
is aimed at a moment the run announces (tests/killing.py), never at a time, so a slow or busy
machine makes the campaign slower, not different.

    python benchmarks/faults.py                 # 60 kills -> docs/bench_faults.json
    python benchmarks/faults.py --kills 20 --out /tmp/faults.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.killing import kill_once  # noqa: E402

from gankit.checkpoint import list_checkpoints, load_checkpoint, read_checkpoint
from gankit.errors import UserError
from machine_info import machine  # benchmarks/ is on sys.path

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
CKPT_NIMG = 16  # ckpt_every_kimg=0.016: a checkpoint after every step of 16 images
RUN = [
    *("--data", "digits", "--resolution", "16", "--batch-size", "16", "--no-progress"),
    *("--set", "ngf=8", "--set", "ndf=8", "--set", "seed=5", "--set", "log_every=5"),
    *("--set", "ckpt_every_kimg=0.016", "--set", "sample_every_kimg=0.8"),
]


def gankit(*args: str | Path) -> int:
    """Run `gankit train ARGS` to its end; its exit code."""
    cmd = [sys.executable, "-m", "gankit", "train", *map(str, args)]
    return subprocess.run(cmd, env=ENV, stdout=subprocess.DEVNULL).returncode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=60)
    ap.add_argument("--kimg", type=float, default=12.8)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "bench_faults.json")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    tally = {"kills": 0, "before_first_checkpoint": 0, "mid_checkpoint_write": 0,
             "held_in_a_write": 0, "at_start_up": 0, "after_a_step": 0,
             "damaged_files_seen": 0, "resumes": 0}  # fmt: skip
    t_start = time.time()
    total = int(args.kimg * 1000)
    # An attempt goes at most 20 checkpoints further (kill_once's hold stops it there), one
    # whose kill is aimed at a write at most 4.
    if total // CKPT_NIMG <= 20 * (args.kills - args.kills // 2) + 4 * (args.kills // 2) + 2:
        raise SystemExit(f"--kimg {args.kimg:g} is too short for {args.kills} kills")
    with tempfile.TemporaryDirectory() as tmp:
        ref, run = Path(tmp) / "ref", Path(tmp) / "run"
        new = ["dcgan", *RUN, "--kimg", str(args.kimg)]
        assert gankit(*new, "--run-dir", ref) == 0
        progress = [0]
        while tally["kills"] < args.kills:
            aim = tally["kills"] % 2 == 1  # odd kills: in the middle of a checkpoint write
            kill = kill_once(
                [*new, "--run-dir", run], ["--resume", run, "--no-progress"], run,
                Path(tmp) / f"attempt{tally['kills']}", rng, aim_at_write=aim,
                total_nimg=total, ckpt_nimg=CKPT_NIMG, env=ENV,
            )  # fmt: skip
            tally["kills"] += 1
            tally["resumes"] += kill.resumed
            tally["mid_checkpoint_write"] += bool(kill.cut)
            tally["held_in_a_write"] += aim
            tally["at_start_up"] += kill.kind == "start-up"
            tally["after_a_step"] += kill.kind == "after a step"
            tally["before_first_checkpoint"] += not list_checkpoints(run)
            for path in list_checkpoints(run):
                try:
                    read_checkpoint(path)
                except UserError:
                    tally["damaged_files_seen"] += 1
            progress.append(kill.newest)
            assert progress[-1] >= progress[-2], "a complete checkpoint was lost"
            where = kill.held_at["stage"] if kill.held_at else "running"
            print(f"kill {tally['kills']:3d}: {kill.kind:12s} ({where:8s}) "
                  f"{'cut a write' if kill.cut else '           '} "
                  f"newest checkpoint {progress[-1]} images", flush=True)  # fmt: skip
        assert gankit("--resume", run, "--no-progress") == 0
        a, b = load_checkpoint(ref), load_checkpoint(run)
        differing = [k for k in a.tensors if not k.startswith("rng.")
                     and not torch.equal(a.tensors[k], b.tensors[k])]  # fmt: skip
        leftovers = [str(p) for p in run.rglob(".*.tmp")]
    result = {
        "machine": machine(),
        "command": "python benchmarks/faults.py " + " ".join(sys.argv[1:]),
        "kimg": args.kimg,
        **tally,
        "final_nimg": b.nimg,
        "reference_nimg": a.nimg,
        "tensors_compared": len([k for k in a.tensors if not k.startswith("rng.")]),
        "tensors_differing": len(differing),
        "temp_files_left": len(leftovers),
        "seconds": round(time.time() - t_start, 1),
    }
    print(json.dumps(result, indent=2))
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
