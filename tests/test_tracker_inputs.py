"""PoseTracker on poses no decoder should give: all-zero and all-NaN people, the decoder's
empty joints (0, 0, 0), values beyond float32, and keypoints of the wrong shape per
person. None starts a track, the state stays finite, and every call returns or refuses in
one line within a time bound.

Shapes: P people, K keypoints.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pytest
from helpers import within
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from aepose.errors import AeposeError
from aepose.keypoints import COCO
from aepose.tracking.tracker import PoseTracker, TrackerConfig

K = COCO.num_keypoints
_SHAPE = np.stack([np.linspace(-15, 15, K), np.linspace(-100, 0, K)], axis=1)
# Every keypoint counts, however low its score, and every person is tracked: the settings
# under which an all-zero person used to start a track.
EVERYONE = TrackerConfig(keypoint_threshold=0.0, min_score=0.0)


def person(x: float, y: float = 200.0, score: float = 0.9) -> np.ndarray:
    """[K, 3] a standing person, height 100 px, with feet at (x, y)."""
    return np.concatenate([_SHAPE + np.array([x, y]), np.full((K, 1), score)], axis=1)


def _assert_finite_state(tracker: PoseTracker) -> None:
    tracks, euro = tracker.tracks, tracker.tracks.euro
    for state in (tracks.xy, tracks.velocity, euro.x, euro.raw, euro.dx, euro.t):
        assert np.isfinite(state).all()


@pytest.mark.parametrize("config", [TrackerConfig(), EVERYONE,
                                    TrackerConfig(keypoint_threshold=0.0, smooth=True)],
                         ids=["default", "everyone", "smooth"])
@pytest.mark.parametrize("empty", [0.0, math.nan], ids=["zeros", "nan"])
def test_empty_people_never_start_tracks(config: TrackerConfig, empty: float) -> None:
    tracker = PoseTracker(COCO, config)
    for f in range(6):
        blank = np.full((K, 3), empty)
        out = tracker.update(np.stack([blank, person(100 + 3 * f), blank]), [0.9, 0.9, 0.0])
        assert [t.track_id for t in out] == [-1, 0, -1]
        np.testing.assert_array_equal(out[0].keypoints, blank.astype(np.float32))
    assert tracker.live_ids == [0] and tracker.next_id == 1
    _assert_finite_state(tracker)


@pytest.mark.parametrize("smooth", [False, True])
def test_empty_joints_are_missing_as_nan_joints_are(smooth: bool) -> None:
    # The decoder's unfilled joints are (0, 0, 0): with keypoint_threshold 0 they used to
    # count as keypoints at the image origin, stretching the person's box to it.
    rng = np.random.default_rng(5)
    config = TrackerConfig(keypoint_threshold=0.0, smooth=smooth)
    zeroed, nan = PoseTracker(COCO, config), PoseTracker(COCO, config)
    for f in range(20):
        pose = person(100 + 4 * f + rng.normal())
        gone = rng.choice(K, size=5, replace=False)
        a, b = pose.copy(), pose.copy()
        a[gone], b[gone] = 0.0, math.nan
        got, want = zeroed.update(a[None])[0], nan.update(b[None])[0]
        assert got.track_id == want.track_id == 0
        kept = np.setdiff1d(np.arange(K), gone)
        np.testing.assert_array_equal(got.keypoints[kept], want.keypoints[kept])
        assert (got.keypoints[gone] == 0).all()  # reported as given
    np.testing.assert_array_equal(zeroed.tracks.xy, nan.tracks.xy)


@pytest.mark.parametrize("big", [1e39, -1e300, 1.7e308])
def test_values_beyond_float32_are_missing_like_infinities(big: float) -> None:
    tracker, reference = PoseTracker(COCO, TrackerConfig(smooth=True)), PoseTracker(
        COCO, TrackerConfig(smooth=True))
    for f in range(8):
        pose = person(100 + 2 * f)
        huge, inf = pose.copy(), pose.copy()
        huge[:4, 0], inf[:4, 0] = big, math.inf
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no overflow warning either
            got = tracker.update(np.stack([huge, np.full((K, 3), big)]))
        want = reference.update(np.stack([inf, np.full((K, 3), math.inf)]))
        assert [t.track_id for t in got] == [t.track_id for t in want] == [0, -1]
        np.testing.assert_array_equal(got[0].keypoints[4:], want[0].keypoints[4:])
    _assert_finite_state(tracker)


@dataclass
class _Pose:
    keypoints: np.ndarray
    score: float


@pytest.mark.parametrize("shape", [(K, 4), (K, 5), (K + 1, 3)])
def test_update_poses_refuses_a_pose_of_another_shape(shape: tuple[int, int]) -> None:
    # [K, 4] used to be cut to [K, 3] silently.
    poses = [_Pose(person(10), 0.9), _Pose(np.ones(shape), 0.9)]
    message = f"pose 1's keypoints must be [{K}, 3] (x, y, score), got shape {shape}"
    with pytest.raises(AeposeError, match=re.escape(message)):
        PoseTracker(COCO).update_poses(poses)


@pytest.mark.parametrize(("second", "named"), [
    (np.ones((K, 2)), f"person 1's keypoints have shape ({K}, 2)"),
    (np.ones((K - 1, 3)), f"person 1's keypoints have shape ({K - 1}, 3)"),
    ([["x"] * 3] * K, "person 1's keypoints are not an array of numbers")],
    ids=["two columns", "a keypoint short", "strings"])
def test_update_names_the_person_whose_keypoints_have_another_shape(
        second: object, named: str) -> None:
    with pytest.raises(AeposeError) as caught:
        PoseTracker(COCO).update([person(10), second, person(90)])  # type: ignore[list-item]
    assert str(caught.value) == (f"PoseTracker.update: keypoints must be [P, {K}, 3] (x, y, "
                                 f"score), got a list that is not an array of numbers ({named})")


# -- property: every call returns or refuses, in time --------------------------------------

_SPECIAL = [0.0, -0.0, 0.05, 0.5, 1.0, 100.0, 1e6, -1e6, 3.4e38, -3.4e38, 1e39, 1e300, -1e300,
            math.nan, math.inf, -math.inf]
_VALUES = st.one_of(st.floats(-50, 300), st.sampled_from(_SPECIAL))
_FRAME = st.integers(0, 3).flatmap(lambda p: st.tuples(
    arrays(np.float64, (p, K, 3), elements=_VALUES), arrays(np.float64, (p,), elements=_VALUES)))


@settings(max_examples=60, deadline=timedelta(seconds=5))
@given(frames=st.lists(_FRAME, min_size=1, max_size=4),
       config=st.sampled_from([TrackerConfig(), EVERYONE, TrackerConfig(smooth=True),
                               TrackerConfig(keypoint_threshold=0.0, min_score=0.0,
                                             smooth=True, max_age=0)]))
def test_property_tracker_returns_or_refuses_in_time(
        frames: list[tuple[np.ndarray, np.ndarray]], config: TrackerConfig) -> None:
    tracker = PoseTracker(COCO, config)
    for keypoints, scores in frames:
        with within(10), np.errstate(all="ignore"):
            out = tracker.update(keypoints, scores)
        assert [t.index for t in out] == list(range(len(keypoints)))
        with np.errstate(over="ignore"):
            usable = (np.isfinite(keypoints.astype(np.float32)).all(axis=2)
                      & ~(keypoints == 0).all(axis=2))
        for t in out:  # a person without one usable keypoint never has a track
            if not usable[t.index].any():
                assert t.track_id == -1
        _assert_finite_state(tracker)
    with within(10):  # zero sizes: a frame without people, as [] and as [0, K, 3]
        assert tracker.update([]) == [] and tracker.update(np.zeros((0, K, 3))) == []
