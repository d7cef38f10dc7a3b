"""A straightforward, loop-based port of mmpose 0.x ``HeatmapParser.parse`` and test maps.

This module serves two jobs and is deliberately slow and literal:

* :func:`reference_decode` is the test oracle for :func:`aepose.codec.decode.decode_poses`
  (``tests/test_grouping.py`` imports it) and the baseline of ``decode_speed.py``. It is
  written from reference.md §4.5: torch max-pool NMS and ``torch.topk``, then NumPy with one
  Python loop per joint calling ``munkres.Munkres().compute`` (the reference's solver), a
  loop per detected joint for adjust and a loop per person for refine. NumPy dtypes follow
  the reference's (float64 candidate rows, float32 tags and groups) because they decide the
  rounding of the costs.
* :func:`synthetic_maps` builds realistic heatmaps and tag maps (Gaussian blobs per person,
  per-person tags with noise, a second "flipped" tag dimension).

Legend: K keypoints, H x W map, L tag dims, P people. Coordinates are map pixels.
"""

from __future__ import annotations

import numpy as np
import torch
from munkres import Munkres

COCO_ORDER = (0, 1, 2, 3, 4, 5, 6, 11, 12, 7, 8, 9, 10, 13, 14, 15, 16)


def _top_k(
    heatmaps: torch.Tensor, tags: torch.Tensor, max_people: int, nms_kernel: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """NMS and per-joint top-k of one image, batched as the reference does ([1, K, ...]).

    Returns tag_k [K, M, L] float32, loc_k [K, M, 2] int64 (x, y), val_k [K, M] float32.
    """
    h, t = heatmaps[None], tags[None]
    pool = torch.nn.MaxPool2d(nms_kernel, 1, (nms_kernel - 1) // 2)
    nms = h * torch.eq(pool(h), h).float()
    n, k, height, width = nms.shape
    val_k, ind = nms.view(n, k, -1).topk(max_people, dim=2)
    t = t.view(n, k, width * height, -1)
    tag_k = torch.stack([torch.gather(t[..., i], 2, ind) for i in range(t.size(3))], dim=3)
    loc_k = torch.stack((ind % width, ind // width), dim=3)
    return tag_k[0].numpy(), loc_k[0].numpy(), val_k[0].numpy()


def _match_by_tag(
    tag_k: np.ndarray,
    loc_k: np.ndarray,
    val_k: np.ndarray,
    order: list[int],
    detection_threshold: float,
    tag_threshold: float,
) -> np.ndarray:
    """Greedy joint-by-joint grouping with Munkres; returns [P, K, 3 + L] float32."""
    num_joints = tag_k.shape[0]
    default = np.zeros((num_joints, 3 + tag_k.shape[2]), dtype=np.float32)
    joint_dict: dict[float, np.ndarray] = {}
    tag_dict: dict[float, list[np.ndarray]] = {}
    for i, idx in enumerate(order):
        joints = np.concatenate((loc_k[idx], val_k[idx, :, None], tag_k[idx]), 1)
        mask = joints[:, 2] > detection_threshold
        tags, joints = tag_k[idx][mask], joints[mask]
        if joints.shape[0] == 0:
            continue
        if i == 0 or len(joint_dict) == 0:
            for tag, joint in zip(tags, joints, strict=True):
                joint_dict.setdefault(tag[0], np.copy(default))[idx] = joint
                tag_dict[tag[0]] = [tag]
            continue
        keys = list(joint_dict.keys())
        means = np.array([np.mean(tag_dict[key], axis=0) for key in keys])
        dist = np.linalg.norm(joints[:, None, 3:] - means[None, :, :], ord=2, axis=2)
        cost = np.round(dist) * 100 - joints[:, 2:3]
        num_added, num_grouped = dist.shape
        if num_added > num_grouped:
            pad = np.zeros((num_added, num_added - num_grouped), dtype=np.float32) + 1e10
            cost = np.concatenate((cost, pad), axis=1)
        pairs = np.array(Munkres().compute(cost)).astype(int)
        for row, col in pairs:
            if row < num_added and col < num_grouped and dist[row][col] < tag_threshold:
                key = keys[col]
                joint_dict[key][idx] = joints[row]
                tag_dict[key].append(tags[row])
            else:
                key = tags[row][0]
                joint_dict.setdefault(key, np.copy(default))[idx] = joints[row]
                tag_dict[key] = [tags[row]]
    if not joint_dict:
        return np.zeros((0, num_joints, 3 + tag_k.shape[2]), dtype=np.float32)
    return np.array([joint_dict[key] for key in joint_dict]).astype(np.float32)


def _adjust(poses: np.ndarray, heatmaps: torch.Tensor) -> None:
    """Quarter-pixel shift towards the higher neighbour, then +0.5, in place."""
    _, height, width = heatmaps.shape
    for person in poses:
        for joint_id, joint in enumerate(person):
            if joint[2] > 0:
                x, y = joint[0:2]
                xx, yy = int(x), int(y)
                tmp = heatmaps[joint_id]
                y += 0.25 if tmp[min(height - 1, yy + 1), xx] > tmp[max(0, yy - 1), xx] else -0.25
                x += 0.25 if tmp[yy, min(width - 1, xx + 1)] > tmp[yy, max(0, xx - 1)] else -0.25
                person[joint_id, 0:2] = (x + 0.5, y + 0.5)


def _refine(heatmap: np.ndarray, tag: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
    """Fill the undetected joints of one person [K, 3 + L] from heatmap [K, H, W] and
    tag [K, H, W, L]."""
    num_joints, height, width = heatmap.shape
    tags = []
    for i in range(num_joints):
        if keypoints[i, 2] > 0:
            x, y = keypoints[i][:2].astype(int)
            x = max(0, min(x, width - 1))
            y = max(0, min(y, height - 1))
            tags.append(tag[i, y, x])
    prev_tag = np.mean(tags, axis=0)
    found = []
    for _heatmap, _tag in zip(heatmap, tag, strict=True):
        distance_tag = ((_tag - prev_tag[None, None, :]) ** 2).sum(axis=2) ** 0.5
        norm_heatmap = _heatmap - np.round(distance_tag)
        y, x = np.unravel_index(np.argmax(norm_heatmap), _heatmap.shape)
        xx, yy = x.copy(), y.copy()
        val = _heatmap[y, x]
        x = x + 0.5
        y = y + 0.5
        x += 0.25 if _heatmap[yy, min(width - 1, xx + 1)] > _heatmap[yy, max(0, xx - 1)] else -0.25
        y += 0.25 if _heatmap[min(height - 1, yy + 1), xx] > _heatmap[max(0, yy - 1), xx] else -0.25
        found.append((x, y, val))
    ans = np.array(found)
    for i in range(num_joints):
        if ans[i, 2] > 0 and keypoints[i, 2] == 0:
            keypoints[i, :3] = ans[i, :3]
    return keypoints


def reference_decode(
    heatmaps: np.ndarray | torch.Tensor,
    tags: np.ndarray | torch.Tensor,
    *,
    detection_threshold: float = 0.1,
    tag_threshold: float = 1.0,
    max_people: int = 30,
    nms_kernel: int = 5,
    adjust: bool = True,
    refine: bool = True,
    joint_order: list[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """HeatmapParser.parse for one image, literally: heatmaps [K, H, W], tags [K, H, W, L]
    -> poses [P, K, 3 + L] float32 (x, y, value, tags) and scores [P] float32."""
    h = torch.as_tensor(heatmaps)
    t = torch.as_tensor(tags)
    num_joints = h.shape[0]
    if joint_order is None:
        joint_order = list(COCO_ORDER) if num_joints == 17 else list(range(num_joints))
    tag_k, loc_k, val_k = _top_k(h, t, max_people, nms_kernel)
    poses = _match_by_tag(tag_k, loc_k, val_k, joint_order, detection_threshold, tag_threshold)
    if adjust:
        _adjust(poses, h)
    scores = np.array([person[:, 2].mean() for person in poses], dtype=np.float32)
    if refine:
        heatmap_numpy, tag_numpy = h.numpy(), t.numpy()
        for i in range(len(poses)):
            poses[i] = _refine(heatmap_numpy, tag_numpy, poses[i])
    return poses, scores


def synthetic_maps(
    rng: np.random.Generator,
    num_people: int,
    *,
    num_joints: int = 14,
    size: int = 128,
    upsample: int = 1,
    tag_dims: int = 2,
    sigma: float = 2.0,
    tag_noise: float = 0.05,
    background: float = 0.02,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Heatmaps [K, S, S] and tags [K, S, S, L] of ``num_people`` generated people
    (S = size * upsample).

    Each person gets a body centre and K joints within +-size/8 of it, each visible with
    probability 0.85, drawn as a Gaussian blob (peak in [0.3, 1], ``sigma``) merged by max,
    over uniform background noise in [0, ``background``). Every person has a tag value;
    the tag map of joint k holds, at each pixel, the tag of the person whose blob is
    strongest there (plus Gaussian noise of ``tag_noise``), and the flipped dimension
    repeats it with independent noise. ``upsample`` > 1 resizes both bilinearly as the
    reference does before decoding (align_corners False).
    """
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    heat = np.zeros((num_people, num_joints, size, size), dtype=np.float32)
    margin = size / 8
    centres = rng.uniform(margin, size - margin, size=(num_people, 2))
    for p in range(num_people):
        joints = centres[p] + rng.uniform(-margin, margin, size=(num_joints, 2))
        peaks = rng.uniform(0.3, 1.0, size=num_joints) * (rng.random(num_joints) < 0.85)
        for k in range(num_joints):
            d2 = (xs - joints[k, 0]) ** 2 + (ys - joints[k, 1]) ** 2
            heat[p, k] = peaks[k] * np.exp(-d2 / (2 * sigma**2))
    person_tags = rng.permutation(num_people).astype(np.float32) * 1.5 - num_people * 0.75
    owner = heat.argmax(axis=0)
    tags = np.stack(
        [person_tags[owner] + rng.normal(0, tag_noise, owner.shape) for _ in range(tag_dims)],
        axis=-1,
    ).astype(np.float32)
    heatmaps = heat.max(axis=0) + rng.uniform(0, background, size=heat.shape[1:])
    h = torch.from_numpy(heatmaps.astype(np.float32))
    t = torch.from_numpy(tags)
    if upsample > 1:
        out = size * upsample
        h = torch.nn.functional.interpolate(h[None], (out, out), mode="bilinear")[0]
        t = torch.nn.functional.interpolate(
            t.permute(3, 0, 1, 2), (out, out), mode="bilinear"
        ).permute(1, 2, 3, 0)
    return h.contiguous(), t.contiguous()
