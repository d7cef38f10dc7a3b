"""Pose NMS: mmpose 0.x's demo drops poses that repeat a better-scored one (reference §4.8).

Legend: P poses, K keypoints.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from aepose.oks import pairwise_oks

DEMO_OKS_THRESHOLD = 0.9
"""The OKS threshold of mmpose's demo pose NMS (``inference_bottom_up_pose_model``)."""


def oks_nms(
    keypoints: np.ndarray, scores: np.ndarray, sigmas: Sequence[float], threshold: float
) -> np.ndarray:
    """Indices of the poses kept by greedy OKS NMS, as mmpose 0.x's ``oks_nms``.

    Args:
        keypoints: [P, K, >=3] x, y (image pixels), value; only x and y enter the OKS.
        scores: [P] person scores; the highest-scored remaining pose is kept first.
        sigmas: K OKS sigmas of the dataset (variances (2 sigma)^2).
        threshold: a pose is dropped when its OKS with a kept pose is > this.

    Every pose's area is its keypoint extent (max x - min x) * (max y - min y), over all K
    keypoints; the OKS of two poses uses the mean of their areas. Returns int64 indices in
    the order kept (descending score; equal scores: later index first, as mmpose's
    reversed argsort).
    """
    # mmpose computes in float32 points and areas, as here.
    points = np.asarray(keypoints, dtype=np.float32)[:, :, :2]
    if len(points) == 0:
        return np.zeros(0, dtype=np.int64)
    extent = points.max(axis=1) - points.min(axis=1)
    areas = extent[:, 0] * extent[:, 1]
    # mmpose stores the OKS in a float32 array before comparing it with the threshold.
    oks = pairwise_oks(points, points, sigmas, areas, areas).astype(np.float32)
    order = np.argsort(np.asarray(scores), kind="stable")[::-1]
    keep = []
    while len(order):
        best, rest = order[0], order[1:]
        keep.append(best)
        order = rest[oks[best, rest] <= threshold]
    return np.asarray(keep, dtype=np.int64)
