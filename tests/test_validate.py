"""aepose.validate: the checks every config dataclass runs, and the one error they raise."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest

from aepose.errors import AeposeError
from aepose.validate import (
    instance_of,
    integer_in,
    integers_in,
    number_in,
    numbers_in,
    one_of,
    refuse,
    require,
)


@pytest.mark.parametrize(("unmet", "expected"), [
    (integer_in(0, 1, 4096), "an integer in [1, 4096]"),
    (integer_in(-1, 0), "an integer >= 0"),
    (integer_in(5, 0, 10**9), None),
    (integers_in((1, 0), 1, 8), "one or more integers in [1, 8]"),
    (integers_in((), 1, 8), "one or more integers in [1, 8]"),
    (number_in(math.nan, 0, 10), "a finite number in [0, 10]"),
    (number_in(0.0, 0, 64, low_open=True), "a finite number in (0, 64]"),
    (number_in(1.0, 0, 1, high_open=True), "a finite number in [0, 1)"),
    (number_in(math.inf, 0), "a finite number >= 0"),
    (number_in(0, 0, low_open=True), "a finite number > 0"),
    (number_in(1e6, 0, 1e6), None),
    (numbers_in((0.5, 2e6), 0, 1e6), "one or more finite numbers in [0, 1e+06]"),
    (one_of("new", ("v0.29", "legacy")), "one of 'v0.29', 'legacy'"),
    (one_of(True, (1, 3)), "one of 1, 3"),
    (instance_of(1, bool), "a bool"),
    (instance_of(False, bool), None),
])
def test_each_check_says_what_was_expected_or_none(unmet: str | None,
                                                   expected: str | None) -> None:
    assert unmet == expected


@pytest.mark.parametrize("value", [True, "3", None, 2.0])
def test_integers_refuse_bools_strings_and_floats(value: object) -> None:
    assert integer_in(value, 0, numpy=True) is not None


def test_numpy_numbers_pass_only_where_allowed() -> None:
    # A Config is written to JSON and checkpoints: Python numbers only (np.float64 is one).
    assert integer_in(np.int64(3), 0) is not None
    assert number_in(np.float32(0.5), 0, 1) is not None
    assert number_in(np.float64(0.5), 0, 1) is None
    assert integer_in(np.int64(3), 0, numpy=True) is None
    assert number_in(np.float32(0.5), 0, 1, numpy=True) is None
    assert number_in(np.bool_(True), 0, 1, numpy=True) is not None


@dataclass(frozen=True)
class _Settings:
    size: object = 4
    rate: object = 0.5


def test_require_names_every_failed_field_in_one_aepose_error() -> None:
    require(_Settings(), "settings", size=integer_in(4, 1), rate=number_in(0.5, 0, 1))
    bad = _Settings(size=0, rate="fast")
    with pytest.raises(AeposeError) as caught:
        require(bad, "settings", size=integer_in(bad.size, 1), rate=number_in(bad.rate, 0, 1))
    assert str(caught.value) == ("settings.size = 0: expected an integer >= 1; "
                                 "settings.rate = 'fast': expected a finite number in [0, 1]")
    assert isinstance(caught.value, ValueError)  # callers catching ValueError still do


def test_refuse_raises_the_same_line() -> None:
    with pytest.raises(AeposeError, match=r"^test\.nms_kernel = 4: expected an odd integer$"):
        refuse("test", "nms_kernel", 4, "an odd integer")
