"""Imports run one way: data -> models -> objectives -> training -> checkpoint -> sampling ->
metrics / analysis / viz / serve; only the CLI (and the package's lazy face) knows them all.

Each check imports in a fresh interpreter, since this process has long loaded everything.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"


def _loaded_after(code: str) -> list[str]:
    """The gankit modules loaded once `code` has run in a new interpreter."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    proc = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
        env={**os.environ, "PYTHONPATH": str(SRC)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return [m for m in json.loads(proc.stdout.splitlines()[-1]) if m.split(".")[0] == "gankit"]


def _under(modules: list[str], package: str) -> list[str]:
    return [m for m in modules if m == package or m.startswith(package + ".")]


@pytest.mark.parametrize(
    "module", ["gankit.sampling", "gankit.checkpoint", "gankit.metrics", "gankit.serve.app"]
)
def test_leaf_modules_load_no_training_code(module: str) -> None:
    loaded = _loaded_after(f"import {module}")
    assert module in loaded
    assert not _under(loaded, "gankit.training"), _under(loaded, "gankit.training")


def test_metrics_load_no_analysis() -> None:
    loaded = _loaded_after("import gankit.metrics")
    assert not _under(loaded, "gankit.analysis"), _under(loaded, "gankit.analysis")


def _imports(package: str) -> dict[str, set[str]]:
    """Every gankit module each file of `package` imports, at any depth (a function's
    imports too, which run only when called), resolved to absolute names."""
    found: dict[str, set[str]] = {}
    base = SRC / package.replace(".", "/")
    for path in sorted(base.rglob("*.py")) if base.is_dir() else [base.with_suffix(".py")]:
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        here = parts if parts[-1] == "__init__" else parts[:-1]  # the file's package
        here = [p for p in here if p != "__init__"]
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                top = here[: len(here) - node.level + 1] if node.level else []
                mod = ".".join([*top, *(node.module or "").split(".")]).strip(".")
                names.update([mod] + [f"{mod}.{a.name}" for a in node.names])
        found[str(path.relative_to(SRC))] = {n for n in names if n.split(".")[0] == "gankit"}
    return found


@pytest.mark.parametrize(
    "package,forbidden",
    [
        ("gankit.metrics", "gankit.analysis"),
        ("gankit.training", "gankit.metrics"),
        ("gankit.training", "gankit.analysis"),
        ("gankit.metrics", "gankit.training"),
        ("gankit.analysis", "gankit.training"),
        ("gankit.serve", "gankit.training"),
        ("gankit.viz", "gankit.training"),
        ("gankit.checkpoint", "gankit.training"),
        ("gankit.checks", "gankit.training"),
        ("gankit.resolved", "gankit.training"),
        ("gankit.augment", "gankit.training"),
        ("gankit.models", "gankit.training"),
        ("gankit.objectives", "gankit.training"),
        ("gankit.data", "gankit.models"),
        ("gankit.data", "gankit.viz"),
        ("gankit.sampling", "gankit.training"),
        ("gankit.files", "gankit.checkpoint"),
        ("gankit.viz", "gankit.checkpoint"),
    ],
)
def test_no_import_runs_against_the_flow(package: str, forbidden: str) -> None:
    wrong = {
        f: sorted(_under(sorted(names), forbidden))
        for f, names in _imports(package).items()
        if _under(sorted(names), forbidden)
    }
    assert not wrong, f"{package} imports {forbidden}: {wrong}"


def test_the_package_loads_training_and_metrics_only_when_used() -> None:
    loaded = _loaded_after("import gankit; gankit.__version__; gankit.UserError")
    assert not _under(loaded, "gankit.training") and not _under(loaded, "gankit.metrics"), loaded
    loaded = _loaded_after("import gankit; gankit.load")
    assert "gankit.sampling" in loaded and not _under(loaded, "gankit.training"), loaded
    loaded = _loaded_after("import gankit; gankit.train")
    assert "gankit.training.run" in loaded


def test_the_package_keeps_its_public_names() -> None:
    import gankit
    from gankit import api, data, models, objectives, sampling

    expected = {
        "create_model": models.create_model,
        "list_models": models.list_models,
        "create_objective": objectives.create_objective,
        "list_objectives": objectives.list_objectives,
        "load_dataset": data.load_dataset,
        "list_datasets": data.list_datasets,
        "generate": sampling.generate,
        "load": sampling.load,
        "parse_seeds": sampling.parse_seeds,
        "render": sampling.render,
        "train": api.train,
    }
    for name, value in expected.items():
        assert getattr(gankit, name) is value, name
    assert set(gankit.__all__) == {*expected, "UserError", "__version__"}
    assert set(gankit.__all__) <= set(dir(gankit))
    with pytest.raises(AttributeError):
        gankit.no_such_name  # noqa: B018


def test_version_is_pyprojects() -> None:
    import gankit

    text = (ROOT / "pyproject.toml").read_text()
    project = re.search(r"^\[project\]$(.*?)^\[", text, re.S | re.M)
    assert project is not None
    version = re.search(r'^version\s*=\s*"([^"]+)"', project.group(1), re.M)
    assert version is not None and gankit.__version__ == version.group(1)
