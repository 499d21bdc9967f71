"""One training process of a multi-process run: `torchrun --nproc-per-node N -m gankit.train ARGS`.

ARGS are those of `gankit train`. Under torchrun the process joins the group described in its
environment (nccl on GPUs, gloo on the CPU) and trains its slice of every global batch; alone,
it is `gankit train ARGS`. `gankit train --nproc N ARGS` starts this for you on one machine.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def _device_arg(argv: Sequence[str]) -> str:
    for i, a in enumerate(argv):
        if a == "--device" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--device="):
            return a.split("=", 1)[1]
    return "auto"


def run(argv: Sequence[str] | None = None) -> int:
    """Join the process group (if any), train, leave the group; returns the exit code."""
    import torch.distributed as dist

    from .cli import main
    from .distributed import init_from_env

    argv = list(sys.argv[1:] if argv is None else argv)
    init_from_env(_device_arg(argv))
    try:
        return main(["train", *argv])
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(run())
