"""What ``aepose predict`` and ``aepose.predict`` give a user (issue 21, "Defaults and outputs
a user expects"): the person-score threshold and pose NMS by default, detected keypoints only
in boxes and drawings, every command-line option as an API keyword, the results object
(``keypoints``, ``plot``, ``save``, iteration), overlays in the inputs' format and folder
layout, and a closing summary that counts skipped inputs.

The network is a tiny preset with trained-like maps (people are found in generated crowds,
dozens of fragments among them, as with real weights). Expected people are computed here by
plain loops (threshold, greedy OKS NMS, keypoint marking) from the Predictor's output, which
is the reference's decoder output.
"""

from __future__ import annotations

import inspect
import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
from helpers import detecting_network, run_cli
from torch import nn

import aepose
from aepose.apps.arguments import build_parser
from aepose.apps.bench import crowd_images
from aepose.apps.predict import PredictOptions, PredictSummary, output_paths, run_predict
from aepose.apps.predictions import OVERLAYS_NAME
from aepose.choices import KEYPOINT_THRESHOLD, PREDICT_MIN_SCORE, PREDICT_POSE_NMS
from aepose.config import TestConfig
from aepose.errors import AeposeError
from aepose.io import LOCK_NAME
from aepose.keypoints import get_spec
from aepose.pipeline import api as api_module
from aepose.pipeline.draw import draw_poses
from aepose.pipeline.inputs import expand_inputs
from aepose.pipeline.pose import Pose
from aepose.pipeline.predictor import Predictor
from aepose.pipeline.run import RunOptions

TINY = "higherhrnet_tiny_crowdpose_128"
SPEC = get_spec("crowdpose")
EVERYONE = {"min_score": 0, "pose_nms": None, "threshold": 0}


@pytest.fixture(scope="module")
def network() -> nn.Module:
    return detecting_network(TINY)


@pytest.fixture(scope="module")
def predictor(network: nn.Module) -> Predictor:
    return Predictor(network, TINY, channel_order="rgb")


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory, network: nn.Module) -> Path:
    path = tmp_path_factory.mktemp("weights") / "tiny.pth"
    torch.save({"state_dict": network.state_dict(), "meta": {}}, path)
    return path


@pytest.fixture(scope="module")
def scene() -> np.ndarray:
    """An RGB crowd in which the network finds dozens of people, most of them fragments."""
    return crowd_images(1, (200, 150), seed=7)[0]


def _write(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), rgb[:, :, ::-1])
    return path


# --- oracles: plain loops over the reference's output -----------------------------------------

def _oks(a: np.ndarray, b: np.ndarray) -> float:
    """mmpose's OKS of two poses [K, 3]: areas from each one's extent over all K keypoints,
    their mean as the scale."""
    areas = [float(np.ptp(p[:, 0]) * np.ptp(p[:, 1])) for p in (a, b)]
    scale = (areas[0] + areas[1]) / 2 + np.spacing(1)
    total = 0.0
    for k, sigma in enumerate(SPEC.sigmas):
        d2 = (a[k, 0] - b[k, 0]) ** 2 + (a[k, 1] - b[k, 1]) ** 2
        total += math.exp(-d2 / (2 * sigma) ** 2 / scale / 2)
    return total / len(SPEC.sigmas)


def _expected(poses: list[Pose], min_score: float, nms: float | None,
              threshold: float) -> list[np.ndarray]:
    """Keypoints [K, 3] of the people a user should get: scoring at least ``min_score``,
    none overlapping a better-scored kept one by more than ``nms``, in the decoder's order,
    keypoints under ``threshold`` with score 0."""
    strong = [p for p in poses if p.score >= min_score]
    kept: list[Pose] = []
    for pose in sorted(strong, key=lambda p: -p.score):
        if nms is None or all(_oks(pose.keypoints, k.keypoints) <= nms for k in kept):
            kept.append(pose)
    out = []
    for pose in strong:
        if any(pose is k for k in kept):
            points = pose.keypoints.copy()
            for k in range(len(points)):
                if points[k, 2] < threshold:
                    points[k, 2] = 0.0
            out.append(points)
    return out


# --- defaults ---------------------------------------------------------------------------------

def test_predict_keeps_the_people_a_user_expects_by_default(
        predictor: Predictor, scene: np.ndarray) -> None:
    everyone = predictor(scene)  # the decoder's every grouped fragment, as `aepose test` sees
    got = aepose.predict(scene, predictor, channel_order="rgb")[0]
    want = _expected(everyone, PREDICT_MIN_SCORE, PREDICT_POSE_NMS, KEYPOINT_THRESHOLD)
    assert 0 < len(want) < len(everyone) / 3  # most of what grouping gives are fragments
    assert len(got) == len(want)
    for pose, keypoints in zip(got, want, strict=True):
        np.testing.assert_array_equal(pose.keypoints, keypoints)
    assert (PREDICT_MIN_SCORE, PREDICT_POSE_NMS, KEYPOINT_THRESHOLD) == (0.25, 0.9, 0.2)
    assert RunOptions().min_score == PREDICT_MIN_SCORE
    assert (RunOptions().pose_nms, RunOptions().keypoint_threshold) == (0.9, 0.2)
    # Other settings, by the oracle too; everything stays available.
    for settings in ({"min_score": 0.05, "pose_nms": 0.5, "threshold": 0.5},
                     {"min_score": 0.3, "pose_nms": None, "threshold": 0.1}):
        got = aepose.predict(scene, predictor, channel_order="rgb", **settings)[0]
        want = _expected(everyone, settings["min_score"], settings["pose_nms"],
                         settings["threshold"])
        assert [p.keypoints.tolist() for p in got] == [w.tolist() for w in want]
    raw = aepose.predict(scene, predictor, channel_order="rgb", **EVERYONE)[0]
    assert len(raw) == len(everyone)


def test_run_options_are_checked_in_one_line() -> None:
    with pytest.raises(AeposeError, match=r"^RunOptions.min_score = 2: expected a finite "
                       r"number in \[0, 1\]$"):
        RunOptions(min_score=2)
    with pytest.raises(AeposeError, match=r"RunOptions\.pose_nms = -0\.5"):
        RunOptions(pose_nms=-0.5)


def test_cli_defaults_and_the_ultralytics_spelling() -> None:
    parser, _ = build_parser()
    args = parser.parse_args(["predict", "x.jpg", "--weights", "w"])
    assert (args.min_score, args.pose_nms, args.threshold) == (0.25, 0.9, 0.2)
    for spelling in (["--conf", "0.35"], ["--conf=0.35"], ["--min-score", "0.35"]):
        assert parser.parse_args(["predict", "x.jpg", "--weights", "w", *spelling]
                                 ).min_score == 0.35
    off = parser.parse_args(["predict", "x.jpg", "--weights", "w", "--pose-nms", "none",
                             "--min-score", "0", "--threshold", "0"])
    assert (off.min_score, off.pose_nms, off.threshold) == (0, None, 0)


def test_conf_is_not_glued_to_another_suggestion(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "predict", "missing.jpg", "--weights", "missing.pth",
                           "--conf", "0.2", "--out", "/nonexistent/out")
    assert "unrecognized" not in err and "did you mean" not in err
    assert code == 1 and len(err.strip().splitlines()) == 1


# --- undetected keypoints ---------------------------------------------------------------------

def test_undetected_keypoints_are_marked_and_left_out_of_box_and_drawing() -> None:
    keypoints = np.array([[-40.0, 0.0, 0.0],  # unfilled: placed outside the image, score 0
                          [60.0, 50.0, 0.9], [100.0, 120.0, 0.8], [700.0, 10.0, 0.05]]
                         + [[80.0, 90.0, 0.5]] * 10, np.float32)
    pose = Pose(keypoints, 0.4)
    marked = pose.with_keypoint_threshold(0.3)
    assert marked.keypoints[:, 2].tolist() == np.float32([0, 0.9, 0.8, 0] + [0.5] * 10).tolist()
    np.testing.assert_array_equal(marked.keypoints[:, :2], keypoints[:, :2])  # x, y kept
    assert marked.detected.tolist() == [False, True, True, False] + [True] * 10
    assert marked.to_dict()["bbox"] == [60.0, 50.0, 40.0, 70.0]  # detected keypoints only
    assert pose.to_dict()["bbox"] == [60.0, 10.0, 640.0, 110.0]  # score 0.05 is > 0
    # The COCO record (results.json, scored by `aepose test`) keeps the reference's box.
    assert marked.to_coco(1)["bbox"] == [-40.0, 0.0, 740.0, 120.0]
    assert Pose(np.zeros((14, 3), np.float32), 0.0).to_dict()["bbox"] is None
    # An undetected keypoint is never drawn, even at threshold 0.
    canvas = np.zeros((130, 720, 3), np.uint8)
    drawn = draw_poses(canvas, marked.keypoints[None], [0.4], SPEC, keypoint_threshold=0.0,
                       show_scores=False)
    assert drawn[10, 700].sum() == 0 and drawn[50, 60].sum() > 0


def test_json_boxes_span_detected_keypoints_and_results_json_keeps_the_reference(
        predictor: Predictor, scene: np.ndarray, tmp_path: Path) -> None:
    file = _write(tmp_path / "in" / "scene.png", scene)
    summary = run_predict([str(file)], predictor, tmp_path / "out",
                          PredictOptions(progress=False, draw=False, decode_workers=0))
    assert summary.json_path is not None
    doc = json.loads(summary.json_path.read_text())
    people = doc["images"][0]["people"]
    assert people and doc["test"]["keypoint_threshold"] == KEYPOINT_THRESHOLD
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert len(results) == len(people)
    for person, record in zip(people, results, strict=True):
        points = np.asarray(person["keypoints"])
        assert set(points[:, 2][points[:, 2] < KEYPOINT_THRESHOLD]) <= {0.0}
        x, y, w, h = person["bbox"]
        found = points[points[:, 2] > 0, :2]
        assert [x, y, x + w, y + h] == [*found.min(axis=0), *found.max(axis=0)]
        xy = np.asarray(record["keypoints"]).reshape(-1, 3)[:, :2]
        assert record["bbox"] == [*xy.min(axis=0), *(xy.max(axis=0) - xy.min(axis=0))]
    assert any(r["bbox"] != p["bbox"] for p, r in zip(people, results, strict=True))


# --- the Python API's keywords ----------------------------------------------------------------

def test_every_predict_option_is_a_keyword_of_the_api() -> None:
    _, commands = build_parser()
    keywords = set(inspect.signature(aepose.predict).parameters) | set(
        TestConfig.__dataclass_fields__)
    options = [o for action in commands["predict"]._actions for o in action.option_strings
               if o not in ("-h", "--help")]
    assert "--min-score" in options
    for option in options:
        name = option.lstrip("-").replace("-", "_")
        positive = name.removeprefix("no_")
        if name in keywords or (name != positive and positive in keywords):
            continue
        # Options without a keyword of their name say what to write instead.
        assert name in api_module._OTHER_SPELLINGS, option


def test_api_keywords_reach_the_run(predictor: Predictor, scene: np.ndarray,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[RunOptions] = []

    def record(inputs: Any, used: Predictor, options: RunOptions, **_: Any) -> Any:
        seen.append(options)
        yield from ()

    monkeypatch.setattr(api_module, "run", record)
    aepose.predict(scene, predictor, min_score=0.3, pose_nms=0.5, threshold=0.4, workers=1,
                   decode_workers=0, batch_size=3, max_frames=7, duration=2.5,
                   keep_images=True, track_max_age=5, track_min_similarity=0.3,
                   track_min_score=0.4, smooth=True, smooth_beta=2.0, smooth_min_cutoff=0.5)
    o = seen[-1]
    assert (o.min_score, o.pose_nms, o.keypoint_threshold, o.read_workers, o.decode_workers,
            o.batch_size, o.max_frames, o.duration_s, o.keep_images) == (
        0.3, 0.5, 0.4, 1, 0, 3, 7, 2.5, True)
    assert o.tracker is not None
    assert (o.tracker.max_age, o.tracker.min_similarity, o.tracker.min_score,
            o.tracker.smooth, o.tracker.one_euro.beta, o.tracker.one_euro.min_cutoff) == (
        5, 0.3, 0.4, True, 2.0, 0.5)
    with pytest.raises(AeposeError, match="would be ignored with track=False"):
        aepose.predict(scene, predictor, track=False, track_max_age=5)
    with pytest.raises(AeposeError, match="would be ignored without smooth"):
        aepose.predict(scene, predictor, smooth_beta=2.0)


@pytest.mark.parametrize(("keyword", "hint"), [
    ("min_scor", "did you mean 'min_score'"),
    ("conf", "use min_score"),
    ("no_flip", "use flip=False"),
    ("out", "result.save"),
    ("detection_treshold", "did you mean 'detection_threshold'"),
])
def test_unknown_keywords_get_a_did_you_mean(predictor: Predictor, scene: np.ndarray,
                                             keyword: str, hint: str) -> None:
    with pytest.raises(AeposeError, match=hint) as info:
        aepose.predict(scene, predictor, **{keyword: 0.2})
    assert "\n" not in str(info.value) and keyword in str(info.value)


def test_network_options_load_a_fast_network(weights: Path, scene: np.ndarray) -> None:
    plain = aepose.predict(scene, weights, preset=TINY, device="cpu", channel_order="rgb",
                           **EVERYONE)[0]
    fast = aepose.predict(scene, weights, preset=TINY, device="cpu", channel_order="rgb",
                          channels_last=True, **EVERYONE)[0]
    assert len(fast) == len(plain) > 0
    for a, b in zip(fast, plain, strict=True):  # NHWC rounds differently, by 1e-6
        np.testing.assert_allclose(a.keypoints, b.keypoints, atol=1e-2)


# --- the results object ----------------------------------------------------------------------

def test_a_prediction_is_an_array_a_sequence_and_a_picture(
        predictor: Predictor, scene: np.ndarray, tmp_path: Path) -> None:
    file = _write(tmp_path / "scene.png", scene)
    from_file, from_array = aepose.predict([file, scene], predictor, channel_order="rgb",
                                           decode_workers=0)
    for result in (from_file, from_array):
        assert len(result) == len(result.poses) > 0
        assert list(result) == result.poses
        assert result.keypoints.shape == (len(result), 14, 3)
        assert result.keypoints.dtype == np.float32
        np.testing.assert_array_equal(result.keypoints[1], result.poses[1].keypoints)
        np.testing.assert_array_equal(result.scores, [p.score for p in result.poses])
        assert result.spec is predictor.spec
    bgr = np.ascontiguousarray(scene[:, :, ::-1])
    # The skeleton comes with the result: the same picture as drawing each pose by hand.
    by_hand = draw_poses(scene, from_file.keypoints, from_file.scores, predictor.spec,
                         keypoint_threshold=0.0)
    plotted = from_file.plot()  # the file, read again
    np.testing.assert_array_equal(plotted, by_hand[:, :, ::-1])
    np.testing.assert_array_equal(from_array.plot(), plotted)  # the array, kept
    np.testing.assert_array_equal(from_file.plot(bgr), plotted)
    np.testing.assert_array_equal(from_file.plot(channel_order="rgb"), by_hand)
    assert (plotted != bgr).any()
    saved = from_file.save(tmp_path / "drawn" / "scene.png")
    np.testing.assert_array_equal(cv2.imread(str(saved)), plotted)  # PNG: exact
    jpeg = from_file.save(tmp_path / "scene.jpg")
    assert jpeg.read_bytes()[:2] == b"\xff\xd8"
    empty = aepose.predict(np.zeros((64, 64, 3), np.uint8), predictor, min_score=1)[0]
    assert len(empty) == 0 and empty.keypoints.shape == (0, 14, 3)
    with pytest.raises(AeposeError, match=r"use a \.png, \.jpg or \.jpeg name"):
        from_file.save(tmp_path / "scene.gif")


def test_video_frames_have_a_time_and_plot_when_images_are_kept(
        predictor: Predictor, tmp_path: Path) -> None:
    from aepose.synth.video import write_sequence

    clip, _ = write_sequence(tmp_path, "crowdpose", frames=3, people=2, size=(160, 128),
                             seed=0, name="clip")
    frames = aepose.predict(clip, predictor, decode_workers=0)
    assert [f.timestamp_ms for f in frames] == [0.0, 40.0, 80.0]
    with pytest.raises(AeposeError, match=r"clip\.mp4 frame 0: no image kept to draw on; "
                       "pass image=, or predict with keep_images=True"):
        frames[0].plot()
    kept = aepose.predict(clip, predictor, keep_images=True, decode_workers=0)
    assert kept[2].plot().shape == (128, 160, 3)


# --- aepose predict's files -------------------------------------------------------------------

def test_overlays_mirror_the_input_folders_in_the_inputs_format(
        predictor: Predictor, scene: np.ndarray, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    shots = tmp_path / "shots"
    a, b = _write(shots / "a" / "x.jpg", scene), _write(shots / "b" / "x.jpg", scene)
    c = _write(shots / "b" / "deep" / "y.png", scene)
    (shots / "b" / "broken.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "out"
    summary = run_predict([str(shots / "a"), str(shots / "b"), str(c)], predictor, out,
                          PredictOptions(progress=False, decode_workers=0))
    for made in ("a/x.jpg", "b/x.jpg", "b/deep/y.png"):
        assert (out / made).is_file(), made
    assert (out / "a" / "x.jpg").read_bytes()[:2] == b"\xff\xd8"  # JPEG for a JPEG input
    assert (out / "b" / "deep" / "y.png").read_bytes()[:4] == b"\x89PNG"
    assert not (out / "x_2.jpg").exists() and not (out / "x_2.png").exists()
    doc = json.loads((out / "predictions.json").read_text())
    assert [e["file_name"] for e in doc["images"]] == [str(a), str(b), str(c)]
    assert not (out / LOCK_NAME).exists()  # the run's lock goes with the run
    assert len(summary.problems) == 1
    described = summary.describe()
    assert described.startswith("3 images/frames, ") and ", 1 skipped (see above) in " in described


def test_overwrite_deletes_the_earlier_runs_overlays_and_only_those(
        predictor: Predictor, scene: np.ndarray, tmp_path: Path) -> None:
    """A run into the folder with --overwrite leaves no overlay of an input it does not
    have; the user's own files there, and anything the list names outside it, stay."""
    shots, out = tmp_path / "shots", tmp_path / "out"
    old = [_write(shots / "a" / "x.jpg", scene), _write(shots / "b" / "deep" / "y.png", scene)]
    options = PredictOptions(progress=False, decode_workers=0)
    run_predict([str(p) for p in old], predictor, out, options)
    assert (out / "a" / "x.jpg").is_file() and (out / "b" / "deep" / "y.png").is_file()
    assert (out / OVERLAYS_NAME).read_text().splitlines() == ["a/x.jpg", "b/deep/y.png"]
    mine, outside = out / "notes.txt", tmp_path / "outside.png"
    mine.write_text("the user's")
    outside.write_bytes(b"not an overlay of this folder")
    with (out / OVERLAYS_NAME).open("a") as listing:  # edited by hand: never followed
        listing.write("../outside.png\n\nnotes.txt/..\n")

    new = _write(shots / "c" / "z.png", scene)
    run_predict([str(new)], predictor, out, replace(options, overwrite=True))
    left = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    assert left == ["notes.txt", OVERLAYS_NAME, "predictions.json", "results.json", "z.png"]
    assert (out / OVERLAYS_NAME).read_text() == "z.png\n"
    assert outside.is_file() and mine.read_text() == "the user's"


def test_output_paths_of_one_folder_sit_at_the_top_and_repeats_get_a_number(
        tmp_path: Path) -> None:
    folder = tmp_path / "shots"
    for name in ("x.png", "x.bmp", "y.JPEG", "z.jpg"):
        _write(folder / name, np.zeros((8, 8, 3), np.uint8))
    inputs = expand_inputs([str(folder)], unique=True)
    paths = output_paths(inputs.items)
    named = {Path(i.name).name: paths[i.position].as_posix() for i in inputs.items}
    assert named == {"x.bmp": "x.png", "x.png": "x_2.png", "y.JPEG": "y.JPEG", "z.jpg": "z.jpg"}


def test_the_summary_counts_skipped_inputs(tmp_path: Path) -> None:
    summary = PredictSummary(tmp_path, images=4, people=9, problems=["a.jpg: bad", "b: gone"],
                             seconds=2.0)
    assert summary.describe().startswith(
        "4 images/frames, 9 people, 2 skipped (see above) in 2.0 s (2.0 images/s)")
    assert "skipped" not in PredictSummary(tmp_path, images=1).describe()
