"""Tracking people across video frames, and One-Euro smoothing of their keypoints.

A :class:`PoseTracker` is made once per video and fed one frame at a time::

    tracker = PoseTracker(COCO.sigmas)
    for frame_keypoints, frame_scores in video:           # [P, K, 3], [P]
        tracked = tracker.update(frame_keypoints, frame_scores)
        tracked[0].track_id, tracked[0].keypoints         # int, [K, 3]

Each frame, every live track predicts where its keypoints are now (its last pose moved on
by a constant-velocity estimate per keypoint, n steps for a track missed for n frames).
Tracks and detections are paired by optimal assignment
(``scipy.optimize.linear_sum_assignment``) on a similarity mixing the OKS of the predicted
pose with the detection and the IoU of their boxes; pairs under a gate are never paired.
mmpose 0.x's ``get_track_id`` instead pairs greedily, one detection at a time, with the
previous frame only: a person missed for one frame gets a new ID, and the first detection
in a crossing can take the other person's ID. ``benchmarks/tracking.py`` measures both.

Only people scoring at least ``min_score`` are tracked: paired with tracks, and starting
them. Weaker people, mostly a bottom-up decoder's leftovers (stray joints grouped into a
person), get ``track_id`` -1 and leave the tracks alone: tracking them too gave a
demo-trained model's poses a negative MOTA (BENCHMARKS.md, "Tracking").

Track life: a track is born for every unpaired detection scoring at least ``min_score``
with at least ``min_keypoints`` keypoints above ``keypoint_threshold``, with the next ID
(IDs only ever increase, and are never reused); it lives while it keeps being paired and
for ``max_age`` frames after its last pairing (so a person hidden for up to ``max_age``
frames gets the same ID back); then it is dropped. There is no tentative state: every
track reports its ID from its first frame, so a caller never sees a pose wait for an ID.

Smoothing (``TrackerConfig(smooth=True)``) runs a :class:`OneEuroFilter` per track over
its [K, 2] coordinates and changes only the keypoints reported; pairing always uses the
raw detections, so smoothing can never cause an ID switch. The filter is causal: the
output at frame t depends on frames <= t only, and nothing is held back.

Only arrays enter the core; :meth:`PoseTracker.update_poses` adapts any objects with
``keypoints`` [K, 3] and ``score`` attributes (``aepose.pipeline.predictor.Pose``).

Shapes: P people (detections) in a frame, K keypoints, T live tracks. Coordinates are
image pixels; OKS is :func:`aepose.oks.pairwise_oks` (variances (2 sigma)^2, area =
extent of the valid keypoints, mean of the two areas), as in the pose NMS.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from scipy.optimize import linear_sum_assignment

from aepose.choices import (
    SMOOTH_BETA,
    SMOOTH_MIN_CUTOFF,
    TRACK_MAX_AGE,
    TRACK_MIN_SCORE,
    TRACK_MIN_SIMILARITY,
)
from aepose.keypoints import KeypointSpec
from aepose.oks import pairwise_oks

_EPS = float(np.spacing(1))


@dataclass(frozen=True)
class OneEuroConfig:
    """Parameters of the One-Euro filter (Casiez, Roussel, Vogel, CHI 2012).

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
        _check(self, [("min_cutoff", "a number", "> 0", lambda v: 0 < v < math.inf),
                      ("beta", "a number", ">= 0", lambda v: 0 <= v < math.inf),
                      ("d_cutoff", "a number", "> 0", lambda v: 0 < v < math.inf)])


# The types a config field can require. bool is an int in Python, but True as a frame count
# or a threshold is a mistake, so it passes neither "an int" nor "a number".
_KINDS: dict[str, Callable[[object], bool]] = {
    "an int": lambda v: isinstance(v, numbers.Integral) and not isinstance(v, bool),
    "a number": lambda v: isinstance(v, numbers.Real) and not isinstance(v, bool),
    "a bool": lambda v: isinstance(v, bool),
    "a OneEuroConfig": lambda v: isinstance(v, OneEuroConfig),
}

# (field, kind from _KINDS, condition as shown, test of a value of that kind or None).
_Rule = tuple[str, str, str, Callable[[Any], bool] | None]


def _check(config: object, rules: Sequence[_Rule]) -> None:
    """Raise one ValueError naming every rule of ``config`` that fails, with the value got.

    A field's condition is tested only once its type passed, so that a wrong type reports
    itself instead of raising TypeError from a comparison. Conditions are written so that
    NaN fails them (every comparison with NaN is False).
    """
    failed = []
    for name, kind, condition, test in rules:
        value = getattr(config, name)
        if not _KINDS[kind](value):
            failed.append(f"{name} as {kind} (got {type(value).__name__} {value!r})")
        elif test is not None and not test(value):
            failed.append(f"{name} {condition} (got {value!r})")
    if failed:
        raise ValueError(f"{type(config).__name__}: need {', '.join(failed)}")


def _alpha(cutoff: np.ndarray | float, dt: np.ndarray) -> np.ndarray:
    """Weight of the new sample of a first-order low-pass with this cutoff (Hz), step dt (s)."""
    r = 2 * math.pi * np.asarray(cutoff) * dt
    return r / (r + 1)


@dataclass
class _EuroState:
    """One-Euro filter state, element-wise (any shape S, or [T, K, 2] for a track table)."""

    x: np.ndarray  # last filtered value
    raw: np.ndarray  # last raw value (the speed is measured on raw values)
    dx: np.ndarray  # filtered speed, units of x per second
    t: np.ndarray  # time of each element's last update, seconds
    started: np.ndarray  # bool: element observed at least once

    @classmethod
    def empty(cls, shape: tuple[int, ...]) -> _EuroState:
        z = np.zeros(shape)
        return cls(z, z.copy(), z.copy(), z.copy(), np.zeros(shape, bool))


def _euro_step(
    cfg: OneEuroConfig,
    s: _EuroState,
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
        self._state: _EuroState | None = None
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
            ValueError: for a t that is not finite or not after the previous call's, a
                non-finite scale, a mask not broadcastable to S, or an S that changed:
                any of them would corrupt the state for every later call.
        """
        x = np.asarray(x, dtype=np.float64)
        t = self._checked_time(t)
        if self._state is not None and x.shape != self._state.x.shape:
            raise ValueError(f"OneEuroFilter: x must keep the shape of the first call's, "
                             f"{self._state.x.shape}, got {x.shape}")
        seen = self._checked_mask(mask, x.shape)
        if not np.all(np.isfinite(scale)):
            raise ValueError(f"OneEuroFilter: scale must be finite, got {scale!r}")
        if self._state is None:
            self._state = _EuroState.empty(x.shape)
        # Non-finite values are not observations: NaN or inf in the state would stay there.
        finite = np.isfinite(x)
        out = _euro_step(self.config, self._state, np.where(finite, x, 0.0), t,
                         seen & finite, scale)
        self._t = t
        return np.where(finite, out, x)

    def _checked_time(self, t: float) -> float:
        if not (isinstance(t, numbers.Real) and not isinstance(t, bool) and math.isfinite(t)):
            raise ValueError(f"OneEuroFilter: t must be a finite number of seconds, got {t!r}")
        if self._t is not None and not t > self._t:
            raise ValueError(f"OneEuroFilter: t must exceed the previous call's ({self._t!r} "
                             f"s), got {t!r}")
        return float(t)

    @staticmethod
    def _checked_mask(mask: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
        if mask is None:
            return np.ones(shape, bool)
        try:
            return np.broadcast_to(mask, shape)
        except ValueError:
            raise ValueError(f"OneEuroFilter: mask must be broadcastable to x's shape {shape},"
                             f" got shape {np.shape(mask)}") from None


@dataclass(frozen=True)
class TrackerConfig:
    """Settings of :class:`PoseTracker` (defaults chosen on ``benchmarks/tracking.py``).

    Attributes:
        max_age: frames a track outlives its last pairing; a person hidden for up to this
            many frames gets the same ID back (30 = 1.2 s at 25 fps).
        keypoint_threshold: keypoints scoring below it are treated as missing: they enter
            neither the OKS nor the box nor the motion estimate.
        min_keypoints: an unpaired detection starts a track only with at least this many
            keypoints above the threshold (mmpose's ``min_keypoints`` is 3); weaker ones
            are reported with ``track_id = -1``.
        min_score: person score needed to be tracked (paired with a track, or start one),
            in [0, 1] as person scores are; people below it get ``track_id = -1``. 0.2 is
            the score overlays draw from; 0 tracks everyone. ``update`` without scores
            treats every person as 1.0.
        oks_weight: similarity = oks_weight * OKS + (1 - oks_weight) * box IoU. OKS
            separates people whose boxes overlap (crossings); IoU still pairs a person
            whose joints were mostly re-detected elsewhere.
        min_similarity: the gate: a track and a detection less similar than this are never
            paired, however the rest of the assignment goes.
        miss_penalty: similarity subtracted per frame a track has been missed, to favour
            tracks seen last frame over ones lost a while ago (0: on the benchmark any
            penalty cost more re-attachments after occlusions than it saved).
        velocity_momentum: weight of the old velocity when a new one is measured
            (exponential average per keypoint); 0 trusts the last step only.
        keypoint_motion: in the prediction, weight of each keypoint's own velocity against
            its track's mean velocity: limbs swing back and forth, so extrapolating their
            own velocity alone over several frames overshoots (1 = per keypoint only,
            0 = the body's mean only).
        smooth: report keypoints smoothed by a One-Euro filter per track (``one_euro``).
        one_euro: the filter's parameters.
        fps: frame rate assumed for the smoothing clock when ``update`` gets no
            timestamp.
    """

    max_age: int = TRACK_MAX_AGE
    keypoint_threshold: float = 0.1
    min_keypoints: int = 3
    min_score: float = TRACK_MIN_SCORE
    oks_weight: float = 0.9
    min_similarity: float = TRACK_MIN_SIMILARITY
    miss_penalty: float = 0.0
    velocity_momentum: float = 0.8
    keypoint_motion: float = 0.5
    smooth: bool = False
    one_euro: OneEuroConfig = field(default_factory=OneEuroConfig)
    fps: float = 25.0

    def __post_init__(self) -> None:
        unit = "in [0, 1]", lambda v: 0 <= v <= 1
        _check(self, [
            ("max_age", "an int", ">= 0", lambda v: v >= 0),
            ("keypoint_threshold", "a number", *unit),
            ("min_keypoints", "an int", ">= 1", lambda v: v >= 1),
            # Person scores are in [0, 1] (as the CLI's --track-min-score): above 1 would
            # silently track nobody.
            ("min_score", "a number", *unit),
            ("oks_weight", "a number", *unit),
            ("min_similarity", "a number", *unit),
            ("miss_penalty", "a number", ">= 0", lambda v: 0 <= v < math.inf),
            ("velocity_momentum", "a number", "in [0, 1)", lambda v: 0 <= v < 1),
            ("keypoint_motion", "a number", *unit),
            ("smooth", "a bool", "", None),
            ("one_euro", "a OneEuroConfig", "", None),
            ("fps", "a number", "> 0", lambda v: 0 < v < math.inf),
        ])


@dataclass(frozen=True)
class TrackedPose:
    """One person in one frame, with its track.

    Attributes:
        track_id: >= 0, stable while the person is tracked; -1 for a detection too weak
            to start a track (fewer than ``min_keypoints`` keypoints) that paired with none,
            or a person scoring under ``min_score``.
        keypoints: float32 [K, 3] x, y, score; x, y smoothed when smoothing is on.
        score: the person score as given.
        index: position of this pose in the ``update`` input.
    """

    track_id: int
    keypoints: np.ndarray
    score: float
    index: int


class PoseLike(Protocol):
    """Anything with ``keypoints`` [K, 3] and ``score``, e.g. ``aepose.pipeline.predictor.Pose``."""

    @property
    def keypoints(self) -> np.ndarray: ...

    @property
    def score(self) -> float: ...


@dataclass
class _Tracks:
    """The live tracks as a table (T rows), so that each frame costs a few array operations
    whatever the number of people.

    xy is where the keypoints were at ``last_frame`` (observed, or predicted for keypoints
    missed then); seen marks keypoints observed at least once; velocity is in pixels per
    frame; euro holds the smoothing state ([T, K, 2]).
    """

    ids: np.ndarray  # [T] int64
    xy: np.ndarray  # [T, K, 2] float64
    seen: np.ndarray  # [T, K] bool
    velocity: np.ndarray  # [T, K, 2]
    last_frame: np.ndarray  # [T] int64
    hits: np.ndarray  # [T] int64
    euro: _EuroState

    @classmethod
    def empty(cls, k: int) -> _Tracks:
        return cls(np.zeros(0, np.int64), np.zeros((0, k, 2)), np.zeros((0, k), bool),
                   np.zeros((0, k, 2)), np.zeros(0, np.int64), np.zeros(0, np.int64),
                   _EuroState.empty((0, k, 2)))

    def predict(self, frame: int, keypoint_motion: float) -> np.ndarray:
        """[T, K, 2] keypoints at ``frame``: constant velocity over the frames since seen,
        each keypoint's velocity shrunk towards its track's mean by ``keypoint_motion``."""
        steps = (frame - self.last_frame)[:, None, None]
        seen = self.seen[..., None]
        body = (self.velocity * seen).sum(axis=1, keepdims=True) / np.maximum(
            seen.sum(axis=1, keepdims=True), 1)
        return self.xy + (body + keypoint_motion * (self.velocity - body)) * steps

    def select(self, rows: np.ndarray) -> _Tracks:
        """The tracks at rows (bool mask or indices)."""
        e = self.euro
        euro = _EuroState(e.x[rows], e.raw[rows], e.dx[rows], e.t[rows], e.started[rows])
        return _Tracks(self.ids[rows], self.xy[rows], self.seen[rows], self.velocity[rows],
                       self.last_frame[rows], self.hits[rows], euro)

    def append(self, ids: np.ndarray, xy: np.ndarray, seen: np.ndarray, frame: int) -> _Tracks:
        """This table plus new tracks born at ``frame`` (ids [N], xy [N, K, 2], seen [N, K])."""
        n = len(ids)
        born = _Tracks(ids, xy.copy(), seen.copy(), np.zeros_like(xy),
                       np.full(n, frame, np.int64), np.ones(n, np.int64),
                       _EuroState.empty(xy.shape))
        e, b = self.euro, born.euro
        euro = _EuroState(*(np.concatenate([getattr(e, f), getattr(b, f)])
                            for f in ("x", "raw", "dx", "t", "started")))
        return _Tracks(np.concatenate([self.ids, ids]), np.concatenate([self.xy, born.xy]),
                       np.concatenate([self.seen, born.seen]),
                       np.concatenate([self.velocity, born.velocity]),
                       np.concatenate([self.last_frame, born.last_frame]),
                       np.concatenate([self.hits, born.hits]), euro)


def keypoint_boxes(xy: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Boxes around the valid keypoints.

    Args:
        xy: [N, K, 2]; valid: [N, K] bool.

    Returns:
        [N, 4] x0, y0, x1, y1 (all zeros for a pose without valid keypoints).
    """
    any_valid = valid.any(axis=1, keepdims=True)
    big = np.where(valid[..., None], xy, np.inf).min(axis=1)
    small = np.where(valid[..., None], xy, -np.inf).max(axis=1)
    return np.where(any_valid, np.concatenate([big, small], axis=1), 0.0)


def _areas(boxes: np.ndarray) -> np.ndarray:
    """[N] areas of [N, 4] boxes."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in a [T, 4] with every box in b [P, 4] (x0, y0, x1, y1) -> [T, P]."""
    low = np.maximum(a[:, None, :2], b[None, :, :2])
    high = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(high - low, 0, None).prod(axis=-1)
    return inter / (_areas(a)[:, None] + _areas(b)[None] - inter + _EPS)


def _type_name(value: object) -> str:
    return f"a {type(value).__name__}"


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


class PoseTracker:
    """Gives each person in a video a track ID that persists across frames.

    Make one per video and call :meth:`update` once per frame, in order (frames without
    people too: that is how tracks age). See the module docstring for the method.

    Args:
        sigmas: the K OKS sigmas, or a :class:`~aepose.keypoints.KeypointSpec`.
        config: :class:`TrackerConfig` (defaults if omitted).
    """

    def __init__(
        self, sigmas: KeypointSpec | Sequence[float], config: TrackerConfig | None = None
    ) -> None:
        values = sigmas.sigmas if isinstance(sigmas, KeypointSpec) else sigmas
        self.sigmas = np.asarray(values, dtype=np.float64)
        if config is not None and not isinstance(config, TrackerConfig):
            raise ValueError(f"PoseTracker: config must be a TrackerConfig, got "
                             f"{_type_name(config)} {config!r}")
        self.config = config or TrackerConfig()
        self.reset()

    def reset(self) -> None:
        """Forget all tracks and restart IDs at 0 (a new video)."""
        self.tracks = _Tracks.empty(len(self.sigmas))
        self.frame = -1  # index of the last frame given to update()
        self.next_id = 0
        self._time_s: float | None = None  # the last frame's time, given or by fps

    @property
    def live_ids(self) -> list[int]:
        """IDs of the tracks alive now (paired recently enough to be re-attached)."""
        return self.tracks.ids.tolist()

    def update(
        self,
        keypoints: np.ndarray,
        scores: np.ndarray | Sequence[float] | None = None,
        timestamp_ms: float | None = None,
    ) -> list[TrackedPose]:
        """Track one frame's poses.

        A keypoint whose x, y or score is NaN or infinite is missing, as one scoring under
        ``keypoint_threshold``: it enters neither pairing nor the tracks' motion nor the
        smoothing, and a person left with fewer than ``min_keypoints`` valid keypoints
        starts no track. A NaN or infinite person score is under ``min_score``. Such
        values are reported back as given: the tracker reports poses, it does not repair
        them.

        Args:
            keypoints: [P, K, 3] x, y, score (image pixels); P may be 0, as [0, K, 3] or
                an empty [0] (``[]``).
            scores: [P] person scores (reported back; default 1.0).
            timestamp_ms: the frame's time, for the smoothing clock; default
                ``frame index * 1000 / config.fps``. Pairing counts frames, not time. It
                must be finite and later than the previous frame's time, whichever way
                that was set: a caller mixing given and default times must keep them
                in order.

        Returns:
            One :class:`TrackedPose` per input pose, in input order.

        Raises:
            ValueError: for keypoints or scores of the wrong shape, or a timestamp not
                finite or not after the previous frame's; the tracker is then unchanged.
        """
        points, person_scores = self._frame_arrays(keypoints, scores)
        time_s = self._next_time_s(timestamp_ms)
        self.frame += 1
        self._time_s = time_s
        # Non-finite values are zeroed where used (they are masked out anyway) so that no
        # NaN reaches the OKS sums, the boxes or the track table.
        finite = np.isfinite(points).all(axis=2)
        xy = np.where(finite[..., None], points[:, :, :2], 0.0)
        valid = finite & (points[:, :, 2] >= self.config.keypoint_threshold)
        strong = np.isfinite(person_scores) & (person_scores >= self.config.min_score)
        self._drop_old_tracks()
        rows, cols = self._assign(xy, valid, strong)
        self._extend(rows, cols, xy, valid)
        ids = np.full(len(points), -1, dtype=np.int64)
        ids[cols] = self.tracks.ids[rows]
        enough = valid.sum(axis=1) >= self.config.min_keypoints
        born = np.flatnonzero((ids < 0) & strong & enough)
        ids[born] = self.next_id + np.arange(len(born))
        self.next_id += len(born)
        self.tracks = self.tracks.append(ids[born], xy[born], valid[born], self.frame)
        out = points.astype(np.float32)
        if self.config.smooth:
            smoothed = self._smooth(ids, xy, valid, time_s)
            # Missing keypoints pass unsmoothed, as given (xy has their non-finite zeroed).
            out[:, :, :2] = np.where(valid[..., None], smoothed, points[:, :, :2])
        return [TrackedPose(int(i), out[p], float(person_scores[p]), p)
                for p, i in enumerate(ids.tolist())]

    def update_poses(
        self, poses: Sequence[PoseLike], timestamp_ms: float | None = None
    ) -> list[TrackedPose]:
        """:meth:`update` for pose objects (``keypoints`` [K, 3], ``score``)."""
        k = len(self.sigmas)
        arrays = [np.asarray(p.keypoints) for p in poses]
        for i, a in enumerate(arrays):
            if a.ndim != 2 or a.shape[0] != k or a.shape[1] < 3:
                raise ValueError(f"PoseTracker.update_poses: pose {i}'s keypoints must be "
                                 f"[{k}, 3] (x, y, score), got shape {a.shape}")
        points = np.stack([a[:, :3] for a in arrays]) if poses else np.zeros((0, k, 3))
        return self.update(points, [float(p.score) for p in poses], timestamp_ms)

    # -- internals ----------------------------------------------------------------------

    def _frame_arrays(self, keypoints: np.ndarray,
                      scores: np.ndarray | Sequence[float] | None
                      ) -> tuple[np.ndarray, np.ndarray]:
        """update's inputs as float64 [P, K, 3] and [P], or one ValueError saying why not."""
        k, what = len(self.sigmas), "PoseTracker.update"
        expected = f"keypoints must be [P, {k}, 3] (x, y, score)"
        try:
            points = np.asarray(keypoints, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{what}: {expected}, got {_type_name(keypoints)} that is not "
                             f"an array of numbers ({error})") from None
        if points.shape == (0,):  # [] or np.zeros(0): a frame without people
            points = points.reshape(0, k, 3)
        if points.ndim != 3 or points.shape[1:] != (k, 3):
            raise ValueError(f"{what}: {expected}, got shape {points.shape}")
        if scores is None:
            return points, np.ones(len(points))
        try:
            values = np.asarray(scores, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{what}: scores must be [P] numbers, got {_type_name(scores)} "
                             f"({error})") from None
        if values.ndim != 1:
            raise ValueError(f"{what}: scores must be [P] (one per person), got shape "
                             f"{values.shape}")
        if len(values) != len(points):
            raise ValueError(f"{what}: {_count(len(points), 'person', 'people')} but "
                             f"{_count(len(values), 'score', 'scores')}")
        return points, values

    def _next_time_s(self, timestamp_ms: float | None) -> float:
        """The next frame's time in seconds for the smoothing clock, checked: a NaN would
        poison the filters for good, and a step back would be taken as a step of 1 us."""
        if timestamp_ms is None:
            time_s = (self.frame + 1) / self.config.fps
        elif (isinstance(timestamp_ms, numbers.Real) and not isinstance(timestamp_ms, bool)
              and math.isfinite(timestamp_ms)):
            time_s = float(timestamp_ms) / 1000.0
        else:
            raise ValueError(f"PoseTracker.update: timestamp_ms must be a finite number, "
                             f"got {timestamp_ms!r}")
        if self._time_s is not None and not time_s > self._time_s:
            previous = f"the previous frame's time ({round(self._time_s * 1000, 3)} ms)"
            if timestamp_ms is not None:
                raise ValueError(f"PoseTracker.update: timestamp_ms must be after {previous},"
                                 f" got {timestamp_ms!r}")
            raise ValueError(f"PoseTracker.update: frame {self.frame + 1}'s default time "
                             f"({round(time_s * 1000, 3)} ms, frame * 1000 / fps) is not after "
                             f"{previous}; give timestamp_ms for every frame or for none")
        return time_s

    def _drop_old_tracks(self) -> None:
        # Missed for max_age frames (last paired at frame - max_age - 1) is still alive.
        alive = self.frame - self.tracks.last_frame <= self.config.max_age + 1
        if not alive.all():
            self.tracks = self.tracks.select(alive)

    def similarity(self, xy: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """[T, P] similarity of the live tracks' predictions with detections xy [P, K, 2]
        (valid [P, K]), miss penalty included; the gate is applied by the caller."""
        cfg, tracks = self.config, self.tracks
        predicted = tracks.predict(self.frame, cfg.keypoint_motion)  # [T, K, 2]
        box_t, box_d = keypoint_boxes(predicted, tracks.seen), keypoint_boxes(xy, valid)
        oks = pairwise_oks(predicted, xy, self.sigmas, _areas(box_t), _areas(box_d),
                           tracks.seen, valid)
        missed = (self.frame - tracks.last_frame - 1).astype(np.float64)
        return (cfg.oks_weight * oks + (1 - cfg.oks_weight) * box_iou(box_t, box_d)
                - cfg.miss_penalty * missed[:, None])

    def _assign(self, xy: np.ndarray, valid: np.ndarray, strong: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
        """Optimal pairs above the gate of live tracks and the detections marked ``strong``
        ([P] bool): (track rows [N], detection indices [N])."""
        cols = np.flatnonzero(strong)
        if len(self.tracks.ids) == 0 or len(cols) == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        sim, gate = self.similarity(xy[cols], valid[cols]), self.config.min_similarity
        # Gated pairs get a cost no useful pairing can offset, then are discarded.
        rows, picked = linear_sum_assignment(np.where(sim >= gate, -sim, 1e6))
        keep = sim[rows, picked] >= gate
        return rows[keep], cols[picked[keep]]

    def _extend(self, rows: np.ndarray, cols: np.ndarray, xy: np.ndarray, valid: np.ndarray
                ) -> None:
        """Add this frame's paired detections (cols) to their tracks (rows)."""
        tr = self.tracks
        steps = (self.frame - tr.last_frame[rows]).astype(np.float64)[:, None, None]
        old_xy, old_v = tr.xy[rows], tr.velocity[rows]
        obs = valid[cols]  # [N, K]
        both = obs & tr.seen[rows]
        measured = (xy[cols] - old_xy) / steps
        # The first measured velocity is taken as is; later ones are averaged.
        m = np.where(tr.hits[rows] > 1, self.config.velocity_momentum, 0.0)[:, None, None]
        v = np.where(both[..., None], m * old_v + (1 - m) * measured, old_v)
        # Joints seen for the first time move with the body (their track's mean velocity).
        count = np.maximum(both.sum(axis=1), 1)[:, None]
        body = (v * both[..., None]).sum(axis=1) / count  # [N, 2]
        v = np.where((obs & ~tr.seen[rows])[..., None], body[:, None], v)
        predicted = tr.predict(self.frame, self.config.keypoint_motion)[rows]
        tr.xy[rows] = np.where(obs[..., None], xy[cols], predicted)
        tr.velocity[rows] = v
        tr.seen[rows] |= obs
        tr.last_frame[rows] = self.frame
        tr.hits[rows] += 1

    def _smooth(self, ids: np.ndarray, xy: np.ndarray, valid: np.ndarray, time_s: float
                ) -> np.ndarray:
        """[P, K, 2]: xy passed through the One-Euro filters of the tracks they belong to."""
        out = xy.copy()
        tracked = np.flatnonzero(ids >= 0)
        if len(tracked) == 0:
            return out
        # Rows of those tracks: the table holds each ID once, sorted by birth (= by ID).
        rows = np.searchsorted(self.tracks.ids, ids[tracked])
        e = self.tracks.euro
        state = _EuroState(e.x[rows], e.raw[rows], e.dx[rows], e.t[rows], e.started[rows])
        boxes = keypoint_boxes(xy[tracked], valid[tracked])
        size = np.sqrt(np.maximum(_areas(boxes), 1.0))[:, None, None]
        seen = np.broadcast_to(valid[tracked][..., None], state.x.shape)
        out[tracked] = _euro_step(self.config.one_euro, state, xy[tracked], time_s, seen, size)
        e.x[rows], e.raw[rows], e.dx[rows] = state.x, state.raw, state.dx
        e.t[rows], e.started[rows] = state.t, state.started
        return out
