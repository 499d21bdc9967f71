"""`--out` and `--overwrite` for every command: an explicit --out that exists is refused
before any work starts."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..analysis.paths import figure_prefix
from ..errors import UserError


def add_overwrite(parser: argparse.ArgumentParser) -> None:
    """`--overwrite` beside every `--out`: an explicit --out that exists is refused without it."""
    options = {o for a in parser._actions for o in a.option_strings}
    if "--out" in options and "--overwrite" not in options:
        parser.add_argument(
            "--overwrite", action="store_true", help="replace what --out names if it exists"
        )
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                add_overwrite(child)


# What an explicit --out names, per command: "file", "folder", "probe" (a JSON and its figure),
# or the suffixes a figure command adds to its --out prefix.
_OUTPUTS: dict[str, str | tuple[str, ...]] = {
    "features": "file",
    "evaluator": "file",
    "probe": "probe",
    "memorisation": "folder",
    "filters": "folder",
    "interpolate": (".png", ".gif", "-steps.png", ".json"),
    "arithmetic": (".png", ".json"),
    "codes": (".png", "-purity.json"),
    "mixing": (".png",),
    "truncation": (".png", ".json"),
}


def check_outputs(args: argparse.Namespace) -> None:
    """Refuse an explicit --out that exists (without --overwrite) before any work starts."""
    from ..outputs import (
        check_file_target,
        check_folder_target,
        check_prefix_target,
        wants_folder,
    )

    out, overwrite = getattr(args, "out", None), getattr(args, "overwrite", False)
    if not out or args.command == "train":
        return
    kind = _OUTPUTS.get(args.command)
    if args.command in ("sample", "ablate"):
        suffix = "" if wants_folder(out) else Path(out).suffix.lower()
        if suffix == "":
            if args.command == "sample":
                check_folder_target(out, overwrite)
            else:  # ablate writes its named figure and report into the folder
                layer = "" if args.layer is None else str(args.layer)
                stem = Path(out) / f"ablation-layer{layer}"
                check_prefix_target(stem, overwrite, (".png", ".json"))
            return
        if args.command == "ablate":
            check_prefix_target(Path(out).with_suffix(""), overwrite, (".png", ".json"))
            return
        kind = "file"
    if kind == "file":
        check_file_target(out, overwrite)
    elif kind == "probe":
        check_file_target(out, overwrite)
        check_file_target(Path(out).with_suffix(".png"), overwrite)
    elif kind == "folder":
        check_folder_target(out, overwrite)
    elif isinstance(kind, tuple):
        if wants_folder(out):
            raise UserError(f"--out is a path without suffix here, not a folder (got {out})")
        check_prefix_target(figure_prefix(args.run, out, args.command), overwrite, kind)
