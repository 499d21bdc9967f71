"""`gankit models`, `datasets` and `objectives`: what the registries hold."""

from __future__ import annotations

import argparse
from typing import Any


def add_parsers(sub: Any) -> None:
    sub.add_parser("models", help="list the registered models and the shipped generators")
    sub.add_parser("datasets", help="list the dataset specs")
    sub.add_parser("objectives", help="list the GAN objectives and regularisers")


def cmd_models(args: argparse.Namespace) -> int:
    from ..models import MODELS
    from ..pretrained import list_pretrained

    width = max(len(n) for n in MODELS.names())
    for name, spec in MODELS.items():
        tag = " [conditional]" if spec.conditional else ""
        tag += f" (presets: {', '.join(spec.setups)})"
        print(f"{name:<{width}}  {spec.description}{tag}")
    from ..models import DATA_KINDS

    for kind, (text, names) in DATA_KINDS.items():
        print(f"\nrecipe {kind}: {text}; chosen for a new run on {', '.join(names)} when no "
              "--preset is given (--preset paper: the paper's setup)")  # fmt: skip
    print("\ntrained generators shipped with gankit (sample, serve, eval them; no training):")
    shipped = list_pretrained()
    width = max(len(n) for n, _ in shipped)
    for name, text in shipped:
        print(f"{name:<{width}}  {text}")
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from ..data import list_datasets

    rows = list_datasets()
    width = max(len(n) for n, _ in rows)
    for name, desc in rows:
        print(f"{name:<{width}}  {desc}")
    return 0


def cmd_objectives(args: argparse.Namespace) -> int:
    from ..objectives import OBJECTIVES
    from ..regularisers import REGULARISERS

    for title, registry in (
        ("objectives (--objective)", OBJECTIVES),
        ("regularisers (--reg)", REGULARISERS),
    ):
        print(title)
        for name, cls in registry.items():
            opts = ":".join(f"{k}={v:g}" for k, v in cls.options.items())
            print(f"  {name + (':' + opts if opts else ''):<28}  {cls.description}")
    return 0


COMMANDS = {"models": cmd_models, "datasets": cmd_datasets, "objectives": cmd_objectives}
