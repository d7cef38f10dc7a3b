"""Figures: the points of one articulated person, by forward kinematics from joint angles.

Points are pixel INDICES, x = column, y = row (the project's convention, see
``aepose.data.transforms``). Figure geometry is expressed in units of the figure's standing
height ``height`` (pixels).

Left and right. Flip augmentation mirrors an image and swaps left/right labels, so any cue
tied to a body side (a colour for left limbs, a mark on the left chest) would contradict the
labels of every flipped sample. The cue kept is the one a mirror preserves: a person facing
the camera shows a face (eyes, nose, skin) and a skin-coloured collar, a person seen from the
back shows only hair; with the facing known, left and right follow from the geometry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

__all__ = [
    "ALIASES",
    "CANONICAL_JOINTS",
    "DRAW_POINT_JOINTS",
    "FACE_POINTS",
    "POINT_INDEX",
    "POINT_NAMES",
    "Figure",
    "FigureStyle",
    "JointAngles",
    "build_figure",
]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
BGR = tuple[int, int, int]
Vec = tuple[float, float]

# Points of a figure: the keypoints of all three datasets (by their spec names) followed by
# the points the drawing adds (head centre, hand centres, toe tips). A keypoint set picks its
# keypoints from here by name (aepose.synth.skeleton: also custom sets of any of them).
CANONICAL_JOINTS: tuple[str, ...] = (
    "head_top", "nose", "left_eye", "right_eye", "left_ear", "right_ear", "neck",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist",
    "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
    "right_ankle",
)  # fmt: skip
_DRAW_POINTS = ("head_centre", "left_hand", "right_hand", "left_toe", "right_toe")
POINT_NAMES = CANONICAL_JOINTS + _DRAW_POINTS
# The joint whose random omission an added point shares: an annotator who skips a wrist
# skips its hand (and the still images draw no more random numbers than before they had them).
DRAW_POINT_JOINTS = ("head_top", "left_wrist", "right_wrist", "left_ankle", "right_ankle")
POINT_INDEX = {name: i for i, name in enumerate(POINT_NAMES)}
ALIASES = {"top_head": "head_top"}  # CrowdPose's name for the same point
FACE_POINTS = ("nose", "left_eye", "right_eye")  # not labelled on a person seen from the back


@dataclass(frozen=True)
class JointAngles:
    """Joint angles of one figure, in degrees; pairs are (left, right).

    Limb angles are measured from hanging straight down, positive = away from the body's
    midline (an arm at 90 is horizontal, at 170 raised overhead); the second segment's angle is
    added to the first's. ``*_scale`` shortens segments (out-of-plane foreshortening).
    ``yaw`` (0..1] narrows shoulders and hips as a person turns sideways.
    """

    body_deg: float = 0.0
    lean_deg: float = 0.0
    head_deg: float = 0.0
    yaw: float = 1.0
    arm_deg: tuple[float, float] = (15.0, 15.0)
    elbow_deg: tuple[float, float] = (10.0, 10.0)
    leg_deg: tuple[float, float] = (6.0, 6.0)
    knee_deg: tuple[float, float] = (0.0, 0.0)
    upper_arm_scale: tuple[float, float] = (1.0, 1.0)
    forearm_scale: tuple[float, float] = (1.0, 1.0)
    thigh_scale: tuple[float, float] = (1.0, 1.0)
    shin_scale: tuple[float, float] = (1.0, 1.0)


@dataclass(frozen=True)
class FigureStyle:
    """Colours (BGR) and limb widths (fractions of the standing height) of one figure."""

    skin: BGR = (140, 170, 220)
    hair: BGR = (30, 40, 60)
    shirt: BGR = (200, 80, 40)
    trousers: BGR = (60, 60, 60)
    shoes: BGR = (20, 20, 20)
    outline: BGR = (15, 15, 15)
    arm_width: float = 0.055
    leg_width: float = 0.075
    long_sleeves: bool = False


# Body proportions in standing heights (about 1.0 from ankle to head top).
TORSO = 0.30
SHOULDER_DROP = 0.025
SHOULDER_HALF = 0.11
HIP_HALF = 0.07
NECK = 0.04
HEAD_R = 0.065
UPPER_ARM = 0.165
FOREARM = 0.145
HAND_R = 0.028
THIGH = 0.245
SHIN = 0.24
FOOT = 0.055
NECK_WIDTH = 0.06


@dataclass(frozen=True, eq=False)
class Figure:
    """One drawn person.

    Attributes:
        points: float64 [len(CANONICAL_JOINTS) + 5, 2] image (x, y) of every keypoint name in
            :data:`CANONICAL_JOINTS`, then head centre, hand centres and toe tips.
        height: standing height in pixels (scales widths and radii).
        front: faces the camera (person's left on the image right when upright).
        style: colours and widths.
        labelled: bool [len(POINT_NAMES)]; False = never labelled (v=0).
    """

    points: FloatArray
    height: float
    front: bool
    style: FigureStyle
    labelled: BoolArray

    def point(self, name: str) -> tuple[float, float]:
        """(x, y) of the point ``name`` (a canonical joint or a drawing point)."""
        return self._named[name]

    @cached_property
    def _named(self) -> dict[str, tuple[float, float]]:
        # Plain tuples: the drawing code reads ~40 points per figure, and indexing a NumPy
        # array point by point costs more than all the drawing.
        return {n: (x, y) for n, (x, y) in zip(POINT_NAMES, self.points.tolist(), strict=True)}


# --------------------------------------------------------------------------------------------
# Forward kinematics


class _Frame(NamedTuple):
    """Unit vectors of a body part's frame in image coordinates (y down): ``up`` and the
    person's own ``left``."""

    up: Vec
    left: Vec


def _frame(deg: float, front: bool) -> _Frame:
    """Frame rotated by ``deg`` (clockwise on screen) from upright. Upright, up = (0, -1) and
    the person's left is the image right (1, 0) when they face the camera, (-1, 0) if not."""
    r = math.radians(deg)
    s, c = math.sin(r), math.cos(r)
    sign = 1.0 if front else -1.0
    return _Frame((s, -c), (c * sign, s * sign))


def along(p: Vec, d: Vec, k: float) -> Vec:
    """The point ``k`` pixels from ``p`` along the unit direction ``d``."""
    return p[0] + d[0] * k, p[1] + d[1] * k


def _limb_dir(frame: _Frame, side: float, deg: float) -> Vec:
    """Unit direction ``deg`` from straight down, turned towards the person's left (side = 1)
    or right (side = -1), i.e. away from the midline for a limb on that side."""
    r = math.radians(deg)
    c, s = math.cos(r), math.sin(r) * side
    return -frame.up[0] * c + frame.left[0] * s, -frame.up[1] * c + frame.left[1] * s


def _chain(
    root: Vec, frame: _Frame, side: float, degs: tuple[float, float], lengths: Vec
) -> tuple[Vec, Vec, Vec]:
    """Middle joint, end joint and end direction of a two-segment limb hanging from ``root``."""
    d1 = _limb_dir(frame, side, degs[0])
    mid = along(root, d1, lengths[0])
    d2 = _limb_dir(frame, side, degs[0] + degs[1])
    return mid, along(mid, d2, lengths[1]), d2


def _head_points(neck: Vec, head: _Frame, h: float) -> dict[str, Vec]:
    r = HEAD_R * h
    centre = along(neck, head.up, NECK * h + r)
    brow = along(centre, head.up, 0.15 * r)
    return {
        "head_centre": centre,
        "head_top": along(centre, head.up, 0.8 * r),  # inside the drawn head, not on its rim
        "nose": along(centre, head.up, -0.25 * r),
        "left_eye": along(brow, head.left, 0.38 * r),
        "right_eye": along(brow, head.left, -0.38 * r),
        "left_ear": along(centre, head.left, r),
        "right_ear": along(centre, head.left, -r),
    }


def _side_points(
    name: str, pose: JointAngles, body: _Frame, torso: _Frame, pelvis: Vec, neck: Vec, h: float
) -> dict[str, Vec]:
    """Arm and leg points of the ``name`` ("left" or "right") side."""
    i, side = (0, 1.0) if name == "left" else (1, -1.0)
    shoulder = along(
        along(neck, torso.up, -SHOULDER_DROP * h), torso.left, side * SHOULDER_HALF * pose.yaw * h
    )
    arm_len = (UPPER_ARM * h * pose.upper_arm_scale[i], FOREARM * h * pose.forearm_scale[i])
    elbow, wrist, d = _chain(shoulder, torso, side, (pose.arm_deg[i], pose.elbow_deg[i]), arm_len)
    hip = along(pelvis, body.left, side * HIP_HALF * pose.yaw * h)
    leg_len = (THIGH * h * pose.thigh_scale[i], SHIN * h * pose.shin_scale[i])
    knee, ankle, _ = _chain(hip, body, side, (pose.leg_deg[i], pose.knee_deg[i]), leg_len)
    # Feet point outwards, roughly square to the shin.
    foot = _limb_dir(body, side, pose.leg_deg[i] + pose.knee_deg[i] + 75.0)
    return {
        f"{name}_shoulder": shoulder,
        f"{name}_elbow": elbow,
        f"{name}_wrist": wrist,
        f"{name}_hand": along(wrist, d, 0.9 * HAND_R * h),
        f"{name}_hip": hip,
        f"{name}_knee": knee,
        f"{name}_ankle": ankle,
        f"{name}_toe": along(ankle, foot, FOOT * h),
    }


def build_figure(
    pose: JointAngles,
    style: FigureStyle,
    pelvis: Vec,
    height: float,
    *,
    front: bool = True,
) -> Figure:
    """Place a figure of standing ``height`` pixels with its pelvis centre at ``pelvis`` (x, y).

    Deterministic: all randomness lives in :func:`sample_scene`. Face points are unlabelled
    for a person seen from the back; every other joint starts labelled.
    """
    body = _frame(pose.body_deg, front)
    torso = _frame(pose.body_deg + pose.lean_deg, front)
    head = _frame(pose.body_deg + pose.lean_deg + pose.head_deg, front)
    neck = along(pelvis, torso.up, TORSO * height)
    pts = {"neck": neck} | _head_points(neck, head, height)
    for name in ("left", "right"):
        pts |= _side_points(name, pose, body, torso, pelvis, neck, height)
    points = np.array([pts[n] for n in POINT_NAMES], dtype=np.float64)
    points.setflags(write=False)  # drawing caches derive from these points
    labelled = np.array([front or n not in FACE_POINTS for n in POINT_NAMES], dtype=bool)
    return Figure(points=points, height=float(height), front=front, style=style, labelled=labelled)
