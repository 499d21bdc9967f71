"""Fuzzing the typed config (hypothesis): any input gives a valid result or a one-line
`UserError`, never another exception."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from gankit.config import (
    RunConfig,
    TrainConfig,
    _coerce,
    apply_overrides,
    from_dict,
    parse_assignments,
)
from gankit.errors import UserError
from gankit.training.ema import ema_beta
from gankit.training.trainer import total_images
from tests.fuzzing import (
    ANY_VALUE,
    HINTS,
    NUMBER_TEXT,
    TRAIN_FIELDS,
    assert_one_line,
    conforms,
    fuzz,
)

# ------------------------------------------------------------------------------ config


@fuzz(60)
@given(
    st.lists(
        st.text(alphabet=st.sampled_from("ab=_- .1\t\n=é"), max_size=10) | st.text(max_size=6),
        max_size=5,
    )
)
def test_parse_assignments_splits_at_the_first_equals_or_refuses(items: list[str]) -> None:
    if all("=" in item for item in items):
        expected = {}
        for item in items:
            key, value = item.split("=", 1)
            expected[key.strip()] = value.strip()
        assert parse_assignments(items) == expected
    else:
        with pytest.raises(UserError) as info:
            parse_assignments(items)
        assert_one_line(info.value, "key=value")


COERCE_TYPES = [int, float, bool, str, int | None, float | None, str | None]


@fuzz(300)
@given(ANY_VALUE, st.sampled_from(COERCE_TYPES))
def test_coerce_gives_the_exact_type_or_a_user_error(value: Any, tp: Any) -> None:
    try:
        out = _coerce(value, tp, "some_key")
    except UserError as err:
        assert_one_line(err, "some_key")
        assert len(str(err)) < 400  # a 5000-digit value is shortened, not pasted
        return
    assert conforms(out, tp), (value, tp, out)
    if out is None:
        assert value is None or value.lower() in ("none", "null")
    elif type(out) is int:
        assert -(2**63) <= out < 2**63
        assert out == (int(value) if isinstance(value, str) else value)
    elif type(out) is float and isinstance(value, str):
        assert out == float(value) or (math.isnan(out) and math.isnan(float(value)))


OVERRIDE_KEYS = st.one_of(
    st.sampled_from(TRAIN_FIELDS),
    st.sampled_from(TRAIN_FIELDS).map(lambda k: k.replace("_", "-")),
    st.text(max_size=10),
)


@fuzz(150)
@given(st.dictionaries(OVERRIDE_KEYS, ANY_VALUE, max_size=4))
def test_apply_overrides_types_every_field_or_names_the_culprit(overrides: dict) -> None:
    base = TrainConfig()
    try:
        cfg = apply_overrides(base, overrides, what="training option")
    except UserError as err:
        message = assert_one_line(err)
        culprits = [repr(k) for k in overrides] + [k.replace("-", "_") for k in overrides]
        assert any(c and c in message for c in culprits), message
        return
    changed = {k.replace("-", "_") for k in overrides}
    for name in TRAIN_FIELDS:
        value = getattr(cfg, name)
        assert conforms(value, HINTS[name]), (name, value)
        if name not in changed:
            assert value == getattr(base, name)


def _positive_float() -> st.SearchStrategy[float]:
    edges = st.sampled_from([0.0, -0.0, 5e-324, 1e-3, 0.999999, 1.0, 1e9, 1e9 * 1.01, 1e306])
    return edges | st.floats(allow_nan=True, allow_infinity=True)


INT_EDGES = st.sampled_from([0, 1, -1, 16, 2**31, 2**32 - 1, 2**32, 2**62, 2**63 - 1, -(2**63)])
NUMERIC_OVERRIDES = {
    name: (INT_EDGES | st.integers()) if HINTS[name] in (int, int | None) else _positive_float()
    for name in TRAIN_FIELDS
    if HINTS[name] in (int, float, int | None, float | None)
}


@fuzz(200)
@given(
    st.dictionaries(st.sampled_from(sorted(NUMERIC_OVERRIDES)), st.none(), max_size=6).flatmap(
        lambda keys: st.fixed_dictionaries({k: NUMERIC_OVERRIDES[k] for k in keys})
    )
)
def test_a_config_that_validates_can_be_run(overrides: dict[str, Any]) -> None:
    """validate() is the last check before the trainer: whatever it accepts must work there."""
    if overrides.get("eval_every_kimg") is not None:
        overrides["eval_metrics"] = "fd2k_mnistcnn"
    try:
        cfg = apply_overrides(TrainConfig(), overrides)  # refuses ints beyond 64 bits
        cfg.validate()
    except UserError as err:
        assert_one_line(err)
        return
    for name in ("batch_size", "lr_g", "lr_d", "ema_kimg", "n_critic", "log_every"):
        value = getattr(cfg, name)
        assert value > 0 and math.isfinite(value), (name, value)
    assert 0.0 <= cfg.beta1 < 1.0 and 0.0 <= cfg.beta2 < 1.0
    # What the trainer computes from the config must not overflow or fail.
    for n in (1, 1797, 70_000):
        assert isinstance(total_images(cfg, n), int)
    for name in ("sample_every_kimg", "ckpt_every_kimg", "eval_every_kimg"):
        value = getattr(cfg, name)
        if value is not None:
            assert max(1, int(value * 1000)) >= 1
    torch.manual_seed(cfg.seed)
    torch.Generator().manual_seed(cfg.seed * 1_000_003 + 10**6)  # the per-epoch shuffle
    for nimg in (0, 1000, 10**9):
        beta = ema_beta(cfg.batch_size, nimg, cfg.ema_kimg, cfg.ema_rampup)
        assert 0.0 <= beta <= 1.0


JSON_SCALAR = st.one_of(  # JSON itself cannot carry a 5000-digit int: leave that one out
    st.none(), st.booleans(), st.integers(), st.sampled_from([2**63, -(2**64), 10**400]),
    st.floats(), st.text(max_size=6),
)  # fmt: skip
JSON_VALUE = st.recursive(
    JSON_SCALAR,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)
TRAIN_DOC = st.dictionaries(
    st.sampled_from(TRAIN_FIELDS) | st.text(max_size=5), JSON_VALUE | NUMBER_TEXT, max_size=4
)


@fuzz(150)
@given(
    st.one_of(
        JSON_VALUE,
        st.fixed_dictionaries(
            {"model": JSON_VALUE, "model_config": JSON_VALUE, "train": TRAIN_DOC | JSON_VALUE}
        ),
        st.fixed_dictionaries(
            {"model": st.sampled_from(["dcgan", "gan"]), "model_config": st.just({})},
            optional={"train": TRAIN_DOC},
        ),
    )
)
def test_run_config_from_any_json(doc: Any) -> None:
    try:
        rc = RunConfig.from_json(doc)
    except UserError as err:
        assert_one_line(err)
        return
    assert isinstance(rc.model, str) and isinstance(rc.model_config, dict)
    for name in TRAIN_FIELDS:
        assert conforms(getattr(rc.train, name), HINTS[name]), name
    # What was accepted survives its own round trip (compared as JSON: NaN != NaN).
    again = RunConfig.from_json(json.loads(json.dumps(rc.to_json())))
    assert json.dumps(again.to_json(), sort_keys=True) == json.dumps(rc.to_json(), sort_keys=True)
    assert from_dict(TrainConfig, doc["train"]) == rc.train or any(
        isinstance(v, float) and math.isnan(v) for v in vars(rc.train).values()
    )
