"""Object keypoint similarity (OKS): the one formula aepose compares poses with.

The OKS of poses a and b is, over their keypoints k (COCO's, as mmpose 0.x computes it)::

    mean_k exp(-d_k^2 / (2 (2 sigma_k)^2 (s + eps)))

d_k: distance between the two k-th keypoints; sigma_k: the dataset's per-keypoint sigma
(variances (2 sigma)^2); s: the mean of the two poses' areas; eps: ``np.spacing(1)``, so
that two zero-area poses do not divide by 0. The callers choose the areas (the pose NMS
and the tracker: each pose's keypoint extent) and which keypoints count (the tracker:
those valid in both poses).

NumPy only: the codec (pose NMS), the tracker and the benchmarks all import it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# A NumPy float64, not a Python float: added to float32 areas (the pose NMS) it makes the
# mean area float64, as mmpose's does.
_EPS = np.spacing(1)


def pairwise_oks(
    xy_a: np.ndarray,
    xy_b: np.ndarray,
    sigmas: Sequence[float] | np.ndarray,
    area_a: np.ndarray,
    area_b: np.ndarray,
    valid_a: np.ndarray | None = None,
    valid_b: np.ndarray | None = None,
) -> np.ndarray:
    """OKS of every pose in a with every pose in b.

    Args:
        xy_a: [A, K, 2] keypoints; xy_b: [B, K, 2]. Computed in their dtype: float32
            points give float32 distances, as mmpose's pose NMS.
        sigmas: [K] the dataset's OKS sigmas.
        area_a: [A], area_b: [B]: each pose's area (the OKS scale s uses their mean).
        valid_a: [A, K] bool, valid_b: [B, K] bool: the keypoints that count (default
            all); a pair's OKS is the mean over the keypoints valid in both.

    Returns:
        [A, B] float64 in [0, 1]; 0 for a pair sharing no valid keypoint.
    """
    variances = (np.asarray(sigmas, dtype=np.float64) * 2) ** 2  # [K]
    squared = ((xy_a[:, None] - xy_b[None]) ** 2).sum(axis=-1)  # [A, B, K]
    mean_area = (area_a[:, None] + area_b[None]) / 2 + _EPS  # [A, B]
    e = squared / variances / mean_area[..., None] / 2
    k = xy_a.shape[1]
    both = (np.ones((len(xy_a), k), bool) if valid_a is None else valid_a)[:, None] & (
        np.ones((len(xy_b), k), bool) if valid_b is None else valid_b)[None]  # [A, B, K]
    # Masked-out terms are multiplied by 0 (not dropped): with every keypoint valid the sum
    # and count are those of a plain mean, bit for bit.
    return (np.exp(-e) * both).sum(axis=-1) / np.maximum(both.sum(axis=-1), 1)
