"""Decoding one image's heatmaps and tag maps into poses, exactly as mmpose 0.x does.

:func:`decode_poses` equals ``HeatmapParser.parse(heatmaps, tags, adjust=True,
refine=True)`` of mmpose v0.29 bit for bit (reference.md §4.5, traps 15-20, §10), including
the tie-breaking of its Munkres solver, but is fast. This module drives the steps and
turns their result into arrays; each step is its own module:

* :mod:`aepose.codec.candidates`: NMS, top-k, tag gathering and the adjust comparisons,
  in torch on the tensor's device, vectorised over joints (one transfer of [K, M]
  candidates to the host).
* :mod:`aepose.codec.matching`: matching by tag in the reference's joint-by-joint order,
  with group tag means kept as running sums.
* :mod:`aepose.codec.munkres`: the assignment solver of each joint's matching: the step
  sequence of ``munkres`` 1.1.4 re-implemented on NumPy arrays (so exact ties break
  identically), or SciPy's solver in ``"fast"`` mode.
* :mod:`aepose.codec.refine`: missing joints filled for all people at once, by the branch
  and bound of :mod:`aepose.codec.tile_search` instead of the reference's full-map argmax
  per person and joint.

Maps holding NaN, infinities or magnitudes beyond :data:`MAX_MAGNITUDE` are refused in one
line (:class:`MapValueError`) before any step: a NaN tag made the Munkres solver loop
forever, and float32 sums of huge values overflowed into infinite scores.

Legend: K keypoints, H x W map, L tag dims (2 with flip test), M = max_people candidates
per joint, P people. Coordinates are map pixels (x = column); at the reference's input
resolution the map is the network input.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from aepose.codec.candidates import Candidates, top_candidates
from aepose.codec.matching import Solver, match_by_tag
from aepose.codec.munkres import munkres_assignment, scipy_assignment
from aepose.codec.refine import refine_poses
from aepose.codec.tile_search import MAX_TAG_DIMS
from aepose.config import TestConfig
from aepose.errors import AeposeError
from aepose.keypoints import COCO, KeypointSpec
from aepose.threads import use_threads

ArrayLike = np.ndarray | Tensor

_SOLVERS: dict[str, Solver] = {"exact": munkres_assignment, "fast": scipy_assignment}

MAX_MAGNITUDE = 1e18
"""Largest absolute heatmap or tag value the decoder takes. Networks give values within a
few hundred; below 1e18 every float32 step of decoding stays finite (squared tag
differences summed over L <= 7 dimensions stay under 3e37, sums over K joints under
3.4e38 for any K below 3e20), so that no score or tag mean overflows."""


class MapValueError(AeposeError):
    """Maps the decoder refuses: ``maps`` (``"heatmaps"`` or ``"tags"``) ``problem`` (e.g.
    ``"hold NaN or infinite values"``), kept apart so that callers can say where the maps
    came from."""

    def __init__(self, maps: str, problem: str) -> None:
        super().__init__(f"decode_poses: {maps} {problem}")
        self.maps = maps
        self.problem = problem

    def __reduce__(self) -> tuple[type[MapValueError], tuple[str, str]]:
        # Rebuilt from both parts when it crosses from a decode worker process.
        return MapValueError, (self.maps, self.problem)


@dataclass(frozen=True)
class Decoder:
    """The grouping settings bound once, like a codec: ``decoder(heatmaps, tags)`` is
    :func:`decode_poses` with these settings (see it for the arguments and results).

    Build it from a preset's test settings with :meth:`from_config`; it is picklable, so
    decoding can run in worker processes. The thresholds, ``max_people`` and ``nms_kernel``
    are checked by :class:`~aepose.config.TestConfig`'s rules (NumPy numbers are taken as
    the Python numbers they equal), so the Python API refuses what the command line does.
    """

    detection_threshold: float = 0.1
    tag_threshold: float = 1.0
    max_people: int = 30
    nms_kernel: int = 5
    adjust: bool = True
    refine: bool = True
    joint_order: tuple[int, ...] | None = None
    mode: str = "exact"

    def __post_init__(self) -> None:
        if self.mode not in _SOLVERS:
            raise AeposeError(f"unknown decode mode {self.mode!r} "
                              f"(choices: {', '.join(_SOLVERS)})")
        for name in ("detection_threshold", "tag_threshold", "max_people", "nms_kernel"):
            value = getattr(self, name)
            if isinstance(value, np.generic):
                object.__setattr__(self, name, value.item())
        # The one rule for these settings: TestConfig's (it raises the AeposeError).
        TestConfig(detection_threshold=self.detection_threshold,
                   tag_threshold=self.tag_threshold, max_people=self.max_people,
                   nms_kernel=self.nms_kernel)

    @classmethod
    def from_config(cls, test: TestConfig, spec: KeypointSpec, mode: str = "exact") -> Decoder:
        """The decoder of ``test``'s thresholds with ``spec``'s grouping order."""
        return cls(
            detection_threshold=test.detection_threshold, tag_threshold=test.tag_threshold,
            max_people=test.max_people, nms_kernel=test.nms_kernel, adjust=test.adjust,
            refine=test.refine, joint_order=tuple(spec.grouping_order), mode=mode,
        )

    def __call__(self, heatmaps: ArrayLike, tags: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """poses [P, K, 3 + L] and scores [P] of heatmaps [K, H, W], tags [K, H, W, L]."""
        h, t = _as_maps(heatmaps, tags)
        order = _joint_order(h.shape[0], self.joint_order)
        if h.numel() == 0:  # no joint or no pixel: nobody to find
            return np.zeros((0, h.shape[0], 3 + t.shape[3]), np.float32), np.zeros(0, np.float32)
        _check_magnitudes("heatmaps", h)
        _check_magnitudes("tags", t)
        cand = top_candidates(h, t, min(self.max_people, h.shape[1] * h.shape[2]),
                              self.nms_kernel)
        slots = match_by_tag(cand.val, cand.tags, order, self.detection_threshold,
                             self.tag_threshold, _SOLVERS[self.mode])
        poses = _assemble(cand, slots, self.adjust)
        scores = poses[:, :, 2].mean(axis=1)
        if self.refine and len(poses):
            refine_poses(h, t, poses, cand.y * h.shape[2] + cand.x)
        return poses, scores.astype(np.float32)


def decode_poses(
    heatmaps: ArrayLike,
    tags: ArrayLike,
    *,
    detection_threshold: float = 0.1,
    tag_threshold: float = 1.0,
    max_people: int = 30,
    nms_kernel: int = 5,
    adjust: bool = True,
    refine: bool = True,
    joint_order: Sequence[int] | None = None,
    mode: str = "exact",
) -> tuple[np.ndarray, np.ndarray]:
    """Group one image's detections into people (reference HeatmapParser.parse).

    Args:
        heatmaps: [K, H, W] float32 (torch tensor on any device, or NumPy), un-suppressed.
        tags: [K, H, W, L] float32 on the same device.
        detection_threshold: candidates need value > this (compared in float64).
        tag_threshold: a candidate joins a group only if its tag distance is < this.
        max_people: M, candidates per joint (torch.topk of the NMS'd map).
        nms_kernel: odd max-pool window of the NMS.
        adjust: move detected joints a quarter pixel towards the higher neighbour, +0.5.
        refine: fill each person's missing joints from the maps.
        joint_order: order in which joints are matched; default 0..K-1, or mmpose's COCO
            order when K == 17.
        mode: ``"exact"`` (Munkres 1.1.4 tie-breaking, identical to the reference) or
            ``"fast"`` (SciPy's assignment solver: the same result unless the assignment
            has exact cost ties, where the chosen optimum may differ).

    Returns:
        poses [P, K, 3 + L] float32 (x, y, value, tag_1..tag_L) in map pixels, people in
        the reference's group order, missing joints all zero (refined joints have zero
        tags); scores [P] float32, the mean value over all K joints before refine. Maps
        without a pixel or a joint (K, H or W 0) give P = 0.

    Raises:
        AeposeError: for maps of the wrong shapes, settings out of range (those of
            :class:`~aepose.config.TestConfig`, e.g. ``tag_threshold=nan``), and, as
            :class:`MapValueError`, maps holding NaN, infinities or magnitudes beyond
            :data:`MAX_MAGNITUDE`.
    """
    use_threads()  # the API's decoding, like the pipeline's, on aepose's threads
    decoder = Decoder(
        detection_threshold=detection_threshold, tag_threshold=tag_threshold,
        max_people=max_people, nms_kernel=nms_kernel, adjust=adjust, refine=refine,
        joint_order=None if joint_order is None else tuple(joint_order), mode=mode,
    )
    return decoder(heatmaps, tags)


def _as_maps(heatmaps: ArrayLike, tags: ArrayLike) -> tuple[Tensor, Tensor]:
    """Validate shapes and return float32 tensors [K, H, W] and [K, H, W, L]."""
    # Detached: decoding needs no gradient, and callers may pass maps that carry one.
    h = torch.as_tensor(heatmaps).detach().float()
    t = torch.as_tensor(tags).detach().float()
    if h.dim() != 3 or t.dim() != 4 or t.shape[:3] != h.shape:
        raise AeposeError(
            f"decode_poses needs heatmaps [K, H, W] and tags [K, H, W, L]; got "
            f"{tuple(h.shape)} and {tuple(t.shape)}"
        )
    if not 1 <= t.shape[3] <= MAX_TAG_DIMS:
        raise AeposeError(f"tags need 1 to {MAX_TAG_DIMS} dimensions, got {t.shape[3]}")
    return h.contiguous(), t.to(h.device).contiguous()


def _check_magnitudes(maps: str, values: Tensor) -> None:
    """Raise MapValueError unless every value is within +-MAX_MAGNITUDE (NaN never is).

    One min-max pass, bound by memory bandwidth: about 2 ms of CPU for the 44 MB of a
    512 x 512 crowd's maps (14 joints, L = 2), 3 to 5 % of decoding them."""
    low, high = torch.stack(torch.aminmax(values)).tolist()
    if low >= -MAX_MAGNITUDE and high <= MAX_MAGNITUDE:
        return
    if not (math.isfinite(low) and math.isfinite(high)):
        raise MapValueError(maps, "hold NaN or infinite values")
    extreme = low if -low > high else high
    raise MapValueError(maps, f"hold a value of {extreme:.3g}; the decoder takes "
                              f"magnitudes up to {MAX_MAGNITUDE:g}")


def _joint_order(num_joints: int, joint_order: Sequence[int] | None) -> list[int]:
    """The visiting order: given, mmpose's COCO order for K == 17, else 0..K-1."""
    if joint_order is None:
        return list(COCO.grouping_order) if num_joints == 17 else list(range(num_joints))
    order = [int(k) for k in joint_order]
    if sorted(order) != list(range(num_joints)):
        raise AeposeError(f"joint_order must be a permutation of 0..{num_joints - 1}")
    return order


def _assemble(cand: Candidates, slots: np.ndarray, adjust: bool) -> np.ndarray:
    """poses [P, K, 3 + L] float32 from the group slots; empty slots stay zero."""
    num_people, num_joints = slots.shape
    poses = np.zeros((num_people, num_joints, 3 + cand.tags.shape[2]), dtype=np.float32)
    person, joint = np.nonzero(slots >= 0)
    rank = slots[person, joint]
    if adjust:
        # The reference adjusts only joints with value > 0 (all of them unless the
        # detection threshold is negative).
        xs = np.where(cand.val > 0, cand.adj_x, cand.x)
        ys = np.where(cand.val > 0, cand.adj_y, cand.y)
    else:
        xs, ys = cand.x, cand.y
    poses[person, joint, 0] = xs[joint, rank]
    poses[person, joint, 1] = ys[joint, rank]
    poses[person, joint, 2] = cand.val[joint, rank]
    poses[person, joint, 3:] = cand.tags[joint, rank]
    return poses
