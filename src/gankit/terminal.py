"""What the `gankit` command shows a terminal: escaped text, and signals as exceptions.

File and folder names come from users (and from checkpoints other people wrote); echoed raw,
a name holding an escape sequence could recolour, retitle or clear the user's terminal. Every
message the command prints therefore passes through `EscapingStream`, which keeps newlines,
tabs and carriage returns (progress bars need them) and writes every other control character
as a visible escape such as `\\x1b`.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator
from types import FrameType
from typing import Any, TextIO

SIGNAL_NAMES = {signal.SIGINT: "SIGINT (Ctrl-C)", signal.SIGTERM: "SIGTERM"}
_KEEP = "\n\t\r"


def escape_controls(text: str, keep: str = _KEEP) -> str:
    """`text` with every non-printable character except those in `keep` written as an escape."""
    if text.isprintable() or all(c.isprintable() or c in keep for c in text):
        return text
    return "".join(c if c.isprintable() or c in keep else repr(c)[1:-1] for c in text)


class EscapingStream:
    """A text stream that escapes control characters on the way to the wrapped stream."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(escape_controls(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:  # flush, isatty, fileno, encoding, ...
        return getattr(self._stream, name)


@contextlib.contextmanager
def escaped_output() -> Iterator[None]:
    """Escape control characters in all that is printed to stdout and stderr meanwhile."""
    old = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = EscapingStream(old[0]), EscapingStream(old[1])  # type: ignore[assignment]
    try:
        yield
    finally:
        sys.stdout, sys.stderr = old


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived: unwinds like KeyboardInterrupt, so that every `finally` and
    every temp-file cleanup on the way runs, and the command can say what it left behind."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def name(self) -> str:
        return SIGNAL_NAMES.get(self.signum, f"signal {self.signum}")


def _raise(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signum)


@contextlib.contextmanager
def signals_as_exceptions() -> Iterator[None]:
    """Turn SIGINT and SIGTERM into `Interrupted` (SIGTERM's default would kill the process
    at once, leaving temp files and half-filled folders)."""
    old = {sig: signal.signal(sig, _raise) for sig in SIGNAL_NAMES}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
