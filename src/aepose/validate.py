"""Checks of the settings in aepose's frozen config dataclasses, and the one error they raise.

A dataclass checks its fields in ``__post_init__`` with :func:`require`: each keyword is a
field, its value what the field's value failed to be (from :func:`integer_in`,
:func:`number_in`... ``None`` when the value passes)::

    require(self, "train", lr=number_in(self.lr, 0, 10), epochs=integer_in(self.epochs, 1))

One :class:`~aepose.errors.AeposeError` names every failed field, its value and what is
allowed, e.g. ``train.lr = nan: expected a finite number in [0, 10]``. A rule no helper
covers is refused with :func:`refuse`, in the same words.

Pure Python (no NumPy, no torch): ``aepose.config`` imports it, and ``aepose --help``
must not load either.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable
from typing import Any, NoReturn

from aepose.errors import AeposeError


def require(config: object, section: str, **unmet: str | None) -> None:
    """Raise one AeposeError naming every field of ``config`` whose ``unmet`` is not None.

    Args:
        config: the dataclass whose fields are named (their values are quoted).
        section: how the message names ``config``: ``"train"`` or ``"TrackerConfig"``.
        unmet: field name -> what its value was expected to be, or None where it passed.
    """
    failed = [_line(section, name, getattr(config, name), allowed)
              for name, allowed in unmet.items() if allowed is not None]
    if failed:
        raise AeposeError("; ".join(failed))


def refuse(section: str, name: str, value: Any, allowed: str) -> NoReturn:
    """Raise one line naming the field, its value and what is allowed (a rule of the caller's)."""
    raise AeposeError(_line(section, name, value, allowed))


def integer_in(value: Any, low: int, high: float = math.inf, *, numpy: bool = False
               ) -> str | None:
    """None if ``value`` is an integer in [low, high] (``high`` inf: no upper bound), else
    what was expected.

    ``numpy``: also accept NumPy integers. A Config keeps Python numbers only (it is
    written to JSON and checkpoints); settings built from arrays at run time need not. A
    bool is never an integer here: True as a count is a mistake.
    """
    kind = numbers.Integral if numpy else int
    if isinstance(value, kind) and not isinstance(value, bool) and low <= int(value) <= high:
        return None
    return f"an integer {_bounds(low, high, str)}"


def integers_in(values: Iterable[Any], low: int, high: int) -> str | None:
    """None if ``values`` holds one or more Python integers in [low, high], else what was
    expected."""
    if values and all(integer_in(v, low, high) is None for v in values):
        return None
    return f"one or more integers {_bounds(low, high, str)}"


def number_in(value: Any, low: float, high: float = math.inf, *, low_open: bool = False,
              high_open: bool = False, numpy: bool = False) -> str | None:
    """None if ``value`` is a finite number in [low, high] (``low_open``, ``high_open``:
    excluding that bound; ``high`` inf: no upper bound), else what was expected.

    ``numpy``: also accept NumPy numbers (see :func:`integer_in`). NaN, infinities and
    bools always fail.
    """
    if _is_number(value, numpy) and _within(value, low, high, low_open, high_open):
        return None
    return f"a finite number {_bounds(low, high, _g, low_open, high_open)}"


def numbers_in(values: Iterable[Any], low: float, high: float, *, low_open: bool = False
               ) -> str | None:
    """None if ``values`` holds one or more Python numbers as :func:`number_in` accepts
    them, else what was expected."""
    if values and all(number_in(v, low, high, low_open=low_open) is None for v in values):
        return None
    return f"one or more finite numbers {_bounds(low, high, _g, low_open)}"


def one_of(value: Any, choices: tuple[Any, ...]) -> str | None:
    """None if ``value`` is one of ``choices``, else what was expected. A bool never is: True
    equals 1, but as a kernel size it is a mistake."""
    if not isinstance(value, bool) and value in choices:
        return None
    return "one of " + ", ".join(repr(c) for c in choices)


def instance_of(value: Any, kind: type) -> str | None:
    """None if ``value`` is a ``kind`` (a bool, a nested config...), else what was expected."""
    return None if isinstance(value, kind) else f"a {kind.__name__}"


def _line(section: str, name: str, value: Any, allowed: str) -> str:
    return f"{section}.{name} = {value!r}: expected {allowed}"


def _is_number(value: Any, numpy: bool) -> bool:
    kind = numbers.Real if numpy else int | float
    return isinstance(value, kind) and not isinstance(value, bool) and math.isfinite(value)


def _within(value: float, low: float, high: float, low_open: bool, high_open: bool) -> bool:
    above = low < value if low_open else low <= value
    below = value < high if high_open else value <= high
    return above and below


def _g(value: float) -> str:
    return f"{value:g}"


def _bounds(low: float, high: float, show: Callable[[Any], str], low_open: bool = False,
            high_open: bool = False) -> str:
    """``in [0, 1]``, ``in (0, 64]``, ``in [0, 1)``; ``>= 0`` or ``> 0`` when high is inf."""
    if high == math.inf:
        return f"{'>' if low_open else '>='} {show(low)}"
    return f"in {'(' if low_open else '['}{show(low)}, {show(high)}{')' if high_open else ']'}"
