"""Divergence and collapse: NaN/Inf caught within the step, rollback to the last good state at
lower learning rates (a bounded number of times), the mode-collapse alarm, and determinism."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from gankit.cli import main
from gankit.config import RunConfig, TrainConfig, apply_overrides
from gankit.data import load_dataset
from gankit.models import list_models
from gankit.training.guards import CollapseWatch, describe_nonfinite, diversity
from gankit.training.trainer import Trainer, TrainingDiverged
from tests.conftest import synthetic_dataset, tiny_overrides


def _rc(name: str = "dcgan", num_classes: int = 3, **train) -> RunConfig:
    base = TrainConfig(
        model=name,
        batch_size=16,
        log_every=1,
        sample_every_kimg=0.064,
        ckpt_every_kimg=0.064,  # a checkpoint every 4 steps
        keep_checkpoints=10,
        ema_kimg=0.05,
    )
    mc = tiny_overrides(name, num_classes=num_classes)
    return RunConfig(model=name, model_config=mc, train=apply_overrides(base, train))


def _trainer(tmp_path, name: str = "dcgan", **train) -> Trainer:
    ds = synthetic_dataset(n=64)
    return Trainer(_rc(name, **train), tmp_path, ds, progress=False, tensorboard=False)


def _poison(tr: Trainer, at_calls: set[int] | None = None, after: int | None = None) -> None:
    """Make D's loss NaN at the given calls of the objective (a real NaN: it reaches the
    gradients through backward, as an overflow would)."""
    orig = tr.objective.d_loss
    calls = {"n": 0}

    def d_loss(*args, **kwargs):
        loss, logs = orig(*args, **kwargs)
        calls["n"] += 1
        if (at_calls and calls["n"] in at_calls) or (after is not None and calls["n"] > after):
            loss = loss * float("nan")
        return loss, logs

    tr.objective.d_loss = d_loss  # type: ignore[method-assign]


def _events(run) -> list[dict]:
    return [json.loads(x) for x in (run / "events.jsonl").read_text().splitlines()]


def test_roll_back_restores_the_last_good_state_exactly(tmp_path):
    tr = _trainer(tmp_path, kimg=1.0)
    for _ in range(2):
        tr.train_step()
    tr.checkpoint()
    good = {k: v.clone() for k, v in tr.state.pack()[0].items()}
    for _ in range(3):
        tr.train_step()
    tr.roll_back("a test")
    assert (tr.step, tr.nimg, tr.state.rollbacks, tr.state.lr_scale) == (2, 32, 1, 0.5)
    now = tr.state.pack()[0]
    assert set(now) == set(good)
    for key, value in good.items():
        torch.testing.assert_close(now[key], value, rtol=0, atol=0, msg=key)
    assert tr.opt_G.param_groups[0]["lr"] == pytest.approx(tr.cfg.lr_g / 2)
    assert tr.opt_D.param_groups[0]["lr"] == pytest.approx(tr.cfg.lr_d / 2)
    # the same batches come again: the next step equals a step taken from the snapshot
    tr.train_step()
    assert torch.isfinite(torch.cat([p.flatten() for p in tr.G.parameters()])).all()


def test_a_nan_is_caught_in_its_step_and_training_recovers(tmp_path):
    tr = _trainer(tmp_path, kimg=0.192)  # 12 steps
    _poison(tr, at_calls={6})  # step 6's D loss
    res = tr.train()
    assert res.nimg == 192 and tr.state.rollbacks == 1 and tr.state.lr_scale == 0.5
    (ev,) = [e for e in _events(tmp_path) if e["event"] == "rollback"]
    assert ev["at_step"] == 6 and ev["nimg"] == 64  # caught at once; back to the step-4 state
    assert ev["reason"].startswith("D's loss and D's gradients")  # then G's, through D
    steps = [json.loads(x)["step"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 13)), "the log holds each step once, as if nothing happened"
    last = tr.state.pack()
    assert last[1]["lr_scale"] == 0.5 and last[1]["rollbacks"] == 1
    assert all(torch.isfinite(t.float()).all() for t in last[0].values())
    assert tr.opt_D.param_groups[0]["lr"] == pytest.approx(tr.cfg.lr_d / 2)


def test_nan_check_log_catches_it_at_the_next_log_step(tmp_path):
    tr = _trainer(tmp_path, kimg=0.192, nan_check="log", log_every=4)
    _poison(tr, at_calls={6})
    tr.train()
    (ev,) = [e for e in _events(tmp_path) if e["event"] == "rollback"]
    assert ev["at_step"] == 8 and ev["nimg"] == 64
    assert tr.state.rollbacks == 1


def test_persistent_nans_stop_after_the_allowed_rollbacks(tmp_path):
    tr = _trainer(tmp_path, kimg=0.32, nan_retries=2)
    _poison(tr, after=5)
    with pytest.raises(TrainingDiverged) as info:
        tr.train()
    msg = str(info.value)
    assert "training diverged at step 5" in msg and "after 2 rollback(s)" in msg
    assert "x0.25" in msg and "ckpt-000000064.safetensors" in msg
    assert [e["lr_scale"] for e in _events(tmp_path) if e["event"] == "rollback"] == [0.5, 0.25]


def test_the_cli_reports_a_real_divergence_and_exits_3(tmp_path, capsys):
    """lr = 1e30 overflows for real: three rollbacks at ever lower rates, then a clear stop."""
    rc = main(
        ["train", "dcgan", "--data", "digits", "--resolution", "16", "--batch-size", "16",
         "--kimg", "0.064", "--lr", "1e30", "--no-progress", "--set", "ngf=8", "--set", "ndf=8",
         "--run-dir", str(tmp_path / "run")]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 3, err
    assert err.count("rolled back to 0 kimg") == 3 and "Traceback" not in err
    assert "training diverged at step 1" in err and "try a lower --lr" in err


def test_describe_nonfinite():
    assert describe_nonfinite([True, False, False, False]) == "D's loss is not finite"
    assert describe_nonfinite([False, False, False, True]) == "G's gradients are not finite"
    assert describe_nonfinite([True, True, False, False]) == (
        "D's loss and D's gradients are not finite"
    )


@pytest.mark.parametrize(("data", "resolution"), [("digits", 28), ("sklearn-digits", 16)])
def test_diversity_is_zero_for_copies_and_one_for_the_data_itself(data, resolution):
    # copies measure exactly 0 on real 28x28 digits too (cdist's matrix-product shortcut,
    # which gave ~1e-2 there, is not used)
    ds = load_dataset(data, resolution=resolution)
    x, y = ds.batch(torch.arange(64))
    assert diversity(x[:1].repeat(64, 1, 1, 1)) == 0.0
    assert diversity(x) > 0 and diversity(x, y) > 0
    one_per_class = torch.cat([x[y == c][:1].repeat(6, 1, 1, 1) for c in range(10)])
    labels = torch.arange(10).repeat_interleave(6)
    assert diversity(one_per_class) > 0  # across classes the images differ ...
    assert diversity(one_per_class, labels) == 0.0  # ... within each class they are copies


def test_the_collapse_alarm_waits_for_diversity_then_fires_on_a_drop():
    watch = CollapseWatch(0.1)
    assert [watch.update(v) for v in (0.01, 0.05, 0.15)] == [False] * 3  # a slow start
    assert [watch.update(v) for v in (0.3, 0.12, 0.05)] == [False, False, True]
    assert not CollapseWatch(0.0, peak=1.0).update(0.0)  # threshold 0: off


def _collapse(G: nn.Module) -> None:
    """Make G ignore its input: zero and freeze its first layer."""
    first = next(m for m in G.modules() if isinstance(m, (nn.Linear, nn.ConvTranspose2d)))
    first.weight.data.zero_()
    first.weight.requires_grad_(False)


def test_a_collapsed_generator_is_reported(tmp_path, capsys):
    tr = _trainer(tmp_path, kimg=0.128, ema=False, sample_every_kimg=0.032)
    tr.watch.peak = 0.5  # as if its samples had been diverse before
    _collapse(tr.G)
    tr.train()
    err = capsys.readouterr().err
    assert "possible mode collapse at 0.032 kimg" in err and "samples/fakes000000032.png" in err
    warned = [e for e in _events(tmp_path) if e["event"] == "collapse_warning"]
    assert [e["nimg"] for e in warned] == [0, 32, 64, 96, 128]
    assert all(e["diversity"] < 0.01 for e in warned)
    assert tr.state.pack()[1]["peak_diversity"] == 0.5


def test_a_healthy_run_is_not_reported(tmp_path, capsys):
    ds = load_dataset("digits", resolution=16)
    rc = _rc("cgan", num_classes=10, kimg=0.32, sample_every_kimg=0.08)
    tr = Trainer(rc, tmp_path, ds, progress=False, tensorboard=False)
    tr.train()
    assert "mode collapse" not in capsys.readouterr().err
    values = [e["value"] for e in _events(tmp_path) if e["event"] == "diversity"]
    assert len(values) == 5 and values[-1] > 0.2 and tr.watch.armed


@pytest.mark.parametrize("name", list_models())
def test_same_seed_same_weights(name, tmp_path):
    """Determinism on the CPU: the same seed and config give bit-identical weights and
    optimiser state after N steps (the trainer's own steps; the loop adds no randomness)."""
    ds = synthetic_dataset(n=48)
    runs = []
    for i, seed in enumerate((3, 3, 4)):
        tr = Trainer(_rc(name, seed=seed), tmp_path / str(i), ds, progress=False, tensorboard=False)
        for _ in range(3):
            tr.train_step()
        runs.append(tr.state.pack()[0])
    for key, value in runs[0].items():
        if key.startswith(("G.", "D.", "G_ema.", "optim.")):
            torch.testing.assert_close(runs[1][key], value, rtol=0, atol=0, msg=key)
    assert any(not torch.equal(runs[2][k], v) for k, v in runs[0].items() if k.startswith("G.")), (
        "another seed gives other weights"
    )


def test_the_deterministic_flag_runs_and_changes_nothing_on_the_cpu(tmp_path):
    ds = synthetic_dataset(n=48)
    states = []
    try:
        for i, det in enumerate((False, True)):
            rc = _rc("dcgan", deterministic=det)
            tr = Trainer(rc, tmp_path / str(i), ds, progress=False, tensorboard=False)
            for _ in range(3):
                tr.train_step()
            states.append(tr.state.pack()[0])
        assert torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(False)
    for key, value in states[0].items():
        if key.startswith(("G.", "D.")):
            torch.testing.assert_close(states[1][key], value, rtol=0, atol=0, msg=key)
