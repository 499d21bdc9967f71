"""A run folder: its auto-numbered name, getting it ready, and its config.json.

Only rank 0 writes the folder; the other ranks are told where it is (or why it could not be
made). config.json is the run's configuration, its data, and the typed record of what it
resolved to (gankit.resolved), which is how it is read back.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from ..checkpoint import list_checkpoints
from ..config import RunConfig
from ..data.base import ImageDataset
from ..data.identity import data_record
from ..distributed import broadcast_object, current_world
from ..errors import UserError
from ..files import atomic_write_json
from ..resolved import CONFIG_VERSION, ResolvedRun, read_config


def _run_name(model: str, data: str) -> str:
    tail = data.split(":", 1)[-1].rstrip("/\\")
    tail = Path(tail).stem if ":" in data else tail
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{model}-{tail}")[:60]


def new_run_dir(outdir: str | Path, model: str, data: str) -> Path:
    """outdir/NNNNN-model-data, numbered one past the highest existing number."""
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    nums = [int(m.group(1)) for p in out.iterdir() if (m := re.match(r"^(\d{5})-", p.name))]
    return out / f"{(max(nums) + 1) if nums else 0:05d}-{_run_name(model, data)}"


_TEMP_FILE = re.compile(r"^\..+\.tmp$")  # what an interrupted atomic write leaves behind


def prepare_run_dir(path: Path, overwrite: bool) -> Path:
    """Create `path`; an existing non-empty folder is refused unless `overwrite`.

    A folder holding only the temp files of interrupted atomic writes counts as empty: a run
    killed while writing its first config.json can be started again with the same command.
    """
    if path.exists() and not path.is_dir():
        raise UserError(f"{path} exists and is not a folder; choose another --run-dir")
    if path.is_dir():
        debris = [p for p in path.iterdir() if p.is_file() and _TEMP_FILE.match(p.name)]
        if debris and len(debris) == len(list(path.iterdir())):
            for p in debris:
                p.unlink()
    if path.is_dir() and any(path.iterdir()):
        if not overwrite:
            raise UserError(
                f"run folder {path} already exists; pass --resume {path} to continue "
                "it, --overwrite to replace it, or choose another --run-dir"
            )
        if not (path / "config.json").is_file():
            raise UserError(
                f"{path} is not empty and is not a gankit run folder; refusing to "
                "overwrite it; choose another --run-dir"
            )
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_config(
    run_dir: Path, resolved: ResolvedRun, ds: ImageDataset, extra: dict | None = None
) -> None:
    """config.json: the run's configuration, its data, and (version 2) what it resolved to."""
    doc = {
        "run_config": resolved.run_config.to_json(),
        "data": {**data_record(ds), "notes": ds.notes},
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "processes": current_world().size,
    }
    doc.update(extra or {})
    doc.update(version=CONFIG_VERSION, resolved=resolved.to_json())
    atomic_write_json(run_dir / "config.json", doc)


def main_makes_run_dir(
    choose: Callable[[], Path], overwrite: bool, write: Callable[[Path], None]
) -> Path:
    """Rank 0 chooses and prepares the run folder and tells the other ranks (one process:
    just that). An error on rank 0 is raised on every rank, so none waits for the others."""
    world = current_world()
    found: tuple[str, str | None] = ("", None)
    if world.is_main:
        try:
            path = choose()
            prepare_run_dir(path, overwrite)
            write(path)
            found = (str(path), None)
        except UserError as exc:
            if not world.distributed:
                raise
            found = ("", str(exc))
    found = broadcast_object(found, world)
    if found[1] is not None:
        raise UserError(found[1])
    return Path(found[0])


def unstarted_run(path: Path) -> RunConfig | None:
    """The configuration of a run folder that has config.json but no checkpoint yet (a run
    stopped before its first checkpoint), else None."""
    if not path.is_dir() or list_checkpoints(path) or not (path / "config.json").is_file():
        return None
    try:
        return read_config(path).run_config
    except UserError:
        return None


def resume_history(run_dir: Path) -> tuple[int, ...]:
    """The image counts the run was resumed from so far (none when config.json is unreadable)."""
    try:
        return read_config(run_dir).history if (run_dir / "config.json").is_file() else ()
    except UserError:
        return ()
