"""OpenCV's bilinear ``warpAffine`` must keep the numerics of the 4.x line.

mmpose's released numbers were produced with OpenCV 4.x, and aepose reproduces mmpose bit
for bit only with the same rounding. OpenCV 5.0 rounds differently (1 grey level on 0.25 %
of a test-time resize's pixels, up to 3 levels on 10 % of a rotated training warp's), which
moved a demo model's AP by 0.004. These digests, recorded with opencv-python-headless 4.14
(4.10 gives the same bytes), fail loudly if an install picks other numerics.
"""

from __future__ import annotations

import hashlib

import cv2
import numpy as np

from aepose.data import get_affine_transform, resize_align
from aepose.data import test_sizes as compute_test_sizes

# sha256 of the warped bytes under OpenCV 4.x
TEST_RESIZE_SHA256 = "bfa3a301ff13a58a27effa791be3deb2ebc36d1b6eb9f9842e99dd7181f906a7"
ROTATED_WARP_SHA256 = "9ba977a628297900ce246643510b473a5d9ca995e7eeb63b1817fdfd684cef8b"


def _photo() -> np.ndarray:
    """A seeded 480 x 640 RGB image with smooth gradients and sharp edges."""
    rng = np.random.default_rng(2026)
    yy, xx = np.mgrid[0:480, 0:640]
    image = np.stack([(xx * 0.37) % 256, (yy * 0.53) % 256, (xx + yy) * 0.19 % 256], axis=-1)
    image += rng.integers(0, 40, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def _digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def test_test_time_resize_keeps_opencv4_numerics() -> None:
    sizes = compute_test_sizes(640, 480, 512, (1.0,))
    assert _digest(resize_align(_photo(), sizes, 0)) == TEST_RESIZE_SHA256, cv2.__version__


def test_rotated_training_warp_keeps_opencv4_numerics() -> None:
    matrix = get_affine_transform(np.array([320.0, 240.0]), np.array([3.1, 3.1]), 23.0,
                                  (512, 512))
    warped = cv2.warpAffine(_photo(), matrix, (512, 512), flags=cv2.INTER_LINEAR)
    assert _digest(warped) == ROTATED_WARP_SHA256, cv2.__version__
