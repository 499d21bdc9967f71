"""Faults injected into real training runs: kill -9, SIGINT/SIGTERM, a full or read-only disk.

Every run here is a `gankit train` process on the bundled digits (a tiny DCGAN at 16x16, a
checkpoint every step so that kills land in the middle of writes), compared with the same run
left alone. "Nothing lost" is checked literally: after the faults and the resumes, the final
weights and optimiser state equal the uninterrupted run's bit for bit.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gankit.checkpoint import list_checkpoints, load_checkpoint, read_checkpoint
from gankit.cli import main
from tests.killing import CHECKPOINT, CUT, STAGES, Kill, held, hold_env, kill_once, wait_until

# 400 steps of 16 images. An attempt goes at most 20 checkpoints further (its hold stops it),
# so 20 kills use at most 10 x (12 + 8) + 10 x 4 = 240 of them: the run cannot end before the
# last kill, however fast or slow the machine.
KIMG = "6.4"
RUN = [
    *("--data", "digits", "--resolution", "16", "--batch-size", "16", "--no-progress"),
    *("--set", "ngf=8", "--set", "ndf=8", "--set", "seed=5", "--set", "log_every=5"),
    *("--set", "ckpt_every_kimg=0.016", "--set", "sample_every_kimg=0.8"),
]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
# Only a safety net against a hang: no command here takes a tenth of it on a loaded machine.
HANG_S = 600


def _start(
    *args: str | Path, limit_bytes: int | None = None, env: dict[str, str] | None = None
) -> subprocess.Popen:
    def limit() -> None:  # a real EFBIG for any file above limit_bytes (Python ignores SIGXFSZ)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.Popen(
        [sys.executable, "-m", "gankit", "train", *map(str, args)],
        env=env or ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=limit if limit_bytes else None,
    )


def _run(*args: str | Path, **kw) -> tuple[int, str]:
    proc = _start(*args, **kw)
    out, err = proc.communicate(timeout=HANG_S)
    return proc.returncode, out + err


def _until_held(proc: subprocess.Popen, hold: Path) -> dict:
    """Wait for the hold's announcement; fail with the output if the process ended first."""
    if not wait_until(proc, lambda: held(hold) is not None):
        out, err = proc.communicate(timeout=HANG_S)
        pytest.fail(f"exit code {proc.returncode} before the hold:\n{out}{err}")
    return held(hold)  # type: ignore[return-value]


def _new(run: Path) -> tuple[str | Path, ...]:
    return ("dcgan", *RUN, "--kimg", KIMG, "--run-dir", run)


def _resume(run: Path) -> tuple[str | Path, ...]:
    return ("--resume", run, "--no-progress")


def _temp_files(run: Path) -> list[Path]:
    return [p for d in (run, run / "checkpoints", run / "samples") for p in d.glob(".*.tmp")]


def _assert_same_state(run: Path, ref: Path) -> None:
    a, b = load_checkpoint(ref), load_checkpoint(run)
    assert a.nimg == b.nimg == int(float(KIMG) * 1000)
    assert set(a.tensors) == set(b.tensors)
    for key, value in a.tensors.items():
        if not key.startswith("rng."):  # weights, EMA, BN buffers, Adam moments
            torch.testing.assert_close(b.tensors[key], value, rtol=0, atol=0, msg=key)


def _assert_usable(run: Path) -> None:
    """Every checkpoint a loader can see is complete; the metrics log parses."""
    for path in list_checkpoints(run):
        read_checkpoint(path)  # raises on a partial or damaged file
    lines = (
        (run / "metrics.jsonl").read_text().splitlines() if (run / "metrics.jsonl").exists() else []
    )
    for line in lines[:-1]:  # a kill may cut the last line short; the loader skips it
        json.loads(line)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same run, never interrupted."""
    run = tmp_path_factory.mktemp("faults") / "ref"
    rc, out = _run(*_new(run))
    assert rc == 0, out
    return run


def test_kill_9_twenty_times_loses_nothing(reference: Path, tmp_path: Path) -> None:
    """SIGKILL at moments the run announces: half of them in the middle of a checkpoint write
    (the process held at one of its stages), the others at start-up or after a chosen step;
    each time --resume goes on from the newest complete checkpoint, and the end is the same."""
    run = tmp_path / "run"
    rng = random.Random(7)
    kills: list[Kill] = []
    progress = [0]
    while len(kills) < 20:
        aim = len(kills) % 2 == 1  # odd kills: in the middle of a checkpoint write
        kill = kill_once(
            _new(run), _resume(run), run, tmp_path / f"attempt{len(kills)}", rng,
            aim_at_write=aim, total_nimg=int(float(KIMG) * 1000), ckpt_nimg=16, env=ENV,
            stage=STAGES[len(kills) // 2 % len(STAGES)] if aim else None,  # each stage in turn
        )  # fmt: skip
        kills.append(kill)
        what = f"kill {len(kills)} ({kill.kind}, hold at {kill.hold}): {kill.output}"
        if kill.kind == "in a write":  # it always lands at the hold, so exactly there
            assert kill.held_at is not None, what
            tmp = Path(kill.held_at["file"]).name
            assert kill.cut == ([tmp] if kill.held_at["stage"] in CUT else []), what
        _assert_usable(run)
        progress.append(kill.newest)
        assert progress[-1] >= progress[-2], f"a complete checkpoint was lost; {what}"
    mid_write = sum(bool(k.cut) for k in kills)
    at = sorted({k.held_at["stage"] for k in kills if k.held_at and k.kind == "in a write"})
    print(
        f"\nkill -9: {len(kills)} kills, {mid_write} during a checkpoint write, "
        f"{sum(k.kind == 'start-up' for k in kills)} at start-up, "
        f"{sum(k.held_at is None for k in kills)} free-running, progress {progress}"
    )
    # The plan follows from the seed alone, so these hold on any machine.
    assert {k.kind for k in kills} == {"start-up", "in a write", "after a step"}
    assert at == sorted(STAGES), f"the writes were held only at {at}"
    assert mid_write >= 3, f"only {mid_write} of the kills hit a checkpoint write"
    rc, out = _run(*_resume(run))
    assert rc == 0, out
    assert not _temp_files(run), "resume removes the temp files that kills left behind"
    _assert_same_state(run, reference)
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)), "each logged step appears once, in order"


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_saves_the_step_and_exits_with_its_code(
    tmp_path: Path, sig: int, code: int
) -> None:
    """The signal comes while step 1's checkpoint is being written (the process is held
    there): the write completes, step 2 is the one the signal ends, and it is saved."""
    run, hold = tmp_path / "run", tmp_path / "hold"
    proc = _start(*_new(run), env=hold_env(ENV, hold, CHECKPOINT, 1, "written"))
    _until_held(proc, hold)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=HANG_S)
    assert proc.returncode == code, err
    name = "SIGINT" if sig == signal.SIGINT else "SIGTERM"
    assert f"stopped by {name}" in err and f"gankit train --resume {run}" in err
    ck = load_checkpoint(run)
    assert str(ck.path) in err  # the checkpoint of the step the signal ended
    assert ck.nimg == 32 and ck.meta["step"] == 2
    assert [p.name for p in list_checkpoints(run)] == [
        "ckpt-000000016.safetensors",  # the write the signal came in is whole
        "ckpt-000000032.safetensors",
    ]
    assert not _temp_files(run)
    events = [json.loads(x) for x in (run / "events.jsonl").read_text().splitlines()]
    assert events[-1]["event"] == "stopped" and events[-1]["nimg"] == ck.nimg
    rc, out = _run(*_resume(run), "--kimg", str((ck.nimg + 32) / 1000))
    assert rc == 0, out
    assert load_checkpoint(run).nimg == ck.nimg + 32


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_full_disk_stops_with_a_clear_error_and_keeps_the_last_checkpoint(
    tmp_path: Path,
) -> None:
    """A real write failure (RLIMIT_FSIZE: EFBIG for every file past a size) while the next
    checkpoint is written; then the same run resumes once there is room again."""
    run = tmp_path / "run"
    rc, out = _run("dcgan", *RUN, "--kimg", "0.16", "--run-dir", run)
    assert rc == 0, out
    last = list_checkpoints(run)[-1]
    before = _sha(last)
    rc, out = _run(*_resume(run), "--kimg", "0.32", limit_bytes=last.stat().st_size - 4096)
    assert rc == 1, out
    assert "cannot write to the run folder" in out and "Traceback" not in out
    assert f"{last}, is intact" in out and f"--resume {run}" in out
    assert _sha(last) == before and list_checkpoints(run)[-1] == last
    assert not _temp_files(run), "the half-written temp file is removed"
    rc, out = _run(*_resume(run), "--kimg", "0.32")
    assert rc == 0, out
    assert load_checkpoint(run).nimg == 320


@pytest.mark.parametrize(
    "code,words", [(errno.ENOSPC, "the disk is full"), (errno.EROFS, "read-only")]
)
def test_write_errors_mid_run_name_the_intact_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, code: int, words: str
) -> None:
    import gankit.checkpoint as ckpt

    run = tmp_path / "run"
    real = ckpt.atomic_write_bytes
    calls = {"n": 0}

    def failing(path, data):  # the third checkpoint write fails, as on a full disk
        if Path(path).name.startswith("ckpt-"):
            calls["n"] += 1
            if calls["n"] == 3:
                raise OSError(code, os.strerror(code), str(path))
        return real(path, data)

    monkeypatch.setattr(ckpt, "atomic_write_bytes", failing)
    rc = main(["train", "dcgan", *RUN, "--kimg", "0.16", "--run-dir", str(run)])
    err = capsys.readouterr().err
    assert rc == 1, err
    assert words in err and "ckpt-000000032.safetensors, is intact" in err
    assert load_checkpoint(run).nimg == 32


def test_a_read_only_output_folder_is_a_clear_error(tmp_path: Path, capsys) -> None:
    if os.geteuid() != 0:
        target = tmp_path / "ro"
        target.mkdir()
        target.chmod(0o555)
        out = target / "run"
    else:  # root writes through permission bits; /sys refuses even root
        out = Path("/sys/gankit-test-run")
        try:
            out.mkdir()
        except OSError:
            pass
        else:
            out.rmdir()
            pytest.skip("no folder here refuses writes by root")
    rc = main(["train", "dcgan", *RUN, "--kimg", "0.032", "--run-dir", str(out)])
    err = capsys.readouterr().err
    assert rc == 1 and "gankit: error: cannot write" in err and "Traceback" not in err


def test_sigterm_to_gankit_train_nproc_2_stops_every_rank_with_a_checkpoint(tmp_path: Path) -> None:
    """The launcher passes SIGTERM to torchrun, the ranks agree to stop after the same step,
    rank 0 saves; then one process resumes the run. The signal comes while rank 0 writes
    step 1's checkpoint (held there), so step 2 is the one both ranks stop after."""
    run, hold = tmp_path / "run", tmp_path / "hold"
    env = hold_env(ENV, hold, CHECKPOINT, 1, "written")  # the ranks inherit it
    proc = _start("dcgan", *RUN, "--kimg", KIMG, "--run-dir", run, "--nproc", "2", env=env)
    _until_held(proc, hold)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=HANG_S)
    assert proc.returncode == 143, out + err
    ck = load_checkpoint(run)
    assert ck.nimg == 32, out + err
    assert err.count("gankit: stopped by SIGTERM") == 1 and str(ck.path) in err  # rank 0 only
    assert json.loads((run / "events.jsonl").read_text().splitlines()[-1])["nimg"] == ck.nimg
    rc, log = _run(*_resume(run), "--kimg", str((ck.nimg + 32) / 1000))
    assert rc == 0, log


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _alive(pid: int) -> bool:
    """Whether `pid` still runs (a zombie that nobody reaped has ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _rank_pid(launcher: int, rank: int) -> int | None:
    """The pid of a rank under `gankit train --nproc` (launcher -> torchrun -> ranks)."""
    for torchrun in _children(launcher):
        for pid in _children(torchrun):
            try:
                env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"RANK={rank}".encode() in env:
                return pid
    return None


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds the ranks through /proc")
@pytest.mark.parametrize("victim", [0, 1])
def test_kill_9_of_one_ddp_rank_stops_the_run_and_it_resumes(tmp_path: Path, victim: int) -> None:
    """SIGKILL to one rank of `--nproc 2` (rank 0 writes the checkpoints, rank 1 does not):
    the other rank is stopped, the command exits with an error naming the last checkpoint,
    every checkpoint on disk is whole, and one process resumes the run to its end. The kill
    comes once rank 0 has renamed its third checkpoint into place (held there)."""
    run, hold = tmp_path / "run", tmp_path / "hold"
    env = hold_env(ENV, hold, CHECKPOINT, 3, "renamed")
    proc = _start("dcgan", *RUN, "--kimg", KIMG, "--run-dir", run, "--nproc", "2", env=env)
    _until_held(proc, hold)
    pid, other = _rank_pid(proc.pid, victim), _rank_pid(proc.pid, 1 - victim)
    assert pid is not None and other is not None, proc.communicate(timeout=HANG_S)
    os.kill(pid, signal.SIGKILL)
    # A rank left waiting on the dead one would wait out gloo's 30-minute timeout: far past
    # HANG_S, so it fails here instead of ending the run.
    out, err = proc.communicate(timeout=HANG_S)
    assert proc.returncode == 1, out + err
    assert not _alive(other), "the other rank outlived the run"
    last = list_checkpoints(run)[-1]
    assert f"the last checkpoint is {last}; continue with: gankit train --resume {run}" in err
    _assert_usable(run)
    nimg = load_checkpoint(run).nimg
    rc, log = _run(*_resume(run), "--kimg", str((nimg + 64) / 1000))
    assert rc == 0, log
    assert load_checkpoint(run).nimg == nimg + 64
