"""Detection candidates of one image: NMS on the heatmaps, then the top M peaks of every
joint with their tags and adjusted coordinates.

All of it runs in torch on the maps' device, vectorised over joints, so that only the
[K, M] candidates cross to the host (one transfer). :func:`quarter_steps` is also refine's
step towards the higher neighbour.

Legend: K keypoints, H x W map, L tag dims, M = max_people candidates per joint.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


def nms_heatmaps(heatmaps: Tensor, kernel: int = 5) -> Tensor:
    """Heatmaps [K, H, W] with every value that is not the maximum of its kernel x kernel
    window (clipped at the border) set to 0; equal maxima of a plateau all survive.

    Equal to the reference's ``h * (max_pool2d(h, kernel, 1, kernel // 2) == h).float()``
    but computed as a separable running maximum in place, several times faster than
    torch's CPU max-pool.
    """
    window_max = _running_max(_running_max(heatmaps, kernel, 2), kernel, 1)
    return window_max.eq_(heatmaps).mul_(heatmaps)


def _running_max(x: Tensor, kernel: int, dim: int) -> Tensor:
    """Centred running maximum of odd width ``kernel`` along ``dim``, clipped at the border
    (a new tensor; maxima are taken in place to avoid allocating)."""
    size = x.shape[dim]
    out = x.clone()
    for shift in range(1, min(kernel // 2, size - 1) + 1):
        ahead = out.narrow(dim, 0, size - shift)
        torch.maximum(ahead, x.narrow(dim, shift, size - shift), out=ahead)
        behind = out.narrow(dim, shift, size - shift)
        torch.maximum(behind, x.narrow(dim, 0, size - shift), out=behind)
    return out


@dataclass(frozen=True)
class Candidates:
    """The top-M NMS peaks of every joint, on the host.

    val [K, M] float32 (descending per joint, torch.topk order); x, y [K, M] int64 map
    pixels; tags [K, M, L] float32; adj_x, adj_y [K, M] float32: the adjusted coordinates
    (pixel + 0.5 +- 0.25 towards the higher neighbour of the un-suppressed map).
    """

    val: np.ndarray
    x: np.ndarray
    y: np.ndarray
    tags: np.ndarray
    adj_x: np.ndarray
    adj_y: np.ndarray


def top_candidates(heatmaps: Tensor, tags: Tensor, max_people: int, nms_kernel: int) -> Candidates:
    """NMS, per-joint top-k and tag gathering on the maps' device, all joints at once.

    torch.topk runs on the flattened [1, K, H*W] NMS'd map exactly as the reference calls
    it, because its order among equal values decides the grouping (reference §10).
    """
    num_joints, height, width = heatmaps.shape
    nms = nms_heatmaps(heatmaps, nms_kernel)
    val, ind = nms.view(1, num_joints, -1).topk(max_people, dim=2)
    val, ind = val[0], ind[0]
    flat_tags = tags.view(num_joints, height * width, -1)
    tag_k = torch.gather(flat_tags, 1, ind[..., None].expand(-1, -1, flat_tags.shape[2]))
    x, y = ind % width, ind // width
    joint = torch.arange(num_joints, device=heatmaps.device)[:, None]
    step_x, step_y = quarter_steps(heatmaps, joint, x, y)
    adj_x = x.float() + step_x + 0.5
    adj_y = y.float() + step_y + 0.5
    host = [a.cpu().numpy() for a in (val, x, y, tag_k, adj_x, adj_y)]
    return Candidates(*host)


def quarter_steps(heatmaps: Tensor, joint: Tensor, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """+0.25 where the right (lower) neighbour in heatmaps[joint] is higher than the left
    (upper) one, else -0.25 (ties, flat or border, included), as the reference's adjust
    and refine; neighbours are clamped to the map. Float32, shaped like x."""
    _, height, width = heatmaps.shape
    maps = heatmaps.reshape(len(heatmaps), -1)

    def at(yy: Tensor, xx: Tensor) -> Tensor:
        return maps[joint, yy * width + xx]

    right, left = at(y, (x + 1).clamp(max=width - 1)), at(y, (x - 1).clamp(min=0))
    down, up = at((y + 1).clamp(max=height - 1), x), at((y - 1).clamp(min=0), x)
    return torch.where(right > left, 0.25, -0.25), torch.where(down > up, 0.25, -0.25)
