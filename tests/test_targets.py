"""Heatmap and associative-embedding targets (reference.md §3.6, §3.7, §3.12, traps 1-2).

A slow, loop-based oracle written straight from the reference's description is compared with
the vectorised encoder on random inputs; the worked numbers of §3.12 are pinned directly.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from aepose.data import bottom_up_affine, encode_targets, gaussian_kernel

FIXTURES = Path(__file__).resolve().parents[1] / ".." / "shared" / "fixtures"


def oracle(
    joints: npt.NDArray[np.floating], o: int, sigma: int = 2, max_people: int = 30
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int32]]:
    """The reference algorithm, one joint at a time (people beyond max_people: heatmap only)."""
    num_joints = joints.shape[1]
    size = 6 * sigma + 3
    c = 3 * sigma + 1
    g = np.zeros((size, size), dtype=np.float32)
    for u in range(size):
        for v in range(size):
            g[u, v] = np.exp(np.float32(-((u - c) ** 2 + (v - c) ** 2) / (2 * sigma**2)))
    hms = np.zeros((num_joints, o, o), dtype=np.float32)
    enc = np.zeros((max_people, num_joints, 2), dtype=np.int32)
    for p in range(joints.shape[0]):
        tot = 0
        for k in range(num_joints):
            xf, yf, vis = (float(t) for t in joints[p, k, :3])
            if vis <= 0:
                continue
            x, y = int(xf), int(yf)  # Python truncation toward zero
            if x < 0 or y < 0 or x >= o or y >= o:
                continue
            ul = (round(x - 3 * sigma - 1), round(y - 3 * sigma - 1))
            br = (round(x + 3 * sigma + 2), round(y + 3 * sigma + 2))
            for row in range(max(0, ul[1]), min(br[1], o)):
                for col in range(max(0, ul[0]), min(br[0], o)):
                    val = g[row - ul[1], col - ul[0]]
                    hms[k, row, col] = max(hms[k, row, col], val)
            if p < max_people:
                enc[p, tot] = (k * o * o + y * o + x, 1)
                tot += 1
    return hms, enc


def _joints(*people: list[tuple[float, float, float]]) -> npt.NDArray[np.float32]:
    return np.array(people, dtype=np.float32).reshape(len(people), -1, 3)


# ------------------------------------------------------------------------------ §3.12 numbers


def test_gaussian_kernel_worked_numbers() -> None:
    g = gaussian_kernel(2)
    assert g.shape == (15, 15) and g.dtype == np.float32
    assert g[7, 7] == 1.0 and g.max() == 1.0
    assert g[7, 8] == pytest.approx(math.exp(-1 / 8), rel=1e-6)
    assert g[7, 8] == pytest.approx(0.882497, abs=1e-6)
    assert g[7, 9] == pytest.approx(0.606531, abs=1e-6)
    assert g[7, 14] == pytest.approx(0.00218749, rel=1e-5)
    assert g[0, 0] == pytest.approx(4.785e-06, rel=1e-3)
    assert np.array_equal(g, g.T) and np.array_equal(g, g[::-1, ::-1])
    assert g.sum() > 20  # unnormalised (a normalised kernel would sum to 1)


def test_worked_joint_at_10_7_20_2() -> None:
    k, o = 3, 128
    joints = np.zeros((1, 14, 3), dtype=np.float32)
    joints[0, k] = (10.7, 20.2, 2)
    hms, enc = encode_targets(joints, o)
    rows, cols = np.nonzero(hms[k])
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (13, 27, 3, 17)
    assert hms[k, 20, 10] == 1.0
    assert hms[k, 20, 11] == pytest.approx(math.exp(-1 / 8), rel=1e-6)
    assert np.array_equal(hms[k, 13:28, 3:18], gaussian_kernel(2))
    assert np.count_nonzero(np.delete(hms, k, axis=0)) == 0
    assert enc[0, 0].tolist() == [k * 16384 + 20 * 128 + 10, 1]
    assert np.count_nonzero(enc) == 2  # one entry (index and visibility), nothing else


def test_types_and_shapes() -> None:
    hms, enc = encode_targets(np.zeros((0, 14, 3)), 64, max_people=30)
    assert hms.shape == (14, 64, 64) and hms.dtype == np.float32 and not hms.any()
    assert enc.shape == (30, 14, 2) and enc.dtype == np.int32 and not enc.any()


# -------------------------------------------------------------------- truncation and bounds


def test_truncation_toward_zero_counts_minus_half_inside() -> None:
    o = 16
    joints = _joints(
        [(-0.5, 5.2, 2), (-1.0, 5.0, 2), (15.99, 15.99, 1), (16.0, 3.0, 2), (3.0, -0.999, 2)]
    )
    hms, enc = encode_targets(joints, o)
    # joint 0 at x=-0.5 -> column 0 (int() truncates toward zero), row 5, peak clipped at the edge
    assert hms[0, 5, 0] == 1.0
    assert np.array_equal(hms[0, 0:13, 0:8], gaussian_kernel(2)[2:15, 7:15])
    # joint 1 at x=-1.0 -> column -1: outside, nothing drawn; joint 3 at x=16 = o: outside
    assert not hms[1].any() and not hms[3].any()
    # joint 2 at (15.99, 15.99) -> pixel (15, 15)
    assert hms[2, 15, 15] == 1.0
    # joint 4 at y=-0.999 -> row 0
    assert hms[4, 0, 3] == 1.0
    assert enc[0, :3].tolist() == [
        [0 * 256 + 5 * 16 + 0, 1],
        [2 * 256 + 15 * 16 + 15, 1],
        [4 * 256 + 0 * 16 + 3, 1],
    ]
    assert not enc[0, 3:].any()


def test_visibility_one_and_two_are_identical_and_zero_is_ignored() -> None:
    base = np.array([[[5.3, 6.1, 2], [7.0, 2.0, 2], [1.0, 1.0, 0]]], dtype=np.float32)
    occluded = base.copy()
    occluded[0, :2, 2] = 1
    h2, e2 = encode_targets(base, 16)
    h1, e1 = encode_targets(occluded, 16)
    assert np.array_equal(h1, h2) and np.array_equal(e1, e2)
    assert not h2[2].any()
    assert e2[0, 2].tolist() == [0, 0]


def test_packing_and_flat_index_zero() -> None:
    o = 32
    joints = _joints(
        # person 0: joint 0 out of map, joint 1 in, joint 2 unlabelled, joint 3 in
        [(-5.0, 3.0, 2), (4.0, 5.0, 2), (9.0, 9.0, 0), (31.0, 0.0, 1)],
        # person 1: nothing labelled in the map -> all-zero row
        [(40.0, 3.0, 2), (0.0, 0.0, 0), (-2.0, -2.0, 2), (3.0, 99.0, 2)],
        # person 2: joint 0 at (0, 0) -> flat index 0 with visibility 1
        [(0.0, 0.0, 2), (0.0, 0.0, 0), (0.0, 0.0, 0), (0.0, 0.0, 0)],
    )
    _, enc = encode_targets(joints, o, max_people=4)
    assert enc[0].tolist() == [
        [1 * o * o + 5 * o + 4, 1],
        [3 * o * o + 0 * o + 31, 1],
        [0, 0],
        [0, 0],
    ]
    assert not enc[1].any()
    assert enc[2, 0].tolist() == [0, 1] and not enc[2, 1:].any()
    assert not enc[3].any()


def test_max_merge_of_two_nearby_people() -> None:
    o = 64
    a = _joints([(30.0, 30.0, 2)])
    b = _joints([(32.0, 30.0, 2)])
    ha, _ = encode_targets(a, o)
    hb, _ = encode_targets(b, o)
    both, enc = encode_targets(np.concatenate([a, b]), o)
    assert np.array_equal(both, np.maximum(ha, hb))
    # Between the peaks: max of exp(-1/8) and exp(-1/8); a sum would exceed 1.
    assert both[0, 30, 31] == pytest.approx(math.exp(-1 / 8), rel=1e-6)
    assert both[0, 30, 30] == 1.0 and both[0, 30, 32] == 1.0
    assert both.max() == 1.0
    assert enc[:2, 0, 0].tolist() == [30 * 64 + 30, 30 * 64 + 32]


# ----------------------------------------------------------------------------- max_people


def test_more_than_max_people_keeps_first_30_with_one_warning() -> None:
    rng = np.random.default_rng(1)
    joints = np.concatenate(
        [rng.uniform(-4, 36, size=(35, 14, 2)), rng.integers(0, 3, size=(35, 14, 1))], axis=2
    ).astype(np.float32)
    with pytest.warns(UserWarning, match=r"35 people.*max_people is 30: 5 dropped") as record:
        hms, enc = encode_targets(joints, 32)
    assert len(record) == 1
    expected_h, expected_e = oracle(joints, 32)
    assert np.array_equal(enc, expected_e)
    assert np.array_equal(enc, encode_targets(joints[:30], 32)[1])
    # Dropped people still shape the heatmaps (only the AE target is capped).
    assert np.array_equal(hms, expected_h)
    assert not np.array_equal(hms, encode_targets(joints[:30], 32)[0])


def test_at_most_max_people_does_not_warn() -> None:
    joints = np.ones((30, 14, 3), dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, enc = encode_targets(joints, 8)
    assert np.all(enc[:, 0, 0] == 1 * 8 + 1) and np.all(enc[:, 0, 1] == 1)


# ------------------------------------------------------------------------------- bad input


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="shape"):
        encode_targets(np.zeros((3, 14)), 16)
    with pytest.raises(ValueError, match="sigma"):
        encode_targets(np.zeros((1, 14, 3)), 16, sigma=1.5)  # type: ignore[arg-type]
    nan_joint = np.zeros((2, 3, 3), dtype=np.float32)
    nan_joint[1, 2] = (np.nan, 3.0, 2)
    with pytest.raises(ValueError, match="person 1 joint 2"):
        encode_targets(nan_joint, 16)
    nan_joint[1, 2, 2] = 0  # an unlabelled NaN is ignored like any unlabelled joint
    hms, _ = encode_targets(nan_joint, 16)
    assert not hms[2].any()


# ------------------------------------------------------------------- oracle vs vectorised


SPECIAL = [-20.0, -1.0, -0.999, -0.5, -0.0, 0.0, 0.5, 6.999, 7.0, 15.0, 15.999, 16.0, 63.5]


@st.composite
def joint_sets(draw: st.DrawFn) -> tuple[npt.NDArray[np.float32], int, int, int]:
    o = draw(st.sampled_from([8, 16, 21, 64]))
    sigma = draw(st.sampled_from([1, 2, 3]))
    max_people = draw(st.sampled_from([1, 4, 30]))
    p = draw(st.integers(0, 34))
    k = draw(st.integers(1, 17))
    coord = st.one_of(st.floats(-25, o + 25, width=32, allow_nan=False), st.sampled_from(SPECIAL))
    xy = draw(hnp.arrays(np.float32, (p, k, 2), elements=coord))
    vis = draw(hnp.arrays(np.float32, (p, k, 1), elements=st.sampled_from([0.0, 1.0, 2.0])))
    return np.concatenate([xy, vis], axis=2), o, sigma, max_people


@settings(max_examples=150, deadline=None)
@given(joint_sets())
def test_vectorised_encoder_equals_loop_oracle(
    case: tuple[npt.NDArray[np.float32], int, int, int],
) -> None:
    joints, o, sigma, max_people = case
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hms, enc = encode_targets(joints, o, sigma=sigma, max_people=max_people)
    expected_h, expected_e = oracle(joints, o, sigma, max_people)
    assert hms.dtype == np.float32 and enc.dtype == np.int32
    assert np.array_equal(hms, expected_h)
    assert np.array_equal(enc, expected_e)


# ------------------------------------------------------------------------ real annotations


def test_aic_fixture_people_after_affine_match_oracle() -> None:
    path = FIXTURES / "aic" / "test_aic.json"
    if not path.exists():
        pytest.skip(f"fixture {path} not available")
    data = json.loads(path.read_text())
    image = data["images"][0]
    anns = [a for a in data["annotations"] if a["image_id"] == image["id"]]
    assert len(anns) >= 2
    joints = np.array([a["keypoints"] for a in anns], dtype=np.float32).reshape(len(anns), 14, 3)
    blank = np.zeros((image["height"], image["width"], 3), np.uint8)
    warped = bottom_up_affine(
        blank, None, joints, scale=1.0, rotation_deg=10.0, shift=(12, -7),
        input_size=512, output_sizes=(128, 256),
    )  # fmt: skip
    for o, j in zip((128, 256), warped.joints, strict=True):
        hms, enc = encode_targets(j, o)
        expected_h, expected_e = oracle(j, o)
        assert np.array_equal(hms, expected_h) and np.array_equal(enc, expected_e)
        for p, person in enumerate(j):
            x, y, v = person[:, 0], person[:, 1], person[:, 2]
            inside = (v > 0) & (x > -1) & (x < o) & (y > -1) & (y < o)
            assert int(enc[p, :, 1].sum()) == int(inside.sum())
            # every labelled in-map joint has a peak of exactly 1 at its truncated pixel
            for k in np.nonzero(inside)[0]:
                assert hms[k, int(y[k]), int(x[k])] == 1.0
    # AIC annotations are labelled with visibility 1/2 and land in the 128 map here
    assert int(enc[: len(anns), :, 1].sum()) > 10
