"""Data-parallel training across processes: torch.distributed, as torchrun starts it.

One process per device (GPU, or a share of the CPU cores). Every rank builds the same networks
from the same seed, draws the same global batch of latents and the same data order, and trains
on its slice of the global batch; DistributedDataParallel averages the gradients, so the
weights stay identical on every rank and equal (up to rounding) to one process training on the
whole global batch. Rank 0 alone writes the run folder: logs, grids and checkpoints, whose
format does not depend on the number of processes (a run resumes on any number).

Batch norm: each rank normalises its own slice unless `sync_bn` is set; then the statistics
are those of the global batch (torch's SyncBatchNorm on CUDA; on the CPU, where torch's
SyncBatchNorm does not run, `GlobalBatchNorm` below does the same with differentiable
all-reduces). The running statistics are broadcast from rank 0 at every forward (DDP's
default), so the checkpointed buffers are rank 0's.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from .errors import UserError


@dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = World()


def current_world() -> World:
    """The World of an initialised process group, else a single process."""
    if not (dist.is_available() and dist.is_initialized()):
        return SINGLE
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and "MASTER_ADDR" in os.environ


def init_from_env(device: str = "auto") -> World:
    """Join the process group torchrun described in the environment (nccl for CUDA, else gloo).

    A CUDA rank uses the GPU numbered by its LOCAL_RANK. Returns the single-process World when
    the environment describes no group, so `python -m gankit.train` also runs alone.
    """
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        return SINGLE
    if dist.is_initialized():
        return current_world()
    cuda = device != "cpu" and torch.cuda.is_available()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if cuda else "gloo")
    return current_world()


def rank_device(device: torch.device, world: World) -> torch.device:
    """A CUDA run's rank trains on cuda:LOCAL_RANK; CPU ranks share the CPU."""
    if world.distributed and device.type == "cuda":
        return torch.device("cuda", world.local_rank)
    return device


def broadcast_object(obj: Any, world: World) -> Any:
    """Rank 0's `obj` on every rank (e.g. the run folder rank 0 chose)."""
    if not world.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def average(t: torch.Tensor, world: World) -> torch.Tensor:
    """The mean of `t` over the ranks (a new tensor; no host sync beyond the collective)."""
    if not world.distributed:
        return t
    out = t.detach().clone()
    dist.all_reduce(out)
    return out / world.size


def any_rank(flag: bool, world: World, device: torch.device) -> bool:
    """True on every rank when `flag` is true on any (a host sync: call it rarely)."""
    if not world.distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def any_rank_each(flags: torch.Tensor, world: World) -> torch.Tensor:
    """Element-wise: true on every rank where the flag is true on any (one small all-reduce)."""
    if not world.distributed:
        return flags
    t = flags.float()
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t > 0


def average_gradients(module: nn.Module, world: World) -> None:
    """Average the gradients of `module` over the ranks in place, in one flat all-reduce.

    For a network that DistributedDataParallel cannot wrap (one trained partly outside its
    forward); the result is what DDP computes.
    """
    if not world.distributed:
        return
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world.size
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


class GlobalBatchNorm(_BatchNorm):
    """Batch norm with the statistics of the batch over all ranks, for the CPU.

    The per-channel sums are combined with `torch.distributed.nn.functional.all_reduce`, which
    is differentiable (its backward all-reduces the gradient), so autograd gives exactly the
    gradient of batch norm over the global batch. Two passes (mean, then the centred sum of
    squares) keep the variance as accurate as torch's own batch norm.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        xf = x.float()
        n_local = xf.numel() // xf.shape[1]
        n = n_local * dist.get_world_size()
        mean = all_reduce(xf.sum(dims)) / n
        centred = xf - mean.view(shape)
        var = all_reduce(centred.square().sum(dims)) / n
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                assert self.running_var is not None and self.num_batches_tracked is not None
                self.num_batches_tracked.add_(1)
                m = (
                    1.0 / float(self.num_batches_tracked)
                    if self.momentum is None
                    else self.momentum
                )
                self.running_mean.lerp_(mean.detach(), m)
                self.running_var.lerp_(var.detach() * n / max(n - 1, 1), m)
        return out.to(x.dtype)


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Every batch norm of `module` made to normalise over the global batch.

    CUDA uses torch's SyncBatchNorm; the CPU uses GlobalBatchNorm. Weights and buffers are
    kept (the state dict keys do not change), so checkpoints load either way.
    """
    if device.type != "cpu":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    if isinstance(module, _BatchNorm) and not isinstance(module, GlobalBatchNorm):
        new = GlobalBatchNorm(
            module.num_features, module.eps, module.momentum, module.affine,
            module.track_running_stats,
        )  # fmt: skip
        new.load_state_dict(module.state_dict())
        new.train(module.training)
        for p_new, p_old in zip(new.parameters(), module.parameters(), strict=True):
            p_new.requires_grad_(p_old.requires_grad)
        return new
    for name, child in module.named_children():
        setattr(module, name, convert_sync_batchnorm(child, device))
    return module


def torchrun_command(nproc: int, argv: Sequence[str], *, nnodes: int = 1) -> list[str]:
    """The torchrun command line that runs `gankit train ARGV` on `nproc` local processes."""
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nnodes={nnodes}", f"--nproc-per-node={nproc}", "-m", "gankit.train", *argv,
    ]  # fmt: skip


def launch(nproc: int, argv: Sequence[str], run_dir: str | os.PathLike | None = None) -> int:
    """Run `gankit train ARGV` in `nproc` processes on this machine; returns the exit code.

    CPU ranks split the cores between them (OMP_NUM_THREADS = cores // nproc, at least 1)
    unless OMP_NUM_THREADS is already set. When a rank dies (killed, out of memory), torchrun
    stops the others and prints its report; a last line then says where the intact state is
    (`run_dir`, when the command names it) and how to go on.
    """
    if nproc < 1:
        raise UserError(f"--nproc must be >= 1 (got {nproc})")
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    proc = subprocess.Popen(torchrun_command(nproc, argv), env=env)
    got: list[int] = []

    def forward(signum: int, frame: object) -> None:  # SIGTERM to us: torchrun passes it on
        got.append(signum)
        proc.send_signal(signum)

    old = signal.signal(signal.SIGTERM, forward)
    try:
        while True:
            try:
                rc = proc.wait()
                break
            except KeyboardInterrupt:  # Ctrl-C reached torchrun too; its ranks save and exit
                got.append(signal.SIGINT)
    finally:
        signal.signal(signal.SIGTERM, old)
    if got and rc != 0:
        print(
            "gankit: the processes stopped on the signal; a torchrun traceback above is its "
            "own report of the signal, not a failure (rank 0's line says where the state is)",
            file=sys.stderr,
        )
        return 128 + got[0]
    if rc != 0:
        print(failure_hint(run_dir), file=sys.stderr)
    return rc


def failure_hint(run_dir: str | os.PathLike | None) -> str:
    """The line after torchrun's report of a failed rank: the newest checkpoint, if any, and
    the resume command (a checkpoint is written whole or not at all, so the newest is sound)."""
    from .checkpoint import list_checkpoints

    head = "gankit: a training process failed (torchrun's report above names the rank and cause)"
    if run_dir is None:
        return f"{head}; continue from the run's last checkpoint with: gankit train --resume RUN"
    last = list_checkpoints(run_dir) if Path(run_dir).is_dir() else []
    if not last:
        return f"{head}; no checkpoint was written yet in {run_dir}"
    return (
        f"{head}; the last checkpoint is {last[-1]}; continue with: gankit train --resume {run_dir}"
    )
