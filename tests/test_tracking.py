"""PoseTracker and OneEuroFilter: IDs through crossings and occlusions, causal smoothing."""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from aepose.errors import AeposeError
from aepose.keypoints import COCO
from aepose.tracking.one_euro import OneEuroConfig, OneEuroFilter
from aepose.tracking.tracker import PoseTracker, TrackerConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

K = COCO.num_keypoints
# A standing person, height 100 px, feet at the origin: K keypoints spread over the body.
_SHAPE = np.stack([np.linspace(-15, 15, K), np.linspace(-100, 0, K)], axis=1)


def person(x: float, y: float = 200.0, score: float = 0.9) -> np.ndarray:
    """[K, 3] a person with feet at (x, y)."""
    return np.concatenate([_SHAPE + np.array([x, y]), np.full((K, 1), score)], axis=1)


def frame(*people: np.ndarray) -> np.ndarray:
    return np.stack(people) if people else np.zeros((0, K, 3))


def crossing(frames: int = 40) -> list[tuple[np.ndarray, list[int]]]:
    """Two people walking past each other at 6 px/frame; per frame (poses, true ids). The
    faster-scoring one alternates so that input order carries no identity."""
    out = []
    for f in range(frames):
        a, b = person(50 + 6 * f, 200), person(290 - 6 * f, 205)
        out.append((frame(a, b), [0, 1]) if f % 2 else (frame(b, a), [1, 0]))
    return out


def test_crossing_keeps_ids() -> None:
    tracker = PoseTracker(COCO)
    seen: dict[int, set[int]] = {0: set(), 1: set()}
    for poses, truth in crossing():
        for tracked, true_id in zip(tracker.update(poses), truth, strict=True):
            seen[true_id].add(tracked.track_id)
    assert len(seen[0]) == len(seen[1]) == 1 and seen[0] != seen[1]


def test_greedy_baseline_switches_where_assignment_does_not() -> None:
    from tracking import GreedyTracker  # the benchmark's mmpose 0.x baseline

    # A runner (10 px/frame, listed first) passes in front of a standing person:
    # greedy IoU gives it the ID of the previous-frame box it overlaps most, the standing
    # person's; the tracker's prediction moves the walker's track along with it.
    def scene(f: int) -> tuple[np.ndarray, list[int]]:
        return frame(person(120 + 10 * f, 215), person(200, 200)), [1, 0]

    greedy, ours = GreedyTracker(COCO.sigmas, use_oks=False), PoseTracker(COCO)
    g_ids: dict[int, set[int]] = {0: set(), 1: set()}
    o_ids: dict[int, set[int]] = {0: set(), 1: set()}
    for f in range(12):
        poses, truth = scene(f)
        for got, t in zip(greedy.update(poses), truth, strict=True):
            g_ids[t].add(got)
        for tracked, t in zip(ours.update(poses), truth, strict=True):
            o_ids[t].add(tracked.track_id)
    assert o_ids == {1: {0}, 0: {1}}
    assert any(len(v) > 1 for v in g_ids.values())


def test_reattached_after_short_occlusion_new_id_after_max_age() -> None:
    tracker = PoseTracker(COCO, TrackerConfig(max_age=5))
    ids = []
    for f in range(30):
        hidden = 5 <= f < 10 or 15 <= f < 21  # 5 frames (= max_age), then 6 (> max_age)
        out = tracker.update(frame() if hidden else frame(person(100 + 2 * f)))
        ids.extend(t.track_id for t in out)
    assert ids[:10] == [0] * 10  # frames 0-4 and 10-14
    assert set(ids[10:]) == {1}


def test_ids_increase_and_are_never_reused() -> None:
    tracker = PoseTracker(COCO, TrackerConfig(max_age=2))
    first_seen: list[int] = []
    rng = np.random.default_rng(0)
    for f in range(60):
        # People appear and vanish at random places: many tracks born and dropped.
        count = int(rng.integers(0, 4))
        poses = frame(*(person(float(x)) for x in rng.uniform(0, 2000, count)))
        for t in tracker.update(poses, timestamp_ms=40.0 * f):
            if t.track_id not in first_seen:
                first_seen.append(t.track_id)
    assert first_seen == sorted(first_seen) == list(range(len(first_seen)))
    assert len(first_seen) > 20


def test_new_person_gets_new_id_and_empty_frames() -> None:
    tracker = PoseTracker(COCO)
    assert tracker.update(frame()) == []
    assert [t.track_id for t in tracker.update(frame(person(100)))] == [0]
    assert tracker.update(np.zeros((0, K, 3))) == []
    out = tracker.update(frame(person(102), person(400)), scores=[0.8, 0.7])
    assert [(t.track_id, t.index, t.score) for t in out] == [(0, 0, 0.8), (1, 1, 0.7)]
    assert out[1].keypoints.dtype == np.float32 and out[1].keypoints.shape == (K, 3)


def test_weak_detection_gets_no_track() -> None:
    weak = person(100)
    weak[2:, 2] = 0.01  # 2 keypoints above the threshold, min_keypoints is 3
    assert [t.track_id for t in PoseTracker(COCO).update(frame(weak))] == [-1]


def test_people_under_min_score_are_not_tracked() -> None:
    def run(config: TrackerConfig) -> list[list[int]]:
        tracker = PoseTracker(COCO, config)
        frames = [([person(100)], [0.9]),
                  ([person(102)], [0.1]),  # a weak leftover where the person was
                  ([person(104), person(400)], [0.9, 0.15])]  # and one elsewhere
        return [[t.track_id for t in tracker.update(frame(*poses), scores=scores)]
                for poses, scores in frames]

    assert TrackerConfig().min_score == 0.2
    assert run(TrackerConfig()) == [[0], [-1], [0, -1]]
    assert run(TrackerConfig(min_score=0.0)) == [[0], [0], [0, 1]]  # everyone tracked


def test_update_poses_adapts_pose_objects() -> None:
    @dataclass
    class Pose:
        keypoints: np.ndarray
        score: float

    tracker = PoseTracker(COCO)
    out = tracker.update_poses([Pose(person(10).astype(np.float32), 0.5)])
    assert (out[0].track_id, out[0].score) == (0, 0.5)
    assert tracker.update_poses([]) == []


def test_tracker_smoothing_changes_keypoints_not_ids() -> None:
    rng = np.random.default_rng(1)
    plain, smooth = PoseTracker(COCO), PoseTracker(COCO, TrackerConfig(smooth=True))
    errors = {"plain": [], "smooth": []}
    for f in range(50):
        truth = person(100.0)
        noisy = truth.copy()
        noisy[:, :2] += rng.normal(size=(K, 2)) * 2.0
        a, b = plain.update(frame(noisy))[0], smooth.update(frame(noisy))[0]
        assert a.track_id == b.track_id == 0
        if f >= 10:
            errors["plain"].append(np.abs(a.keypoints[:, :2] - truth[:, :2]).mean())
            errors["smooth"].append(np.abs(b.keypoints[:, :2] - truth[:, :2]).mean())
    assert np.mean(errors["smooth"]) < 0.75 * np.mean(errors["plain"])


# -- One-Euro filter ------------------------------------------------------------------------


def run_filter(signal: np.ndarray, fps: float = 25.0, **kw: float) -> np.ndarray:
    filt = OneEuroFilter(OneEuroConfig(**kw))
    return np.array([filt(np.array([x]), i / fps)[0] for i, x in enumerate(signal)])


def test_one_euro_is_causal_and_passes_the_first_sample() -> None:
    rng = np.random.default_rng(0)
    signal = np.concatenate([np.zeros(20), np.full(20, 10.0)]) + rng.normal(size=40)
    full = run_filter(signal)
    assert full[0] == signal[0]
    for n in (5, 20, 21, 33):
        np.testing.assert_array_equal(run_filter(signal[:n]), full[:n])


def test_one_euro_reduces_jitter_on_a_constant() -> None:
    rng = np.random.default_rng(0)
    signal = 50 + rng.normal(size=500)
    out = run_filter(signal, beta=0.0)
    assert out[50:].std() < 0.4 * signal[50:].std()


@pytest.mark.parametrize("beta", [0.0, 0.05])
def test_one_euro_lag_on_a_ramp_matches_theory(beta: float) -> None:
    # Steady state of a first-order low-pass on x = v t: lag = v / (2 pi cutoff), with
    # cutoff = min_cutoff + beta |v| once the speed estimate has settled on v.
    fps, v, min_cutoff = 25.0, 40.0, 1.0
    t = np.arange(300) / fps
    out = run_filter(v * t, fps=fps, min_cutoff=min_cutoff, beta=beta)
    lag = (v * t - out)[-1]
    cutoff = min_cutoff + beta * v
    # Discrete steps: lag = v dt (1 - a) / a with a = r / (r + 1), r = 2 pi cutoff dt.
    assert lag == pytest.approx(v / (2 * math.pi * cutoff), rel=1e-6)
    assert 0 < lag < v / (2 * math.pi * min_cutoff) + 1e-9
    if beta:
        assert lag < 1 / (2 * math.pi * beta)


def test_one_euro_mask_holds_unobserved_elements() -> None:
    filt = OneEuroFilter()
    filt(np.array([0.0, 0.0]), 0.0)
    out = filt(np.array([5.0, 99.0]), 0.04, mask=np.array([True, False]))
    assert 0 < out[0] < 5 and out[1] == 99.0
    again = filt(np.array([5.0, 0.0]), 0.08)
    assert again[1] == 0.0  # the held element resumes from its last state (0), at rest


@pytest.mark.parametrize(("gt", "idf1"), [("labelled", 2 * 2 / (4 + 2)), ("visible", 1.0)])
def test_benchmark_scores_hidden_people_only_as_labelled_truth(gt: str, idf1: float) -> None:
    import motmetrics as mm
    from tracking import evaluate_tracking, make_oracle

    # Two frames: person 0 in view (v = 2), person 1 wholly behind someone (v = 1) and so
    # never detected. Labelled truth counts person 1 as missed twice; visible truth skips it.
    def truth_person(track_id: int, x: float, v: int) -> dict[str, object]:
        kpts = person(x)
        kpts[:, 2] = v
        return {"track_id": track_id, "keypoints": kpts.reshape(-1).tolist(),
                "bbox": [x - 15, 100.0, 30.0, 100.0]}

    frames = [{"frame": f, "timestamp_ms": 40.0 * f,
               "people": [truth_person(0, 100 + f, 2), truth_person(1, 300, 1)]}
              for f in range(2)]
    detections = [frame(person(100 + f)) for f in range(2)]
    oracle = make_oracle([np.array([0]), np.array([0])])
    acc, _, error = evaluate_tracking({"frames": frames}, detections, oracle, COCO, gt)
    summary = mm.metrics.create().compute(acc, metrics=["idf1", "num_switches"])
    assert summary["idf1"].item() == pytest.approx(idf1)
    assert summary["num_switches"].item() == 0 and error == pytest.approx(0.0)


def test_benchmark_breakdown_classifies_each_detection_by_its_id() -> None:
    from tracking import id_breakdown

    # Frame 3: person 0 takes person 1's ID 1 and person 1 gets a new ID 2; frame 4: person
    # 1 gets none; frame 5: a false person (source -1) is not counted. IDF1's map: 0->0, 1->1.
    ids = [[0, 1], [0, 1], [0, 1], [1, 2], [0, -1], [0, 5]]
    sources = [np.array(s) for s in [[0, 1]] * 5 + [[0, -1]]]
    assert id_breakdown(ids, sources) == {"right ID": 8, "another person's ID": 1,
                                          "a spare ID of their own": 1, "no ID": 1}


def test_benchmark_relinking_oracle_gives_a_returning_person_their_old_id() -> None:
    from tracking import make_ours, make_relinked

    # Present, then gone for longer than max_age (30 frames), then back: a new track.
    present = [f < 5 or f > 40 for f in range(46)]
    poses = [frame(person(100.0)) if here else frame() for here in present]
    sources = [np.array([0] if here else [], np.int64) for here in present]
    given = {name: [tracker(p, np.ones(len(p)), 40.0 * f)[0] for f, p in enumerate(poses)]
             for name, tracker in [("ours", make_ours(COCO, TrackerConfig())),
                                   ("relinked", make_relinked(COCO, sources))]}
    assert given["ours"][0] == [0] and given["ours"][-1] == [1]
    assert all(ids == [0] for ids in given["relinked"] if ids)


@pytest.mark.parametrize(("config", "field", "value"), [
    (TrackerConfig, "max_age", -1), (TrackerConfig, "keypoint_threshold", math.nan),
    (TrackerConfig, "min_keypoints", 0), (TrackerConfig, "min_score", math.nan),
    (TrackerConfig, "min_score", -0.1), (TrackerConfig, "oks_weight", 1.5),
    (TrackerConfig, "min_similarity", math.nan), (TrackerConfig, "miss_penalty", -1.0),
    (TrackerConfig, "velocity_momentum", 1.0), (TrackerConfig, "keypoint_motion", math.nan),
    (TrackerConfig, "fps", 0.0), (TrackerConfig, "fps", math.inf),
    (OneEuroConfig, "min_cutoff", math.nan), (OneEuroConfig, "beta", -1.0),
    (OneEuroConfig, "d_cutoff", 0.0),
])
def test_configs_refuse_bad_values_naming_the_rule(config: type, field: str,
                                                   value: float) -> None:
    with pytest.raises(ValueError, match=rf"^{config.__name__}\.{field} = .*: expected "):
        config(**{field: value})


@pytest.mark.parametrize(("config", "field", "value"), [
    (TrackerConfig, "min_score", 1.5), (TrackerConfig, "min_score", math.inf),
    (OneEuroConfig, "beta", math.inf),
])
def test_configs_refuse_out_of_range_values_with_the_value_got(config: type, field: str,
                                                                value: float) -> None:
    with pytest.raises(ValueError, match=rf"^{config.__name__}\.{field} = {value}: expected "):
        config(**{field: value})


@pytest.mark.parametrize(("config", "kwargs", "message"), [
    (TrackerConfig, {"max_age": None}, "max_age = None: expected an integer >= 0"),
    (TrackerConfig, {"max_age": "30"}, "max_age = '30': expected an integer >= 0"),
    (TrackerConfig, {"max_age": 1.5}, "max_age = 1.5: expected an integer >= 0"),
    (TrackerConfig, {"max_age": True}, "max_age = True: expected an integer >= 0"),
    (TrackerConfig, {"min_keypoints": 2.5}, "min_keypoints = 2.5: expected an integer >= 1"),
    (TrackerConfig, {"fps": "25"}, "fps = '25': expected a finite number > 0"),
    (TrackerConfig, {"min_score": False}, "min_score = False: expected a finite number in [0, 1]"),
    (TrackerConfig, {"smooth": "no"}, "smooth = 'no': expected a bool"),
    (TrackerConfig, {"smooth": 1}, "smooth = 1: expected a bool"),
    (TrackerConfig, {"one_euro": None, "smooth": True},
     "one_euro = None: expected a OneEuroConfig"),
    (TrackerConfig, {"one_euro": {"beta": 1}}, "one_euro = {'beta': 1}: expected a OneEuroConfig"),
    (OneEuroConfig, {"beta": "1"}, "beta = '1': expected a finite number >= 0"),
    (OneEuroConfig, {"min_cutoff": None}, "min_cutoff = None: expected a finite number > 0"),
])
def test_configs_refuse_wrong_types_naming_the_field_and_type(
        config: type, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=rf"^{config.__name__}\.{re.escape(message)}"):
        config(**kwargs)


def test_config_error_names_every_failed_rule_types_and_values_together() -> None:
    with pytest.raises(ValueError) as caught:
        TrackerConfig(max_age="30", min_keypoints=0, smooth="no", fps=-1.0)
    assert str(caught.value) == ("TrackerConfig.max_age = '30': expected an integer >= 0; "
                                 "TrackerConfig.min_keypoints = 0: expected an integer >= 1; "
                                 "TrackerConfig.smooth = 'no': expected a bool; "
                                 "TrackerConfig.fps = -1.0: expected a finite number > 0")
    assert isinstance(caught.value, AeposeError)  # one error type, still a ValueError


def test_configs_take_numpy_numbers() -> None:
    config = TrackerConfig(max_age=np.int64(5), min_score=np.float32(0.5), fps=np.float64(30),
                           one_euro=OneEuroConfig(beta=np.int32(2)))
    assert (config.max_age, config.min_score, config.fps) == (5, 0.5, 30.0)


# -- bad input to PoseTracker.update --------------------------------------------------------


@pytest.mark.parametrize("shape", [(K, 5, 3), (2, 5, 3), (K, 3), (2, 3 * K), (2, K, 2),
                                   (2, K, 4), (0, 5, 3), (1, 1, K, 3)])
def test_update_refuses_keypoints_of_another_shape(shape: tuple[int, ...]) -> None:
    tracker = PoseTracker(COCO)
    message = f"PoseTracker.update: keypoints must be [P, {K}, 3] (x, y, score), got shape {shape}"
    with pytest.raises(ValueError, match=re.escape(message)):
        tracker.update(np.ones(shape))


@pytest.mark.parametrize("keypoints", [[["a"] * 3] * K, [person(1), person(2)[:5]]],
                         ids=["strings", "ragged"])
def test_update_refuses_keypoints_that_are_not_an_array_of_numbers(keypoints: object) -> None:
    with pytest.raises(ValueError, match=r"keypoints must be \[P, 17, 3\] .*got a list"):
        PoseTracker(COCO).update(keypoints)  # type: ignore[arg-type]


@pytest.mark.parametrize("empty", [[], np.zeros(0), np.zeros((0, K, 3)),
                                   np.zeros((0, K, 3), np.float32)],
                         ids=["list", "zeros(0)", "zeros(0,K,3)", "float32"])
def test_update_takes_every_empty_frame_form_and_ages_tracks(empty: object) -> None:
    tracker = PoseTracker(COCO, TrackerConfig(max_age=0))
    assert tracker.update(frame(person(100)))[0].track_id == 0
    assert tracker.update(empty, scores=[]) == []  # type: ignore[arg-type]
    assert tracker.live_ids == [0]  # missed once: still alive with max_age 0
    assert tracker.update(empty) == []  # type: ignore[arg-type]
    assert tracker.live_ids == []


@pytest.mark.parametrize(("people", "scores", "message"), [
    (2, [0.9, 0.8, 0.7], "2 people but 3 scores"),
    (2, [0.9], "2 people but 1 score"),
    (1, [0.9, 0.8], "1 person but 2 scores"),
    (0, [0.9], "0 people but 1 score"),
    (2, 0.9, "scores must be [P] (one per person), got shape ()"),
    (2, [[0.9, 0.8]], "scores must be [P] (one per person), got shape (1, 2)"),
    (2, ["a", "b"], "scores must be [P] numbers, got a list"),
])
def test_update_refuses_scores_not_one_per_person(people: int, scores: object,
                                                  message: str) -> None:
    poses = frame(*(person(100.0 + 200 * p) for p in range(people)))
    with pytest.raises(ValueError, match=re.escape(f"PoseTracker.update: {message}")):
        PoseTracker(COCO).update(poses, scores)  # type: ignore[arg-type]


@pytest.mark.parametrize("shape", [(5, 3), (K, 2), (K * 3,)])
def test_update_poses_refuses_keypoints_of_another_shape(shape: tuple[int, ...]) -> None:
    @dataclass
    class Pose:
        keypoints: np.ndarray
        score: float

    poses = [Pose(person(10), 0.9), Pose(np.ones(shape), 0.9)]
    message = f"pose 1's keypoints must be [{K}, 3] (x, y, score), got shape {shape}"
    with pytest.raises(ValueError, match=re.escape(message)):
        PoseTracker(COCO).update_poses(poses)


@pytest.mark.parametrize("timestamp_ms", [math.nan, math.inf, -math.inf, "40", True],
                         ids=["nan", "inf", "-inf", "str", "bool"])
def test_update_refuses_a_timestamp_that_is_not_a_finite_number(timestamp_ms: object) -> None:
    tracker = PoseTracker(COCO, TrackerConfig(smooth=True))
    tracker.update(frame(person(100)), timestamp_ms=0.0)
    with pytest.raises(ValueError, match="timestamp_ms must be a finite number, got "):
        tracker.update(frame(person(101)), timestamp_ms=timestamp_ms)  # type: ignore[arg-type]


@pytest.mark.parametrize(("first", "second"), [(40.0, 40.0), (40.0, 39.5), (1000.0, None)],
                         ids=["same", "earlier", "default after given"])
def test_update_refuses_a_frame_time_not_after_the_previous_one(
        first: float, second: float | None) -> None:
    tracker = PoseTracker(COCO)  # checked without smoothing too: the times are wrong anyway
    tracker.update(frame(person(100)), timestamp_ms=first)
    with pytest.raises(ValueError, match=re.escape(f"previous frame's time ({first} ms)")):
        tracker.update(frame(person(101)), timestamp_ms=second)


def test_update_takes_a_given_time_after_default_ones() -> None:
    tracker = PoseTracker(COCO, TrackerConfig(smooth=True, fps=25.0))
    tracker.update(frame(person(100)))  # frame 0: 0 ms
    tracker.update(frame(person(101)))  # frame 1: 40 ms
    assert tracker.update(frame(person(102)), timestamp_ms=40.5)[0].track_id == 0


def _refused_calls() -> list[tuple[str, dict[str, object]]]:
    return [("shape", {"keypoints": np.ones((K, 5, 3))}),
            ("scores", {"scores": [0.9, 0.9]}),
            ("nan time", {"timestamp_ms": math.nan}),
            ("time back", {"timestamp_ms": 0.0})]


@pytest.mark.parametrize(("name", "bad"), _refused_calls(), ids=[n for n, _ in _refused_calls()])
def test_refused_update_leaves_the_tracker_as_it_was(name: str, bad: dict[str, object]) -> None:
    # A NaN timestamp used to enter the One-Euro state: every later smoothed x was NaN.
    rng = np.random.default_rng(3)
    poses = [frame(person(100 + 3 * f + rng.normal())) for f in range(12)]
    clean, tested = (PoseTracker(COCO, TrackerConfig(smooth=True)) for _ in range(2))
    for f, pose in enumerate(poses):
        if f == 6:
            with pytest.raises(ValueError, match=r"^PoseTracker\.update: "):
                tested.update(**{"keypoints": pose, "timestamp_ms": 40.0 * f, **bad})
        a = clean.update(pose, timestamp_ms=40.0 * f)[0]
        b = tested.update(pose, timestamp_ms=40.0 * f)[0]
        assert a.track_id == b.track_id == 0
        np.testing.assert_array_equal(a.keypoints, b.keypoints)
    assert np.isfinite(tested.tracks.euro.x).all() and tested.frame == clean.frame == 11


# -- non-finite keypoints -------------------------------------------------------------------


@pytest.mark.parametrize("smooth", [False, True])
@pytest.mark.parametrize("column", [0, 1, 2], ids=["x", "y", "score"])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_keypoints_are_missing_and_reported_as_given(
        smooth: bool, column: int, bad: float) -> None:
    # Each frame a few random keypoints carry a non-finite value: the person must keep one
    # ID, exactly as when those keypoints are merely low-scored (missing).
    rng = np.random.default_rng(7)
    config = TrackerConfig(smooth=smooth)
    broken, missing = PoseTracker(COCO, config), PoseTracker(COCO, config)
    for f in range(25):
        pose = person(100 + 4 * f + rng.normal())
        gone = rng.choice(K, size=4, replace=False)
        given, low = pose.copy(), pose.copy()
        given[gone, column] = bad
        low[gone, 2] = 0.0
        a, b = broken.update(frame(given))[0], missing.update(frame(low))[0]
        assert a.track_id == b.track_id == 0
        kept = np.setdiff1d(np.arange(K), gone)
        np.testing.assert_array_equal(a.keypoints[kept], b.keypoints[kept])
        np.testing.assert_array_equal(a.keypoints[gone], given[gone].astype(np.float32))
    tracks, euro = broken.tracks, broken.tracks.euro
    for state in (tracks.xy, tracks.velocity, euro.x, euro.raw, euro.dx, euro.t):
        assert np.isfinite(state).all()


def test_person_left_with_too_few_finite_keypoints_gets_no_track() -> None:
    tracker = PoseTracker(COCO)
    few, none, nan_score = person(500), person(700), person(900)
    few[2:, 0] = math.nan  # 2 finite keypoints, min_keypoints is 3
    none[:, 1] = math.inf
    out = tracker.update(frame(person(100), few, none, nan_score), [0.9, 0.9, 0.9, math.nan])
    assert [t.track_id for t in out] == [0, -1, -1, -1]
    assert math.isnan(out[3].score)  # the person score is reported as given too
    assert tracker.live_ids == [0]
    assert np.isfinite(tracker.tracks.xy).all()


# -- bad input to OneEuroFilter -------------------------------------------------------------


@pytest.mark.parametrize(("t", "message"), [
    (0.04, r"t must exceed the previous call's \(0.04 s\), got 0.04"),
    (0.0, r"t must exceed the previous call's \(0.04 s\), got 0.0"),
    (math.nan, "t must be a finite number of seconds, got nan"),
    (math.inf, "t must be a finite number of seconds, got inf"),
    (True, "t must be a finite number of seconds, got True"),
])
def test_one_euro_refuses_a_time_not_after_the_last_and_stays_usable(t: float,
                                                                     message: str) -> None:
    signal = [np.array([0.0, 1.0]), np.array([2.0, 3.0]), np.array([4.0, 2.0])]
    clean, tested = OneEuroFilter(), OneEuroFilter()
    for i, x in enumerate(signal):
        if i == 2:
            with pytest.raises(ValueError, match=f"^OneEuroFilter: {message}$"):
                tested(x, t)
        np.testing.assert_array_equal(tested(x, 0.04 * i), clean(x, 0.04 * i))
    tested.reset()
    assert tested(np.array([9.0, 9.0]), 0.0).tolist() == [9.0, 9.0]  # reset forgets the time


@pytest.mark.parametrize(("call", "message"), [
    ({"x": np.zeros(3)}, r"x must keep the shape of the first call's, \(2,\), got \(3,\)"),
    ({"mask": np.ones(3, bool)}, r"mask must be broadcastable to x's shape \(2,\), got shape"),
    ({"scale": math.nan}, "scale must be finite, got nan"),
])
def test_one_euro_refuses_input_that_would_corrupt_its_state(call: dict[str, object],
                                                             message: str) -> None:
    filt = OneEuroFilter()
    filt(np.zeros(2), 0.0)
    with pytest.raises(ValueError, match=f"^OneEuroFilter: {message}"):
        filt(**{"x": np.ones(2), "t": 0.04, **call})


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_one_euro_treats_non_finite_values_as_unobserved(bad: float) -> None:
    masked, tested = OneEuroFilter(), OneEuroFilter()
    for i, x in enumerate([[0.0, 0.0], [5.0, bad], [5.0, 1.0]]):
        given = np.array(x)
        a = masked(np.nan_to_num(given, posinf=0.0), 0.04 * i, mask=np.isfinite(given))
        b = tested(given, 0.04 * i)
        np.testing.assert_array_equal(b[np.isfinite(given)], a[np.isfinite(given)])
        np.testing.assert_array_equal(b[~np.isfinite(given)], given[~np.isfinite(given)])
    assert np.isfinite(b).all()


def test_tracker_refuses_a_config_that_is_not_a_tracker_config() -> None:
    for wrong in ({"max_age": 3}, "x", 5):
        with pytest.raises(ValueError, match="PoseTracker: config must be a TrackerConfig"):
            PoseTracker(COCO, wrong)  # type: ignore[arg-type]
