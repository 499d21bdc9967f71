"""Data-parallel training: 2 CPU processes with gloo against one process on the same batch.

The ranks are started with torch.multiprocessing (a file store, no network port) for the
trainer-level checks, and with `gankit train --nproc 2` (torchrun) for the command line.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from gankit.checkpoint import load_checkpoint
from gankit.config import RunConfig
from gankit.distributed import GlobalBatchNorm, convert_sync_batchnorm, torchrun_command
from gankit.models import create_model, list_models
from gankit.training.run import resolve_train_config
from gankit.training.trainer import Trainer
from tests.conftest import synthetic_dataset, tiny_overrides

STEPS = 3
BATCH = 16  # the global batch: 8 images per rank
# Same maths, other summation order (per-rank sums, all-reduced): float32 rounding, amplified
# a little by Adam's division by sqrt(v) for weights with tiny gradients.
RTOL, ATOL = 1e-4, 2e-5


def _rc(name: str = "dcgan", **train) -> RunConfig:
    """Each model with its customary setup (InfoGAN's info term, WGAN's n_critic...)."""
    # fp32: bf16 (which a recipe's precision=auto may pick) rounds the two ranks' halves
    # differently from one process's whole batch
    over = {"batch_size": BATCH, "kimg": 1.0, "ema_kimg": 0.05, "log_every": 1,
            "precision": "fp32", **train}  # fmt: skip
    cfg = resolve_train_config(name, "digits", over)
    return RunConfig(model=name, model_config=tiny_overrides(name), train=cfg)


def _weights(tr: Trainer) -> dict[str, torch.Tensor]:
    tensors, _ = tr.state.pack()
    return {k: v.contiguous() for k, v in tensors.items() if not k.startswith("rng.")}


def _ddp_worker(rank: int, world: int, store: str, out: str, names: list[str], train: dict):
    """One rank: train STEPS steps of each model; rank 0 saves the final weights."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        for name in names:
            ds = synthetic_dataset(n=48)
            run = Path(out) / name
            tr = Trainer(_rc(name, **train), run, ds, progress=False, tensorboard=False)
            assert tr.world.size == world and tr.local_batch == BATCH // world
            for _ in range(STEPS):
                tr.train_step()
            save_file(_weights(tr), str(Path(out) / f"{name}.{rank}.safetensors"))
    finally:
        dist.destroy_process_group()


def _run_ranks(tmp_path: Path, names: list[str], world: int = 2, **train) -> Path:
    out = tmp_path / "ddp"
    out.mkdir()
    mp.spawn(
        _ddp_worker,
        args=(world, str(tmp_path / "store"), str(out), names, train),
        nprocs=world,
        join=True,
    )
    return out


def _single(tmp_path: Path, name: str = "dcgan", **train) -> dict[str, torch.Tensor]:
    tr = Trainer(_rc(name, **train), tmp_path / "single" / name, synthetic_dataset(n=48),
                 progress=False, tensorboard=False)  # fmt: skip
    for _ in range(STEPS):
        tr.train_step()
    return _weights(tr)


def test_two_processes_match_one_process_on_the_global_batch(tmp_path):
    """With global batch statistics (sync_bn), 2 gloo ranks with 8 images each end with the
    weights (G, D, G_ema, Adam moments) of 1 process with 16; without sync_bn each rank
    normalises its own 8 and the weights differ, which shows the comparison can fail."""
    out = _run_ranks(tmp_path, ["dcgan"], sync_bn=True)
    ddp = load_file(str(out / "dcgan.0.safetensors"))
    one = _single(tmp_path)
    assert set(ddp) == set(one)
    for key in one:
        torch.testing.assert_close(ddp[key], one[key], rtol=RTOL, atol=ATOL, msg=key)


def test_without_sync_bn_the_ranks_normalise_their_own_slice(tmp_path):
    (tmp_path / "a").mkdir()
    out = _run_ranks(tmp_path / "a", ["dcgan"], sync_bn=False)
    ddp = load_file(str(out / "dcgan.0.safetensors"))
    one = _single(tmp_path)
    key = "G.net.main.0.weight"
    assert not torch.allclose(ddp[key], one[key], rtol=RTOL, atol=ATOL)


def test_every_model_trains_under_ddp(tmp_path):
    """Each registered model takes steps on 2 ranks (no DDP error from parameters that get no
    gradient, objective state averaged: BEGAN's k_t); the weights stay finite and the two
    ranks' copies stay identical (which fails if any gradient or state is not averaged)."""
    names = list_models()
    out = _run_ranks(tmp_path, names)
    for name in names:
        w0 = load_file(str(out / f"{name}.0.safetensors"))
        w1 = load_file(str(out / f"{name}.1.safetensors"))
        assert all(torch.isfinite(v.float()).all() for v in w0.values()), name
        m = create_model(name, **_rc(name).train.d_options(), **tiny_overrides(name))
        buffers = {f"{net}.{b}" for net in ("G", "D", "G_ema") for b, _ in
                   getattr(m, net[0]).named_buffers()}  # fmt: skip
        # the ranks apply the same averaged gradients: identical weights and Adam moments;
        # buffers (running statistics, StyleGAN's w_avg) are rank 0's, which DDP broadcasts
        for key in set(w0) - buffers:
            torch.testing.assert_close(w1[key], w0[key], rtol=0, atol=0, msg=f"{name} {key}")


def _bn_worker(rank: int, world: int, store: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        x = torch.randn(8, 3, 4, 4) * 3 + 1
        bn = GlobalBatchNorm(3)
        with torch.no_grad():
            bn.weight.copy_(torch.tensor([0.5, 1.0, 2.0]))
            bn.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
        part = x[rank * 4 : (rank + 1) * 4].clone().requires_grad_(True)
        y = bn(part)
        (y * torch.arange(y.numel()).view_as(y).float().sin()[:, :, :, :]).sum().backward()
        save_file(
            {"y": y.detach(), "gx": part.grad, "gw": bn.weight.grad, "gb": bn.bias.grad,
             "rm": bn.running_mean, "rv": bn.running_var},
            str(Path(out) / f"bn{rank}.safetensors"),
        )  # fmt: skip
    finally:
        dist.destroy_process_group()


def _auto_worker(rank: int, world: int, store: str, out: str) -> None:
    """Rank 0 measures bf16 as faster, rank 1 as slower: precision=auto must still agree."""
    from gankit import device as dev

    torch.set_num_threads(1)
    dev.torch.ops.mkldnn._is_mkldnn_bf16_supported = lambda: True
    dev.torch.cpu._is_avx512_bf16_supported = lambda: True
    dev.cpu_bf16_speedup = functools.cache(lambda: 2.0 if rank == 0 else 0.5)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        run = Path(out) / "auto"
        tr = Trainer(_rc(precision="auto"), run, synthetic_dataset(n=48), progress=False,
                     tensorboard=False)  # fmt: skip
        tr.train_step()
        Path(out, f"amp{rank}").write_text(str(tr.amp_dtype))
    finally:
        dist.destroy_process_group()


def test_auto_precision_takes_rank_0s_choice_on_every_rank(tmp_path):
    mp.spawn(_auto_worker, args=(2, str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True)
    assert (tmp_path / "amp0").read_text() == (tmp_path / "amp1").read_text() == "torch.bfloat16"


def test_global_batch_norm_is_batch_norm_over_all_ranks(tmp_path):
    """Outputs, input gradients, affine gradients and running statistics of 2 ranks with 4
    samples each equal torch's BatchNorm2d on all 8 (the weight/bias gradients are all-reduced
    by DDP in training, so here they are summed over the ranks)."""
    mp.spawn(_bn_worker, args=(2, str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True)
    r = [load_file(str(tmp_path / f"bn{i}.safetensors")) for i in range(2)]
    torch.manual_seed(0)
    x = (torch.randn(8, 3, 4, 4) * 3 + 1).requires_grad_(True)
    bn = torch.nn.BatchNorm2d(3)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([0.5, 1.0, 2.0]))
        bn.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    y = bn(x)
    w = torch.arange(4 * 3 * 16).view(4, 3, 4, 4).float().sin()
    (y * torch.cat([w, w])).sum().backward()
    torch.testing.assert_close(torch.cat([r[0]["y"], r[1]["y"]]), y.detach())
    torch.testing.assert_close(torch.cat([r[0]["gx"], r[1]["gx"]]), x.grad)
    torch.testing.assert_close(r[0]["gw"] + r[1]["gw"], bn.weight.grad)
    torch.testing.assert_close(r[0]["gb"] + r[1]["gb"], bn.bias.grad)
    torch.testing.assert_close(r[0]["rm"], bn.running_mean)
    torch.testing.assert_close(r[0]["rv"], bn.running_var)


def test_convert_sync_batchnorm_keeps_the_state_dict():
    from gankit.models import create_model

    torch.manual_seed(0)
    m = create_model("dcgan", **tiny_overrides("dcgan"))
    before = {k: v.clone() for k, v in m.D.state_dict().items()}
    D = convert_sync_batchnorm(m.D, torch.device("cpu"))
    assert any(isinstance(mod, GlobalBatchNorm) for mod in D.modules())
    assert not any(type(mod) is torch.nn.BatchNorm2d for mod in D.modules())  # all replaced
    after = D.state_dict()
    assert set(after) == set(before)
    for k in before:
        torch.testing.assert_close(after[k], before[k])
    x = torch.randn(4, 1, 16, 16)  # no process group: plain batch norm
    torch.manual_seed(0)
    torch.testing.assert_close(D(x), create_model("dcgan", **tiny_overrides("dcgan")).D(x))


def _gankit(*args: str, nproc: int | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if nproc is None:
        cmd = [sys.executable, "-m", "gankit", "train", *args]
    else:
        cmd = [sys.executable, "-m", "gankit", "train", "--nproc", str(nproc), *args]
    # The timeout is only a safety net against a hang (a lost rank would wait 30 minutes).
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


def test_cli_nproc_runs_torchrun_and_resumes_either_way(tmp_path):
    """`gankit train --nproc 2` writes one run (rank 0); it resumes on one process, and a
    one-process run resumes on two. The checkpoint does not depend on the process count."""
    run = tmp_path / "run"
    common = ["--data", "digits", "--resolution", "16", "--batch-size", "16",
              "--set", "ngf=8", "--set", "ndf=8", "--sync-bn", "--no-progress"]  # fmt: skip
    p = _gankit("dcgan", "--run-dir", str(run), "--kimg", "0.032", *common, nproc=2)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "starting 2 processes" in p.stdout
    assert (run / "config.json").is_file() and (run / "samples" / "reals.png").is_file()
    ck = load_checkpoint(run)
    assert ck.nimg == 32 and ck.meta["step"] == 2
    assert '"processes": 2' in (run / "config.json").read_text()
    p = _gankit("--resume", str(run), "--kimg", "0.064", "--no-progress")
    assert p.returncode == 0, p.stdout + p.stderr
    assert load_checkpoint(run).nimg == 64
    p = _gankit("--resume", str(run), "--kimg", "0.096", "--no-progress", nproc=2)
    assert p.returncode == 0, p.stdout + p.stderr
    assert load_checkpoint(run).nimg == 96
    assert '"processes": 2' in (run / "config.json").read_text()


def test_a_batch_that_does_not_split_is_refused(tmp_path, capsys):
    from gankit.cli import main

    code = main(["train", "dcgan", "--run-dir", str(tmp_path / "r"), "--batch-size", "15",
                 "--nproc", "2"])  # fmt: skip
    assert code == 2
    assert "split evenly over 2 processes" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_torchrun_command_line():
    cmd = torchrun_command(4, ["dcgan", "--kimg", "1"])
    assert cmd[1:4] == ["-m", "torch.distributed.run", "--standalone"]
    assert "--nproc-per-node=4" in cmd
    assert cmd[-5:] == ["-m", "gankit.train", "dcgan", "--kimg", "1"]


@pytest.mark.parametrize("bad", ["0", "-1"])
def test_nproc_must_be_positive(bad, capsys):
    from gankit.cli import main

    assert main(["train", "dcgan", "--nproc", bad]) == 2
    assert "--nproc must be >= 1" in capsys.readouterr().err


def test_failure_hint_without_a_known_folder_or_checkpoint(tmp_path):
    from gankit.distributed import failure_hint

    assert failure_hint(None).endswith("gankit train --resume RUN")
    assert failure_hint(tmp_path / "never").endswith(
        f"no checkpoint was written yet in {tmp_path / 'never'}"
    )
