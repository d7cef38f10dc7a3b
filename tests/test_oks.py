"""OKS, the one formula that compares poses (aepose.oks), and the pose NMS built on it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from aepose.codec.pose_nms import oks_nms
from aepose.keypoints import COCO, get_spec
from aepose.oks import pairwise_oks


def _oracle_oks(xy_a: np.ndarray, xy_b: np.ndarray, sigmas: np.ndarray, area_a: np.ndarray,
                area_b: np.ndarray, valid_a: np.ndarray, valid_b: np.ndarray) -> np.ndarray:
    """OKS one pair and one keypoint at a time, from the formula (Python floats)."""
    out = np.zeros((len(xy_a), len(xy_b)))
    for i in range(len(xy_a)):
        for j in range(len(xy_b)):
            scale = (float(area_a[i]) + float(area_b[j])) / 2 + float(np.spacing(1))
            terms = []
            for k, sigma in enumerate(sigmas):
                if valid_a[i, k] and valid_b[j, k]:
                    d2 = float(((xy_a[i, k] - xy_b[j, k]) ** 2).sum())
                    terms.append(math.exp(-d2 / (2 * (2 * sigma) ** 2 * scale)))
            out[i, j] = sum(terms) / len(terms) if terms else 0.0
    return out


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_pairwise_oks_equals_the_loop_oracle(dtype: type) -> None:
    rng = np.random.default_rng(0)
    sigmas = np.array(COCO.sigmas)
    for trial in range(20):
        a, b = rng.integers(0, 5, 2)
        centre = rng.uniform(0, 400, (1, 17, 2))
        xy_a = (centre + rng.normal(0, 1 + trial, (a, 17, 2))).astype(dtype)
        xy_b = (centre + rng.normal(0, 1 + trial, (b, 17, 2))).astype(dtype)
        area_a, area_b = rng.uniform(0, 5e4, a), rng.uniform(0, 5e4, b)
        area_a[:1] = 0  # a point-like pose: eps keeps the scale positive
        valid_a, valid_b = rng.random((a, 17)) < 0.7, rng.random((b, 17)) < 0.7
        valid_b[:1] = False  # a pose sharing no valid keypoint: OKS 0
        got = pairwise_oks(xy_a, xy_b, sigmas, area_a, area_b, valid_a, valid_b)
        want = _oracle_oks(xy_a, xy_b, sigmas, area_a, area_b, valid_a, valid_b)
        assert got.shape == (a, b) and got.dtype == np.float64
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-300)
        everything = np.ones((a, 17), bool), np.ones((b, 17), bool)
        want = _oracle_oks(xy_a, xy_b, sigmas, area_a, area_b, *everything)
        np.testing.assert_allclose(pairwise_oks(xy_a, xy_b, sigmas, area_a, area_b), want,
                                   rtol=1e-12, atol=1e-300)


def test_pairwise_oks_without_masks_is_the_plain_mean_bit_for_bit() -> None:
    """What the pose NMS relies on: no mask is mmpose's mean over all K keypoints."""
    rng = np.random.default_rng(1)
    sigmas = np.array(COCO.sigmas)
    xy = rng.uniform(0, 300, (6, 17, 2)).astype(np.float32)
    areas = rng.uniform(0, 9e4, 6).astype(np.float32)
    e = ((xy[:, None] - xy[None]) ** 2).sum(axis=-1) / (sigmas * 2) ** 2 / (
        (areas[:, None] + areas[None]) / 2 + np.spacing(1))[..., None] / 2
    np.testing.assert_array_equal(pairwise_oks(xy, xy, sigmas, areas, areas),
                                  np.exp(-e).mean(axis=-1))
    assert np.all(np.diag(pairwise_oks(xy, xy, sigmas, areas, areas)) == 1.0)


def _oracle_oks_nms(kpts: np.ndarray, scores: np.ndarray, sigmas: np.ndarray,
                    thr: float) -> list[int]:
    """mmpose's demo oks_nms, one pair at a time."""
    variances = (sigmas * 2) ** 2
    areas = [(p[:, 0].max() - p[:, 0].min()) * (p[:, 1].max() - p[:, 1].min()) for p in kpts]
    order = list(np.argsort(scores)[::-1])
    keep = []
    while order:
        i, rest = order[0], order[1:]
        keep.append(int(i))
        survivors = []
        for j in rest:
            d2 = (kpts[j, :, 0] - kpts[i, :, 0]) ** 2 + (kpts[j, :, 1] - kpts[i, :, 1]) ** 2
            e = d2 / variances / ((areas[i] + areas[j]) / 2 + np.spacing(1)) / 2
            if np.float32(np.mean(np.exp(-e))) <= thr:
                survivors.append(j)
        order = survivors
    return keep


def test_oks_nms_equals_the_pairwise_oracle() -> None:
    rng = np.random.default_rng(0)
    sigmas = get_spec("crowdpose").sigmas
    for trial in range(20):
        centres = rng.uniform(0, 400, (3, 1, 2))
        base = centres + rng.uniform(-60, 60, (3, 14, 2))
        pick = rng.integers(0, 3, 12)
        kpts = base[pick] + rng.normal(0, 0.5 + trial / 2, (12, 14, 2))
        poses = np.concatenate([kpts, rng.uniform(0, 1, (12, 14, 1))], axis=2).astype(np.float32)
        scores = rng.uniform(0, 1, 12).astype(np.float32)
        keep = oks_nms(poses, scores, sigmas, 0.9)
        assert keep.tolist() == _oracle_oks_nms(poses, scores, np.array(sigmas), 0.9)
    assert oks_nms(np.zeros((0, 14, 3)), np.zeros(0), sigmas, 0.9).tolist() == []
