"""Recipes: settings per kind of data, chosen for a fresh run, that keep what defines a variant."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from gankit.config import TrainConfig
from gankit.errors import UserError
from gankit.models import DATA_KINDS, MODELS, PAPER, data_kind
from gankit.objectives import create_objective
from gankit.regularisers import create_regularisers
from gankit.training.run import describe_setup, prepare_training, resolve_train_config

ALL = MODELS.names()
TRAIN_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}
# What a recipe may not set: the run's length and where it writes are the user's.
NOT_IN_RECIPES = {"epochs", "kimg", "max_seconds", "seed", "data", "model", "preset"}
# Penalties a recipe may add to a variant's own (DCGAN's lazy R1); it may never drop one.
ADDED_PENALTIES = {"r1"}


def _objective(cfg: TrainConfig, spec) -> str:
    """The objective's name (its options, e.g. BEGAN's gamma, may differ)."""
    return create_objective(cfg.objective or spec.objective).name


def _reg_names(spec: str | None) -> list[str]:
    return sorted(r.name for r in create_regularisers(spec))


@pytest.mark.parametrize("name", ALL)
def test_every_model_has_a_recipe_for_28px_greyscale_digits(name: str) -> None:
    spec = MODELS.get(name)
    assert "grey28" in spec.recipes
    for data in ("digits", "mnist", "fashion-mnist"):
        assert spec.recipe_for(data) == "grey28"
    assert spec.recipe_for("cifar10") is None and spec.recipe_for("folder:x") is None


@pytest.mark.parametrize("name", ALL)
def test_each_recipe_keeps_what_defines_its_variant(name: str) -> None:
    spec = MODELS.get(name)
    model_fields = {f.name for f in dataclasses.fields(spec.config_cls)}
    for kind, values in spec.recipes.items():
        assert kind in DATA_KINDS
        assert set(values) <= (model_fields | TRAIN_FIELDS) - NOT_IN_RECIPES, values
        paper = resolve_train_config(name, "mnist", {"preset": PAPER})
        recipe = resolve_train_config(name, "mnist", {})
        assert recipe.preset == kind and paper.preset == PAPER
        # the objective and the regularisers' names (clipping, GP, R1, ortho, info) stay
        assert _objective(recipe, spec) == _objective(paper, spec)
        kept, paper_regs = set(_reg_names(recipe.reg)), set(_reg_names(paper.reg))
        assert paper_regs <= kept and kept - paper_regs <= ADDED_PENALTIES, (kept, paper_regs)
        defaults = spec.config_cls()
        for key in spec.defining:  # e.g. WGAN's RMSprop and 5 critic steps
            if key in model_fields:
                assert values.get(key, getattr(defaults, key)) == getattr(defaults, key), key
            else:
                assert getattr(recipe, key) == getattr(paper, key), key


def test_a_fresh_run_on_digits_takes_the_recipe_and_the_user_still_wins() -> None:
    rc, _ = prepare_training("dcgan", "digits", train_overrides={"batch_size": 32})
    recipe = MODELS.get("dcgan").recipes["grey28"]
    assert rc.train.preset == "grey28"
    assert rc.model_config["ngf"] == recipe["ngf"] and rc.train.precision == recipe["precision"]
    assert rc.train.batch_size == 32  # the user's value over the recipe's
    rc, _ = prepare_training("dcgan", "digits", model_overrides={"ngf": 8})
    assert rc.model_config["ngf"] == 8 and rc.train.batch_size == recipe["batch_size"]


def test_paper_preset_is_the_models_defaults() -> None:
    rc, _ = prepare_training("dcgan", "digits", train_overrides={"preset": "paper"})
    assert rc.train.preset == "paper"
    assert rc.model_config["ngf"] == 64 and rc.train.batch_size == 128
    assert rc.train.precision == "fp32"
    # a named preset is taken as asked, not replaced by the recipe
    rc, _ = prepare_training("dcgan", "digits", train_overrides={"preset": "demo"})
    assert rc.train.preset == "demo" and rc.train.kimg == 400.0
    with pytest.raises(UserError, match="choose one of: demo, tutorial, grey28, paper"):
        prepare_training("dcgan", "digits", train_overrides={"preset": "fast"})


def test_other_data_has_no_recipe_and_says_so() -> None:
    assert data_kind("cifar10") is None and data_kind("npz:x.npz") is None
    assert data_kind("mnist") == "grey28"
    line = describe_setup("wgan", "cifar10", None)
    assert "paper setup" in line and "no wgan recipe for cifar10" in line
    line = describe_setup("wgan", "mnist", "grey28")
    assert line.startswith("gankit: recipe grey28 for wgan on mnist") and "--preset paper" in line
    assert "--preset grey28 for the recipe" in describe_setup("wgan", "mnist", "paper")


def test_cli_prints_the_recipe_and_writes_it_to_config_json(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from gankit.cli import main

    args = ["train", "dcgan", "--resolution", "16", "--set", "ngf=4", "--set", "ndf=4"]
    assert main([*args, "--dry-run"]) == 0
    cap = capsys.readouterr()
    assert json.loads(cap.out)["train"]["preset"] == "grey28"  # stdout stays the JSON alone
    assert "recipe grey28 for dcgan on digits" in cap.err
    run = tmp_path / "run"
    short = ["--kimg", "0.032", "--batch-size", "16", "--precision", "fp32", "--no-progress"]
    assert main([*args, *short, "--run-dir", str(run)]) == 0
    assert "recipe grey28 for dcgan on digits" in capsys.readouterr().out
    doc = json.loads((run / "config.json").read_text())
    assert doc["run_config"]["train"]["preset"] == "grey28"
    assert doc["resolved"]["preset"] == "grey28"
