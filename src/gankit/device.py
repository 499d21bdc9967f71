"""Device and precision selection shared by training, evaluation and the classifier."""

from __future__ import annotations

import functools
import math
import os
import time
from dataclasses import dataclass
from typing import Any

import torch

from .errors import UserError


def resolve_device(name: str | torch.device) -> torch.device:
    """'auto' picks CUDA when present, else the CPU; anything else is checked."""
    if str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}; use auto, cpu or cuda[:N]") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name} asked for but CUDA is not available; use --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise UserError(
            f"device {name} does not exist: this machine has {torch.cuda.device_count()} GPU(s)"
        )
    if dev.type == "mps" and torch.backends.mps.is_available():
        return dev
    if dev.type not in ("cpu", "cuda"):
        raise UserError(
            f"gankit does not run on device type {dev.type!r}; use auto, cpu or cuda[:N]"
        )
    return dev


def use_deterministic_kernels() -> None:
    """Ask torch for deterministic kernels everywhere (process-wide, for the rest of it).

    On the CPU gankit's runs are already bit-reproducible for a given seed, config, torch
    version and thread count (OMP_NUM_THREADS); on CUDA, cuDNN autotuning and atomic-add
    kernels vary from run to run, and this turns them off (an op with no deterministic
    kernel then raises). cuBLAS needs CUBLAS_WORKSPACE_CONFIG set before CUDA starts.
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False


BF16_MIN_SPEEDUP = 1.2  # `precision=auto` takes bf16 on a CPU only when it is this much faster


@functools.cache
def cpu_bf16_speedup() -> float:
    """How much faster a DCGAN-like convolution trains (forward + both gradients) under bf16
    autocast than in fp32 on this CPU: fp32 time / bf16 time, best of 5 interleaved rounds.

    Measured, not inferred from CPU flags: on AVX512-BF16 machines without AMX, bf16 has
    been seen at 0.5-0.9x fp32, and elsewhere at 2x. About 0.5 s on 2 cores, once per process;
    it uses its own generator, so the seeded global RNG stream is untouched.
    """
    g = torch.Generator().manual_seed(0)
    cl = torch.channels_last
    x = torch.randn(8, 128, 32, 32, generator=g).to(memory_format=cl).requires_grad_()
    w = (0.02 * torch.randn(128, 128, 4, 4, generator=g)).to(memory_format=cl).requires_grad_()

    def run(bf16: bool) -> float:
        t0 = time.perf_counter()
        with torch.enable_grad():  # also when the caller built the trainer under no_grad
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                y = torch.nn.functional.conv2d(x, w, stride=2, padding=1)  # 1 GFLOP
            y.float().square().mean().backward()
        return time.perf_counter() - t0

    best = {False: math.inf, True: math.inf}
    for bf16 in (False, True):  # warm-up: oneDNN builds its kernels on first use
        run(bf16)
    for _ in range(5):
        for bf16 in (False, True):
            best[bf16] = min(best[bf16], run(bf16))
    return best[False] / best[True]


def fast_bf16(device: torch.device) -> bool:
    """Whether bf16 autocast is faster than fp32 on `device`: on a GPU, whenever it has bf16;
    on a CPU, when oneDNN runs bf16 natively (AVX512-BF16 or AMX) and a short measurement
    finds it at least BF16_MIN_SPEEDUP times faster."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:  # oneDNN runs bf16 natively only with AVX512-BF16 or AMX; otherwise it emulates
        native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()) and bool(
            getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
        )
    except (AttributeError, RuntimeError):
        return False
    return native and cpu_bf16_speedup() >= BF16_MIN_SPEEDUP


def resolve_precision(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `precision` (None = plain fp32)."""
    if name == "bf16" or (name == "auto" and fast_bf16(device)):
        return torch.bfloat16
    return None


@dataclass(frozen=True)
class Precision:
    """What a run's `precision` setting (fp32, bf16 or auto) came to on its device."""

    requested: str
    chosen: str  # "bf16" or "fp32"
    cpu_bf16_speedup: float | None = None  # the measurement behind an auto choice on a CPU

    @property
    def dtype(self) -> torch.dtype | None:
        """The autocast dtype of the forward passes (None: plain fp32)."""
        return torch.bfloat16 if self.chosen == "bf16" else None

    def event(self) -> dict[str, Any]:
        """The fields of the run's `precision` event: what was asked, chosen and measured."""
        fields: dict[str, Any] = {"requested": self.requested, "chosen": self.chosen}
        if self.cpu_bf16_speedup is not None:
            fields["cpu_bf16_speedup"] = self.cpu_bf16_speedup
        return fields


def choose_precision(name: str, device: torch.device) -> Precision:
    """`precision` (fp32, bf16 or auto) on `device`, with the measurement auto's choice rests
    on when one was made in this process (on a CPU)."""
    chosen = "bf16" if resolve_precision(name, device) is not None else "fp32"
    measured = name == "auto" and device.type == "cpu" and cpu_bf16_speedup.cache_info().currsize
    return Precision(name, chosen, round(cpu_bf16_speedup(), 2) if measured else None)
