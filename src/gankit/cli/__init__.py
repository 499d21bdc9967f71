"""The `gankit` command: parse, validate, call the API, print. Nothing else lives here.

One module per group of commands (train, scoring, discriminator, inside, serve, catalog);
each adds its parsers and maps its command names to handlers that parse, make one API call
and print. Usage errors end with one line on stderr and exit code 2; a failed write to the
run folder (disk full, read-only) exits 1, divergence that rollbacks could not cure exits 3;
SIGINT or SIGTERM during training saves a checkpoint of the last complete step and exits 130
or 143.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from ..errors import UserError
from . import catalog, discriminator, inside, scoring, serve, train
from .common import Parser
from .outputs import add_overwrite, check_outputs

_GROUPS = (train, scoring, catalog, discriminator, inside, serve)

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    name: handler for group in _GROUPS for name, handler in group.COMMANDS.items()
}


def build_parser() -> argparse.ArgumentParser:
    """The whole `gankit` parser: each command group adds its own sub-commands."""
    parser = Parser(prog="gankit", description="Train, sample and inspect GANs.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for group in _GROUPS:
        group.add_parsers(sub)
    add_overwrite(parser)
    return parser


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one readable line, not a source excerpt."""
    print(f"gankit: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `gankit` command; returns the exit code."""
    from ..terminal import escaped_output

    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv  # `train --nproc N` relaunches itself under torchrun with these
    with escaped_output(), warnings.catch_warnings():
        warnings.showwarning = _one_line_warning
        return _run(args)


# Commands that handle SIGINT/SIGTERM themselves: training stops at a step boundary with a
# checkpoint; uvicorn shuts the server down gracefully.
_OWN_SIGNALS = ("train", "demo", "serve")


def _run(args: argparse.Namespace) -> int:
    """Run one parsed command; every failure ends as one line on stderr and an exit code."""
    from ..device import resolve_device
    from ..terminal import Interrupted, signals_as_exceptions
    from ..training.guards import (
        SIGNAL_NAMES,
        WRITE_ERRNOS,
        RunFolderError,
        TrainingDiverged,
        TrainingInterrupted,
    )

    started = time.time()
    signals = contextlib.nullcontext() if args.command in _OWN_SIGNALS else signals_as_exceptions()
    try:
        with signals:
            if getattr(args, "device", None) is not None and args.command != "train":
                args.device = str(resolve_device(args.device))  # one check for every command
            check_outputs(args)
            return COMMANDS[args.command](args)
    except (Interrupted, KeyboardInterrupt) as exc:
        signum = exc.signum if isinstance(exc, Interrupted) else int(signal.SIGINT)
        print(
            f"\ngankit: stopped by {SIGNAL_NAMES.get(signum, f'signal {signum}')} after "
            f"{time.time() - started:.0f} s; files already complete were kept, half-written "
            "ones removed",
            file=sys.stderr,
        )
        return 128 + signum
    except TrainingInterrupted as exc:
        from ..distributed import current_world

        if not current_world().is_main:  # rank 0 speaks for all
            return 128 + exc.signum
        name = SIGNAL_NAMES.get(exc.signum, f"signal {exc.signum}")
        if exc.checkpoint is None:
            state = "no checkpoint had been written"
        else:
            run = Path(str(exc.checkpoint)).parent.parent
            state = (
                f"state saved to {exc.checkpoint}"
                if exc.saved
                else f"stopped mid-step (second signal); the last checkpoint is {exc.checkpoint}"
            )
            state += f"; continue with: gankit train --resume {run}"
        print(
            f"\ngankit: stopped by {name} after {time.time() - started:.0f} s; {state}",
            file=sys.stderr,
        )
        return 128 + exc.signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM
    except TrainingDiverged as exc:
        print(f"gankit: error: {exc}", file=sys.stderr)
        return 3
    except RunFolderError as exc:
        print(f"gankit: error: {exc}", file=sys.stderr)
        return 1
    except UserError as exc:
        print(f"gankit: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `gankit ... | head`: the reader left; not an error of ours
        # point the real stdout at /dev/null, so that the flush at exit stays quiet
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.__stdout__.fileno())
        return 0
    except OSError as exc:  # a write that failed outside training (config, figures, samples)
        reason = WRITE_ERRNOS.get(exc.errno or 0) or exc.strerror or str(exc)
        where = f" {exc.filename}" if exc.filename else ""
        print(f"gankit: error: cannot write{where}: {reason}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
