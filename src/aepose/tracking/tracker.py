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

Smoothing (``TrackerConfig(smooth=True)``) runs a One-Euro filter
(:class:`~aepose.tracking.one_euro.OneEuroFilter`) per track over its [K, 2] coordinates
and changes only the keypoints reported; pairing always uses the raw detections, so
smoothing can never cause an ID switch. The filter is causal: the
output at frame t depends on frames <= t only, and nothing is held back.

Only arrays enter the core; :meth:`PoseTracker.update_poses` adapts any objects with
``keypoints`` [K, 3] and ``score`` attributes (``aepose.pipeline.predictor.Pose``).

Shapes: P people (detections) in a frame, K keypoints, T live tracks. Coordinates are
image pixels; OKS is :func:`aepose.oks.pairwise_oks` (variances (2 sigma)^2, area =
extent of the valid keypoints, mean of the two areas), as in the pose NMS.

Modules: this one (settings and the per-frame driver), :mod:`aepose.tracking.tracks` (the
track table and its motion model), :mod:`aepose.tracking.similarity` (OKS and box IoU),
:mod:`aepose.tracking.one_euro` (the smoothing filter); offline, a whole video at once:
:mod:`aepose.tracking.offline` (which runs this tracker first).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from scipy.optimize import linear_sum_assignment

from aepose.choices import TRACK_MAX_AGE, TRACK_MIN_SCORE, TRACK_MIN_SIMILARITY
from aepose.errors import AeposeError
from aepose.keypoints import KeypointSpec
from aepose.tracking.one_euro import OneEuroConfig
from aepose.tracking.similarity import box_areas, keypoint_boxes, pose_similarity
from aepose.tracking.tracks import Tracks
from aepose.validate import instance_of, integer_in, number_in, require


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
        # Settings built from arrays at run time: NumPy numbers are welcome.
        require(
            self, "TrackerConfig",
            max_age=integer_in(self.max_age, 0, numpy=True),
            keypoint_threshold=number_in(self.keypoint_threshold, 0, 1, numpy=True),
            min_keypoints=integer_in(self.min_keypoints, 1, numpy=True),
            # Person scores are in [0, 1] (as the CLI's --track-min-score): above 1 would
            # silently track nobody.
            min_score=number_in(self.min_score, 0, 1, numpy=True),
            oks_weight=number_in(self.oks_weight, 0, 1, numpy=True),
            min_similarity=number_in(self.min_similarity, 0, 1, numpy=True),
            miss_penalty=number_in(self.miss_penalty, 0, numpy=True),
            velocity_momentum=number_in(self.velocity_momentum, 0, 1, high_open=True,
                                        numpy=True),
            keypoint_motion=number_in(self.keypoint_motion, 0, 1, numpy=True),
            smooth=instance_of(self.smooth, bool),
            one_euro=instance_of(self.one_euro, OneEuroConfig),
            fps=number_in(self.fps, 0, low_open=True, numpy=True),
        )


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


def _type_name(value: object) -> str:
    return f"a {type(value).__name__}"


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _ragged(keypoints: object, k: int) -> str:
    """The first person of a list whose keypoints are not [k, 3] numbers, in words; "" if
    ``keypoints`` is no list of people or none is (the fault is elsewhere)."""
    if not isinstance(keypoints, list | tuple):
        return ""
    for p, person in enumerate(keypoints):
        try:
            shape = np.asarray(person, dtype=np.float64).shape
        except (TypeError, ValueError):
            return f"person {p}'s keypoints are not an array of numbers"
        if shape != (k, 3):
            return f"person {p}'s keypoints have shape {shape}"
    return ""


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
            raise AeposeError(f"PoseTracker: config must be a TrackerConfig, got "
                              f"{_type_name(config)} {config!r}")
        self.config = config or TrackerConfig()
        self.reset()

    def reset(self) -> None:
        """Forget all tracks and restart IDs at 0 (a new video)."""
        self.tracks = Tracks.empty(len(self.sigmas))
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

        A keypoint whose x, y or score is NaN or infinite (beyond float32's range included,
        as the reported float32 keypoints hold it), or that is exactly (0, 0, 0) (the
        decoder's empty joint), is missing, as one scoring under ``keypoint_threshold``: it
        enters neither pairing nor the tracks' motion nor the smoothing, and a person left
        with fewer than ``min_keypoints`` valid keypoints starts no track (an all-zero or
        all-NaN person never does). A NaN or infinite person score is under
        ``min_score``. Such values are reported back as given: the tracker reports poses,
        it does not repair them.

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
            AeposeError: for keypoints or scores of the wrong shape, or a timestamp not
                finite or not after the previous frame's; the tracker is then unchanged.
        """
        points, person_scores = self._frame_arrays(keypoints, scores)
        time_s = self._next_time_s(timestamp_ms)
        self.frame += 1
        self._time_s = time_s
        with np.errstate(over="ignore"):  # beyond float32's range: reported as inf
            out: np.ndarray = points.astype(np.float32)
        # Non-finite values are zeroed where used (they are masked out anyway) so that no
        # NaN reaches the OKS sums, the boxes or the track table; below float32's range,
        # squared distances and box areas stay finite in float64.
        finite = np.isfinite(out).all(axis=2)
        xy = np.where(finite[..., None], points[:, :, :2], 0.0)
        empty = (points == 0).all(axis=2)
        valid = finite & ~empty & (points[:, :, 2] >= self.config.keypoint_threshold)
        strong = np.isfinite(person_scores) & (person_scores >= self.config.min_score)
        self._drop_old_tracks()
        rows, cols = self._assign(xy, valid, strong)
        self.tracks.extend(rows, xy[cols], valid[cols], self.frame,
                           self.config.velocity_momentum, self.config.keypoint_motion)
        ids = np.full(len(points), -1, dtype=np.int64)
        ids[cols] = self.tracks.ids[rows]
        enough = valid.sum(axis=1) >= self.config.min_keypoints
        born = np.flatnonzero((ids < 0) & strong & enough)
        ids[born] = self.next_id + np.arange(len(born))
        self.next_id += len(born)
        self.tracks = self.tracks.append(ids[born], xy[born], valid[born], self.frame)
        if self.config.smooth:
            smoothed = self._smooth(ids, xy, valid, time_s)
            # Missing keypoints pass unsmoothed, as given (xy has their non-finite zeroed).
            out[:, :, :2] = np.where(valid[..., None], smoothed, out[:, :, :2])
        return [TrackedPose(int(i), out[p], float(person_scores[p]), p)
                for p, i in enumerate(ids.tolist())]

    def update_poses(
        self, poses: Sequence[PoseLike], timestamp_ms: float | None = None
    ) -> list[TrackedPose]:
        """:meth:`update` for pose objects (``keypoints`` [K, 3], ``score``)."""
        k = len(self.sigmas)
        arrays = [np.asarray(p.keypoints) for p in poses]
        for i, a in enumerate(arrays):
            if a.shape != (k, 3):
                raise AeposeError(f"PoseTracker.update_poses: pose {i}'s keypoints must be "
                                  f"[{k}, 3] (x, y, score), got shape {a.shape}")
        points = np.stack(arrays) if poses else np.zeros((0, k, 3))
        return self.update(points, [float(p.score) for p in poses], timestamp_ms)

    # -- internals ----------------------------------------------------------------------

    def _frame_arrays(self, keypoints: np.ndarray,
                      scores: np.ndarray | Sequence[float] | None
                      ) -> tuple[np.ndarray, np.ndarray]:
        """update's inputs as float64 [P, K, 3] and [P], or one AeposeError saying why not."""
        k, what = len(self.sigmas), "PoseTracker.update"
        expected = f"keypoints must be [P, {k}, 3] (x, y, score)"
        try:
            points = np.asarray(keypoints, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise AeposeError(f"{what}: {expected}, got {_type_name(keypoints)} that is not "
                              f"an array of numbers ({_ragged(keypoints, k) or error})"
                              ) from None
        if points.shape == (0,):  # [] or np.zeros(0): a frame without people
            points = points.reshape(0, k, 3)
        if points.ndim != 3 or points.shape[1:] != (k, 3):
            raise AeposeError(f"{what}: {expected}, got shape {points.shape}")
        if scores is None:
            return points, np.ones(len(points))
        try:
            values = np.asarray(scores, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise AeposeError(f"{what}: scores must be [P] numbers, got {_type_name(scores)} "
                              f"({error})") from None
        if values.ndim != 1:
            raise AeposeError(f"{what}: scores must be [P] (one per person), got shape "
                              f"{values.shape}")
        if len(values) != len(points):
            raise AeposeError(f"{what}: {_count(len(points), 'person', 'people')} but "
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
            raise AeposeError(f"PoseTracker.update: timestamp_ms must be a finite number, "
                              f"got {timestamp_ms!r}")
        if self._time_s is not None and not time_s > self._time_s:
            previous = f"the previous frame's time ({round(self._time_s * 1000, 3)} ms)"
            if timestamp_ms is not None:
                raise AeposeError(f"PoseTracker.update: timestamp_ms must be after {previous},"
                                  f" got {timestamp_ms!r}")
            raise AeposeError(f"PoseTracker.update: frame {self.frame + 1}'s default time "
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
        missed = (self.frame - tracks.last_frame - 1).astype(np.float64)
        return (pose_similarity(predicted, tracks.seen, xy, valid, self.sigmas, cfg.oks_weight)
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

    def _smooth(self, ids: np.ndarray, xy: np.ndarray, valid: np.ndarray, time_s: float
                ) -> np.ndarray:
        """[P, K, 2]: xy passed through the One-Euro filters of the tracks they belong to."""
        out = xy.copy()
        tracked = np.flatnonzero(ids >= 0)
        if len(tracked) == 0:
            return out
        # Rows of those tracks: the table holds each ID once, sorted by birth (= by ID).
        rows = np.searchsorted(self.tracks.ids, ids[tracked])
        boxes = keypoint_boxes(xy[tracked], valid[tracked])
        size = np.sqrt(np.maximum(box_areas(boxes), 1.0))[:, None, None]
        seen = np.broadcast_to(valid[tracked][..., None], xy[tracked].shape)
        out[tracked] = self.tracks.smooth(rows, xy[tracked], seen, time_s,
                                          self.config.one_euro, size)
        return out
