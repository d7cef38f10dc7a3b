"""Assignment solvers for matching by tag: cost [A, N], A <= N -> the column of each row.

:func:`munkres_assignment` is a NumPy re-implementation of the step sequence of
``munkres`` 1.1.4 (the reference's solver), so exact cost ties break identically;
:func:`scipy_assignment` is SciPy's solver, optimal too but free to pick another optimum
among ties. Host only.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment


def munkres_assignment(cost: np.ndarray) -> np.ndarray:
    """Column of each row chosen by ``munkres.Munkres().compute(cost)`` (package version
    1.1.4, the reference's solver), for float64 cost [A, N] with A <= N: -> [A] int64.

    The same step sequence on NumPy arrays, so that among several optimal assignments the
    same one is returned: rows are padded to a square with zeros; step 1 subtracts row
    minima; step 2 stars, row by row, the first zero in a column without a star; then
    columns with stars are covered and, until all are, uncovered zeros are primed (steps 4
    and 6) and an alternating path of primes and stars is flipped (step 5).

    Raises ValueError for a cost holding NaN or infinities (as SciPy's solver does for NaN),
    or one whose values span more than float64 holds (beyond 1e308): either would leave the
    steps without a zero, looping forever.
    """
    num_rows, n = cost.shape
    if num_rows > n:
        raise ValueError(f"cost needs at least as many columns as rows, got {cost.shape}")
    if not np.isfinite(cost).all():
        # A NaN (or inf - inf) leaves no zero to star or prime: the steps would loop forever.
        raise ValueError("cost holds NaN or infinite values")
    c = np.zeros((n, n))
    c[:num_rows] = cost
    c -= c.min(axis=1, keepdims=True)
    star_col, star_row = _greedy_stars(c == 0, num_rows)
    while (star_row >= 0).sum() < n:
        row, col, prime_col = _prime_zeros(c, star_col, star_row)
        _flip_path(row, col, prime_col, star_col, star_row)
    return star_col[:num_rows]


def _greedy_stars(zero: np.ndarray, num_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Step 2: per row in order, star the first zero whose column has no star yet.

    zero [n, n] bool, rows from num_rows on are padding (all zero after step 1), which the
    rule gives the free columns in increasing order. Returns star_col [n] (column of each
    row's star, -1 none) and star_row [n].
    """
    n = len(zero)
    star_col = np.full(n, -1, dtype=np.int64)
    star_row = np.full(n, -1, dtype=np.int64)
    rows, cols = np.nonzero(zero[:num_rows])
    for i, j in zip(rows.tolist(), cols.tolist(), strict=True):
        if star_col[i] < 0 and star_row[j] < 0:
            star_col[i], star_row[j] = j, i
    free = np.flatnonzero(star_row < 0)[: n - num_rows]
    star_col[num_rows:] = free
    star_row[free] = np.arange(num_rows, n)
    return star_col, star_row


def _prime_zeros(
    c: np.ndarray, star_col: np.ndarray, star_row: np.ndarray
) -> tuple[int, int, np.ndarray]:
    """Steps 4 and 6 from a fresh step 3 (columns with stars covered, no primes).

    Primes uncovered zeros until one has no star in its row; when none is left, step 6
    adds the smallest uncovered value to covered rows and subtracts it from uncovered
    columns (in that order per element, as the package does, for identical rounding).
    Returns that prime's (row, col) and the prime column of every row (-1 none).
    """
    n = len(c)
    row_cov = np.zeros(n, dtype=bool)
    col_cov = star_row >= 0
    prime_col = np.full(n, -1, dtype=np.int64)
    zero = c == 0
    free = zero & ~col_cov  # uncovered zeros, kept up to date as covers change
    start_row = start_col = 0
    while True:
        row, col = _find_zero(free, start_row, start_col)
        if row < 0:
            smallest = c[np.ix_(~row_cov, ~col_cov)].min()
            if not np.isfinite(smallest):
                # Costs near float64's limit overflowed; inf - inf would leave no zero.
                raise ValueError("cost values span more than float64 can hold")
            c[row_cov] += smallest
            c[:, ~col_cov] -= smallest
            zero = c == 0
            free = zero & ~row_cov[:, None] & ~col_cov
            start_row = start_col = 0
            continue
        prime_col[row] = col
        star = star_col[row]
        if star < 0:
            return row, col, prime_col
        row_cov[row] = True
        col_cov[star] = False
        free[row] = False
        free[:, star] = zero[:, star] & ~row_cov
        start_row, start_col = row, int(star)


def _find_zero(free: np.ndarray, start_row: int, start_col: int) -> tuple[int, int]:
    """The package's search for an uncovered zero (free [n, n] bool): the first row with one,
    scanning rows cyclically from start_row; within it the *last* one met scanning columns
    cyclically from start_col (its loop keeps overwriting the hit). (-1, -1) if none."""
    rows = np.flatnonzero(free.any(axis=1))
    if rows.size == 0:
        return -1, -1
    later = np.searchsorted(rows, start_row)
    row = int(rows[later] if later < rows.size else rows[0])
    cols = free[row].nonzero()[0]
    col = int(cols[((cols - start_col) % len(free)).argmax()])
    return row, col


def _flip_path(
    row: int, col: int, prime_col: np.ndarray, star_col: np.ndarray, star_row: np.ndarray
) -> None:
    """Step 5: from the prime (row, col) follow star in its column, prime in that star's
    row, ...; unstar the path's stars and star its primes (in place)."""
    primes = [(row, col)]
    stars = []
    while star_row[col] >= 0:
        star = int(star_row[col])
        stars.append((star, col))
        col = int(prime_col[star])
        primes.append((star, col))
    for r, c in stars:
        star_col[r], star_row[c] = -1, -1
    for r, c in primes:
        star_col[r], star_row[c] = c, r


def scipy_assignment(cost: np.ndarray) -> np.ndarray:
    """A minimum-cost assignment of cost [A, N], A <= N, by SciPy: -> column per row [A].

    Optimal like Munkres, but may pick another optimum when costs tie exactly.
    """
    return linear_sum_assignment(cost)[1]
