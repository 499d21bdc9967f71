"""What several command modules share: the one-line-error parser and output paths."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, NoReturn


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (and exit code 2)."""

    def error(self, message: str) -> NoReturn:
        # argparse echoes the user's tokens: escape control characters so that the error
        # stays one line and no terminal escape sequence gets through
        message = "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def out_prefix(run_arg: str, out: str | None, default: str) -> Path:
    """Where a figure goes: --out (a path without suffix) or RUN/<default> (the run folder of a
    checkpoint file when one was given)."""
    from ..checkpoint import run_folder

    if out:
        return Path(out).with_suffix("") if Path(out).suffix in (".png", ".gif") else Path(out)
    return run_folder(run_arg) / default


def parse_classes(text: str | None) -> list[int] | None:
    from ..sampling import parse_seeds

    return None if text is None else parse_seeds(text)


def class_counts(counts: list[int]) -> str:
    return ", ".join(f"{c}: {n}" for c, n in enumerate(counts) if n)


def domain_classifier(run: Any, evaluator: str | None, data: str | None = None) -> Any:
    """The domain classifier of the run's training data (or `data`, or the file `evaluator`)."""
    from ..metrics.classifier import find_classifier

    spec = data or run.checkpoint.meta["run_config"]["train"]["data"]
    return find_classifier(spec, evaluator, device=run.device)
