"""The Python API as README documents it: channel order, paths or arrays, test-setting
keywords, aepose.preprocess, Pose records and drawing, decode_poses on maps that carry a
gradient, and the aepose.predict one-liner.

Networks are tiny presets with trained-like maps (people are found in generated crowds), so
every comparison below compares non-empty results.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import detecting_network
from torch import nn

import aepose
from aepose import AeposeError, Pose, Predictor
from aepose.apps.bench import crowd_images
from aepose.config import get_preset
from aepose.data import back_project
from aepose.data.dataset import normalize_image
from aepose.pipeline.predictor import predict_images
from aepose.pipeline.stages import Stages

SIMPLE = "hrnet_tiny_aic_128"
HIGHER = "higherhrnet_tiny_crowdpose_128"
# aepose.predict keeping what a Predictor gives: every person, every keypoint's own score.
EVERYONE = {"min_score": 0, "pose_nms": None, "threshold": 0}


def _network(preset: str) -> nn.Module:
    return detecting_network(preset)


@pytest.fixture(scope="module")
def higher() -> nn.Module:
    return _network(HIGHER)


@pytest.fixture(scope="module")
def scenes() -> list[np.ndarray]:
    """Two RGB crowd scenes of different sizes."""
    return [crowd_images(1, (200, 150), seed=7)[0], crowd_images(1, (150, 200), seed=8)[0]]


def _assert_identical(got: list[Pose], expected: list[Pose]) -> None:
    assert len(got) == len(expected) > 0
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a.keypoints, b.keypoints)
        assert a.score == b.score


def _write_png(path: Path, rgb: np.ndarray) -> Path:
    """A lossless file, so that reading it back gives ``rgb`` exactly."""
    assert cv2.imwrite(str(path), rgb[:, :, ::-1])
    return path


# --- channel order, paths and arrays --------------------------------------------------------

def test_bgr_by_default_rgb_on_request_and_paths_read_right(
        higher: nn.Module, scenes: list[np.ndarray], tmp_path: Path) -> None:
    rgb = scenes[0]
    expected = Predictor(higher, HIGHER, channel_order="rgb")(rgb)
    default = Predictor(higher, HIGHER)
    assert default.channel_order == "bgr"
    _assert_identical(default(rgb[:, :, ::-1]), expected)  # what cv2.imread gives
    file = _write_png(tmp_path / "scene.png", rgb)
    _assert_identical(default(file), expected)
    _assert_identical(default(str(file)), expected)
    _assert_identical(Predictor(higher, HIGHER, channel_order="rgb")(file), expected)
    # The order matters: an RGB array read as BGR gives other poses.
    swapped = default(rgb)
    assert len(swapped) != len(expected) or any(
        not np.array_equal(a.keypoints, b.keypoints)
        for a, b in zip(swapped, expected, strict=False))


def test_predict_batch_mixes_paths_and_arrays(
        higher: nn.Module, scenes: list[np.ndarray], tmp_path: Path) -> None:
    predictor = Predictor(higher, HIGHER)
    file = _write_png(tmp_path / "b.png", scenes[1])
    together = predictor.predict_batch([scenes[0][:, :, ::-1], file])
    _assert_identical(together[0], predictor(scenes[0][:, :, ::-1]))
    _assert_identical(together[1], predictor(scenes[1][:, :, ::-1]))


def test_predict_images_takes_the_channel_order(higher: nn.Module,
                                                scenes: list[np.ndarray]) -> None:
    cfg = get_preset(HIGHER)
    (bgr_poses, bgr_scores), = predict_images(higher, cfg, [scenes[0][:, :, ::-1]])
    (rgb_poses, rgb_scores), = predict_images(higher, cfg, [scenes[0]], channel_order="rgb")
    np.testing.assert_array_equal(bgr_poses, rgb_poses)
    np.testing.assert_array_equal(bgr_scores, rgb_scores)


def test_bad_channel_order_and_missing_file_are_one_line(higher: nn.Module) -> None:
    with pytest.raises(AeposeError, match=r"^channel_order must be 'bgr' or 'rgb', got 'BGR'$"):
        Predictor(higher, HIGHER, channel_order="BGR")
    with pytest.raises(AeposeError, match=r"^image 0: image file nothere.jpg not found$"):
        Predictor(higher, HIGHER)("nothere.jpg")


def test_test_settings_as_keywords(higher: nn.Module) -> None:
    predictor = Predictor(higher, HIGHER, detection_threshold=0.3, max_people=5, refine=False,
                          flip=False)
    test = predictor.config.test
    assert (test.detection_threshold, test.max_people, test.refine, test.flip) == (
        0.3, 5, False, False)
    assert predictor.stages.post.decoder.detection_threshold == 0.3  # reaches the decoder
    with pytest.raises(AeposeError, match="unknown test setting") as info:
        Predictor(higher, HIGHER, detection_treshold=0.3)
    assert "\n" not in str(info.value)


# --- preprocess: what the network takes ------------------------------------------------------

def test_preprocess_is_the_pipeline_stage(higher: nn.Module, scenes: list[np.ndarray],
                                          tmp_path: Path) -> None:
    rgb = scenes[0]
    stage = Stages(higher, get_preset(HIGHER)).preprocess(rgb)
    for prepared in (aepose.preprocess(rgb[:, :, ::-1], HIGHER),
                     aepose.preprocess(rgb, get_preset(HIGHER), channel_order="rgb"),
                     aepose.preprocess(_write_png(tmp_path / "p.png", rgb), HIGHER)):
        assert prepared.sizes == stage.sizes and (prepared.height, prepared.width) == (150, 200)
        assert len(prepared.inputs) == 1
        torch.testing.assert_close(prepared.inputs[0], stage.inputs[0], rtol=0, atol=0)
    two = aepose.preprocess(rgb, HIGHER, channel_order="rgb", scales=(2, 1))
    assert [tuple(x.shape) for x in two.inputs] == [(3, 256, 384), (3, 128, 192)]


def test_readme_manual_path_equals_predictor_without_flip(scenes: list[np.ndarray]) -> None:
    """preprocess -> model -> resize to the input -> decode_poses -> back_project, as the
    README writes it, is the Predictor's pipeline without the flip test."""
    model, config = _network(SIMPLE), get_preset(SIMPLE)
    image = scenes[0][:, :, ::-1]
    prepared = aepose.preprocess(image, config)
    images = prepared.inputs[0][None]
    with torch.inference_mode():
        outputs = model(images)
    maps = F.interpolate(outputs[0], size=images.shape[2:], mode="bilinear", align_corners=False)
    k = config.model.num_keypoints
    poses, scores = aepose.decode_poses(maps[0, :k], maps[0, k:, :, :, None])
    poses[..., :2] = back_project(poses[..., :2], prepared.sizes)
    expected = Predictor(model, config, flip=False)(image)
    assert len(expected) == len(poses) > 0
    for p, pose in enumerate(expected):
        np.testing.assert_allclose(poses[p, :, :3], pose.keypoints, rtol=0, atol=1e-5)
        assert scores[p] == pytest.approx(pose.score, abs=1e-6)


# --- decode_poses and gradients ---------------------------------------------------------------

def test_decode_poses_takes_maps_that_require_grad(higher: nn.Module) -> None:
    model = _network(SIMPLE).train()
    images = torch.stack([normalize_image(crowd_images(1, (128, 128), seed=3)[0])])
    outputs = model(images)
    assert outputs[0].requires_grad
    heatmaps, tags = outputs[0][0, :14], outputs[0][0, 14:, :, :, None]
    poses, scores = aepose.decode_poses(heatmaps, tags)
    want, want_scores = aepose.decode_poses(heatmaps.detach().numpy(), tags.detach().numpy())
    assert len(poses) > 0
    np.testing.assert_array_equal(poses, want)
    np.testing.assert_array_equal(scores, want_scores)
    outputs[0].sum().backward()  # the graph is untouched by decoding
    assert next(model.parameters()).grad is not None


# --- Pose records and drawing --------------------------------------------------------------------

def test_pose_records_round_trip_and_draw(higher: nn.Module, scenes: list[np.ndarray]) -> None:
    predictor = Predictor(higher, HIGHER, channel_order="rgb")
    pose = predictor(scenes[0])[0]
    record = pose.to_dict()
    assert set(record) >= {"keypoints", "score", "bbox"}
    assert np.asarray(record["keypoints"]).shape == (14, 3)
    back = Pose.from_dict(record)
    np.testing.assert_array_equal(back.keypoints, pose.keypoints)
    assert back.score == pose.score
    coco = pose.to_coco(image_id=3)
    assert coco["image_id"] == 3 and coco["category_id"] == 1
    assert coco["keypoints"] == pose.keypoints.astype(np.float64).reshape(-1).tolist()
    # COCO's box spans all K keypoints (the reference's); the JSON's the detected ones only.
    xy, detected = pose.keypoints[:, :2].astype(np.float64), pose.keypoints[:, 2] > 0
    low, high = xy.min(axis=0), xy.max(axis=0)
    assert coco["bbox"] == [low[0], low[1], high[0] - low[0], high[1] - low[1]]
    low, high = xy[detected].min(axis=0), xy[detected].max(axis=0)
    assert record["bbox"] == [low[0], low[1], high[0] - low[0], high[1] - low[1]]
    bgr = np.ascontiguousarray(scenes[0][:, :, ::-1])
    before = bgr.copy()
    drawn = pose.draw(bgr, predictor.spec, keypoint_threshold=0.0)
    assert drawn.shape == bgr.shape and drawn.dtype == np.uint8
    np.testing.assert_array_equal(bgr, before)  # a copy: the input is untouched
    assert (drawn != bgr).any()
    in_rgb = pose.draw(scenes[0], "crowdpose", keypoint_threshold=0.0, channel_order="rgb")
    np.testing.assert_array_equal(drawn, in_rgb[:, :, ::-1])  # same picture, either order


# --- aepose.predict ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory, higher: nn.Module) -> Path:
    path = tmp_path_factory.mktemp("weights") / "tiny.pth"
    torch.save({"state_dict": higher.state_dict(), "meta": {}}, path)
    return path


def test_predict_one_liner_sources(weights: Path, higher: nn.Module,
                                   scenes: list[np.ndarray], tmp_path: Path) -> None:
    folder = tmp_path / "shots"
    folder.mkdir()
    files = [_write_png(folder / f"{i}.png", scene) for i, scene in enumerate(scenes)]
    predictor = Predictor(higher, HIGHER)
    expected = [predictor(file) for file in files]
    for source in (folder, str(folder / "*.png"), [str(f) for f in files]):
        got = aepose.predict(source, weights=weights, preset=HIGHER, device="cpu", **EVERYONE)
        assert [p.name for p in got] == [str(f) for f in files]
        assert [(p.width, p.height, p.frame) for p in got] == [(200, 150, None),
                                                               (150, 200, None)]
        for prediction, want in zip(got, expected, strict=True):
            _assert_identical(prediction.poses, want)
    one = aepose.predict(scenes[0][:, :, ::-1], weights, preset=HIGHER, device="cpu",
                         **EVERYONE)
    assert [p.name for p in one] == ["<array 0>"]
    _assert_identical(one[0].poses, expected[0])
    rgb = aepose.predict([scenes[0], files[1]], predictor, channel_order="rgb", **EVERYONE)
    assert [p.name for p in rgb] == ["<array 0>", str(files[1])]
    _assert_identical(rgb[0].poses, expected[0])


def test_predict_settings_reach_the_predictor(weights: Path, scenes: list[np.ndarray]) -> None:
    got = aepose.predict(scenes[0], weights, preset=HIGHER, device="cpu", flip=False,
                         detection_threshold=0.5, channel_order="rgb", **EVERYONE)
    model = Predictor.from_checkpoint(weights, HIGHER, "cpu", channel_order="rgb", flip=False,
                                      detection_threshold=0.5)
    _assert_identical(got[0].poses, model(scenes[0]))


def test_predict_bad_sources_are_one_line(weights: Path, higher: nn.Module,
                                          tmp_path: Path) -> None:
    predictor = Predictor(higher, HIGHER)
    with pytest.raises(AeposeError, match=r"^nothere\.jpg: no such file or folder$"):
        aepose.predict("nothere.jpg", predictor)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(AeposeError, match=r"bad\.jpg") as info:
        aepose.predict(bad, predictor)
    assert "\n" not in str(info.value)
    with pytest.raises(AeposeError, match="to the Predictor itself"):
        aepose.predict(bad, predictor, flip=False)
    with pytest.raises(AeposeError, match="empty source list"):
        aepose.predict([], predictor)


def test_the_predict_function_is_not_shadowed_by_the_predict_job(
        higher: nn.Module, scenes: list[np.ndarray]) -> None:
    importlib.import_module("aepose.apps.predict")  # the CLI's predict job, imported first
    predictor = Predictor(higher, HIGHER, channel_order="rgb")
    got = aepose.predict(scenes[0], predictor, **EVERYONE)
    _assert_identical(got[0].poses, predictor(scenes[0]))
