"""What a run actually used, as one typed record written into config.json and read back.

config.json keeps the keys it always had (run_config, data, written_at, processes; and
resumed_from and history once resumed). Version 2 adds "version" and "resolved": the objective
and regularisers with every option's value, the precision the device came to, the image shape
and the preset. A version-1 config.json (no "resolved") reads back too: what its run_config
determines is filled in, and what it cannot tell (the precision `auto` chose) is None.

This module imports nothing from gankit.training, so that checkpoint and sampling code can
read a run's record without loading the trainer.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import RunConfig
from .data.identity import current_run_config
from .errors import UserError
from .models import MODELS
from .objectives import create_objective
from .registry import Configurable
from .regularisers import create_regularisers

CONFIG_VERSION = 2  # of config.json: 1 had no "version" and no "resolved"
PRECISIONS = ("fp32", "bf16")  # what a run's autocast can come to


@dataclass(frozen=True)
class Piece:
    """An objective or regulariser as the run built it: its registry name and the value of
    every option (defaults included)."""

    name: str
    options: dict[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, piece: Configurable) -> Piece:
        return cls(piece.name, {k: float(getattr(piece, k)) for k in piece.options})

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "options": dict(self.options)}

    @classmethod
    def from_json(cls, data: Any, what: str) -> Piece:
        if not isinstance(data, Mapping) or not isinstance(data.get("name"), str):
            raise UserError(f"resolved {what} must be an object with a name")
        options = data.get("options", {})
        if not isinstance(options, Mapping) or not all(
            isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool)
            for k, v in options.items()
        ):
            raise UserError(f"resolved {what} options must map names to numbers")
        return cls(data["name"], {k: float(v) for k, v in options.items()})


@dataclass(frozen=True)
class ResolvedRun:
    """A run's configuration with what it resolved to.

    Attributes:
        run_config: the model, its config and the training config.
        objective: the objective trained with (the model's default unless one was asked for).
        regularisers: the regularisers, in the order they apply.
        precision: the autocast the run used, "fp32" or "bf16".
        Each is None where a version-1 record cannot say (`precision=auto`; an objective
        or regulariser this version of gankit does not know).
        version: the config.json version this was read from (CONFIG_VERSION when new).
        history: the image counts the run was resumed from, oldest first.
    """

    run_config: RunConfig
    objective: Piece | None
    regularisers: tuple[Piece, ...] | None
    precision: str | None
    version: int = CONFIG_VERSION
    history: tuple[int, ...] = ()

    @property
    def resolution(self) -> int:
        return self.run_config.resolution

    @property
    def channels(self) -> int:
        return self.run_config.channels

    @property
    def preset(self) -> str | None:
        """The model's named preset the run started from (None: none)."""
        return self.run_config.train.preset

    def to_json(self) -> dict[str, Any]:
        """config.json's "resolved" entry."""
        return {
            "objective": None if self.objective is None else self.objective.to_json(),
            "regularisers": None
            if self.regularisers is None
            else [r.to_json() for r in self.regularisers],
            "precision": self.precision,
            "resolution": self.resolution,
            "channels": self.channels,
            "preset": self.preset,
        }


def resolve_run(run_config: RunConfig, precision: str | None) -> ResolvedRun:
    """The record of `run_config` trained at `precision` ("fp32" or "bf16"; None: unknown)."""
    spec = MODELS.get(run_config.model)
    train = run_config.train
    return ResolvedRun(
        run_config=run_config,
        objective=Piece.of(create_objective(train.objective or spec.objective)),
        regularisers=tuple(Piece.of(r) for r in create_regularisers(train.reg)),
        precision=precision,
    )


def read_resolved(doc: Any) -> ResolvedRun:
    """A ResolvedRun from a parsed config.json (any version); a UserError when it is not one.

    A version-1 document gets its objective and regularisers from its run_config and its
    precision from the one it asked for, unless that was `auto` (then None).
    """
    if not isinstance(doc, Mapping) or "run_config" not in doc:
        raise UserError("config.json has no run_config; is this a gankit run?")
    # An older run's data by today's name (its "digits" were scikit-learn's 8x8 set).
    rc = current_run_config(RunConfig.from_json(doc["run_config"]), doc.get("data"))
    history = doc.get("history", [])
    if not isinstance(history, list) or not all(
        isinstance(n, int) and not isinstance(n, bool) for n in history
    ):
        raise UserError("config.json history must be a list of image counts")
    version = doc.get("version", 1)
    if version == 1 and "resolved" not in doc:
        return _derived(rc, tuple(history))
    if version != CONFIG_VERSION:
        raise UserError(f"config.json version {version!r} is not one gankit can read")
    rec = doc.get("resolved")
    if not isinstance(rec, Mapping):
        raise UserError("config.json version 2 has no resolved record")
    objective, regs = rec.get("objective"), rec.get("regularisers")
    if regs is not None and not isinstance(regs, list):
        raise UserError("resolved regularisers must be a list")
    precision = rec.get("precision")
    if precision is not None and precision not in PRECISIONS:
        raise UserError(f"resolved precision must be fp32 or bf16 (got {precision!r})")
    # Written for readers of the file, read back from run_config: they must agree.
    mc = rc.model_config
    shape = {"resolution": mc.get("resolution"), "channels": mc.get("channels")}
    for key, want in {**shape, "preset": rc.train.preset}.items():
        if key in rec and rec[key] != want:
            raise UserError(f"resolved {key} {rec[key]!r} disagrees with run_config's {want!r}")
    return ResolvedRun(
        run_config=rc,
        objective=None if objective is None else Piece.from_json(objective, "objective"),
        regularisers=None
        if regs is None
        else tuple(Piece.from_json(r, "regulariser") for r in regs),
        precision=precision,
        history=tuple(history),
    )


def _derived(rc: RunConfig, history: tuple[int, ...]) -> ResolvedRun:
    """The record of a version-1 run: what its run_config determines, None for the rest."""
    asked = rc.train.precision
    try:
        run = resolve_run(rc, asked if asked in PRECISIONS else None)
    except UserError:  # checking the run_config is the loader's job (gankit.checks)
        return ResolvedRun(rc, None, None, None, version=1, history=history)
    return ResolvedRun(rc, run.objective, run.regularisers, run.precision, 1, history)


def read_config(path: str | os.PathLike) -> ResolvedRun:
    """The ResolvedRun of a run folder (or of its config.json file)."""
    p = Path(path)
    p = p / "config.json" if p.is_dir() else p
    try:
        doc = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{p}: cannot read it ({' '.join(str(exc).split())[:100]})") from None
    try:
        return read_resolved(doc)
    except UserError as exc:
        raise UserError(f"{p}: {exc}") from None
