"""How alike a track's predicted pose and a detection are: OKS mixed with box IoU.

Boxes are keypoint extents over the valid keypoints (as mmpose derives boxes for bottom-up
results). Shapes: T poses on one side (the tracks), P on the other (the detections),
K keypoints; boxes are x0, y0, x1, y1 in image pixels.
"""

from __future__ import annotations

import numpy as np

from aepose.oks import pairwise_oks

# Keeps the IoU of two empty boxes (poses without valid keypoints) at 0 instead of 0 / 0.
_EPS = float(np.spacing(1))


def keypoint_boxes(xy: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Boxes around the valid keypoints.

    Args:
        xy: [N, K, 2]; valid: [N, K] bool.

    Returns:
        [N, 4] x0, y0, x1, y1 (all zeros for a pose without valid keypoints).
    """
    any_valid = valid.any(axis=1, keepdims=True)
    big = np.where(valid[..., None], xy, np.inf).min(axis=1)
    small = np.where(valid[..., None], xy, -np.inf).max(axis=1)
    return np.where(any_valid, np.concatenate([big, small], axis=1), 0.0)


def box_areas(boxes: np.ndarray) -> np.ndarray:
    """[N] areas of [N, 4] boxes."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in a [T, 4] with every box in b [P, 4] (x0, y0, x1, y1) -> [T, P]."""
    low = np.maximum(a[:, None, :2], b[None, :, :2])
    high = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(high - low, 0, None).prod(axis=-1)
    return inter / (box_areas(a)[:, None] + box_areas(b)[None] - inter + _EPS)


def pose_similarity(
    xy_a: np.ndarray,
    valid_a: np.ndarray,
    xy_b: np.ndarray,
    valid_b: np.ndarray,
    sigmas: np.ndarray,
    oks_weight: float,
) -> np.ndarray:
    """``oks_weight * OKS + (1 - oks_weight) * box IoU`` of every pose in a with every pose
    in b.

    Args:
        xy_a: [T, K, 2], valid_a: [T, K] bool; xy_b: [P, K, 2], valid_b: [P, K] bool.
        sigmas: [K] OKS sigmas.
        oks_weight: in [0, 1].

    Returns:
        [T, P] in [0, 1]. The OKS counts the keypoints valid in both poses (0 if none is)
        and takes each pose's area from its valid-keypoint box, as the pose NMS takes it
        from all keypoints.
    """
    box_a, box_b = keypoint_boxes(xy_a, valid_a), keypoint_boxes(xy_b, valid_b)
    oks = pairwise_oks(xy_a, xy_b, sigmas, box_areas(box_a), box_areas(box_b), valid_a, valid_b)
    return oks_weight * oks + (1 - oks_weight) * box_iou(box_a, box_b)


def paired_similarity(
    xy_a: np.ndarray,
    valid_a: np.ndarray,
    xy_b: np.ndarray,
    valid_b: np.ndarray,
    sigmas: np.ndarray,
    oks_weight: float,
) -> np.ndarray:
    """:func:`pose_similarity` of the poses of a with those of b taken in pairs (row n of a
    with row n of b), not every pose with every other.

    Args:
        xy_a, xy_b: [N, K, 2]; valid_a, valid_b: [N, K] bool; sigmas: [K]; oks_weight: in
        [0, 1].

    Returns:
        [N] in [0, 1], each value as ``pose_similarity`` gives it for that pair.
    """
    box_a, box_b = keypoint_boxes(xy_a, valid_a), keypoint_boxes(xy_b, valid_b)
    variances = (np.asarray(sigmas, dtype=np.float64) * 2) ** 2
    mean_area = (box_areas(box_a) + box_areas(box_b)) / 2 + _EPS  # [N]
    e = ((xy_a - xy_b) ** 2).sum(axis=-1) / variances / mean_area[:, None] / 2  # [N, K]
    both = valid_a & valid_b
    oks = (np.exp(-e) * both).sum(axis=1) / np.maximum(both.sum(axis=1), 1)
    low, high = np.maximum(box_a[:, :2], box_b[:, :2]), np.minimum(box_a[:, 2:], box_b[:, 2:])
    inter = np.clip(high - low, 0, None).prod(axis=-1)
    iou = inter / (box_areas(box_a) + box_areas(box_b) - inter + _EPS)
    return np.asarray(oks_weight * oks + (1 - oks_weight) * iou)
