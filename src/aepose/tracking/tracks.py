"""The live tracks of a :class:`~aepose.tracking.tracker.PoseTracker` as one table, and
their motion model: constant velocity per keypoint, shrunk towards the body's.

Shapes: T tracks, K keypoints, N rows being updated. Coordinates are image pixels;
velocities pixels per frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aepose.tracking.one_euro import EuroState, OneEuroConfig, euro_step


@dataclass
class Tracks:
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
    euro: EuroState

    @classmethod
    def empty(cls, k: int) -> Tracks:
        return cls(np.zeros(0, np.int64), np.zeros((0, k, 2)), np.zeros((0, k), bool),
                   np.zeros((0, k, 2)), np.zeros(0, np.int64), np.zeros(0, np.int64),
                   EuroState.empty((0, k, 2)))

    def predict(self, frame: int, keypoint_motion: float) -> np.ndarray:
        """[T, K, 2] keypoints at ``frame``: constant velocity over the frames since seen,
        each keypoint's velocity shrunk towards its track's mean by ``keypoint_motion``."""
        steps = (frame - self.last_frame)[:, None, None]
        seen = self.seen[..., None]
        body = (self.velocity * seen).sum(axis=1, keepdims=True) / np.maximum(
            seen.sum(axis=1, keepdims=True), 1)
        return self.xy + (body + keypoint_motion * (self.velocity - body)) * steps

    def select(self, rows: np.ndarray) -> Tracks:
        """The tracks at rows (bool mask or indices)."""
        return Tracks(self.ids[rows], self.xy[rows], self.seen[rows], self.velocity[rows],
                      self.last_frame[rows], self.hits[rows], self.euro.rows(rows))

    def append(self, ids: np.ndarray, xy: np.ndarray, seen: np.ndarray, frame: int) -> Tracks:
        """This table plus new tracks born at ``frame`` (ids [N], xy [N, K, 2], seen [N, K])."""
        n = len(ids)
        born = Tracks(ids, xy.copy(), seen.copy(), np.zeros_like(xy),
                      np.full(n, frame, np.int64), np.ones(n, np.int64),
                      EuroState.empty(xy.shape))
        return Tracks(np.concatenate([self.ids, ids]), np.concatenate([self.xy, born.xy]),
                      np.concatenate([self.seen, born.seen]),
                      np.concatenate([self.velocity, born.velocity]),
                      np.concatenate([self.last_frame, born.last_frame]),
                      np.concatenate([self.hits, born.hits]), self.euro.concat(born.euro))

    def extend(self, rows: np.ndarray, xy: np.ndarray, valid: np.ndarray, frame: int,
               velocity_momentum: float, keypoint_motion: float) -> None:
        """Add the detections paired at ``frame`` (xy [N, K, 2], valid [N, K]) to their
        tracks (rows [N]), in place; the momentum and motion weights are
        :class:`~aepose.tracking.tracker.TrackerConfig`'s."""
        steps = (frame - self.last_frame[rows]).astype(np.float64)[:, None, None]
        old_xy, old_v = self.xy[rows], self.velocity[rows]
        both = valid & self.seen[rows]
        measured = (xy - old_xy) / steps
        # The first measured velocity is taken as is; later ones are averaged.
        m = np.where(self.hits[rows] > 1, velocity_momentum, 0.0)[:, None, None]
        v = np.where(both[..., None], m * old_v + (1 - m) * measured, old_v)
        # Joints seen for the first time move with the body (their track's mean velocity).
        count = np.maximum(both.sum(axis=1), 1)[:, None]
        body = (v * both[..., None]).sum(axis=1) / count  # [N, 2]
        v = np.where((valid & ~self.seen[rows])[..., None], body[:, None], v)
        predicted = self.predict(frame, keypoint_motion)[rows]
        self.xy[rows] = np.where(valid[..., None], xy, predicted)
        self.velocity[rows] = v
        self.seen[rows] |= valid
        self.last_frame[rows] = frame
        self.hits[rows] += 1

    def smooth(self, rows: np.ndarray, xy: np.ndarray, seen: np.ndarray, time_s: float,
               config: OneEuroConfig, scale: np.ndarray) -> np.ndarray:
        """[N, K, 2]: xy passed through the One-Euro filters of the tracks at rows [N],
        whose states advance to ``time_s``; seen [N, K, 2] bool, scale [N, 1, 1] (the
        speed unit: person sizes)."""
        state = self.euro.rows(rows)
        out = euro_step(config, state, xy, time_s, seen, scale)
        self.euro.put(rows, state)
        return out
