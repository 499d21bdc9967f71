"""Generators trained on the embedded digits, shipped inside the package.

`pretrained:NAME` stands wherever a run folder or checkpoint is asked for (`gankit sample`,
`serve`, `eval` and the analyses). Each is an ordinary gankit checkpoint file (safetensors +
JSON, written through `gankit.checkpoint` by scripts/pretrain_digits.py) and is read by the
same checked loader as every run. It holds G_ema and D but not G, and no optimiser state, so
it cannot be resumed (nor sampled with --no-ema); what a command would write beside a run goes
to the current folder instead.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import UserError

PREFIX = "pretrained:"

# name -> what it is (`gankit models` lists them).
PRETRAINED: dict[str, str] = {
    "cgan-digits": "class-conditional DCGAN (cdcgan, ngf 64, ndf 32, minibatch std in D) on "
    "the embedded digits, 32x32; --class 0-9",
    "dcgan-digits": "DCGAN (ngf 64, ndf 32) on the embedded digits, 32x32",
}


def folder() -> Path:
    """Where the files live: this package's folder."""
    return Path(__file__).resolve().parent


def is_pretrained(source: object) -> bool:
    """Whether `source` (a run argument) names a shipped generator."""
    return isinstance(source, str) and source.startswith(PREFIX)


def pretrained_path(source: str | os.PathLike) -> Path | None:
    """The file `pretrained:NAME` names, or None when `source` is not such a name.

    Raises:
        UserError: an unknown name (listing the known ones), or a file missing from the install.
    """
    if not is_pretrained(source):
        return None
    name = str(source)[len(PREFIX) :]
    if name not in PRETRAINED:
        known = ", ".join(PREFIX + n for n in PRETRAINED)
        raise UserError(f"unknown pretrained generator {name!r}; choose one of: {known}")
    path = folder() / f"{name}.safetensors"
    if not path.is_file():
        raise UserError(
            f"{path} is missing from this install of gankit: reinstall gankit, or train it "
            "with scripts/pretrain_digits.py"
        )
    return path


def list_pretrained() -> list[tuple[str, str]]:
    """(pretrained:NAME, description) of every shipped generator."""
    return [(PREFIX + name, text) for name, text in PRETRAINED.items()]
