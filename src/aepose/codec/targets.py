"""Training targets of associative embedding: heatmaps and packed per-person joint indices.

Reproduces mmpose 0.x ``HeatmapGenerator`` (non-UDP) and ``JointsEncoder`` exactly
(reference.md §3.6-3.7), vectorised with NumPy.

Legend: P people, K keypoints, M = ``max_people`` rows of the joint-index array, o output
(heatmap) side length. Joint coordinates are heatmap pixel indices of that resolution (the
output of :func:`aepose.data.bottom_up_affine`), x = column, y = row.
"""

from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np
import numpy.typing as npt

__all__ = ["encode_targets", "gaussian_kernel"]


@lru_cache(maxsize=8)
def _kernel(sigma: int) -> npt.NDArray[np.float32]:
    size = 6 * sigma + 3
    centre = 3 * sigma + 1
    # float32 throughout, as the reference computes it (so the values match bit for bit).
    x = np.arange(0, size, 1, dtype=np.float32)
    y = x[:, None]
    g = np.exp(-((x - centre) ** 2 + (y - centre) ** 2) / (2 * sigma**2))
    g.setflags(write=False)
    return g


def gaussian_kernel(sigma: int = 2) -> npt.NDArray[np.float32]:
    """The fixed, unnormalised Gaussian patch pasted at each joint.

    Returns float32 [6*sigma+3, 6*sigma+3] (15 x 15 for sigma 2) with the peak exactly 1.0 at
    index (3*sigma+1, 3*sigma+1). A fresh writable copy.
    """
    return _kernel(_check_sigma(sigma)).copy()


def _check_sigma(sigma: int) -> int:
    # The reference sizes the patch 6*sigma+3 and places it with round(): only integer sigmas
    # give a patch whose size equals the pasted window (other values crash there).
    if isinstance(sigma, bool) or int(sigma) != sigma or sigma < 1:
        raise ValueError(f"sigma must be a positive integer, got {sigma!r}")
    return int(sigma)


def encode_targets(
    joints: npt.ArrayLike,
    output_size: int,
    sigma: int = 2,
    max_people: int = 30,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int32]]:
    """Heatmap and associative-embedding targets for one image at one resolution.

    Args:
        joints: float [P, K, 3] (x, y, visibility) in heatmap pixel indices of this
            resolution. A joint is labelled when visibility > 0 (1 occluded and 2 visible are
            treated alike).
        output_size: o, the side of the square heatmap.
        sigma: Gaussian sigma in heatmap pixels (integer; the reference uses 2 at every
            resolution).
        max_people: M, rows of the joint-index array.

    Returns:
        heatmaps: float32 [K, o, o]. For each labelled joint with integer position
            (int(x), int(y)) (truncation toward zero, so x in (-1, 0) counts as column 0)
            inside the map, the unnormalised Gaussian of :func:`gaussian_kernel` is pasted
            with its peak at that pixel, merged with element-wise maximum.
        joint_indices: int32 [M, K, 2]. Row i is person i; its in-map labelled joints are
            PACKED into the first slots in joint order as (k*o*o + y*o + x, 1); the rest is 0.

    More than ``max_people`` people: the first ``max_people`` keep their joint-index rows,
    the rest are dropped from the associative-embedding target only (a warning says how
    many). Every person still contributes to the heatmaps, so no detectable joint becomes a
    false negative of the heatmap loss. The reference has no such cap: it crashes.
    """
    sigma = _check_sigma(sigma)
    o = int(output_size)
    arr = np.asarray(joints)
    if arr.ndim != 3 or arr.shape[2] < 3:
        raise ValueError(f"joints must have shape [P, K, 3], got {arr.shape}")
    num_people, num_joints = arr.shape[0], arr.shape[1]
    xs, ys, vis = arr[:, :, 0], arr[:, :, 1], arr[:, :, 2]

    labelled = vis > 0
    bad = labelled & ~(np.isfinite(xs) & np.isfinite(ys))
    if bad.any():
        p, k = (int(v) for v in np.argwhere(bad)[0])
        raise ValueError(f"person {p} joint {k}: labelled joint has a non-finite coordinate")

    # int(v) lies in [0, o) exactly when -1 < v < o; testing the float first avoids
    # converting far-away (possibly huge) coordinates to integers at all.
    inside = labelled & (xs > -1) & (xs < o) & (ys > -1) & (ys < o)
    p_idx, k_idx = np.nonzero(inside)  # row-major: person, then joint order
    ix = np.trunc(xs[p_idx, k_idx]).astype(np.int64)
    iy = np.trunc(ys[p_idx, k_idx]).astype(np.int64)

    heatmaps = _paste_gaussians(k_idx, iy, ix, num_joints, o, sigma)

    joint_indices = np.zeros((max_people, num_joints, 2), dtype=np.int32)
    if num_people > max_people:
        warnings.warn(
            f"{num_people} people in one image but max_people is {max_people}: "
            f"{num_people - max_people} dropped from the associative-embedding target",
            stacklevel=2,
        )
    keep = p_idx < max_people
    p_k, k_k, ix_k, iy_k = p_idx[keep], k_idx[keep], ix[keep], iy[keep]
    # Slot = how many earlier in-map joints the same person has (packing in joint order).
    slot = np.cumsum(inside[:max_people], axis=1)[p_k, k_k] - 1
    joint_indices[p_k, slot, 0] = k_k * o * o + iy_k * o + ix_k
    joint_indices[p_k, slot, 1] = 1
    return heatmaps, joint_indices


def _paste_gaussians(
    k_idx: npt.NDArray[np.intp],
    iy: npt.NDArray[np.int64],
    ix: npt.NDArray[np.int64],
    num_joints: int,
    o: int,
    sigma: int,
) -> npt.NDArray[np.float32]:
    """Max-merge one kernel per joint, centred on (iy, ix) of channel k, clipped to the map."""
    g = _kernel(sigma)
    radius = 3 * sigma + 1  # kernel covers [c - radius, c + radius + 1)
    offsets = np.arange(-radius, radius + 1)
    rows = iy[:, None, None] + offsets[None, :, None]  # [N, S, 1]
    cols = ix[:, None, None] + offsets[None, None, :]  # [N, 1, S]
    valid = (rows >= 0) & (rows < o) & (cols >= 0) & (cols < o)  # [N, S, S]
    flat = (k_idx[:, None, None] * o + rows) * o + cols
    values = np.broadcast_to(g, valid.shape)
    heatmaps = np.zeros(num_joints * o * o, dtype=np.float32)
    # maximum is order-independent, so the unbuffered scatter equals the reference's loop.
    np.maximum.at(heatmaps, flat[valid], values[valid])
    return heatmaps.reshape(num_joints, o, o)
