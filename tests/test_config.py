"""Strict, typed configuration."""

from __future__ import annotations

import pytest

from gankit.config import (
    RunConfig,
    TrainConfig,
    apply_overrides,
    from_dict,
    parse_assignments,
    to_dict,
)
from gankit.errors import UserError


def test_overrides_parse_strings_to_field_types():
    cfg = apply_overrides(
        TrainConfig(),
        {"batch_size": "32", "lr_g": "1e-3", "ema": "false", "kimg": "none", "epochs": "2"},
    )
    assert cfg.batch_size == 32 and isinstance(cfg.batch_size, int)
    assert cfg.lr_g == 1e-3
    assert cfg.ema is False
    assert cfg.kimg is None and cfg.epochs == 2.0


def test_dashes_are_accepted_for_underscores():
    assert apply_overrides(TrainConfig(), {"batch-size": 8}).batch_size == 8


@pytest.mark.parametrize(
    "key,value,match",
    [
        ("batchsize", 3, "unknown option 'batchsize'"),
        ("batch_size", "abc", "batch_size must be an integer"),
        ("batch_size", 2.5, "batch_size must be an integer"),
        ("batch_size", True, "batch_size must be an integer"),
        ("lr_g", "fast", "lr_g must be a number"),
        ("ema", "maybe", "ema must be true or false"),
    ],
)
def test_bad_overrides_are_errors(key, value, match):
    with pytest.raises(UserError, match=match):
        apply_overrides(TrainConfig(), {key: value})


@pytest.mark.parametrize(
    "changes,match",
    [
        ({"lr_g": -1.0}, "lr_g must be > 0"),
        ({"batch_size": 0}, "batch_size must be > 0"),
        ({"beta1": 1.5}, "beta1 must be in"),
        ({"epochs": 1.0, "kimg": 1.0}, "not both"),
        ({"kimg": -3.0}, "kimg must be > 0"),
        ({"lr_d": float("nan")}, "lr_d must be > 0"),
    ],
)
def test_validate_rejects_nonsense(changes, match):
    cfg = apply_overrides(TrainConfig(), changes)
    with pytest.raises(UserError, match=match):
        cfg.validate()


def test_defaults_are_the_dcgan_paper_setup():
    cfg = TrainConfig()
    cfg.validate()
    assert (cfg.lr_g, cfg.lr_d, cfg.beta1, cfg.beta2, cfg.batch_size) == (
        2e-4,
        2e-4,
        0.5,
        0.999,
        128,
    )


def test_json_round_trip_is_exact():
    rc = RunConfig(
        model="dcgan",
        model_config={"resolution": 32},
        train=apply_overrides(TrainConfig(), {"kimg": 5.0, "seed": 7}),
    )
    back = RunConfig.from_json(rc.to_json())
    assert back == rc
    assert from_dict(TrainConfig, to_dict(rc.train)) == rc.train


def test_from_json_rejects_unknown_keys():
    doc = RunConfig(model="dcgan", model_config={}).to_json()
    doc["train"]["turbo"] = True
    with pytest.raises(UserError, match="unknown training option 'turbo'"):
        RunConfig.from_json(doc)


def test_parse_assignments():
    assert parse_assignments(["a=1", "b = x=y"]) == {"a": "1", "b": "x=y"}
    with pytest.raises(UserError, match="key=value"):
        parse_assignments(["novalue"])


def test_presets_apply_under_user_overrides():
    from gankit.training.run import prepare_training

    rc, _ = prepare_training(
        "dcgan", "digits", train_overrides={"preset": "demo", "batch_size": 32}
    )
    assert rc.train.preset == "demo" and rc.train.kimg == 400.0  # from the preset
    assert rc.train.batch_size == 32  # the user's value wins
    assert rc.model_config["resolution"] == 32
    rc, _ = prepare_training("dcgan", "digits", train_overrides={"preset": "demo", "epochs": 2.0})
    assert rc.train.epochs == 2.0 and rc.train.kimg is None
    with pytest.raises(UserError, match="unknown preset 'fast' for dcgan"):
        prepare_training("dcgan", "digits", train_overrides={"preset": "fast"})
