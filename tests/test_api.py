"""gankit.api: the layer that joins training and the metrics (the hook behind eval_every_kimg)."""

from __future__ import annotations

from pathlib import Path

import pytest

import gankit
from gankit import api
from gankit.errors import UserError
from gankit.training import train as train_without_metrics
from tests.conftest import tiny_overrides

EVAL = {"eval_every_kimg": 0.032, "eval_metrics": "fd32_pixel", "keep_best": "fd32_pixel"}
RUN = {"kimg": 0.064, "batch_size": 16, "progress": False, "tensorboard": False}


def test_gankit_train_is_the_api_and_resolves_like_training() -> None:
    assert gankit.train is api.train
    args = {"model_overrides": tiny_overrides("dcgan"), "dry_run": True, **EVAL, **RUN}
    with_hook = gankit.train("dcgan", "digits", **args)
    plain = train_without_metrics("dcgan", "digits", **args)
    assert with_hook == plain and with_hook.train.eval_every_kimg == 0.032


def test_training_alone_refuses_evaluation_it_cannot_run(tmp_path: Path) -> None:
    """gankit.training imports no metrics: asked to evaluate without a hook maker, it says so
    before a run folder is made, instead of training without the evaluations."""
    with pytest.raises(UserError, match="gankit.train"):
        train_without_metrics(
            "dcgan", "digits", run_dir=tmp_path / "run",
            model_overrides=tiny_overrides("dcgan"), **EVAL, **RUN,
        )  # fmt: skip
    assert not (tmp_path / "run").exists()


def test_no_hook_without_eval_every_kimg() -> None:
    rc = train_without_metrics(
        "dcgan", "digits", model_overrides=tiny_overrides("dcgan"), dry_run=True, **RUN
    )
    assert api.eval_hook(rc, Path("unused")) is None
