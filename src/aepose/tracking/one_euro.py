"""One-Euro smoothing (Casiez, Roussel, Vogel, CHI 2012): a low-pass whose cutoff rises with
speed, element-wise over arrays, causal.

:class:`OneEuroFilter` filters one array over time; the tracker advances one
:class:`EuroState` per track table with :func:`euro_step` (shape [T, K, 2]).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from aepose.choices import SMOOTH_BETA, SMOOTH_MIN_CUTOFF
from aepose.errors import AeposeError
from aepose.validate import number_in, require

# Floor of a speed's scale (person size): a pose of one point has size 0.
_EPS = float(np.spacing(1))


@dataclass(frozen=True)
class OneEuroConfig:
    """Parameters of the One-Euro filter.

    The filter is a first-order low-pass whose cutoff rises with speed:
    ``cutoff = min_cutoff + beta * |speed|``. Slow or still keypoints are smoothed hard
    (jitter removed), fast ones lightly (little lag).

    Attributes:
        min_cutoff: cutoff in Hz when still. Lower removes more jitter and lags more.
            1.0 Hz is the paper's suggested starting point; at 25 fps it weights a new
            sample by 0.20 and divides white jitter's standard deviation by about 3.
        beta: cutoff increase in Hz per unit of speed, speed in person sizes per second
            (pixels/s divided by the ``scale`` passed to the filter; the tracker passes
            the square root of the person's box area, so the value does not depend on
            image resolution or distance to the camera). At steady speed v the lag is
            v / (2 pi (min_cutoff + beta v)) < 1 / (2 pi beta) person sizes: 10 bounds it
            at 1.6 % of the person's size, and gave the lowest joint error on
            ``benchmarks/tracking.py`` (of 2, 10, 50). mmpose's Smoother used min_cutoff
            0.004 and beta 0.7 with pixels and frames as units, values tied to one
            resolution and frame rate.
        d_cutoff: cutoff in Hz of the low-pass on the speed estimate (the paper's 1 Hz):
            it keeps jitter from being mistaken for motion.
    """

    min_cutoff: float = SMOOTH_MIN_CUTOFF
    beta: float = SMOOTH_BETA
    d_cutoff: float = 1.0

    def __post_init__(self) -> None:
        # Settings built from arrays at run time: NumPy numbers are welcome.
        require(self, "OneEuroConfig",
                min_cutoff=number_in(self.min_cutoff, 0, low_open=True, numpy=True),
                beta=number_in(self.beta, 0, numpy=True),
                d_cutoff=number_in(self.d_cutoff, 0, low_open=True, numpy=True))


def _alpha(cutoff: np.ndarray | float, dt: np.ndarray) -> np.ndarray:
    """Weight of the new sample of a first-order low-pass with this cutoff (Hz), step dt (s)."""
    r = 2 * math.pi * np.asarray(cutoff) * dt
    return r / (r + 1)


@dataclass
class EuroState:
    """One-Euro filter state, element-wise (any shape S, or [T, K, 2] for a track table)."""

    x: np.ndarray  # last filtered value
    raw: np.ndarray  # last raw value (the speed is measured on raw values)
    dx: np.ndarray  # filtered speed, units of x per second
    t: np.ndarray  # time of each element's last update, seconds
    started: np.ndarray  # bool: element observed at least once

    @classmethod
    def empty(cls, shape: tuple[int, ...]) -> EuroState:
        z = np.zeros(shape)
        return cls(z, z.copy(), z.copy(), z.copy(), np.zeros(shape, bool))

    def rows(self, rows: np.ndarray) -> EuroState:
        """A copy of the state at rows (bool mask or indices) of the first axis."""
        return EuroState(self.x[rows], self.raw[rows], self.dx[rows], self.t[rows],
                         self.started[rows])

    def put(self, rows: np.ndarray, part: EuroState) -> None:
        """Write ``part`` (as :meth:`rows` gave it, then advanced) back at rows."""
        self.x[rows], self.raw[rows], self.dx[rows] = part.x, part.raw, part.dx
        self.t[rows], self.started[rows] = part.t, part.started

    def concat(self, other: EuroState) -> EuroState:
        """This state's rows followed by ``other``'s."""
        return EuroState(*(np.concatenate([getattr(self, f), getattr(other, f)])
                           for f in ("x", "raw", "dx", "t", "started")))


def euro_step(
    cfg: OneEuroConfig,
    s: EuroState,
    x: np.ndarray,
    t: float,
    seen: np.ndarray,
    scale: np.ndarray | float,
) -> np.ndarray:
    """Advance state s (in place) by sample x at time t; returns the output (x where unseen).

    seen: bool, shape of x; scale: broadcastable to x (speeds are divided by it).
    """
    # Per element, because a joint unseen for a while spans a longer step.
    dt = np.maximum(t - s.t, 1e-6)
    dx_hat = s.dx + _alpha(cfg.d_cutoff, dt) * ((x - s.raw) / dt - s.dx)
    cutoff = cfg.min_cutoff + cfg.beta * np.abs(dx_hat) / np.maximum(scale, _EPS)
    x_hat = s.x + _alpha(cutoff, dt) * (x - s.x)
    # An element's first observation passes unchanged and starts its state at rest.
    fresh = seen & ~s.started
    x_hat = np.where(fresh, x, x_hat)
    s.x = np.where(seen, x_hat, s.x)
    s.raw = np.where(seen, x, s.raw)
    s.dx = np.where(seen, np.where(fresh, 0.0, dx_hat), s.dx)
    s.t = np.where(seen, float(t), s.t)
    s.started = s.started | seen
    return np.where(seen, x_hat, x)


class OneEuroFilter:
    """One-Euro filter over an array of any shape, element-wise, causal.

    ``filt(x, t)`` returns the filtered x at time t (seconds, increasing). The first call
    returns x unchanged. Elements where ``mask`` is False, or whose value is NaN or
    infinite, are not observed this time: their state is kept and their input is returned
    unchanged, so a joint missing for a few frames resumes from where it was (the next step
    then spans the whole gap).
    """

    def __init__(self, config: OneEuroConfig | None = None) -> None:
        self.config = config or OneEuroConfig()
        self._state: EuroState | None = None
        self._t: float | None = None  # the previous call's time

    def reset(self) -> None:
        """Forget the past: the next call starts afresh."""
        self._state = None
        self._t = None

    def __call__(
        self, x: np.ndarray, t: float, mask: np.ndarray | None = None, scale: float = 1.0
    ) -> np.ndarray:
        """Filter one sample.

        Args:
            x: the sample, any shape S (float); the same S at every call.
            t: its time in seconds, finite; must exceed the previous call's.
            mask: bool, broadcastable to S: which elements were observed (default all).
            scale: speeds are divided by it before ``beta`` applies (e.g. person size);
                finite.

        Returns:
            float64 array of shape S.

        Raises:
            AeposeError: for a t that is not finite or not after the previous call's, a
                non-finite scale, a mask not broadcastable to S, or an S that changed:
                any of them would corrupt the state for every later call.
        """
        x = np.asarray(x, dtype=np.float64)
        t = self._checked_time(t)
        if self._state is not None and x.shape != self._state.x.shape:
            raise AeposeError(f"OneEuroFilter: x must keep the shape of the first call's, "
                              f"{self._state.x.shape}, got {x.shape}")
        seen = self._checked_mask(mask, x.shape)
        if not np.all(np.isfinite(scale)):
            raise AeposeError(f"OneEuroFilter: scale must be finite, got {scale!r}")
        if self._state is None:
            self._state = EuroState.empty(x.shape)
        # Non-finite values are not observations: NaN or inf in the state would stay there.
        finite = np.isfinite(x)
        out = euro_step(self.config, self._state, np.where(finite, x, 0.0), t,
                        seen & finite, scale)
        self._t = t
        return np.where(finite, out, x)

    def _checked_time(self, t: float) -> float:
        if not (isinstance(t, numbers.Real) and not isinstance(t, bool) and math.isfinite(t)):
            raise AeposeError(f"OneEuroFilter: t must be a finite number of seconds, "
                              f"got {t!r}")
        if self._t is not None and not t > self._t:
            raise AeposeError(f"OneEuroFilter: t must exceed the previous call's ({self._t!r} "
                              f"s), got {t!r}")
        return float(t)

    @staticmethod
    def _checked_mask(mask: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
        if mask is None:
            return np.ones(shape, bool)
        try:
            return np.broadcast_to(mask, shape)
        except ValueError:
            raise AeposeError(f"OneEuroFilter: mask must be broadcastable to x's shape "
                              f"{shape}, got shape {np.shape(mask)}") from None
