"""What a dataset name stored in a run or a classifier file means today.

A named dataset can change what it holds: "digits" was scikit-learn's 8x8 digits (revision 1)
until it became 28x28 MNIST digits (revision 2). Every record that names data (a run's
config.json and checkpoints, a domain classifier's file) stores the revision it was written
with; a record without one is older than revisions, so revision 1. `current_spec` is the one
place that turns a stored (name, revision) into the spec that holds that data now, so an old
run resumes, evaluates and is looked into on exactly the images it was trained on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..errors import UserError

if TYPE_CHECKING:
    from ..config import RunConfig

# Named datasets past their first revision -> their revision now.
REVISIONS: dict[str, int] = {"digits": 2, "stacked-digits": 2}
# (name, an earlier revision) -> the spec that holds that revision's data today.
EARLIER: dict[tuple[str, int], str] = {
    ("digits", 1): "sklearn-digits",
    ("stacked-digits", 1): "stacked-sklearn-digits",
}


def revision(spec: str) -> int:
    """The revision of the data `spec` loads today (1 for data that never changed)."""
    return REVISIONS.get(spec, 1)


def identity(spec: str) -> str:
    """A name for `spec`'s data that changes when its contents do ("digits-r2"): what files
    made from the data (domain classifiers) are keyed by."""
    rev = revision(spec)
    return spec if rev == 1 else f"{spec}-r{rev}"


def stored_revision(record: Any) -> int:
    """The revision a stored data record names; 1 when it names none (written before them)."""
    rev = record.get("revision", 1) if isinstance(record, Mapping) else 1
    if isinstance(rev, bool) or not isinstance(rev, int) or rev < 1:
        raise UserError(f"its data revision must be a whole number of at least 1 (got {rev!r:.40})")
    return rev


def current_spec(spec: str, record: Any) -> str:
    """The spec that loads today the data a record stored as `spec` (with its revision).

    Args:
        spec: the data spec as stored (a run's train.data, a classifier's data).
        record: the stored data record, a mapping that may hold "revision" (None: none stored).
    Raises:
        UserError: a revision newer than this gankit knows, or one it cannot load any more.
    """
    rev, now = stored_revision(record), revision(spec)
    if rev == now:
        return spec
    if rev > now:
        raise UserError(
            f"it was made with revision {rev} of the {spec} data, newer than this gankit's "
            f"({now}): upgrade gankit"
        )
    if (spec, rev) not in EARLIER:
        raise UserError(f"revision {rev} of the {spec} data is not one this gankit can load")
    return EARLIER[(spec, rev)]


def current_run_config(rc: RunConfig, record: Any) -> RunConfig:
    """A stored run's configuration with its data spec as it is loaded today (see
    `current_spec`); the run folder's and the checkpoints' readers both pass through here."""
    spec = current_spec(rc.train.data, record)
    if spec == rc.train.data:
        return rc
    return replace(rc, train=replace(rc.train, data=spec))


def data_record(dataset: Any) -> dict[str, Any]:
    """What a run stores about its data (config.json and every checkpoint): the spec, its
    revision and the shape of what was loaded."""
    return {
        "name": dataset.name,
        "revision": revision(dataset.name),
        "images": len(dataset),
        "channels": dataset.channels,
        "resolution": dataset.resolution,
        "num_classes": dataset.num_classes,
        "class_names": dataset.class_names,
    }
