"""Where commands write what a user asked for with `--out`: never over something that exists.

`train` refuses an existing run folder without `--overwrite`; the other commands follow the
same rule for an explicit `--out`, checked before any work starts, so that an hour of sampling
never ends by replacing a file the user meant to keep. A trailing slash always means a folder
(`--out grid.png/` is a folder named grid.png, never the file grid.png). Folders of single
images fill atomically: a temp folder beside the target, renamed at the end, so a signal or a
crash leaves either nothing or the whole folder.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from .errors import UserError


def wants_folder(out: str | os.PathLike) -> bool:
    """Whether `out` as the user typed it ends in a path separator (a folder is asked for)."""
    text = os.fspath(out)
    return text.endswith("/") or (os.sep != "/" and text.endswith(os.sep))


def _refuse(path: Path, what: str) -> UserError:
    return UserError(
        f"{path} exists ({what}); pass --overwrite to replace it, or choose another --out"
    )


def check_file_target(path: str | os.PathLike, overwrite: bool) -> Path:
    """A file to be written: refused when a folder sits there, or a file without `overwrite`."""
    p = Path(path)
    if p.is_dir():
        raise UserError(f"{p} is a folder; --out names a file here (or end it with / for a folder)")
    if p.exists() and not overwrite:
        raise _refuse(p, "a file")
    return p


def check_folder_target(path: str | os.PathLike, overwrite: bool) -> Path:
    """A folder to be filled: refused when a file sits there, or a non-empty folder without
    `overwrite` (an empty one is as good as none)."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UserError(
            f"{p} is a file, but --out asks for a folder there (a trailing / means a folder)"
        )
    if p.is_dir() and any(p.iterdir()) and not overwrite:
        raise _refuse(p, "a folder that is not empty")
    return p


def check_prefix_target(
    prefix: str | os.PathLike, overwrite: bool, suffixes: Sequence[str]
) -> Path:
    """Files named `prefix` + a suffix (figure commands write several): refused when one exists."""
    p = Path(prefix)
    if not overwrite:
        for suffix in suffixes:
            target = p.with_name(p.name + suffix)
            if target.exists():
                raise _refuse(target, "an output of this command")
    return p


@contextlib.contextmanager
def filling_folder(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp folder beside `target`; it becomes `target` when the block ends normally
    (replacing an existing folder) and is removed when the block raises or is interrupted."""
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    except OSError as exc:
        exc.filename = str(target)  # name the folder asked for, not our temp folder
        raise
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp's 0700 would surprise users sharing the folder
    try:
        yield tmp
        if target.exists():
            old = Path(
                tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent)
            )
            os.replace(target, old / target.name)
            try:
                os.replace(tmp, target)
            except BaseException:
                os.replace(old / target.name, target)  # put the old folder back
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
