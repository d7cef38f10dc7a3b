"""The decoder on maps no network should give: NaN, infinities, huge finite values, zero
sizes, and settings out of range. Every call returns or refuses in one line, within a time
bound (a NaN tag used to make the Munkres solver loop forever), whoever calls it: the
Python API, the pipeline's post-processing (after flip and scale averaging, where finite
outputs can overflow) and ``aepose predict``, whose JSON stays valid.

Legend: K keypoints, H x W map, L tag dims, P people.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
from helpers import within
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from aepose.codec.decode import MAX_MAGNITUDE, Decoder, MapValueError, decode_poses
from aepose.codec.munkres import munkres_assignment
from aepose.config import TestConfig, get_preset
from aepose.errors import AeposeError
from aepose.models import build_model
from aepose.pipeline.engine import stream
from aepose.pipeline.stages import Stages

TINY = "higherhrnet_tiny_crowdpose_128"
SRC = Path(__file__).resolve().parents[1] / "src"
NON_FINITE = [math.nan, math.inf, -math.inf]


def _maps(seed: int = 0, k: int = 3, size: int = 16, dims: int = 2
          ) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(k, size, size, generator=g), torch.rand(k, size, size, dims, generator=g)


# -- non-finite and huge values ------------------------------------------------------------


@pytest.mark.parametrize("mode", ["exact", "fast"])
@pytest.mark.parametrize("bad", NON_FINITE, ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("maps", ["heatmaps", "tags"])
def test_non_finite_maps_are_refused_in_one_line(maps: str, bad: float, mode: str) -> None:
    heatmaps, tags = _maps()
    (heatmaps if maps == "heatmaps" else tags)[1, 5, 7] = bad
    with within(10), pytest.raises(MapValueError) as caught:
        decode_poses(heatmaps, tags, mode=mode)
    assert str(caught.value) == f"decode_poses: {maps} hold NaN or infinite values"
    with within(10), pytest.raises(MapValueError):  # the Decoder itself (the pipeline's)
        Decoder(mode=mode)(heatmaps.numpy(), tags.numpy())


@pytest.mark.parametrize(("maps", "value", "shown"), [
    ("heatmaps", 3e38, "3e+38"), ("heatmaps", -1e19, "-1e+19"), ("tags", 1.5e20, "1.5e+20"),
    ("tags", -3.4e38, "-3.4e+38")])
def test_magnitudes_beyond_the_limit_are_refused_naming_the_value(
        maps: str, value: float, shown: str) -> None:
    # 1e38 heatmaps once decoded into infinite scores, and 3e38 tags into infinite tag means.
    heatmaps, tags = _maps()
    (heatmaps if maps == "heatmaps" else tags)[0, 2, 3] = value
    with within(10), pytest.raises(MapValueError) as caught:
        decode_poses(heatmaps, tags)
    assert str(caught.value) == (f"decode_poses: {maps} hold a value of {shown}; the decoder "
                                 "takes magnitudes up to 1e+18")


def test_values_at_the_limit_decode_to_finite_poses() -> None:
    heatmaps, tags = _maps()
    heatmaps[:, 4, 4], tags[:, 9, 9] = MAX_MAGNITUDE, -MAX_MAGNITUDE
    tags[:, 2, 2] = MAX_MAGNITUDE
    with within(10):
        poses, scores = decode_poses(heatmaps, tags)
    assert len(poses) > 0 and np.isfinite(poses).all() and np.isfinite(scores).all()
    assert scores.max() > 1e17  # the person whose joints are all at 1e18


def test_map_value_error_survives_a_worker_process() -> None:
    error = pickle.loads(pickle.dumps(MapValueError("tags", "hold NaN or infinite values")))
    assert (error.maps, error.problem) == ("tags", "hold NaN or infinite values")
    assert str(error) == "decode_poses: tags hold NaN or infinite values"


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_munkres_refuses_non_finite_costs(bad: float) -> None:
    cost = np.array([[1.0, 2.0, 3.0], [2.0, bad, 1.0]])
    with within(10), pytest.raises(ValueError, match="cost holds NaN or infinite values"):
        munkres_assignment(cost)


def test_munkres_refuses_costs_spanning_more_than_float64() -> None:
    # Subtracting the row minima overflows column 1 to inf: no finite value is left to
    # create a zero there.
    cost = np.array([[-1.7e308, 1.7e308], [-1.7e308, 1.7e308]])
    with within(10), np.errstate(over="ignore"), pytest.raises(ValueError, match="span"):
        munkres_assignment(cost)


# -- zero sizes and settings ---------------------------------------------------------------


@pytest.mark.parametrize("shape", [(3, 0, 0), (3, 0, 7), (3, 7, 0), (0, 5, 5), (0, 0, 0)])
def test_maps_without_pixels_or_joints_give_no_people(shape: tuple[int, int, int]) -> None:
    poses, scores = decode_poses(torch.zeros(shape), torch.zeros(*shape, 2))
    assert poses.shape == (0, shape[0], 5) and poses.dtype == np.float32
    assert scores.shape == (0,) and scores.dtype == np.float32


def test_a_bad_joint_order_is_refused_on_empty_maps_too() -> None:
    with pytest.raises(AeposeError, match="permutation"):
        decode_poses(torch.zeros(3, 0, 0), torch.zeros(3, 0, 0, 2), joint_order=[0, 0, 1])


@pytest.mark.parametrize(("name", "value"), [
    ("tag_threshold", math.nan), ("tag_threshold", math.inf), ("tag_threshold", 0.0),
    ("tag_threshold", -1.0), ("detection_threshold", math.nan), ("detection_threshold", 1.5),
    ("detection_threshold", -0.1), ("detection_threshold", True), ("max_people", 0),
    ("max_people", 10**6), ("max_people", 2.5), ("nms_kernel", 0), ("nms_kernel", 101),
    ("nms_kernel", 4)])
def test_settings_are_refused_as_test_config_refuses_them(name: str, value: Any) -> None:
    with pytest.raises(AeposeError) as config_error:
        TestConfig(**{name: value})
    heatmaps, tags = _maps()
    for call in (lambda: decode_poses(heatmaps, tags, **{name: value}),
                 lambda: Decoder(**{name: value})):
        with pytest.raises(AeposeError) as caught:
            call()
        assert str(caught.value) == str(config_error.value)
        assert str(caught.value).startswith(f"test.{name} = ")


def test_numpy_settings_decode_as_the_python_numbers_they_equal() -> None:
    heatmaps, tags = _maps(seed=3)
    want = decode_poses(heatmaps, tags, detection_threshold=float(np.float32(0.3)),
                        tag_threshold=0.75, max_people=7, nms_kernel=3)
    got = decode_poses(heatmaps, tags, detection_threshold=np.float32(0.3),
                       tag_threshold=np.float64(0.75), max_people=np.int64(7),
                       nms_kernel=np.int32(3))
    assert len(want[0]) > 0
    for a, b in zip(want, got, strict=True):
        np.testing.assert_array_equal(a, b)


# -- property: every call returns or refuses, in time --------------------------------------

_SPECIAL = [0.0, -0.0, 0.1, float(np.float32(0.1)), 1.0, MAX_MAGNITUDE, -MAX_MAGNITUDE, 1e19,
            -1e19, 3.4e38, -3.4e38, 1e-45, math.nan, math.inf, -math.inf]
_VALUES = st.one_of(st.floats(-2, 2, width=32), st.sampled_from(_SPECIAL))


@st.composite
def _hostile_maps(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    k, h, w = draw(st.integers(0, 4)), draw(st.integers(0, 7)), draw(st.integers(0, 7))
    dims = draw(st.integers(1, 3))
    heatmaps = draw(arrays(np.float32, (k, h, w), elements=_VALUES))
    tags = draw(arrays(np.float32, (k, h, w, dims), elements=_VALUES))
    return heatmaps, tags


@settings(max_examples=100, deadline=timedelta(seconds=5))
@given(maps=_hostile_maps(), mode=st.sampled_from(["exact", "fast"]), adjust=st.booleans(),
       refine=st.booleans(), max_people=st.integers(1, 6), nms_kernel=st.sampled_from([1, 3]),
       detection_threshold=st.sampled_from([0.0, 0.1]),
       tag_threshold=st.sampled_from([0.5, 1.0]))
def test_property_decoder_returns_finite_poses_or_refuses_in_time(
        maps: tuple[np.ndarray, np.ndarray], **settings_: Any) -> None:
    heatmaps, tags = maps
    usable = bool(np.all(np.abs(heatmaps) <= MAX_MAGNITUDE)
                  and np.all(np.abs(tags) <= MAX_MAGNITUDE))  # NaN compares False
    with within(10), np.errstate(all="ignore"):
        try:
            poses, scores = decode_poses(heatmaps, tags, **settings_)
        except MapValueError:
            assert not usable
            return
    assert usable or heatmaps.size == 0
    k, dims = heatmaps.shape[0], tags.shape[3]
    assert poses.shape == (len(scores), k, 3 + dims) and scores.dtype == np.float32
    assert np.isfinite(poses).all() and np.isfinite(scores).all()


@settings(max_examples=100, deadline=timedelta(seconds=5))
@given(cost=st.integers(1, 5).flatmap(lambda rows: st.integers(rows, 6).flatmap(
    lambda cols: arrays(np.float64, (rows, cols), elements=st.floats(width=64)))))
def test_property_munkres_returns_an_assignment_or_refuses_in_time(cost: np.ndarray) -> None:
    with within(10), np.errstate(all="ignore"):
        try:
            cols = munkres_assignment(cost)
        except ValueError:
            return
    assert np.isfinite(cost).all()
    assert len(set(cols.tolist())) == len(cost) and ((cols >= 0) & (cols < cost.shape[1])).all()


# -- the pipeline and aepose predict --------------------------------------------------------


def _biased(bias: float) -> torch.nn.Module:
    """The tiny HigherHRNet whose every output channel is ``bias``: finite raw outputs."""
    model = build_model(TINY).eval()
    with torch.no_grad():
        for layer in model.keypoint_head.final_layers:
            layer.weight.zero_()
            layer.bias.fill_(bias)
    return model


@pytest.mark.parametrize(("bias", "problem"), [
    (2e38, "hold NaN or infinite values"),  # the flip average's sum overflows float32
    (1e38, "hold a value of 1e+38; the decoder takes magnitudes up to 1e+18")])
def test_outputs_that_overflow_in_aggregation_are_refused_naming_it(
        bias: float, problem: str) -> None:
    image = np.full((96, 128, 3), 120, np.uint8)
    with within(60):
        results = list(stream(Stages(_biased(bias), get_preset(TINY)), [image],
                              lambda item: item, decode_workers=0))
    assert results[0].error == (f"the network's heatmaps after aggregation {problem} (broken "
                                "weights or an overflow in reduced precision)")


def _strict_json(text: str) -> Any:
    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_predict_with_huge_head_biases_skips_the_image_and_writes_valid_json(
        tmp_path: Path) -> None:
    """A 1e38 head bias made ``aepose predict`` exit 0 with ``"score": Infinity`` in
    predictions.json (2e38 made it hang: the test above). A subprocess, so a hang fails."""
    cv2.imwrite(str(tmp_path / "img.png"), np.full((96, 128, 3), 120, np.uint8))
    torch.save({"state_dict": _biased(1e38).state_dict(), "meta": {}}, tmp_path / "w.pth")
    done = subprocess.run(
        [sys.executable, "-m", "aepose", "predict", "img.png", "--weights", "w.pth",
         "--preset", TINY, "--out", "out", "--device", "cpu"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(SRC)})
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert ("skipped: img.png: the network's heatmaps after aggregation hold a value of 1e+38"
            in done.stderr)
    assert _strict_json((tmp_path / "out" / "predictions.json").read_text())["images"] == []
