"""Generated inputs: random network inputs, a crowd's maps, crowd scenes.

Legend: B batch, S square input side, K keypoints, P people, L tag dims.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from aepose.apps.bench.job import Job
from aepose.errors import AeposeError
from aepose.synth import SceneParams, render_scene, sample_scene

__all__ = ["CROWD_SCENES", "crowd_images", "crowd_maps", "random_images"]

CROWD_SCENES = SceneParams(people=(8, 20), people_skew=1.0)  # e2e images: crowds, not singles


def random_images(job: Job) -> Tensor:
    """Random normal input [B, 3, S, S] on the device (channels_last if asked)."""
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(job.batch, 3, job.input_size, job.input_size, generator=generator)
    images = images.to(job.device)
    if job.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images


def crowd_maps(
    num_people: int,
    size: int,
    num_joints: int = 14,
    *,
    seed: int = 0,
    stride: int = 4,
    tag_dims: int = 2,
    sigma: float = 2.0,
) -> tuple[Tensor, Tensor]:
    """Heatmaps [K, S, S] and tags [K, S, S, L] of ``num_people`` well-separated people.

    Drawn at the network resolution n = S / ``stride`` and resized to S bilinearly
    (align_corners False), as the test pipeline resizes network outputs to the input size.
    Person p gets its own cell of a ceil(sqrt P) x ceil(sqrt P) grid and K joints within
    +-0.3 cell of its centre, drawn as Gaussians (``sigma``, peak in [0.3, 1]) merged by
    max, plus uniform noise in [0, 0.02) where the maps are below 0.01. Joint 0 is always
    visible, the others with probability 0.85 (so refine has joints to fill). Tags: each
    person a distinct value 1.5 apart; the tag map of joint k holds, per pixel, the tag of
    the person strongest there plus N(0, 0.05) noise, drawn again for each of the L dims.

    Decoding with the default thresholds and a joint order starting at 0 (every preset's)
    finds exactly P people: all groups open at joint 0. (A person first seen at a later
    joint must take a wrong group in the reference's assignment, whose rounded tag costs
    often tie, and the grouping can then split people.)
    """
    if num_people < 1 or size < stride or size % stride:
        raise AeposeError(f"crowd_maps needs >= 1 person and a size divisible by {stride}; "
                          f"got {num_people} people at {size}")
    rng = np.random.default_rng(seed)
    n, grid = size // stride, math.ceil(math.sqrt(num_people))
    cell = n / grid
    slot = rng.permutation(grid * grid)[:num_people]
    centre = np.stack([slot % grid + 0.5, slot // grid + 0.5], axis=1) * cell  # [P, 2] x, y
    joints = centre[:, None] + rng.uniform(-0.3 * cell, 0.3 * cell, (num_people, num_joints, 2))
    peaks = rng.uniform(0.3, 1.0, (num_people, num_joints))
    peaks[:, 1:] *= rng.random((num_people, num_joints - 1)) < 0.85
    axis = np.arange(n, dtype=np.float64)
    gauss_x = np.exp(-((axis - joints[..., :1]) ** 2) / (2 * sigma**2))  # [P, K, n]
    gauss_y = np.exp(-((axis - joints[..., 1:]) ** 2) / (2 * sigma**2))
    heat = peaks[..., None, None] * gauss_y[..., :, None] * gauss_x[..., None, :]  # [P,K,n,n]
    owner = heat.argmax(axis=0)  # [K, n, n]
    person_tags = rng.permutation(num_people) * 1.5 - num_people * 0.75
    tags = np.stack([person_tags[owner] + rng.normal(0, 0.05, owner.shape)
                     for _ in range(tag_dims)], axis=-1)
    heatmaps = heat.max(axis=0)
    # Noise on a flat peak can split it into two maxima; keep it to the background.
    heatmaps += rng.uniform(0, 0.02, owner.shape) * (heatmaps < 0.01)
    h = torch.from_numpy(heatmaps.astype(np.float32))[None]
    t = torch.from_numpy(tags.astype(np.float32)).permute(3, 0, 1, 2)
    h = F.interpolate(h, (size, size), mode="bilinear", align_corners=False)[0]
    t = F.interpolate(t, (size, size), mode="bilinear", align_corners=False).permute(1, 2, 3, 0)
    return h.contiguous(), t.contiguous()


def crowd_images(count: int, size: tuple[int, int], seed: int = 0) -> list[np.ndarray]:
    """``count`` generated crowd scenes (8-20 people), RGB uint8 [H, W, 3], (W, H) = size."""
    rng = np.random.default_rng(seed)
    width, height = size
    scenes = [render_scene(sample_scene(rng, width, height, CROWD_SCENES)) for _ in range(count)]
    return [np.ascontiguousarray(s.image[..., ::-1]) for s in scenes]  # BGR -> RGB
