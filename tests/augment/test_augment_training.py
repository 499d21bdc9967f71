"""--augment in training: the trainer's one hook, ADA's objective check, p saved and resumed."""

from __future__ import annotations

import json
import math

import pytest
import torch

from gankit.augment import Augmentation
from gankit.checkpoint import load_checkpoint
from gankit.cli import build_parser
from gankit.cli.train import train_overrides
from gankit.config import RunConfig, TrainConfig, apply_overrides
from gankit.data import load_dataset
from gankit.errors import UserError
from gankit.training import trainer as trainer_module
from gankit.training.run import resolve_train_config
from gankit.training.trainer import Trainer
from tests.conftest import synthetic_dataset, tiny_overrides


def _rc(name: str = "dcgan", **train) -> RunConfig:
    base = TrainConfig(
        model=name, batch_size=16, log_every=1, sample_every_kimg=10.0, ckpt_every_kimg=10.0
    )
    return RunConfig(
        model=name, model_config=tiny_overrides(name), train=apply_overrides(base, train)
    )


def _train(tmp_path, name="run", rc=None, resume=None, ds=None):
    tr = Trainer(
        rc or _rc(kimg=0.064), tmp_path / name, ds or synthetic_dataset(n=48),
        resume=resume, progress=False, tensorboard=False,
    )  # fmt: skip
    tr.train()
    return tr


def _records(run_dir):
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _losses(run_dir):
    """The metrics records less their timings."""
    return [
        {k: v for k, v in r.items() if k not in ("img_per_s", "sec_per_step")}
        for r in _records(run_dir)
    ]


def _assert_same_tensors(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for key in a:
        if not key.startswith("rng."):
            torch.testing.assert_close(b[key], a[key], rtol=0, atol=0, msg=key)


class Passthrough(Augmentation):
    """Every part of the hook (the images' way through, D's tap on the real batch, the D-step
    and log calls) with nothing changed and nothing drawn."""

    name = "passthrough"

    def __init__(self) -> None:
        super().__init__()
        self.seen = 0
        self.d_steps = 0

    def __call__(self, x):
        return x

    def watch(self, D, real):
        from gankit.augment import RealTap

        return RealTap(D, real, self.observe_real)

    def observe_real(self, out):
        self.seen += out.shape[0]

    def after_d_step(self, reduce=None):
        self.d_steps += 1


def test_augment_off_is_bit_identical_to_the_hook_doing_nothing(tmp_path, monkeypatch):
    """augment=None against the same run with the hook's every call made but changing
    nothing, in one process: weights, optimiser states and the logged losses are equal."""
    off = _train(tmp_path, "off")
    hooked = Passthrough()
    monkeypatch.setattr(trainer_module, "create_augmentation", lambda cfg, obj: hooked)
    on = _train(tmp_path, "hooked")
    assert off.augment is None and on.augment is hooked
    assert hooked.d_steps == 4 and hooked.seen == 4 * 16  # the tap saw every real batch
    _assert_same_tensors(load_checkpoint(off.run_dir).tensors, load_checkpoint(on.run_dir).tensors)
    assert _losses(off.run_dir) == _losses(on.run_dir)
    assert "augment_state" not in load_checkpoint(off.run_dir).meta


def test_diffaug_changes_training_and_keeps_it_finite(tmp_path):
    off = load_checkpoint(_train(tmp_path, "off").run_dir).tensors
    run = _train(tmp_path, "diffaug", _rc(kimg=0.064, augment="diffaug")).run_dir
    on = load_checkpoint(run).tensors
    g_keys = [k for k in off if k.startswith("G.")]
    assert any(not torch.equal(off[k], on[k]) for k in g_keys)
    assert all(torch.isfinite(v).all() for k, v in on.items() if v.is_floating_point())
    assert all(math.isfinite(r["loss_d"]) and math.isfinite(r["loss_g"]) for r in _records(run))


def test_ada_p_moves_is_logged_and_resumes_exactly(tmp_path):
    """12 steps straight against 6 + resume + 6: the checkpoint at step 6 holds p and sums
    halfway through an update interval, and the resumed run's p and weights are the
    straight run's."""
    ada = {"augment": "ada", "ada_kimg": 0.2, "ada_target": 0.0}
    straight = _train(tmp_path, "straight", _rc(kimg=0.192, **ada))
    first = _train(tmp_path, "split", _rc(kimg=0.096, **ada))
    half = load_checkpoint(first.run_dir)
    assert half.meta["augment_state"]["d_steps"] == 2  # 6 D steps: 2 into an interval
    torch.manual_seed(123)  # the resumed run must not depend on the caller's RNG
    resumed = _train(tmp_path, "split", _rc(kimg=0.192, **ada), resume=half)
    a, b = load_checkpoint(straight.run_dir), load_checkpoint(resumed.run_dir)
    assert a.meta["augment_state"] == b.meta["augment_state"]
    assert torch.equal(straight.augment.p, resumed.augment.p)
    _assert_same_tensors(a.tensors, b.tensors)
    recs = _records(straight.run_dir)
    assert all("ada_p" in r and "ada_rt" in r for r in recs)
    assert [r["ada_p"] for r in _records(resumed.run_dir)] == [r["ada_p"] for r in recs]
    assert max(r["ada_p"] for r in recs) > 0  # p moved (target 0: any majority of reals)
    assert {"ada_p", "ada_rt"} <= set(straight.figures.curves)  # drawn in losses.png


def resolve(**overrides):
    return resolve_train_config(overrides.pop("model", "dcgan"), "digits", overrides)


@pytest.mark.parametrize(
    "overrides, words",
    [
        ({"augment": "ada", "objective": "wasserstein"}, "sign of D's output"),
        ({"augment": "ada", "model": "began"}, "for the began objective"),
        ({"augment": "ada", "objective": "least-squares"}, "least-squares"),
        ({"augment": "diffaug:flip"}, "unknown op 'flip'"),
        ({"augment": "mixup"}, "unknown augmentation"),
        ({"augment": "ada", "ada_kimg": 0.0}, "ada_kimg must be > 0"),
        ({"augment": "ada", "ada_target": 1.0}, r"ada_target must be in \[0, 1\)"),
    ],
)
def test_bad_augment_settings_fail_at_config_time_in_one_line(overrides, words):
    with pytest.raises(UserError, match=words) as err:
        resolve(**overrides)
    assert "\n" not in str(err.value)


def test_what_augments_where():
    assert resolve(augment="ada", objective="hinge").augment == "ada"
    assert resolve(augment="diffaug", model="began").augment == "diffaug"  # any image D
    assert resolve(augment="diffaug", objective="wasserstein", reg="gp").ada_kimg == 20.0


def test_the_flags_come_from_the_settings():
    args = build_parser().parse_args(
        ["train", "dcgan", "--augment", "ada:xflip", "--ada-kimg", "5", "--ada-target", "0.5"]
    )
    _, to = train_overrides(args)
    assert to == {"augment": "ada:xflip", "ada_kimg": 5.0, "ada_target": 0.5}


def test_points_are_not_augmented(tmp_path):
    ds = load_dataset("ring8", resolution=1)
    rc = RunConfig(
        model="gan",
        model_config={**tiny_overrides("gan", resolution=1, channels=2)},
        train=TrainConfig(model="gan", batch_size=16, kimg=0.032, augment="diffaug"),
    )
    with pytest.raises(UserError, match="works on images"):
        Trainer(rc, tmp_path, ds, progress=False, tensorboard=False)


def test_a_checkpoint_with_a_broken_ada_state_is_refused_in_one_line(tmp_path):
    ada = {"augment": "ada", "ada_kimg": 0.2}
    first = _train(tmp_path, "run", _rc(kimg=0.032, **ada))
    ck = load_checkpoint(first.run_dir)
    for bad in ({"p": 2.0}, {"d_steps": 4}, {"count": "many"}):
        ck.meta["augment_state"] = {**first.augment.state_dict(), **bad}
        with pytest.raises(UserError, match="cannot be resumed") as err:
            Trainer(_rc(kimg=0.064, **ada), tmp_path / "run", synthetic_dataset(n=48),
                    resume=ck, progress=False, tensorboard=False)  # fmt: skip
        assert "\n" not in str(err.value)
