"""Offline tracking (issue 26): tracklets linked across gaps, gaps filled by interpolation,
smoothing forwards and backwards; the same through ``aepose.predict`` and the command line.

The unit tests build poses by hand (people walking at known speeds), so the expected IDs and
interpolated positions are facts of the construction, not of the code.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_video_predict import FRAMES, SIZE, TINY, _options, _read_mp4, _truth_detections

from aepose.apps.predict import run_predict
from aepose.config import get_preset
from aepose.errors import AeposeError
from aepose.keypoints import COCO
from aepose.pipeline.pose import Pose
from aepose.pipeline.predictor import Predictor
from aepose.synth.video import write_sequence
from aepose.tracking.offline import OfflineConfig, track_offline
from aepose.tracking.one_euro import OneEuroConfig, OneEuroFilter
from aepose.tracking.tracker import PoseTracker, TrackerConfig

run_module = importlib.import_module("aepose.pipeline.run")

K = COCO.num_keypoints
_SHAPE = np.stack([np.linspace(-15, 15, K), np.linspace(-100, 0, K)], axis=1)


def person(x: float, y: float = 200.0, score: float = 0.9) -> np.ndarray:
    """[K, 3] a person with feet at (x, y)."""
    return np.concatenate([_SHAPE + np.array([x, y]), np.full((K, 1), score)], axis=1)


def frames_of(*tracks: list[np.ndarray | None]) -> list[np.ndarray]:
    """Per frame, the [P, K, 3] poses of the tracks present (None: missed that frame)."""
    out = []
    for poses in zip(*tracks, strict=True):
        present = [p for p in poses if p is not None]
        out.append(np.stack(present) if present else np.zeros((0, K, 3)))
    return out


def test_a_person_hidden_longer_than_max_age_gets_the_same_id_back_and_the_gap_filled(
) -> None:
    # Walking right at 3 px/frame, hidden in frames 20-27: longer than max_age 5, so the
    # online tracker gives a new ID; offline, the two tracklets line up across the gap.
    walk = [None if 20 <= f < 28 else person(50 + 3 * f) for f in range(50)]
    video = frames_of(walk)
    online = TrackerConfig(max_age=5)
    tracker = PoseTracker(COCO, online)
    online_ids = [t.track_id for frame in video for t in tracker.update(frame)]
    assert sorted(set(online_ids)) == [0, 1]  # the fact offline tracking mends
    scores = [np.full(len(frame), 0.9) for frame in video]
    result = track_offline(video, scores, COCO, OfflineConfig(online=online, smooth=False))
    assert {i for frame in result for i in frame.track_ids} == {0}
    for f in range(20, 28):  # the gap: one interpolated pose per frame, where he walked
        (track_id, points, score), = result[f].filled
        assert track_id == 0
        np.testing.assert_allclose(points[:, :2], person(50 + 3 * f)[:, :2], atol=1e-6)
        # Their own score: lower than the detections' 0.9, lowest mid-gap.
        assert 0 < score < 0.9
        assert np.all(points[:, 2] <= 0.9) and np.all(points[:, 2] > 0)
    filled = [result[f].filled[0][2] for f in range(20, 28)]
    assert filled == sorted(filled[:4], reverse=True) + sorted(filled[4:])
    assert all(not frame.filled for f, frame in enumerate(result) if not 20 <= f < 28)


def test_gaps_longer_than_fill_gap_are_linked_but_not_filled() -> None:
    walk = [None if 10 <= f < 20 else person(50 + 3 * f) for f in range(40)]
    config = OfflineConfig(online=TrackerConfig(max_age=3), fill_gap=9, smooth=False)
    result = track_offline(frames_of(walk), None, COCO, config)
    assert {i for frame in result for i in frame.track_ids} == {0}
    assert not any(frame.filled for frame in result)  # 10 missing frames > fill_gap 9
    filled = track_offline(frames_of(walk), None, COCO,
                           OfflineConfig(online=TrackerConfig(max_age=3), fill_gap=10,
                                         smooth=False))
    assert [len(frame.filled) for frame in filled] == [int(10 <= f < 20) for f in range(40)]


def test_a_track_seen_only_now_and_then_is_not_filled_in() -> None:
    # Detected every third frame (as false people strung together are): no gap has a
    # detection in two frames in a row on either side, so nothing is filled. Detected in
    # pairs of frames with two missing between: every gap is filled.
    config = OfflineConfig(min_length=1, smooth=False)
    sparse = [person(100 + f) if f % 3 == 0 else None for f in range(30)]
    result = track_offline(frames_of(sparse), None, COCO, config)
    assert {i for frame in result for i in frame.track_ids} == {0}
    assert not any(frame.filled for frame in result)
    pairs = [person(100 + f) if f % 4 in (0, 1) else None for f in range(30)]
    result = track_offline(frames_of(pairs), None, COCO, config)
    assert [len(frame.filled) for frame in result] == [int(f % 4 in (2, 3)) for f in range(28)
                                                       ] + [0, 0]
    # One pair is enough on one side: 0, 1, then 4 alone, then 7 alone: only 2-3 is filled.
    once = [person(100 + f) if f in (0, 1, 4, 7) else None for f in range(8)]
    result = track_offline(frames_of(once), None, COCO, config)
    assert [len(frame.filled) for frame in result] == [0, 0, 1, 1, 0, 0, 0, 0]


def test_crossing_people_hidden_together_are_linked_by_their_velocities() -> None:
    # Two people walking towards each other, both unseen in frames 15-29 (they pass each
    # other in the gap, at frame 20): each comes out on the other's side, and only their
    # own velocities say which is which.
    a = [None if 15 <= f < 30 else person(40 + 4 * f) for f in range(45)]
    b = [None if 15 <= f < 30 else person(200 - 4 * f, 210) for f in range(45)]
    video = frames_of(a, b)
    config = OfflineConfig(online=TrackerConfig(max_age=5), smooth=False)
    result = track_offline(video, None, COCO, config)
    assert result[0].track_ids == [0, 1]
    assert result[44].track_ids == [0, 1]  # a stays 0 after the crossing, b stays 1
    assert all(len(frame.filled) == 2 for frame in result[15:30])


def test_a_brief_false_person_gets_no_id() -> None:
    walk = [person(50 + 3 * f) for f in range(30)]
    ghost = [person(400, 300) if f in (7, 8) else None for f in range(30)]
    result = track_offline(frames_of(walk, ghost), None, COCO,
                           OfflineConfig(min_length=3, smooth=False))
    assert result[7].track_ids == [0, -1] and result[8].track_ids == [0, -1]
    kept = track_offline(frames_of(walk, ghost), None, COCO,
                         OfflineConfig(min_length=1, smooth=False))
    assert kept[7].track_ids == [0, 1]


def test_smoothing_both_ways_removes_jitter_without_the_causal_filters_lag() -> None:
    rng = np.random.default_rng(0)
    truth = [person(50 + 4 * f) for f in range(60)]
    noisy = [p + np.concatenate([rng.normal(0, 2.0, (K, 2)), np.zeros((K, 1))], axis=1)
             for p in truth]
    # beta 0: a plain low-pass at 1 Hz, whose causal lag is plain to see.
    euro = OneEuroConfig(beta=0.0)
    result = track_offline(frames_of(noisy), None, COCO, OfflineConfig(one_euro=euro))
    smoothed = np.stack([frame.keypoints[0] for frame in result])
    raw_error = np.abs(np.stack(noisy)[:, :, :2] - np.stack(truth)[:, :, :2]).mean()
    error = np.abs(smoothed[:, :, :2] - np.stack(truth)[:, :, :2]).mean()
    assert error < 0.8 * raw_error
    # A causal One-Euro filter trails a walking person; both ways, no side is favoured.
    causal = OneEuroFilter(euro)
    lagged = np.stack([causal(p[:, :2], f / 25.0) for f, p in enumerate(noisy)])
    middle = slice(10, 50)
    causal_bias = (lagged[middle, :, 0] - np.stack(truth)[middle, :, 0]).mean()
    both_bias = (smoothed[middle, :, 0] - np.stack(truth)[middle, :, 0]).mean()
    assert causal_bias < -5.0 and abs(both_bias) < 0.1 * abs(causal_bias)
    np.testing.assert_array_equal(smoothed[:, :, 2], np.stack(noisy)[:, :, 2].astype(np.float32))


def test_offline_config_refuses_bad_values_and_track_offline_names_the_frame() -> None:
    with pytest.raises(AeposeError, match="fill_gap"):
        OfflineConfig(fill_gap=-1)
    with pytest.raises(AeposeError, match="online"):
        OfflineConfig(online=None)  # type: ignore[arg-type]
    with pytest.raises(AeposeError, match=r"^track_offline: frame 1: PoseTracker.update: "):
        track_offline([np.zeros((0, K, 3)), np.zeros((1, K, 2))], None, COCO)
    with pytest.raises(AeposeError, match="config must be an OfflineConfig"):
        track_offline([], None, COCO, TrackerConfig())  # type: ignore[arg-type]
    assert track_offline([], None, COCO) == []


def test_interpolated_pose_records_say_so() -> None:
    pose = Pose(np.ones((K, 3), np.float32), 0.4, track_id=3, interpolated=True)
    record = pose.to_dict()
    assert record["interpolated"] is True and Pose.from_dict(record).interpolated
    assert pose.to_coco(1)["interpolated"] is True
    assert "interpolated" not in Pose(np.ones((K, 3), np.float32), 0.4, track_id=3).to_dict()


# ---------------------------------------------------------------------------------------
# End to end: aepose.predict, aepose predict


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    from helpers import lively

    return Predictor(lively(TINY, seed=1).eval(), get_preset(TINY), flip=False)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("clip")
    video, _ = write_sequence(folder, "crowdpose", frames=FRAMES, people=3, size=SIZE,
                              seed=0, name="clip")
    return video


def _hidden_people(monkeypatch: pytest.MonkeyPatch) -> list[list[Pose]]:
    """Every frame "detects" the clip's truth, jittered, except the first person listed in
    frames 10-13 (hidden); returns the detections."""
    _, detections = _truth_detections(jitter=1.0)
    detections = [d[1:] if 10 <= f < 14 else d for f, d in enumerate(detections)]

    def people(driver: Any, result: Any) -> list[Pose]:
        return list(detections[result.item[0]])

    monkeypatch.setattr(run_module._Driver, "_people", people)
    return detections


def test_predict_function_tracks_a_video_offline_with_interpolated_people(
    predictor: Predictor, clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import aepose

    detections = _hidden_people(monkeypatch)
    got = aepose.predict(clip, predictor, track="offline", keep_images=True)
    assert [p.frame for p in got] == list(range(FRAMES))
    hidden_id = got[9].poses[0].track_id
    for f in range(10, 14):
        detected = [p for p in got[f].poses if not p.interpolated]
        filled = [p for p in got[f].poses if p.interpolated]
        assert len(detected) == len(detections[f])
        assert [p.track_id for p in filled] == [hidden_id]
        assert filled[0].score < 0.9
    assert got[14].poses[0].track_id == hidden_id  # back with the same ID
    assert not any(p.interpolated for f in (*got[:10], *got[14:]) for p in f.poses)
    # Images come from a second read of the file, one per frame, as the online run's.
    online = aepose.predict(clip, predictor, keep_images=True)
    for a, b in zip(got, online, strict=True):
        assert a.image is not None and b.image is not None
        np.testing.assert_array_equal(a.image, b.image)


def test_offline_command_writes_final_ids_overlay_and_refuses_live_sources(
    predictor: Predictor, clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from aepose.pipeline.api import offline_config

    _hidden_people(monkeypatch)
    summary = run_predict([str(clip)], predictor, tmp_path / "out",
                          _options(tracker=offline_config()))
    assert summary.json_path is not None, summary.problems
    doc = json.loads(summary.json_path.read_text())
    assert doc["tracker"]["mode"] == "offline" and "fps" not in doc["tracker"]["online"]
    interpolated = [f["frame"] for f in doc["images"] for p in f["people"]
                    if p.get("interpolated")]
    assert interpolated == [10, 11, 12, 13]
    assert _read_mp4(tmp_path / "out" / "clip.mp4")[1:] == (FRAMES, SIZE)
    # A live source is refused in one line, before anything is opened.
    for live in ("0", "rtsp://127.0.0.1:9/cam"):
        summary = run_predict([live], predictor, tmp_path / "live",
                              _options(tracker=offline_config(), overwrite=True))
        assert summary.images == 0
        assert summary.problems == [
            f"{live}: offline tracking needs the whole video before its first frame's IDs, "
            "and a live source never ends; use online tracking (--track online)"]


def test_cli_track_modes(tmp_path: Path) -> None:
    from aepose.apps.cli import _predict_options, build_parser
    from aepose.tracking.offline import OfflineConfig

    parser = build_parser()[0]

    def options(*extra: str) -> Any:
        return _predict_options(parser.parse_args(["predict", "v.mp4", "--weights", "w.pth",
                                                   *extra]))

    assert isinstance(options().tracker, TrackerConfig) and options().track
    assert isinstance(options("--track").tracker, TrackerConfig)
    assert not options("--no-track").track
    offline = options("--track", "offline", "--track-max-age", "7", "--smooth-beta", "3")
    assert isinstance(offline.tracker, OfflineConfig)
    assert (offline.tracker.online.max_age, offline.tracker.smooth,
            offline.tracker.one_euro.beta) == (7, True, 3.0)
    assert not options("--track", "offline", "--no-smooth").tracker.smooth
    assert options("--smooth", "--smooth-beta", "3").tracker.smooth
    with pytest.raises(SystemExit):
        options("--track", "sideways")


def test_predict_function_refuses_an_unknown_track_mode(predictor: Predictor, clip: Path
                                                        ) -> None:
    import aepose

    with pytest.raises(TypeError, match="'online', 'offline'"):
        aepose.predict(clip, predictor, track="sideways")
    with pytest.raises(AeposeError, match="smooth_beta would be ignored with smooth=False"):
        aepose.predict(clip, predictor, track="offline", smooth=False, smooth_beta=2.0)
