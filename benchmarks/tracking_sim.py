"""The simulated world of ``benchmarks/tracking.py``: ground truth (the stand-in walkers),
detections made from it (:class:`NoiseModel`, :func:`simulate_detections`) and mmpose 0.x's
greedy matcher, the baseline (:class:`GreedyTracker`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from aepose.keypoints import KeypointSpec
from aepose.oks import pairwise_oks

# ---------------------------------------------------------------------------------------
# Stand-in ground truth (same dict format as aepose.synth.video.sequence_truth)

# A standing figure facing the camera, feet at (0, 0), height 1, y down; by joint name so
# every spec (COCO, AIC, CrowdPose) finds its joints.
_TEMPLATE = {
    "nose": (0.0, -0.92), "left_eye": (0.025, -0.94), "right_eye": (-0.025, -0.94),
    "left_ear": (0.05, -0.92), "right_ear": (-0.05, -0.92),
    "head_top": (0.0, -1.0), "top_head": (0.0, -1.0), "neck": (0.0, -0.83),
    "left_shoulder": (0.11, -0.80), "right_shoulder": (-0.11, -0.80),
    "left_elbow": (0.14, -0.62), "right_elbow": (-0.14, -0.62),
    "left_wrist": (0.15, -0.47), "right_wrist": (-0.15, -0.47),
    "left_hip": (0.07, -0.50), "right_hip": (-0.07, -0.50),
    "left_knee": (0.08, -0.27), "right_knee": (-0.08, -0.27),
    "left_ankle": (0.08, -0.03), "right_ankle": (-0.08, -0.03),
}
# Horizontal swing of a walk cycle, in heights (right side opposite in phase).
_SWING = {"knee": 0.06, "ankle": 0.13, "elbow": -0.04, "wrist": -0.08}


def _figure(spec: KeypointSpec, height: float, phase: float) -> np.ndarray:
    """[K, 2] keypoints of a walking figure, feet at (0, 0)."""
    points = np.array([_TEMPLATE[n] for n in spec.keypoint_names], dtype=np.float64)
    for k, name in enumerate(spec.keypoint_names):
        side = 1.0 if name.startswith("left") else -1.0
        for part, amplitude in _SWING.items():
            if name.endswith(part):
                points[k, 0] += side * amplitude * math.sin(phase)
    return points * height


@dataclass(frozen=True)
class _Walker:
    start: float  # frame at which the walker is at x0
    x0: float
    foot_y: float
    speed: float  # pixels per frame, signed
    vy: float  # pixels per frame
    bounce: tuple[float, float] | None  # walks back and forth between these x, or passes


def _walker(rng: np.random.Generator, frames: int, width: int, height: int, fps: float,
            passer: bool) -> _Walker:
    foot_y = rng.uniform(0.5, 0.98) * height
    h = 0.5 * foot_y
    direction = rng.choice([-1.0, 1.0])
    speed = direction * rng.uniform(0.4, 1.0) * h / fps
    vy = rng.uniform(-0.03, 0.03) * h / fps
    if passer:  # crosses the image once, entering at a random time
        crossing = (width + 0.6 * h) / abs(speed)
        x0 = -0.3 * h if direction > 0 else width + 0.3 * h
        return _Walker(rng.uniform(-0.5 * crossing, 0.8 * frames), x0, foot_y, speed, vy, None)
    x0 = rng.uniform(0.1, 0.9) * width
    return _Walker(0.0, x0, foot_y, speed, vy, (0.05 * width, 0.95 * width))


def _position(w: _Walker, t: float) -> float:
    x = w.x0 + w.speed * t
    if w.bounce is None:
        return x
    low, high = w.bounce
    period = 2 * (high - low)
    u = (x - low) % period  # reflect off both walls
    return low + (u if u <= high - low else period - u)


def standin_truth(
    spec: KeypointSpec,
    *,
    frames: int,
    people: int,
    size: tuple[int, int] = (640, 480),
    seed: int = 0,
    fps: float = 25.0,
) -> dict[str, Any]:
    """Straight-line walkers that cross, occlude each other, enter and leave.

    Two thirds of the people walk back and forth across the image (in view all along,
    crossing each other), the others pass through once, entering at a random time; all at
    0.4-1 body heights per second, nearer people (lower in the image) larger. Keypoints
    behind a nearer person's box get v = 1, outside the image v = 0 (x = y = 0).
    """
    rng = np.random.default_rng(seed)
    width, height = size
    walkers = [_walker(rng, frames, width, height, fps, passer=i % 3 == 2)
               for i in range(people)]
    out_frames = [_truth_frame(spec, walkers, f, size) for f in range(frames)]
    for f, record in enumerate(out_frames):
        record["timestamp_ms"] = 1000.0 * f / fps
    return {"fps": fps, "width": width, "height": height,
            "keypoint_names": list(spec.keypoint_names), "frames": out_frames}


def _truth_frame(
    spec: KeypointSpec, walkers: Sequence[_Walker], f: int, size: tuple[int, int]
) -> dict[str, Any]:
    width, height = size
    people = []
    for i, w in enumerate(walkers):
        t = f - w.start
        foot_y = w.foot_y + w.vy * t
        h = 0.5 * foot_y
        x = _position(w, t)
        if t < 0 or not (-0.3 * h <= x <= width + 0.3 * h):
            continue
        xy = _figure(spec, h, 2 * math.pi * abs(w.speed * t) / (0.8 * h)) + np.array([x, foot_y])
        people.append((foot_y, i, xy, h))
    records = []
    for foot_y, i, xy, h in people:
        inside = (xy[:, 0] >= 0) & (xy[:, 0] < width) & (xy[:, 1] >= 0) & (xy[:, 1] < height)
        if not inside.any():
            continue
        hidden = np.zeros(len(xy), bool)
        for other_y, _, other, oh in people:
            if other_y > foot_y:  # nearer the camera, drawn in front
                low, high = other.min(axis=0) - 0.06 * oh, other.max(axis=0) + 0.06 * oh
                hidden |= ((xy >= low) & (xy <= high)).all(axis=1)
        v = np.where(inside, np.where(hidden, 1, 2), 0)
        kpts = np.concatenate([np.where(inside[:, None], xy, 0.0), v[:, None]], axis=1)
        low, high = xy[inside].min(axis=0), xy[inside].max(axis=0)
        bbox = [low[0] - 0.06 * h, low[1] - 0.03 * h, high[0] - low[0] + 0.12 * h,
                high[1] - low[1] + 0.05 * h]
        records.append({"track_id": i, "keypoints": kpts.reshape(-1).tolist(),
                        "bbox": [float(b) for b in bbox]})
    return {"frame": f, "people": records}


def load_truth(kind: str, spec: KeypointSpec, frames: int, people: int, seed: int
               ) -> tuple[str, dict[str, Any]]:
    """("synth" | "standin", truth dict). ``auto`` takes sequence_truth when it exists."""
    if kind in ("auto", "synth"):
        try:
            from aepose.synth.video import sequence_truth
        except ImportError:
            if kind == "synth":
                raise
        else:
            return "synth", sequence_truth(spec, frames=frames, people=people, seed=seed)
    return "standin", standin_truth(spec, frames=frames, people=people, seed=seed)


# ---------------------------------------------------------------------------------------
# Detections: ground truth made realistic


@dataclass(frozen=True)
class NoiseModel:
    """How detections differ from ground truth. Distances are in units of each joint's OKS
    scale 2 sigma sqrt(area), area = 0.53 w h as the evaluation's.

    jitter: standard deviation per coordinate of visible joints (0.35: mean OKS 0.89).
    occluded_jitter: the same for joints hidden by someone (found with a low score).
    miss_joint: probability a visible joint is missed (a wrong place, score < 0.08).
    miss_person: probability a person is missed in a frame.
    burst: probability per frame and person that a run of 3-12 missed frames starts.
    false_positives: mean number of spurious people per frame.
    """

    jitter: float = 0.35
    occluded_jitter: float = 1.0
    miss_joint: float = 0.1
    miss_person: float = 0.03
    burst: float = 0.005
    false_positives: float = 0.3


def simulate_detections(
    truth: dict[str, Any], spec: KeypointSpec, noise: NoiseModel, seed: int
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per frame, [P, K, 3] detections (x, y, score), highest person score first, and [P]
    the true track IDs they come from (-1 for false positives)."""
    rng = np.random.default_rng(seed + 1000)
    k2 = 2 * np.asarray(spec.sigmas)
    hidden_until: dict[int, int] = {}
    detections, sources = [], []
    for record in truth["frames"]:
        f = record["frame"]
        poses, ids = [], []
        for person in record["people"]:
            pid = person["track_id"]
            if rng.random() < noise.burst:
                hidden_until[pid] = f + int(rng.integers(3, 13))
            if hidden_until.get(pid, -1) >= f or rng.random() < noise.miss_person:
                continue
            pose = _detect(person, k2, noise, rng)
            if pose is not None:
                poses.append(pose)
                ids.append(pid)
        for _ in range(rng.poisson(noise.false_positives)):
            poses.append(_false_positive(spec, truth["width"], truth["height"], rng))
            ids.append(-1)
        order = _by_score(poses)
        k = len(k2)
        detections.append(np.stack(poses)[order] if poses else np.zeros((0, k, 3)))
        sources.append(np.asarray(ids, dtype=np.int64)[order])
    return detections, sources


def _detect(person: dict[str, Any], k2: np.ndarray, noise: NoiseModel,
            rng: np.random.Generator) -> np.ndarray | None:
    kpts = np.asarray(person["keypoints"], dtype=np.float64).reshape(-1, 3)
    visible, occluded = kpts[:, 2] == 2, kpts[:, 2] == 1
    if visible.sum() < 3:  # a detector does not find a person it cannot see
        return None
    x, y, w, h = person["bbox"]
    scale = math.sqrt(0.53 * w * h)
    k = len(kpts)
    found = visible & (rng.random(k) >= noise.miss_joint)
    # Joints not found still get a place, as a bottom-up decoder gives every joint one.
    centre = np.array([x + w / 2, y + h / 2])
    base = np.where((kpts[:, 2] > 0)[:, None], kpts[:, :2], centre)
    spread = np.where(found, noise.jitter * k2 * scale,
                      np.where(occluded, noise.occluded_jitter * k2 * scale, 0.15 * scale))
    xy = base + rng.normal(size=(k, 2)) * spread[:, None]
    score = np.where(found, rng.uniform(0.3, 1.0, k),
                     np.where(occluded, rng.uniform(0.02, 0.25, k), rng.uniform(0, 0.08, k)))
    return np.concatenate([xy, score[:, None]], axis=1)


def _false_positive(spec: KeypointSpec, width: int, height: int,
                    rng: np.random.Generator) -> np.ndarray:
    h = rng.uniform(0.2, 0.5) * height
    foot = np.array([rng.uniform(0, width), rng.uniform(0.4, 1.0) * height])
    xy = _figure(spec, h, rng.uniform(0, 2 * math.pi)) + foot
    xy += rng.normal(size=xy.shape) * 0.05 * h
    score = rng.uniform(0.05, 0.5, len(xy))
    return np.concatenate([xy, score[:, None]], axis=1)


def _by_score(poses: list[np.ndarray]) -> np.ndarray:
    """Order of poses by decreasing mean keypoint score (a bottom-up decoder's order)."""
    scores = np.array([p[:, 2].mean() for p in poses])
    return np.argsort(-scores, kind="stable")


# ---------------------------------------------------------------------------------------
# mmpose 0.x's greedy matcher (get_track_id), re-implemented from its description


class GreedyTracker:
    """Baseline: mmpose 0.x ``get_track_id``, written anew from its behaviour.

    Detections are taken in the order given; each takes the ID of the most similar
    not-yet-taken pose of the PREVIOUS frame only, if that similarity exceeds ``threshold``
    (0.3, mmpose's demo default), else a new ID (if it has >= 3 keypoints). Similarity:
    OKS over all K keypoints with the box area (``use_oks``), or box IoU (mmpose's
    default); boxes are keypoint extents, as mmpose derives them for bottom-up results.
    """

    def __init__(self, sigmas: Sequence[float], use_oks: bool, threshold: float = 0.3):
        self.sigmas = sigmas
        self.use_oks, self.threshold = use_oks, threshold
        self.last: list[tuple[np.ndarray, np.ndarray, int]] = []  # (xy, box, id)
        self.next_id = 0

    def _similarity(self, xy: np.ndarray, box: np.ndarray,
                    other: tuple[np.ndarray, np.ndarray, int]
                    ) -> float:
        oxy, obox = other[0], other[1]
        area, other_area = np.prod(box[2:] - box[:2]), np.prod(obox[2:] - obox[:2])
        if self.use_oks:
            return float(pairwise_oks(xy[None], oxy[None], self.sigmas, np.array([area]),
                                      np.array([other_area]))[0, 0])
        low, high = np.maximum(box[:2], obox[:2]), np.minimum(box[2:], obox[2:])
        inter = float(np.prod(np.clip(high - low, 0, None)))
        union = area + other_area - inter
        return inter / max(float(union), 1e-5)

    def update(self, keypoints: np.ndarray) -> list[int]:
        remaining = list(self.last)
        ids, current = [], []
        for pose in keypoints:
            xy = pose[:, :2]
            box = np.concatenate([xy.min(axis=0), xy.max(axis=0)])
            sims = [self._similarity(xy, box, r) for r in remaining]
            best = int(np.argmax(sims)) if sims else -1
            if best >= 0 and sims[best] > self.threshold:
                track_id = remaining.pop(best)[2]
            else:
                track_id, self.next_id = self.next_id, self.next_id + 1
            ids.append(track_id)
            current.append((xy, box, track_id))
        self.last = current
        return ids
