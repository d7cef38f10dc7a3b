"""Refine: fill each grouped person's missing joints from the maps, as the reference does.

The reference runs an argmax over the whole map for every person and missing joint; here
all (person, joint) pairs go at once to the branch and bound of
:mod:`aepose.codec.tile_search`, which finds the same pixels, and the result is moved and
read with the reference's float32 and float64 operations.

Legend: K keypoints, H x W map, L tag dims, P people, Q (person, joint) pairs to refine.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from aepose.codec.candidates import quarter_steps
from aepose.codec.tile_search import refine_argmax


def refine_poses(heatmaps: Tensor, tags: Tensor, poses: np.ndarray, seeds: np.ndarray) -> None:
    """The reference's refine for all people at once, in place on poses [P, K, 3 + L].

    For each person, p = mean tag of its joints with value > 0 (the reference reads the
    tag map at the integer part of their coordinates, which is where the stored tags were
    gathered). Each joint with value == 0 then takes the first (row-major) argmax of
    heatmap[k] - round(||tags[k] - p||), moved by +0.5 and +-0.25 towards the higher
    neighbour, if the heatmap there is > 0; its tag columns stay 0.

    seeds [K, S]: flat pixel indices per joint where the search starts (any pixels; the
    detection candidates are good ones); they change the speed, never the result.
    """
    detected = poses[:, :, 2] > 0
    # A person without a joint > 0 (only possible below a zero threshold) has no tag.
    has_tag = np.asarray(detected.any(axis=1))
    person, joint = np.nonzero((poses[:, :, 2] == 0) & has_tag[:, None])
    if person.size == 0:
        return
    device = heatmaps.device
    person_tags = _person_tags(poses[has_tag], detected[has_tag])
    tag_row = np.cumsum(has_tag) - 1
    pair_tags = torch.from_numpy(person_tags[tag_row[person]]).to(device)
    pair_joint = torch.from_numpy(joint).to(device)
    seed = torch.from_numpy(seeds).to(device)
    flat = refine_argmax(heatmaps, tags, pair_joint, pair_tags, seed)
    x, y, val = _refined_points(heatmaps, pair_joint, flat)
    fill = val > 0
    poses[person[fill], joint[fill], 0] = x[fill]
    poses[person[fill], joint[fill], 1] = y[fill]
    poses[person[fill], joint[fill], 2] = val[fill]


def _person_tags(poses: np.ndarray, detected: np.ndarray) -> np.ndarray:
    """[P, L] float32: each person's mean tag over its detected joints in joint order,
    bit-equal to the reference's np.mean(list_of_tags, axis=0)."""
    tag = poses[:, :, 3:]
    if tag.shape[2] == 1:
        # NumPy sums an [n, 1] stack pairwise; reproduce it by calling it.
        return np.array([np.mean(t[d], axis=0) for t, d in zip(tag, detected, strict=True)])
    # For L >= 2 NumPy adds the rows in order; -0.0 is the neutral start of that sum.
    total = np.full((len(poses), tag.shape[2]), -0.0, dtype=np.float32)
    for k in range(tag.shape[1]):
        total = np.where(detected[:, k, None], total + tag[:, k], total)
    return (total / detected.sum(axis=1, keepdims=True).astype(np.float64)).astype(np.float32)


def _refined_points(
    heatmaps: Tensor, joint: Tensor, flat: Tensor
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x, y (pixel + 0.5 +- 0.25 towards the higher neighbour) and heatmap value [Q] at
    the refined flat indices, as float64 on the host (the reference's types)."""
    width = heatmaps.shape[2]
    x, y = flat % width, flat // width
    step_x, step_y = quarter_steps(heatmaps, joint, x, y)
    val = heatmaps.reshape(len(heatmaps), -1)[joint, flat]
    out = torch.stack([x + 0.5 + step_x, y + 0.5 + step_y, val]).double().cpu().numpy()
    return out[0], out[1], out[2]
