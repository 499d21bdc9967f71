"""Kill a training process at moments it announces (shared by tests/training/test_faults.py and
benchmarks/faults.py).

Where a kill lands is decided by events, never by a clock, so that a slow or loaded machine
changes how long a campaign takes but not what it does:

- A *hold* stops a `gankit train` process at one stage of one of its atomic writes (the n-th
  checkpoint, or config.json) and announces it in a file; the process stays there until it
  is killed, or until SIGINT / SIGTERM has reached its own handler (then it goes on as
  usual). The hold is installed in the process, and in every process it starts (torchrun's
  ranks), by a `sitecustomize` module that `hold_env` puts on PYTHONPATH; nothing else about
  the process changes: the same command, the same code path, the same bits.
- `kill_once` kills either at a hold (exactly there), or once the run has written the
  checkpoint of a chosen step (then wherever the process has got to; a hold a few checkpoints
  further on makes sure it cannot reach the end of the run first).
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

HOLD_VAR = "GANKIT_TEST_HOLD"
# The stages of gankit.files.atomic_write_bytes a hold can stop at: the temp file exists
# (empty); its bytes are written, not yet fsynced; fsynced, not yet renamed; renamed into
# place (older checkpoints not yet pruned). A kill at one of the first three cuts the write:
# its temp file is left behind.
STAGES = ("created", "written", "synced", "renamed")
CUT = STAGES[:3]
CHECKPOINT = r"ckpt-\d{9,}\.safetensors"  # gankit.checkpoint.CKPT_RE, unanchored
CONFIG = r"config\.json"
_CKPT_NIMG = re.compile(r"ckpt-(\d{9,})\.safetensors")

_SITECUSTOMIZE = """\
# Written by tests/killing.py: holds this process where {var} says (see install_hold).
import importlib.util, sys
_spec = importlib.util.spec_from_file_location("gankit_test_killing", {path!r})
_mod = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _mod  # dataclasses look their module up there
_spec.loader.exec_module(_mod)
_mod.install_hold()
"""


# ----------------------------------------------------------------------------- in the process


def install_hold() -> None:
    """Patch tempfile.mkstemp, os.fsync and os.replace (what gankit.files.atomic_write_bytes
    calls, through those modules) so that this process stops at the write that
    $GANKIT_TEST_HOLD describes and announces it."""
    spec = json.loads(os.environ.get(HOLD_VAR) or "null")
    if spec is None:
        return
    name, n, stage = re.compile(spec["name"]), int(spec["n"]), spec["stage"]
    announce = Path(spec["announce"])
    real_mkstemp, real_fsync, real_replace = tempfile.mkstemp, os.fsync, os.replace
    writes = [0]
    target: dict = {}  # fd and temp path of the n-th matching write; done once held/renamed

    def hold(file: str) -> None:
        target["done"] = True

        def say() -> None:
            part = announce.with_name(f"{announce.name}.{os.getpid()}.part")
            part.write_text(json.dumps({"stage": stage, "file": file, "pid": os.getpid()}))
            real_replace(part, announce)  # whole or absent: the test never reads half of it

        _wait_for_a_signal(say)

    def mkstemp(*args, **kwargs):
        fd, tmp = real_mkstemp(*args, **kwargs)
        # atomic_write_bytes names its temp file ".{name}.XXXXXXXX.tmp"
        m = re.fullmatch(r"\.(.+)\.[^.]+\.tmp", os.path.basename(tmp))
        if "tmp" not in target and m and name.fullmatch(m.group(1)):
            writes[0] += 1
            if writes[0] == n:
                target.update(fd=fd, tmp=tmp)
                if stage == "created":
                    hold(tmp)
        return fd, tmp

    def fsync(fd):
        if stage == "written" and not target.get("done") and target.get("fd") == fd:
            hold(target["tmp"])
        return real_fsync(fd)

    def replace(src, dst, *args, **kwargs):
        mine = not target.get("done") and os.fspath(src) == target.get("tmp")
        if mine and stage == "synced":
            hold(target["tmp"])
        out = real_replace(src, dst, *args, **kwargs)
        if mine and stage == "renamed":
            hold(os.fspath(dst))
        if mine:
            target["done"] = True
        return out

    tempfile.mkstemp, os.fsync, os.replace = mkstemp, fsync, replace


def _wait_for_a_signal(announce: Callable[[], None]) -> None:
    """Announce, then block until SIGKILL; or until SIGINT / SIGTERM has run the handler the
    program installed (which sets its stop flag), then return: the program goes on as it
    would have. The relays are in place before the announcement, so no signal is missed."""
    got: list[int] = []
    old = {}
    if threading.current_thread() is threading.main_thread():  # Python's rule for handlers
        for sig in (signal.SIGINT, signal.SIGTERM):
            handler = signal.getsignal(sig)
            if callable(handler):

                def relay(signum, frame, handler=handler):
                    got.append(signum)
                    handler(signum, frame)

                old[sig] = handler
                signal.signal(sig, relay)
    try:
        announce()
        while not got:
            time.sleep(0.05)  # a signal's handler runs during the sleep; nothing is timed
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


# ----------------------------------------------------------------------------- in the test


def hold_env(env: Mapping[str, str], folder: Path, name: str, n: int, stage: str) -> dict[str, str]:
    """`env` plus what makes a process (and those it starts) hold at `stage` of its `n`-th
    atomic write of a file whose name matches `name`; `held(folder)` then says so.

    Args:
        env: the environment to extend (PYTHONPATH is kept, after the hook's folder).
        folder: a folder of this hold's own: the hook module and the announcement go there.
        name: regular expression for the file name (CHECKPOINT, CONFIG).
        n: which matching write of the process, from 1.
        stage: one of STAGES.
    """
    assert stage in STAGES and n >= 1, (stage, n)
    folder.mkdir(parents=True, exist_ok=True)
    hook = _SITECUSTOMIZE.format(var=HOLD_VAR, path=str(Path(__file__).resolve()))
    (folder / "sitecustomize.py").write_text(hook)
    (folder / "held").unlink(missing_ok=True)
    paths = [str(folder), *filter(None, [env.get("PYTHONPATH")])]
    spec = {"name": name, "n": n, "stage": stage, "announce": str(folder / "held")}
    return {**env, "PYTHONPATH": os.pathsep.join(paths), HOLD_VAR: json.dumps(spec)}


def held(folder: Path) -> dict | None:
    """The hold's announcement ({"stage", "file", "pid"}), or None while it has not come."""
    try:
        return json.loads((folder / "held").read_text())
    except FileNotFoundError:
        return None


def wait_until(proc: subprocess.Popen, condition: Callable[[], bool]) -> bool:
    """Poll until `condition()` is true (True) or `proc` has ended without it (False). The
    interval only sets how soon an event is noticed, never what happens."""
    while not condition():
        if proc.poll() is not None:
            return condition()
        time.sleep(0.002)
    return True


def temp_names(run: Path) -> set[str]:
    """Temp files (cut or ongoing checkpoint writes) in a run's checkpoints/ folder."""
    folder = run / "checkpoints"
    return {e.name for e in os.scandir(folder) if e.name[0] == "."} if folder.is_dir() else set()


def newest_nimg(run: Path) -> int:
    """Images seen at the run's newest complete checkpoint (0: none yet)."""
    folder = run / "checkpoints"
    names = [e.name for e in os.scandir(folder)] if folder.is_dir() else []
    found = [int(m.group(1)) for x in names if (m := _CKPT_NIMG.fullmatch(x))]
    return max(found, default=0)


@dataclass
class Kill:
    """What one kill of `kill_once` aimed at and what it hit."""

    kind: str  # "start-up" (config.json's write), "in a write" (a checkpoint's), "after a step"
    hold: str  # where the attempt was held: "STAGE of write N of NAME"
    held_at: dict | None  # the hold's announcement when the kill found the process there
    cut: list[str]  # checkpoint temp files this attempt left behind: writes cut short
    resumed: bool  # the attempt was a --resume
    newest: int  # images at the newest complete checkpoint after the kill (0: none)
    output: str  # what the process printed


def kill_once(
    new: Sequence[str | Path],
    resume: Sequence[str | Path],
    run: Path,
    folder: Path,
    rng: random.Random,
    aim_at_write: bool,
    total_nimg: int,
    ckpt_nimg: int,
    env: Mapping[str, str],
    stage: str | None = None,
) -> Kill:
    """Start `gankit train NEW...` (or `RESUME...` once `run` has a config.json) and SIGKILL it
    at a moment chosen from what the run has done so far.

    Args:
        new, resume: the `gankit train` arguments that start and that resume `run`.
        run: the run folder.
        folder: scratch space of this attempt (the hold's files, the process's output).
        rng: draws the moment.
        aim_at_write: kill in the middle of the k-th checkpoint write of the attempt (k from 1
            to 4, at one of STAGES); otherwise either at start-up (config.json's write, a
            quarter of the time) or once the checkpoint 1 to 12 steps on is written.
        total_nimg: the run's length in images; ckpt_nimg: images between checkpoints.
        env: the process's environment.
        stage: the stage of the write to hold at (default: drawn from STAGES).
    Returns:
        The Kill. Raises AssertionError when the process ended before it could be killed
        (with a hold in its way it cannot reach the end of the run: it failed).
    """
    resumed = (run / "config.json").is_file()
    start = newest_nimg(run)
    room = (total_nimg - start) // ckpt_nimg - 1  # this attempt's writes before its last
    assert room >= 2, f"only {room} checkpoints left before the run's end; make it longer"
    drawn = rng.choice(STAGES)  # drawn either way: the same seed, the same plan
    stage = stage or drawn
    target = None  # kill once the newest checkpoint has this many images
    if aim_at_write:
        kind, name, n = "in a write", CHECKPOINT, rng.randint(1, min(4, room))
    elif rng.random() < 0.25:
        kind, name, n = "start-up", CONFIG, 1
        if not resumed:
            # A new run's folder without its config.json is neither resumable nor reusable:
            # hold once it is in place (a resume rewrites an existing one: any stage will do).
            stage = "renamed"
    else:
        steps = rng.randint(1, min(12, room - 1))
        kind, name, n = "after a step", CHECKPOINT, min(steps + 8, room)
        target = start + steps * ckpt_nimg
    env = hold_env(env, folder, name, n, stage)
    stale = temp_names(run)  # left by earlier kills (a resume removes them)
    log = folder / "output.txt"
    args = resume if resumed else new
    cmd = [sys.executable, "-m", "gankit", "train", *map(str, args)]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:

        def due() -> bool:
            return held(folder) is not None or (target is not None and newest_nimg(run) >= target)

        ready = wait_until(proc, due)
    finally:
        proc.kill()  # no-op on a process that has ended
        proc.wait()
    output = log.read_text()
    killed = ready and proc.returncode == -signal.SIGKILL
    assert killed, f"gankit train ended (exit code {proc.returncode}) before its kill:\n{output}"
    return Kill(
        kind=kind,
        hold=f"{stage} of write {n} of {name}",
        held_at=held(folder),
        cut=sorted(temp_names(run) - stale),
        resumed=resumed,
        newest=newest_nimg(run),
        output=output,
    )
