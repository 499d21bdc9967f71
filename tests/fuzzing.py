"""What the property-based tests (hypothesis) share: settings and pools of hostile values.

Every fuzz test is derandomized and keeps no example database, so CI runs the same examples
each time and leaves no .hypothesis folder.
"""

from __future__ import annotations

import os
import resource
import tempfile
import types
import typing
from dataclasses import fields
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from gankit.config import TrainConfig
from gankit.errors import UserError

# No example database, and Hypothesis's own caches (constants, unicode tables) go to a
# throw-away folder rather than ./.hypothesis in the repository.
if not os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
    set_hypothesis_home_dir(tempfile.mkdtemp(prefix="gankit-test-hypothesis-"))

# A hang shows up as a deadline failure; each example is otherwise a few milliseconds. The
# deadline is far above that so that a loaded CI machine cannot trip it, only a real hang.
FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=timedelta(seconds=60),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=False,
)


def fuzz(examples: int) -> settings:
    return settings(FUZZ, max_examples=examples)


def assert_one_line(err: UserError, *fragments: str) -> str:
    message = str(err)
    assert message and "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


# ------------------------------------------------------------------------------ value pools

# Strings a user might type for a number: well-formed, odd but valid in Python, and junk.
NUMBER_WORDS = st.sampled_from(
    [
        "0", "-0", "1", "-1", "16", "0.5", "1e-3", "1e400", "-1e400", "nan", "NaN", "inf",
        "-inf", "Infinity", "1_000", " 7 ", "0x10", "1e", "", " ", "2**8", "1,5", "\u0663",
        "9" * 30, "9" * 5000, "none", "None", "null", "true", "off", "1.0", "3.", ".5",
    ]
)  # fmt: skip
NUMBER_TEXT = st.one_of(
    NUMBER_WORDS,
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=8),
)
BIG_INTS = st.sampled_from([2**31, 2**32, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**400, 10**5000])
ANY_SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    BIG_INTS,
    st.floats(allow_nan=True, allow_infinity=True),
    NUMBER_TEXT,
)
ANY_VALUE = st.one_of(
    ANY_SCALAR,
    st.lists(ANY_SCALAR, max_size=3),
    st.dictionaries(st.text(max_size=4), ANY_SCALAR, max_size=2),
)

TRAIN_FIELDS = [f.name for f in fields(TrainConfig)]
HINTS = typing.get_type_hints(TrainConfig)


def conforms(value: Any, tp: Any) -> bool:
    """Whether `value` has exactly the type `tp` (a bool is not an int; an int not a float)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return any(conforms(value, arg) for arg in typing.get_args(tp))
    if tp is type(None):
        return value is None
    return type(value) is tp


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: kB
