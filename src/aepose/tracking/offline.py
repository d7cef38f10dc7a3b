"""Offline tracking: a whole video's poses at once, when the input is a file.

The online :class:`~aepose.tracking.tracker.PoseTracker` decides each frame's IDs from
the past alone. Given every frame's poses first, :func:`track_offline`:

1. runs the online tracker over them (its IDs make the *tracklets*);
2. links tracklets across gaps (:func:`aepose.tracking.links.link`): a person given a new ID
   after a gap gets their earlier one back when their tracklets' ends agree, each carried
   across the gap by its own velocity, forwards and backwards;
3. fills gaps of up to ``fill_gap`` frames in a track by linear interpolation
   (:func:`aepose.tracking.links.fill_gaps`): these poses are marked interpolated, with
   a score of their own;
4. smooths each track's keypoints forwards and backwards (a One-Euro filter run both ways
   in time, the two outputs averaged, so that neither lags).

Memory: the detections only ([P, K, 3] per frame), never images.

Shapes: F frames, P people in a frame, K keypoints, N detections of the whole video.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from aepose.errors import AeposeError
from aepose.keypoints import KeypointSpec
from aepose.tracking.links import Filled, chain_ids, fill_gaps, link, tracklets, without_short
from aepose.tracking.one_euro import EuroState, OneEuroConfig, euro_step
from aepose.tracking.similarity import box_areas, keypoint_boxes
from aepose.tracking.tracker import PoseTracker, TrackerConfig
from aepose.validate import instance_of, integer_in, number_in, require


@dataclass(frozen=True)
class OfflineConfig:
    """Settings of :func:`track_offline` (defaults chosen on ``benchmarks/tracking.py``,
    seeds 0-5).

    Attributes:
        online: the online tracker that makes the tracklets (its ``smooth`` is ignored: the
            offline smoothing replaces it).
        link_gap: most frames between the end of a tracklet and the start of another that
            may continue it.
        link_similarity: the linking gate (as the online tracker's ``min_similarity``).
        velocity_window: frames at each end of a tracklet over which its velocity is
            measured.
        fill_gap: a track missing at most this many frames in a row gets interpolated poses
            there (0: none).
        min_length: a tracklet (what the online tracker gave one ID) of fewer detections
            than this gets no ID (-1) and is not linked: a person seen that briefly is
            more likely a false detection.
        smooth: smooth every track's keypoints forwards and backwards.
        one_euro: the smoothing filter's parameters.
    """

    online: TrackerConfig = field(default_factory=TrackerConfig)
    link_gap: int = 60
    link_similarity: float = 0.2
    velocity_window: int = 10
    fill_gap: int = 30
    min_length: int = 5
    smooth: bool = True
    one_euro: OneEuroConfig = field(default_factory=OneEuroConfig)

    def __post_init__(self) -> None:
        require(
            self, "OfflineConfig",
            online=instance_of(self.online, TrackerConfig),
            link_gap=integer_in(self.link_gap, 0, numpy=True),
            link_similarity=number_in(self.link_similarity, 0, 1, numpy=True),
            velocity_window=integer_in(self.velocity_window, 1, numpy=True),
            fill_gap=integer_in(self.fill_gap, 0, numpy=True),
            min_length=integer_in(self.min_length, 1, numpy=True),
            smooth=instance_of(self.smooth, bool),
            one_euro=instance_of(self.one_euro, OneEuroConfig),
        )


@dataclass(frozen=True)
class OfflineFrame:
    """One frame's result.

    track_ids: [P] per input pose, -1 for none (as :class:`~aepose.tracking.tracker.TrackedPose`);
    keypoints: [P, K, 3] the input poses, x, y smoothed when smoothing is on;
    filled: the interpolated poses of this frame: (track ID, keypoints [K, 3], score) each.
    """

    track_ids: list[int]
    keypoints: np.ndarray
    filled: list[tuple[int, np.ndarray, float]]


def track_offline(
    keypoints: Sequence[np.ndarray],
    scores: Sequence[np.ndarray | Sequence[float]] | None,
    sigmas: KeypointSpec | Sequence[float],
    config: OfflineConfig | None = None,
    timestamps_ms: Sequence[float] | None = None,
) -> list[OfflineFrame]:
    """Track a whole video's poses (see the module docstring).

    Args:
        keypoints: per frame, [P, K, 3] x, y, score (P may be 0), as
            :meth:`PoseTracker.update <aepose.tracking.tracker.PoseTracker.update>` takes
            them (bad values are refused there, naming the frame).
        scores: per frame, [P] person scores (default 1.0).
        sigmas: the K OKS sigmas, or a :class:`~aepose.keypoints.KeypointSpec`.
        config: :class:`OfflineConfig` (defaults if omitted).
        timestamps_ms: per frame, its time (default frame * 1000 / the online config's fps).

    Returns:
        One :class:`OfflineFrame` per frame.
    """
    config = config or OfflineConfig()
    if not isinstance(config, OfflineConfig):
        raise AeposeError(f"track_offline: config must be an OfflineConfig, got "
                          f"{type(config).__name__}")
    online = PoseTracker(sigmas, dataclasses.replace(config.online, smooth=False))
    frames: list[int] = []
    rows: list[int] = []  # people per frame
    points: list[np.ndarray] = []
    person_scores: list[float] = []
    ids: list[int] = []
    for f, frame_points in enumerate(keypoints):
        frame_scores = None if scores is None else scores[f]
        time_ms = None if timestamps_ms is None else timestamps_ms[f]
        try:
            tracked = online.update(frame_points, frame_scores, time_ms)
        except AeposeError as error:
            raise AeposeError(f"track_offline: frame {f}: {error}") from None
        frames.extend([f] * len(tracked))
        rows.append(len(tracked))
        points.extend(t.keypoints for t in tracked)
        person_scores.extend(t.score for t in tracked)
        ids.extend(t.track_id for t in tracked)
    k = len(online.sigmas)
    det = _Detections(np.asarray(frames, np.int64),
                      np.array(points, np.float64) if points else np.zeros((0, k, 3)),
                      np.asarray(person_scores, np.float64), np.asarray(ids, np.int64))
    del points  # one copy of the video's poses at a time
    valid = _valid(det.keypoints, config.online.keypoint_threshold)
    xy = np.where(valid[..., None], det.keypoints[:, :, :2], 0.0)
    # Short tracklets are mostly false people: linked, they would chain up across the
    # video and be interpolated between.
    kept = without_short(det.ids, config.min_length)
    pieces = tracklets(kept, det.frames, xy, valid, config.velocity_window)
    links = link(pieces, xy, valid, online.sigmas, config.link_gap, config.link_similarity,
                 config.online.oks_weight)
    final = chain_ids(kept, links)
    filled = fill_gaps(final, det.frames, det.keypoints, valid, det.scores, config.fill_gap)
    out_points = det.keypoints  # smoothed in place: the raw values are no longer needed
    if config.smooth:
        times = (np.asarray(timestamps_ms, np.float64) / 1000.0 if timestamps_ms is not None
                 else np.arange(len(rows)) / config.online.fps)
        _smooth_both_ways(final, det.frames, out_points, valid, filled, times,
                          config.one_euro)
    return _per_frame(rows, final, out_points, filled)


@dataclass(frozen=True)
class _Detections:
    frames: np.ndarray  # [N]
    keypoints: np.ndarray  # [N, K, 3] float64
    scores: np.ndarray  # [N]
    ids: np.ndarray  # [N] the online tracker's


def _valid(keypoints: np.ndarray, threshold: float) -> np.ndarray:
    """[N, K] the keypoints the online tracker counts: finite, not (0, 0, 0), scoring at
    least ``threshold``."""
    finite = np.isfinite(keypoints).all(axis=2)
    empty = (keypoints == 0).all(axis=2)
    with np.errstate(invalid="ignore"):
        return np.asarray(finite & ~empty & (keypoints[:, :, 2] >= threshold))


def _smooth_both_ways(ids: np.ndarray, frames: np.ndarray, keypoints: np.ndarray,
                      valid: np.ndarray, filled: Filled, times: np.ndarray,
                      config: OneEuroConfig) -> None:
    """Smooth x, y of ``keypoints`` [N, K, 3] (in place) and of the filled poses: per track,
    the mean of a One-Euro filter run forwards in time and one run backwards."""
    samples_ids = np.concatenate([ids, filled.track_ids])
    samples_frames = np.concatenate([frames, filled.frames])
    xy = np.concatenate([keypoints[:, :, :2], filled.keypoints[:, :, :2]])
    seen = np.concatenate([valid, filled.keypoints[:, :, 2] > 0])
    tracked = np.flatnonzero(samples_ids >= 0)
    if len(tracked) == 0:
        return
    rows, sample_frames = samples_ids[tracked], samples_frames[tracked]  # IDs: 0 .. T - 1
    points, observed = xy[tracked], seen[tracked]
    size = np.sqrt(np.maximum(box_areas(keypoint_boxes(points, observed)), 1.0))
    order = np.argsort(sample_frames, kind="stable")
    groups = np.split(order, np.flatnonzero(np.diff(sample_frames[order]) != 0) + 1)
    end = float(times[-1])
    total = np.zeros_like(points)
    for direction, sequence in ((1, groups), (-1, groups[::-1])):
        state = EuroState.empty((int(rows.max()) + 1, xy.shape[1], 2))
        for group in sequence:
            f = int(sample_frames[group[0]])
            t = float(times[f]) if direction > 0 else end - float(times[f])
            part = state.rows(rows[group])
            mask = np.broadcast_to(observed[group][..., None], points[group].shape)
            total[group] += euro_step(config, part, points[group], t, mask,
                                      size[group][:, None, None])
            state.put(rows[group], part)
    xy[tracked] = np.where(observed[..., None], total / 2, points)
    n = len(ids)
    keypoints[:, :, :2] = xy[:n]
    filled.keypoints[:, :, :2] = xy[n:]


def _per_frame(rows: list[int], ids: np.ndarray, keypoints: np.ndarray, filled: Filled
               ) -> list[OfflineFrame]:
    """The flattened results cut back into frames."""
    out, start = [], 0
    by_frame: dict[int, list[tuple[int, np.ndarray, float]]] = {}
    for f, i, points, score in zip(filled.frames.tolist(), filled.track_ids.tolist(),
                                   filled.keypoints.astype(np.float32), filled.scores.tolist(),
                                   strict=True):
        by_frame.setdefault(f, []).append((i, points, score))
    for f, n in enumerate(rows):
        stop = start + n
        out.append(OfflineFrame(ids[start:stop].tolist(),
                                keypoints[start:stop].astype(np.float32),
                                sorted(by_frame.get(f, []), key=lambda e: e[0])))
        start = stop
    return out

