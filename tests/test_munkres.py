"""munkres_assignment against the munkres 1.1.4 package (the reference's solver) on costs
shaped like the grouping's and drawn to tie often, and scipy_assignment's optimality.
AEPOSE_GROUPING_CASES=N runs N cost matrices instead of the default.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from munkres import Munkres

from aepose.codec.munkres import munkres_assignment, scipy_assignment

CASES = int(os.environ.get("AEPOSE_GROUPING_CASES", "0"))


def _tied_costs(rng: np.random.Generator) -> np.ndarray:
    """Costs shaped like the grouping's: round(distance) * 100 - value, padded with 1e10
    columns when rows outnumber columns; distances and values drawn to tie often."""
    rows, cols = int(rng.integers(1, 14)), int(rng.integers(1, 14))
    dist = rng.integers(0, 4, (rows, cols)) * rng.choice([1.0, 0.5, 0.25])
    value = rng.choice([0.25, 0.5, 0.75, float(rng.random())], rows)
    cost = np.round(dist) * 100 - value[:, None]
    if rng.random() < 0.3:
        cost = rng.integers(0, 3, (rows, cols)).astype(np.float64)
    if rows > cols:
        cost = np.concatenate((cost, np.full((rows, rows - cols), 1e10)), axis=1)
    return cost


def test_munkres_assignment_equals_munkres_1_1_4_including_ties() -> None:
    rng = np.random.default_rng(1)
    for _ in range(CASES or 1500):
        cost = _tied_costs(rng)
        pairs = np.array(Munkres().compute(cost.copy()))
        np.testing.assert_array_equal(pairs[:, 0], np.arange(len(cost)))
        np.testing.assert_array_equal(munkres_assignment(cost), pairs[:, 1])


def test_scipy_assignment_is_optimal() -> None:
    rng = np.random.default_rng(2)
    for _ in range(200):
        cost = _tied_costs(rng)
        rows = np.arange(len(cost))
        exact = cost[rows, munkres_assignment(cost)].sum()
        assert cost[rows, scipy_assignment(cost)].sum() == exact


def test_munkres_assignment_needs_enough_columns() -> None:
    with pytest.raises(ValueError, match="columns"):
        munkres_assignment(np.zeros((3, 2)))
