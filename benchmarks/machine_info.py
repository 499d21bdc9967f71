"""What every benchmark records about the machine it ran on (imported by the scripts here)."""

from __future__ import annotations

import os
import platform


def machine() -> dict:
    """Python, torch, CPU, cores, torch threads and CUDA availability."""
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def peak_rss_mib() -> float:
    """This process's peak resident memory in MiB.

    VmHWM from /proc starts afresh at exec, whereas getrusage's ru_maxrss carries over the
    parent's peak into a forked child, which would credit a child with its parent's memory.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
