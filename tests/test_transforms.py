"""Augmentation and test-time geometry (reference.md §3.3, §3.4, §4.1, §4.6; traps 3-6, 11).

The "bright pixel" tests put a single white pixel at a keypoint and check it lands where the
keypoint's coordinates land, through every warp the project uses: the training affine (input
and heatmap resolutions), the flip, and the test-time resize followed by back-projection.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from aepose.data import (
    apply_affine,
    back_project,
    bottom_up_affine,
    draw_affine_params,
    draw_flip,
    encode_targets,
    flip_bottom_up,
    get_affine_transform,
    resize_align,
    resize_matrix,
)
from aepose.data import test_sizes as compute_test_sizes
from aepose.keypoints import AIC, CROWDPOSE

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / ".." / "shared" / "fixtures"
# cv2's bilinear warp quantises sub-pixel positions to 1/32 px of the SOURCE image
# (INTER_BITS = 5); in the output that is 1/32 times the magnification.
CV_SUBPIXEL = 1 / 32


# ---------------------------------------------------------------------- §4.1 sizing table

# (w, h, scales, base size, center, scale, inputs in descending scale order), from §4.1.
TABLE_4_1 = [
    (640, 425, (1,), (832, 512), (320, 212), (3.453125, 2.125), [(832, 512)]),
    (640, 425, (2, 1), (832, 512), (320, 212), (3.453125, 2.125), [(1664, 1024), (832, 512)]),
    (
        640, 425, (2, 1, 0.5), (896, 512), (320, 212), (3.71875, 2.125),
        [(1792, 1024), (896, 512), (448, 256)],
    ),
    (425, 640, (1,), (512, 832), (212, 320), (2.125, 3.453125), [(512, 832)]),
    (
        900, 600, (2, 1, 0.5), (768, 512), (450, 300), (4.5, 3.0),
        [(1536, 1024), (768, 512), (384, 256)],
    ),
    (333, 500, (1,), (512, 832), (166, 250), (1.665, 2.705625), [(512, 832)]),
    (1000, 1000, (1,), (512, 512), (500, 500), (5.0, 5.0), [(512, 512)]),
    (
        1000, 1000, (2, 1, 0.5), (512, 512), (500, 500), (5.0, 5.0),
        [(1024, 1024), (512, 512), (256, 256)],
    ),
]  # fmt: skip


@pytest.mark.parametrize("row", TABLE_4_1, ids=lambda r: f"{r[0]}x{r[1]}-{r[2]}")
def test_test_sizes_table(row: tuple[Any, ...]) -> None:
    w, h, scales, base, center, scale, inputs = row
    sizes = compute_test_sizes(w, h, 512, scales)
    assert sizes.base_size == base
    assert sizes.center == center
    assert all(type(c) is int for c in sizes.center)
    assert sizes.scale == scale  # exact float equality
    assert list(sizes.input_sizes) == inputs
    assert sizes.scales == tuple(sorted(scales, reverse=True))


def test_test_sizes_centre_rounds_half_to_even_and_scales_sort_descending() -> None:
    sizes = compute_test_sizes(333, 425, scales=(0.5, 2, 1))
    assert sizes.center == (166, 212)  # 166.5 -> 166, 212.5 -> 212
    assert sizes.scales == (2, 1, 0.5)
    assert [s[0] for s in sizes.input_sizes] == [1024, 512, 256]  # portrait: width = 512 * s
    assert sizes.input_sizes[0][1] > sizes.input_sizes[1][1] > sizes.input_sizes[2][1]
    assert compute_test_sizes(335, 427).center == (168, 214)  # 167.5 -> 168, 213.5 -> 214


def test_library_classes_named_test_are_not_collected(tmp_path: Path) -> None:
    """pyproject's python_classes: a test module that imports TestConfig, TestSizes or
    TestOptions collects only its own tests, without a collection warning."""
    module = tmp_path / "test_imports.py"
    module.write_text("from aepose.apps.test import TestOptions\n"
                      "from aepose.config import TestConfig\n"
                      "from aepose.data import TestSizes\n\n\n"
                      "def test_own() -> None:\n    pass\n")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         "-c", str(ROOT / "pyproject.toml"), "-W", "error::pytest.PytestCollectionWarning",
         str(module)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert done.returncode == 0, done.stdout + done.stderr
    collected = [line for line in done.stdout.splitlines() if "::" in line]
    assert len(collected) == 1 and collected[0].endswith("::test_own"), done.stdout


# ------------------------------------------------------- §4.6 back-projection and resize


def test_back_projection_worked_example_640x425() -> None:
    sizes = compute_test_sizes(640, 425)
    pts = np.array([[0.0, 0.0], [832.0, 512.0], [100.25, 37.5]])
    out = back_project(pts, sizes)
    assert out[0].tolist() == [-25.3125, -0.5]
    np.testing.assert_allclose(out[:, 0], 0.830078125 * pts[:, 0] - 25.3125, rtol=0, atol=1e-9)
    np.testing.assert_allclose(out[:, 1], 0.830078125 * pts[:, 1] - 0.5, rtol=0, atol=1e-9)
    np.testing.assert_allclose(out[:, 0], 0.830078 * pts[:, 0] - 25.3125, atol=1e-3)
    as32 = back_project(pts.astype(np.float32), sizes)
    assert as32.dtype == np.float32  # the reference keeps predictions float32
    np.testing.assert_allclose(as32, out, atol=1e-4)


@pytest.mark.parametrize("row", TABLE_4_1, ids=lambda r: f"{r[0]}x{r[1]}-{r[2]}")
def test_resize_and_back_project_are_inverse(row: tuple[Any, ...]) -> None:
    w, h, scales = row[:3]
    sizes = compute_test_sizes(w, h, 512, scales)
    rng = np.random.default_rng(0)
    pts = rng.uniform(-5, max(w, h) + 5, size=(50, 2))
    for i, s in enumerate(sizes.scales):
        mapped = apply_affine(pts, resize_matrix(sizes, i))
        np.testing.assert_allclose(back_project(mapped, sizes, scale_index=i), pts, atol=1e-6)
        if s == 1:
            np.testing.assert_allclose(back_project(mapped, sizes), pts, atol=1e-6)
        # centre of the image goes to the centre of the input; padding is symmetric
        w_s, h_s = sizes.input_sizes[i]
        centre = apply_affine(np.array(sizes.center, dtype=np.float64), resize_matrix(sizes, i))
        np.testing.assert_allclose(centre, (w_s / 2, h_s / 2), atol=1e-4)


def test_resize_factor_is_short_side_ratio() -> None:
    sizes = compute_test_sizes(640, 425)
    m = resize_matrix(sizes)
    np.testing.assert_allclose(m[:, :2], np.eye(2) * 512 / 425, atol=1e-5)
    portrait = compute_test_sizes(333, 500)
    np.testing.assert_allclose(resize_matrix(portrait)[:, :2], np.eye(2) * 512 / 333, atol=1e-5)


@pytest.mark.parametrize(("w", "h", "scales"), [(640, 425, (1,)), (333, 500, (2, 1, 0.5))])
def test_bright_pixel_test_time_resize_and_back_projection(
    w: int, h: int, scales: tuple[float, ...]
) -> None:
    sizes = compute_test_sizes(w, h, 512, scales)
    rng = np.random.default_rng(7)
    for px, py in rng.integers(20, min(w, h) - 20, size=(6, 2)):
        image = np.zeros((h, w), np.uint8)
        image[py, px] = 255
        for i in range(len(sizes.scales)):
            resized = resize_align(image, sizes, i)
            assert resized.shape == sizes.input_sizes[i][::-1]
            ry, rx = np.unravel_index(int(np.argmax(resized)), resized.shape)
            expected = apply_affine(np.array([px, py], np.float64), resize_matrix(sizes, i))
            assert abs(rx - expected[0]) <= 0.5 + CV_SUBPIXEL
            assert abs(ry - expected[1]) <= 0.5 + CV_SUBPIXEL
            # ... and the brightest input pixel maps back next to the original pixel
            back = back_project(np.array([rx, ry], np.float64), sizes, scale_index=i)
            step = sizes.input_scales[i][0] * 200 / sizes.input_sizes[i][0]  # image px per input px
            assert np.all(np.abs(back - (px, py)) <= (0.5 + CV_SUBPIXEL) * step + 1e-9)


def test_resize_align_on_fixture_image_pads_symmetrically() -> None:
    path = FIXTURES / "crowdpose" / "106848.jpg"
    if not path.exists():
        pytest.skip(f"fixture {path} not available")
    image = cv2.imread(str(path))
    assert image is not None and image.shape == (425, 640, 3)
    sizes = compute_test_sizes(640, 425)
    out = resize_align(image, sizes, 0)
    assert out.shape == (512, 832, 3) and out.dtype == np.uint8
    # x_in = (x - 320) * 512/425 + 416: column 0 lands at 30.49, column 639 at 800.3, so
    # columns 0..29 and 802.. are pure padding (about 30.5 px on each side).
    assert not out[:, :30].any() and not out[:, 802:].any()
    assert out[:, 32:800].mean(axis=(0, 2)).min() > 0
    assert out[:, 30:32].any() and out[:, 800:802].any()
    # the short side fills the height: first and last rows carry image content
    assert out[1].any() and out[510].any()


# ------------------------------------------------------------------ §3.3 affine transform


def _closed_form(
    center: tuple[float, float], side: float, rot_deg: float, ow: int, oh: int
) -> npt.NDArray[np.float64]:
    """Independent derivation: a similarity with factor ow/S and rotation -r about the centre."""
    r = math.radians(rot_deg)
    a = ow / side * np.array([[math.cos(r), math.sin(r)], [-math.sin(r), math.cos(r)]])
    t = np.array([ow / 2, oh / 2]) - a @ np.array(center)
    return np.concatenate([a, t[:, None]], axis=1)


@pytest.mark.parametrize("rot", [0.0, 17.0, -29.5, 90.0])
def test_get_affine_transform_matches_closed_form(rot: float) -> None:
    center, side = (331.0, 207.5), 425.0
    m = get_affine_transform(center, (side / 200, 9.9), rot, (128, 128))
    assert m.shape == (2, 3) and m.dtype == np.float64
    np.testing.assert_allclose(m, _closed_form(center, side, rot, 128, 128), atol=2e-4)
    # the three defining point pairs of §3.3
    r = math.radians(rot)
    up = np.array(center) + np.array([side / 2 * math.sin(r), -side / 2 * math.cos(r)])
    np.testing.assert_allclose(apply_affine(np.array(center), m), (64, 64), atol=1e-3)
    np.testing.assert_allclose(apply_affine(up, m), (64, 0), atol=1e-3)


def test_get_affine_transform_non_square_output_uses_width() -> None:
    m = get_affine_transform((100, 50), (1.0, 123.0), 0, (832, 512))
    np.testing.assert_allclose(m, [[832 / 200, 0, 416 - 100 * 832 / 200],
                                   [0, 832 / 200, 256 - 50 * 832 / 200]], atol=1e-3)  # fmt: skip


def test_bottom_up_affine_identity_like_case() -> None:
    image = np.full((480, 640, 3), 200, np.uint8)
    joints = np.array([[[320, 240, 2], [0, 0, 1], [639, 479, 0]]], np.float32)
    out = bottom_up_affine(
        image, np.ones((480, 640)), joints, scale=1.0, rotation_deg=0.0, shift=(0, 0),
        input_size=512, output_sizes=(128, 256),
    )  # fmt: skip
    assert out.image.shape == (512, 512, 3) and out.image.dtype == np.uint8
    # short side 480 -> output side; centre (320, 240) -> middle of every frame
    for o, m, j in zip((128, 256), out.output_matrices, out.joints, strict=True):
        np.testing.assert_allclose(m, _closed_form((320, 240), 480, 0, o, o), atol=1e-4)
        assert j.dtype == np.float32 and j.shape == (1, 3, 3)
        np.testing.assert_allclose(j[0, 0, :2], (o / 2, o / 2), atol=1e-4)
        np.testing.assert_allclose(j[0, 1, :2], (o / 2 - 320 * o / 480, o / 2 - 240 * o / 480),
                                   atol=1e-3)  # fmt: skip
        assert j[0, :, 2].tolist() == [2, 1, 0]  # visibility unchanged
    # The heatmap frame is the input frame / 4 in pixel-INDEX terms (§3.3: 256 <-> 64).
    np.testing.assert_allclose(out.input_matrix, 4 * out.output_matrices[0], atol=1e-4)
    np.testing.assert_allclose(out.output_matrices[1], 2 * out.output_matrices[0], atol=1e-4)
    # landscape: 640 wide is cropped to 480, so the input is image content everywhere except
    # the last row: index 511 samples source row 511 * 480/512 = 479.06, past the last row
    # 479, and blends with the black border (the pixel-index bias that UDP later removed).
    assert out.image[:511].min() == 200
    assert 180 < out.image[511].max() < 200
    # the heatmap masks stay inside (row 127 of 128 samples source row 476.25)
    assert all(m.min() == 1.0 for m in out.masks)


def test_bottom_up_affine_shift_and_rotation_move_the_centre() -> None:
    image = np.zeros((300, 400, 3), np.uint8)
    joints = np.array([[[210.0, 140.0, 2]]], np.float32)  # (200, 150) + shift (10, -10)
    out = bottom_up_affine(
        image, None, joints, scale=1.3, rotation_deg=23.0, shift=(10, -10),
        input_size=512, output_sizes=(128,),
    )  # fmt: skip
    np.testing.assert_allclose(out.joints[0][0, 0, :2], (64, 64), atol=1e-3)
    np.testing.assert_allclose(
        out.output_matrices[0], _closed_form((210, 140), 300 * 1.3, 23.0, 128, 128), atol=2e-4
    )


def test_bottom_up_affine_mask_zero_border_and_threshold() -> None:
    h, w = 120, 160
    mask = np.ones((h, w), np.float32)
    mask[40:80, 60:100] = 0  # e.g. a crowd region
    out = bottom_up_affine(
        np.zeros((h, w, 3), np.uint8), mask, np.zeros((0, 14, 3)), scale=1.5,
        rotation_deg=12.0, shift=(-7, 5), input_size=256, output_sizes=(64, 128),
    )  # fmt: skip
    for o, m, mat in zip((64, 128), out.masks, out.output_matrices, strict=True):
        assert m.dtype == np.float32 and set(np.unique(m).tolist()) <= {0.0, 1.0}
        inv = cv2.invertAffineTransform(mat)
        ys, xs = np.mgrid[0:o, 0:o]
        src = apply_affine(np.stack([xs, ys], -1).astype(np.float64), inv)
        sx, sy = src[..., 0], src[..., 1]
        # distance (source px) to the edges of the valid region; bilinear blurs only 1 px
        inside_image = (sx >= 1) & (sx <= w - 2) & (sy >= 1) & (sy <= h - 2)
        outside_image = (sx <= -1) | (sx >= w) | (sy <= -1) | (sy >= h)
        in_hole = (sx >= 61) & (sx <= 98) & (sy >= 41) & (sy <= 78)
        assert outside_image.any() and in_hole.any()  # scale 1.5 zooms out: padding exists
        assert np.all(m[inside_image & ~((sx > 58) & (sx < 101) & (sy > 38) & (sy < 81))] == 1)
        assert np.all(m[outside_image] == 0)  # padding is ignored by the loss
        assert np.all(m[in_hole] == 0)
    assert out.joints[0].shape == (0, 14, 3)


def _bright_sample(
    kx: int, ky: int, h: int = 40, w: int = 60
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    image = np.zeros((h, w, 3), np.uint8)
    image[ky, kx] = 255
    mask = np.zeros((h, w), np.float32)
    mask[ky, kx] = 1  # the mask path warps the same pixel at heatmap resolution
    joints = np.zeros((1, 14, 3), np.float32)
    joints[0, 5] = (kx, ky, 2)
    return image, mask, joints


def _centroid(binary: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
    ys, xs = np.nonzero(binary)
    assert xs.size > 0, "bright pixel vanished"
    return np.array([xs.mean(), ys.mean()])


BRIGHT_CASES = [
    (1.0, 0.0, (0, 0), 31, 17),
    (1.1, 17.0, (3, -2), 25, 22),
    (0.8, -28.0, (-4, 1), 38, 14),
]


@pytest.mark.parametrize(("scale", "rot", "shift", "kx", "ky"), BRIGHT_CASES)
def test_bright_pixel_through_affine_and_flip(
    scale: float, rot: float, shift: tuple[int, int], kx: int, ky: int
) -> None:
    image, mask, joints = _bright_sample(kx, ky)
    out = bottom_up_affine(
        image, mask, joints, scale=scale, rotation_deg=rot, shift=shift,
        input_size=512, output_sizes=(128, 256),
    )  # fmt: skip
    # input resolution: the brightest pixel is the nearest to the warped keypoint
    iy, ix = np.unravel_index(int(np.argmax(out.image[..., 0])), out.image.shape[:2])
    kin = apply_affine(joints[0, 5, :2].astype(np.float64), out.input_matrix)
    magnification = math.sqrt(abs(np.linalg.det(np.asarray(out.input_matrix)[:, :2])))
    tolerance = 0.5 + CV_SUBPIXEL * magnification
    assert abs(ix - kin[0]) <= tolerance and abs(iy - kin[1]) <= tolerance
    # heatmap resolutions: the warped mask blob sits on the warped joint and the target peak
    for o, m, j in zip((128, 256), out.masks, out.joints, strict=True):
        jx, jy = j[0, 5, :2]
        np.testing.assert_allclose(_centroid(m), (jx, jy), atol=0.5)
        hms, _ = encode_targets(j, o)
        py, px = np.unravel_index(int(np.argmax(hms[5])), (o, o))
        assert (px, py) == (int(jx), int(jy))
        assert abs(px - _centroid(m)[0]) <= 1 and abs(py - _centroid(m)[1]) <= 1

    # flip: the pixel moves to the mirrored column and the joint to the mirrored slot
    f_image, f_masks, f_joints = flip_bottom_up(out.image, out.masks, out.joints, AIC.flip_index)
    slot = AIC.flip_index[5]  # left_wrist (5) -> right_wrist slot (2)
    assert slot == 2
    # The image is mirrored exactly; OpenCV 4's 1/32-pixel steps can leave a plateau of
    # equal maxima, so the mirrored brightest pixel is checked as one of the maxima.
    np.testing.assert_array_equal(f_image, out.image[:, ::-1])
    assert f_image[iy, 511 - ix, 0] == f_image[..., 0].max()
    for o, m, j, j0 in zip((128, 256), f_masks, f_joints, out.joints, strict=True):
        assert j[0, slot, 0] == pytest.approx(o - 1 - j0[0, 5, 0], abs=1e-5)
        assert j[0, slot, 1] == j0[0, 5, 1] and j[0, slot, 2] == 2
        assert not j[0, 5, 2]  # slot 5 now holds the (unlabelled) old slot 2
        np.testing.assert_allclose(_centroid(m), j[0, slot, :2], atol=0.5)


# ---------------------------------------------------------------------------- §3.4 flip


def test_flip_formula_and_slot_swap() -> None:
    masks = [np.zeros((8, 8), np.float32), np.zeros((16, 16), np.float32)]
    masks[0][2, 1] = 1
    joints = np.zeros((1, 14, 3), np.float32)
    joints[0, 0] = (10.25, 3.0, 2)  # left_shoulder in CrowdPose
    joints[0, 12] = (-0.5, 1.0, 1)  # top_head maps to itself
    image = np.arange(2 * 4 * 3, dtype=np.uint8).reshape(2, 4, 3)
    f_img, f_masks, f_joints = flip_bottom_up(
        image, masks, [joints, joints * 2], CROWDPOSE.flip_index
    )
    assert np.array_equal(f_img, image[:, ::-1])
    assert f_masks[0][2, 6] == 1 and f_masks[0].sum() == 1
    assert f_joints[0][0, 1].tolist() == [8 - 10.25 - 1, 3.0, 2]  # moved to right_shoulder
    assert f_joints[0][0, 0].tolist() == [7.0, 0.0, 0]  # old right_shoulder: (0,0) -> 8-0-1
    assert f_joints[0][0, 12].tolist() == [8 - (-0.5) - 1, 1.0, 1]
    assert f_joints[1][0, 1, 0] == 16 - 20.5 - 1  # x' = o - x - 1 with each map's own o
    assert joints[0, 0, 0] == 10.25  # inputs untouched


def test_flip_twice_is_identity() -> None:
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    masks = [rng.integers(0, 2, (o, o)).astype(np.float32) for o in (16, 32)]
    dyadic = (rng.integers(-64, 64 * 16, (5, 14, 2)) / 16).astype(np.float32)
    joints = np.concatenate([dyadic, rng.integers(0, 3, (5, 14, 1))], 2).astype(np.float32)
    generic = joints.copy()
    generic[..., :2] = rng.uniform(-3, 35, (5, 14, 2)).astype(np.float32)
    for flip_index in (AIC.flip_index, CROWDPOSE.flip_index):
        once = flip_bottom_up(image, masks, [joints, generic], flip_index)
        twice = flip_bottom_up(*once, flip_index)
        assert np.array_equal(twice[0], image)
        assert all(np.array_equal(a, b) for a, b in zip(twice[1], masks, strict=True))
        assert np.array_equal(twice[2][0], joints)  # exact on a dyadic grid
        np.testing.assert_allclose(twice[2][1], generic, atol=1e-5)
        assert not np.array_equal(once[2][0], joints)


# ------------------------------------------------------------------- §3.3 random draws


def test_draws_follow_reference_order_with_float_bounds() -> None:
    for seed in range(20):
        w, h = 640 + seed * 7, 425 + seed * 3
        params = draw_affine_params(np.random.RandomState(seed), w, h)
        # The reference: np.random.seed(seed), then these calls in this order.
        ref = np.random.RandomState(seed)
        aug_scale = ref.random() * (1.5 - 0.75) + 0.75
        img_scale = np.array([w, h], dtype=np.float32)
        img_scale *= aug_scale
        aug_rot = (ref.random() * 2 - 1) * 30
        # float bounds on purpose: the reference passes them and NumPy truncates them
        sw, sh = float(img_scale[0]), float(img_scale[1])
        dx = ref.randint(-40 * sw / 200.0, 40 * sw / 200.0)  # type: ignore[call-overload]
        dy = ref.randint(-40 * sh / 200.0, 40 * sh / 200.0)  # type: ignore[call-overload]
        assert params.scale == aug_scale
        assert params.rotation_deg == aug_rot
        assert params.shift == (dx, dy)
        assert all(type(v) is int for v in params.shift)


def test_draw_ranges() -> None:
    w, h = 640, 425
    rng = np.random.RandomState(11)
    draws = [draw_affine_params(rng, w, h) for _ in range(3000)]
    scales = np.array([d.scale for d in draws])
    rots = np.array([d.rotation_deg for d in draws])
    assert scales.min() >= 0.75 and scales.max() < 1.5
    assert scales.min() < 0.76 and scales.max() > 1.49
    assert rots.min() >= -30 and rots.max() < 30 and rots.min() < -29 and rots.max() > 29
    for d in draws:
        sw, sh = w * d.scale, h * d.scale
        assert math.trunc(-0.2 * sw) <= d.shift[0] <= math.trunc(0.2 * sw) - 1
        assert math.trunc(-0.2 * sh) <= d.shift[1] <= math.trunc(0.2 * sh) - 1
    # e.g. scale 1.0 on 640 wide: dx in [-128, 127]; overall extremes reach about +-0.3 w
    dxs = np.array([d.shift[0] for d in draws])
    assert dxs.min() < -150 and dxs.max() > 150


def test_draws_with_generator_and_tiny_images() -> None:
    gen = np.random.default_rng(5)
    for _ in range(200):
        d = draw_affine_params(gen, 100, 50, min_scale=1.0, max_scale=1.0, max_rotation=0.0)
        assert d.scale == 1.0 and d.rotation_deg == 0.0
        assert -20 <= d.shift[0] <= 19 and -10 <= d.shift[1] <= 9
    # 0.2 * 4 px < 1: the reference's randint(0, 0) would raise; no shift instead
    assert draw_affine_params(np.random.RandomState(0), 4, 4).shift == (0, 0)
    flips = [draw_flip(np.random.RandomState(s)) for s in range(200)]
    assert flips == [np.random.RandomState(s).random() < 0.5 for s in range(200)]
    assert 60 < sum(flips) < 140
