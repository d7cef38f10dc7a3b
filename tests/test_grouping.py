"""decode_poses against the reference's unit cases and a loop-based port of mmpose's
HeatmapParser.parse (``benchmarks/reference_port.py``, shared with the speed benchmark).

Equality is exact (np.array_equal on poses and scores) on realistic crowds and on maps
built to hit every tie: plateaus and equal values, equal tags, candidates at exactly
float32(0.1), tag distances on the .5 rounding boundaries and at exactly 1.0.
AEPOSE_GROUPING_CASES=N runs N seeds per generator instead of the default few.

Legend: K keypoints, H x W map, L tag dims, P people.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from aepose.codec.candidates import nms_heatmaps
from aepose.codec.decode import decode_poses
from aepose.errors import AeposeError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from reference_port import reference_decode, synthetic_maps

CASES = int(os.environ.get("AEPOSE_GROUPING_CASES", "0"))
F32_TENTH = float(np.float32(0.1))


def _seeds(default: int) -> list[int]:
    return list(range(CASES or default))


def _assert_same(heatmaps: torch.Tensor, tags: torch.Tensor, **kwargs: Any) -> np.ndarray:
    """decode_poses == the port, bit for bit; returns the poses."""
    want_poses, want_scores = reference_decode(heatmaps, tags, **kwargs)
    poses, scores = decode_poses(heatmaps, tags, **kwargs)
    assert poses.dtype == np.float32 and scores.dtype == np.float32
    assert poses.shape == want_poses.shape
    np.testing.assert_array_equal(poses, want_poses)
    np.testing.assert_array_equal(scores, want_scores)
    return poses


# ---------------------------------------------------------------------------------------
# The reference's own unit cases (mmpose tests/test_post_processing/test_group.py)


def test_nms_zeroes_the_lower_neighbour() -> None:
    heat = torch.zeros(1, 5, 5)
    heat[0, 3, 3], heat[0, 3, 2] = 1.0, 0.8
    out = nms_heatmaps(heat)
    assert out[0, 3, 2] == 0 and out[0, 3, 3] == 1


def test_nms_equals_max_pool_and_keeps_plateaus() -> None:
    rng = np.random.default_rng(0)
    heat = torch.from_numpy(rng.integers(0, 4, (3, 17, 23)).astype(np.float32) / 4)
    for kernel in (1, 3, 5, 7):
        pooled = torch.nn.functional.max_pool2d(heat[None], kernel, 1, kernel // 2)[0]
        assert torch.equal(nms_heatmaps(heat, kernel), heat * (pooled == heat).float())


def _toy(tag_of_joint_8: float) -> tuple[torch.Tensor, torch.Tensor]:
    heat = torch.zeros(17, 32, 32)
    tags = torch.zeros(17, 32, 32, 1)
    for joint, yx, value in ((0, 10, 0.8), (1, 12, 0.9), (4, 8, 0.8), (8, 6, 0.9)):
        heat[joint, yx, yx] = value
        tags[joint, yx, yx] = value
    tags[8, 6, 6] = tag_of_joint_8
    return heat, tags


def test_reference_toy_case() -> None:
    heat, tags = _toy(0.9)
    poses, scores = decode_poses(heat, tags, max_people=1)
    assert poses.shape == (1, 17, 4)
    assert poses[0, 0, 0] == 10.25  # 10 - 0.25 (flat neighbours) + 0.5
    assert abs(scores[0] - 0.2) < 1e-6  # (0.8 + 0.9 + 0.8 + 0.9) / 17
    plain, _ = decode_poses(heat, tags, max_people=1, adjust=False, refine=False)
    assert plain[0, 0, 0] == 10.0
    _assert_same(heat, tags, max_people=1)


def test_reference_tag_too_far_opens_a_second_group() -> None:
    heat, tags = _toy(2.0)  # 2.0 is > 1 from the mean 0.833 of joints 0, 1, 4
    poses = _assert_same(heat, tags, max_people=1)
    assert len(poses) == 2
    assert poses[1, 8, 2] == np.float32(0.9) and (poses[0, [0, 1, 4], 2] > 0).all()


# ---------------------------------------------------------------------------------------
# Equality with the port


@pytest.mark.parametrize("seed", _seeds(6))
def test_realistic_crowds_equal_the_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    people = int(rng.integers(1, 36))
    heat, tags = synthetic_maps(
        rng,
        people,
        num_joints=int(rng.choice([14, 17])),
        size=int(rng.choice([48, 64])),
        upsample=int(rng.choice([1, 2])),
        tag_dims=int(rng.choice([1, 2])),
        tag_noise=float(rng.choice([0.05, 0.3])),
    )
    # Network heatmaps dip below zero; flat negative areas make plateaus of maxima.
    _assert_same(heat - float(rng.choice([0.0, 0.03])), tags)


def test_thirty_people_at_128_equal_the_reference() -> None:
    heat, tags = synthetic_maps(np.random.default_rng(7), 30, size=128)
    poses = _assert_same(heat, tags)
    assert len(poses) >= 30


def test_large_map_not_a_multiple_of_the_tiles() -> None:
    """272 x 272: refine's 8-pixel tiles, with the map extended to whole 32-pixel tiles."""
    heat, tags = synthetic_maps(np.random.default_rng(8), 5, size=68, upsample=4)
    _assert_same(heat, tags)


def _tie_maps(
    rng: np.random.Generator, num_joints: int, size: tuple[int, int], tag_dims: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Maps whose values come from tiny sets: plateaus of equal maxima, values at exactly
    float32(0.1), tags on a 0.25 grid so that distances land on 0.5, 1.0, 1.5, ... ."""
    height, width = size
    levels = np.array([0.0, 0.05, F32_TENTH, 0.1000001, 0.2, 0.5, 0.5, 1.0], dtype=np.float32)
    heat = levels[rng.integers(0, len(levels), (num_joints, height, width))]
    heat *= rng.random((num_joints, height, width)) < rng.uniform(0.05, 0.6)
    if rng.random() < 0.5:  # blocky plateaus
        heat = np.repeat(np.repeat(heat[:, ::2, ::2], 2, axis=1), 2, axis=2)[:, :height, :width]
    grid = rng.integers(-8, 9, (num_joints, height, width, tag_dims)) * 0.25
    if rng.random() < 0.5:  # equal tags
        grid = np.round(grid)
    return torch.from_numpy(np.ascontiguousarray(heat)), torch.from_numpy(grid.astype(np.float32))


@pytest.mark.parametrize("seed", _seeds(40))
def test_tie_heavy_maps_equal_the_reference(seed: int) -> None:
    rng = np.random.default_rng(1000 + seed)
    num_joints = int(rng.choice([1, 2, 3, 5, 14, 17]))
    size = (int(rng.integers(5, 33)), int(rng.integers(5, 33)))
    heat, tags = _tie_maps(rng, num_joints, size, int(rng.choice([1, 2, 3])))
    _assert_same(
        heat,
        tags,
        # The reference's torch.topk fails beyond H * W candidates.
        max_people=min(int(rng.integers(1, 41)), size[0] * size[1]),
        nms_kernel=int(rng.choice([1, 3, 5])),
        adjust=bool(rng.random() < 0.8),
        refine=bool(rng.random() < 0.8),
    )


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    num_joints=st.sampled_from([1, 2, 4, 14]),
    height=st.integers(5, 24),
    width=st.integers(5, 24),
    tag_dims=st.sampled_from([1, 2]),
    max_people=st.integers(1, 35),
    tag_threshold=st.sampled_from([0.5, 1.0, 1.5]),
)
def test_property_equal_to_reference(
    seed: int,
    num_joints: int,
    height: int,
    width: int,
    tag_dims: int,
    max_people: int,
    tag_threshold: float,
) -> None:
    heat, tags = _tie_maps(np.random.default_rng(seed), num_joints, (height, width), tag_dims)
    max_people = min(max_people, height * width)
    _assert_same(heat, tags, max_people=max_people, tag_threshold=tag_threshold)


def test_candidate_at_float32_tenth_is_kept() -> None:
    heat = torch.zeros(2, 16, 16)
    tags = torch.zeros(2, 16, 16, 2)
    heat[0, 4, 4] = F32_TENTH  # float32(0.1) > 0.1 in float64 (reference §10)
    heat[1, 9, 9] = 0.5
    poses = _assert_same(heat, tags)
    assert poses[0, 0, 2] == np.float32(0.1)


def test_crowd_with_more_candidates_than_groups() -> None:
    """Over 30 candidates per joint (max_people 40): surplus candidates open groups."""
    rng = np.random.default_rng(11)
    heat, tags = synthetic_maps(rng, 45, num_joints=4, size=96, tag_noise=0.4)
    poses = _assert_same(heat, tags, max_people=40)
    assert len(poses) > 30


# ---------------------------------------------------------------------------------------
# API


def test_fast_mode_equals_exact_when_the_optimum_is_unique() -> None:
    """Three people whose tags are 5 apart: every cost differs, so both solvers agree.
    (In crowds equal rounded distances make ties common, and the modes then differ.)"""
    heat = torch.zeros(14, 64, 64)
    tags = torch.zeros(14, 64, 64, 2)
    for person, tag in enumerate((0.0, 5.0, 10.0)):
        for joint in range(14):
            y, x = 8 + 20 * person, 4 + 4 * joint
            heat[joint, y, x] = 0.3 + 0.05 * person
            tags[joint, y, x] = tag
    exact = _assert_same(heat, tags)
    fast, _ = decode_poses(heat, tags, mode="fast")
    assert len(exact) == 3
    np.testing.assert_array_equal(exact, fast)


def test_numpy_input_and_custom_joint_order() -> None:
    heat, tags = synthetic_maps(np.random.default_rng(4), 6, size=40)
    order = list(range(13, -1, -1))
    poses, scores = decode_poses(heat.numpy(), tags.numpy(), joint_order=order)
    want_poses, want_scores = reference_decode(heat, tags, joint_order=order)
    np.testing.assert_array_equal(poses, want_poses)
    np.testing.assert_array_equal(scores, want_scores)


def test_more_candidates_than_pixels_are_capped() -> None:
    heat, tags = _tie_maps(np.random.default_rng(5), 3, (4, 5), 2)
    poses, scores = decode_poses(heat, tags, max_people=30)
    want_poses, want_scores = reference_decode(heat, tags, max_people=20)
    np.testing.assert_array_equal(poses, want_poses)
    np.testing.assert_array_equal(scores, want_scores)


def test_no_detection_gives_empty_arrays() -> None:
    poses, scores = decode_poses(torch.zeros(14, 8, 8), torch.zeros(14, 8, 8, 2))
    assert poses.shape == (0, 14, 5) and scores.shape == (0,)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "quick"}, "unknown decode mode"),
        ({"nms_kernel": 4}, "odd"),
        ({"joint_order": [0, 0, 1]}, "permutation"),
    ],
)
def test_bad_arguments_raise(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(AeposeError, match=message):
        decode_poses(torch.zeros(3, 8, 8), torch.zeros(3, 8, 8, 2), **kwargs)


def test_bad_shapes_raise() -> None:
    with pytest.raises(AeposeError, match=r"\[K, H, W\]"):
        decode_poses(torch.zeros(3, 8, 8), torch.zeros(3, 8, 7, 2))
    with pytest.raises(AeposeError, match="dimensions"):
        decode_poses(torch.zeros(3, 8, 8), torch.zeros(3, 8, 8, 8))
