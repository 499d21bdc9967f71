"""Kill a training process at a chosen kind of moment (shared by tests/test_faults.py and
benchmarks/faults.py)."""

from __future__ import annotations

import os
import random
import subprocess
import time
from pathlib import Path


def temp_names(run: Path) -> set[str]:
    """Temp files (cut or ongoing checkpoint writes) in a run's checkpoints/ folder."""
    folder = run / "checkpoints"
    return {e.name for e in os.scandir(folder) if e.name[0] == "."} if folder.is_dir() else set()


def kill_at_a_moment(
    proc: subprocess.Popen, run: Path, rng: random.Random, aim_at_write: bool
) -> bool:
    """SIGKILL `proc`, which trains into `run`: either during the k-th checkpoint write of
    this attempt (k from 1 to 4, seen as its temp file), or at a random time from start-up
    to well into training. False when the process ended before it could be killed."""
    k = rng.randint(1, 4)
    deadline = time.monotonic() + (15.0 if aim_at_write else rng.uniform(1.0, 7.0))
    stale = temp_names(run)  # left by earlier kills: not this attempt's writes
    seen: set[str] = set()
    while time.monotonic() < deadline and proc.poll() is None:
        if aim_at_write:
            seen |= temp_names(run) - stale
            if len(seen) >= k:
                break
            time.sleep(0.0002)
        else:
            time.sleep(0.01)
    if proc.poll() is not None:
        return False
    proc.kill()
    proc.communicate()
    return True
