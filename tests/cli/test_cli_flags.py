"""`gankit train`'s flags come from TrainConfig's fields and their help metadata."""

import argparse
import dataclasses

import pytest

from gankit.cli import build_parser
from gankit.cli.train import add_config_flags, train_overrides
from gankit.config import TrainConfig, apply_overrides, setting
from gankit.errors import UserError


def _train_args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["train", "dcgan", *argv])


def test_every_training_field_has_help_and_a_flag():
    parser = build_parser()
    train = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[
        "train"
    ]
    flags = {o for a in train._actions for o in a.option_strings}
    for f in dataclasses.fields(TrainConfig):
        assert f.metadata.get("help"), f"{f.name} has no help text"
        if f.name != "model":  # the positional argument
            assert "--" + f.name.replace("_", "-") in flags, f.name


# Today's flag names and the fields they set: none may stop working.
OLD_FLAGS = [
    (["--lr", "1e-3"], {"lr_g": 1e-3, "lr_d": 1e-3}),
    (["--lr", "1e-3", "--lr-d", "5e-4"], {"lr_g": 1e-3, "lr_d": 5e-4}),
    (["--no-ema"], {"ema": False}),
    (["--no-download"], {"download": False}),
    (["--folder-labels"], {"folder_labels": True}),
    (["--compile"], {"compile": True}),
    (["--sync-bn"], {"sync_bn": True}),
    (["--no-channels-last"], {"channels_last": False}),
    (["--channels-last"], {"channels_last": True}),
    (["--max-images", "50"], {"max_images": 50}),
    (["--epochs", "2.5"], {"epochs": 2.5}),
    (["--kimg", "3"], {"kimg": 3.0}),
    (["--max-seconds", "9"], {"max_seconds": 9.0}),
    (["--batch-size", "16"], {"batch_size": 16}),
    (["--seed", "4"], {"seed": 4}),
    (["--objective", "wgan"], {"objective": "wgan"}),
    (["--reg", "r1:gamma=5"], {"reg": "r1:gamma=5"}),
    (["--n-critic", "5"], {"n_critic": 5}),
    (["--optimizer", "rmsprop"], {"optimizer": "rmsprop"}),
    (["--sample-every-kimg", "1"], {"sample_every_kimg": 1.0}),
    (["--ckpt-every-kimg", "2"], {"ckpt_every_kimg": 2.0}),
    (["--device", "cpu"], {"device": "cpu"}),
    (["--precision", "bf16"], {"precision": "bf16"}),
    (["--optimizer-impl", "loop"], {"optimizer_impl": "loop"}),
    (["--data-device", "cpu"], {"data_device": "cpu"}),
    (["--preset", "paper"], {"preset": "paper"}),
    (["--data-root", "/d"], {"data_root": "/d"}),
    (
        ["--eval-every-kimg", "1", "--eval-metrics", "fd1k_pixel", "--keep-best", "fd1k_pixel"],
        {"eval_every_kimg": 1.0, "eval_metrics": "fd1k_pixel", "keep_best": "fd1k_pixel"},
    ),
]


@pytest.mark.parametrize(
    ("argv", "expected"), OLD_FLAGS, ids=lambda v: " ".join(v) if isinstance(v, list) else ""
)
def test_old_flag_names_set_their_fields(argv, expected):
    mo, to = train_overrides(_train_args(*argv))
    assert mo == {}
    assert to == expected


def test_model_flags_and_set_pairs():
    mo, to = train_overrides(
        _train_args(
            "--resolution", "16", "--channels", "1", "--set", "ngf=8", "--set", "ema_kimg=2"
        )
    )
    assert mo == {"resolution": 16, "channels": 1, "ngf": "8"}
    assert to == {"ema_kimg": "2"}
    assert _train_args("--data", "mnist").data == "mnist"


def test_fields_that_had_no_flag_now_have_one():
    _, to = train_overrides(_train_args("--beta1", "0.1", "--ema-kimg", "3", "--nan-check", "log"))
    assert to == {"beta1": 0.1, "ema_kimg": 3.0, "nan_check": "log"}


def test_a_new_field_needs_no_cli_edit():
    @dataclasses.dataclass
    class Extended(TrainConfig):
        warmup_kimg: float = setting(0.0, "ramp the learning rates up over this many kimg")
        stable: bool = setting(False, "a yes/no field")

    parser = argparse.ArgumentParser()
    add_config_flags(parser, Extended)
    args = parser.parse_args(["--warmup-kimg", "2", "--stable"])
    assert (args.warmup_kimg, args.stable) == (2.0, True)
    assert "ramp the learning rates" in parser.format_help()


def test_choices_come_from_the_metadata():
    with pytest.raises(SystemExit):
        _train_args("--optimizer", "sgd")
    with pytest.raises(UserError, match=r"optimizer must be adam or rmsprop \(got 'sgd'\)"):
        apply_overrides(TrainConfig(), {"optimizer": "sgd"}).validate()
    with pytest.raises(UserError, match=r"precision must be fp32, bf16 or auto"):
        apply_overrides(TrainConfig(), {"precision": "fp8"}).validate()
