"""Generated crowd scenes in the exact file layout of AIC, CrowdPose and COCO.

No real dataset can be downloaded where this project is built and tested, so tests, the demo
and the benchmarks train and evaluate on scenes drawn here: 1-20 articulated stick-and-blob
people per image on a cluttered background, painted far to near so that nearer people hide
farther ones, written as JPEG images plus the COCO-format JSON of the chosen dataset, in the
folders that ``--data-root`` reads (:data:`aepose.config.DATASET_FILES`).

Conventions. Points are pixel INDICES, x = column, y = row (the project's convention, see
``aepose.data.transforms``); OpenCV draws with pixel centres on integer coordinates, so a
point (x, y) lies in pixel (round(x), round(y)). Images are BGR uint8 [H, W, 3]. Figure
geometry is expressed in units of the figure's standing height ``height`` (pixels).

Labels. For each person and keypoint (x, y, v):

- v = 0, stored as (0, 0, 0): not labelled - outside the image, randomly left unlabelled
  (``SceneParams.unlabelled_joint_prob``) or a face point of a person seen from the back;
- v = 1: labelled but covered by a nearer person at the joint's pixel;
- v = 2: visible - the joint's pixel belongs to the person itself.

``num_keypoints`` counts v > 0. ``bbox`` is the full extent of the drawn figure (including
parts hidden by nearer people) clipped to the image, except for COCO, whose boxes (like its
``area`` and polygon ``segmentation``) describe the visible region only. ``crowdIndex`` is
:func:`crowd_index`.

Left and right. Flip augmentation mirrors an image and swaps left/right labels, so any cue
tied to a body side (a colour for left limbs, a mark on the left chest) would contradict the
labels of every flipped sample. The cue kept is the one a mirror preserves: a person facing
the camera shows a face (eyes, nose, skin) and a skin-coloured collar, a person seen from the
back shows only hair; with the facing known, left and right follow from the geometry.

Determinism. Image ``i`` of split ``s`` is drawn from
``np.random.default_rng(SeedSequence(seed, spawn_key=(s, i)))`` only, so it does not depend on
the other images or on how many are generated; JPEGs use a fixed quality and JSON is written
with sorted keys and floats rounded to 2 decimals. The same seed gives the same bytes.
"""

from __future__ import annotations

import colorsys
import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path
from typing import Any, Literal, NamedTuple

import cv2
import numpy as np
import numpy.typing as npt

from aepose.config import DATASET_FILES
from aepose.errors import AeposeError
from aepose.keypoints import KeypointSpec, get_spec

__all__ = [
    "CANONICAL_JOINTS",
    "CROWD_LABEL",
    "Figure",
    "FigureStyle",
    "ImageSample",
    "Pose",
    "RenderedScene",
    "Scene",
    "SceneParams",
    "SplitSummary",
    "SynthSummary",
    "annotate_scene",
    "build_figure",
    "crowd_index",
    "figure_bbox",
    "figure_mask",
    "generate_dataset",
    "generate_image",
    "keypoints_for",
    "parse_size",
    "render_scene",
    "sample_scene",
    "split_counts",
]

FloatArray = npt.NDArray[np.float64]
ImageArray = npt.NDArray[np.uint8]
BoolArray = npt.NDArray[np.bool_]
BGR = tuple[int, int, int]

JPEG_QUALITY = 90
CROWD_LABEL = 255  # label-map value of the small unannotated people inside a crowd region
SIZE_LIMITS = (64, 4096)  # accepted image sides; the CLI documents 256..640
_SHIFT = 4  # OpenCV fixed-point bits: coordinates are drawn with 1/16 pixel precision
_ONE = 1 << _SHIFT

# Points of a figure: the keypoints of all three datasets (by their spec names) followed by
# points only used for drawing. A spec picks its keypoints from here by name.
CANONICAL_JOINTS: tuple[str, ...] = (
    "head_top", "nose", "left_eye", "right_eye", "left_ear", "right_ear", "neck",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist",
    "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
    "right_ankle",
)  # fmt: skip
_DRAW_POINTS = ("head_centre", "left_hand", "right_hand", "left_toe", "right_toe")
_POINT_NAMES = CANONICAL_JOINTS + _DRAW_POINTS
_P = {name: i for i, name in enumerate(_POINT_NAMES)}
_ALIASES = {"top_head": "head_top"}  # CrowdPose's name for the same point
_FACE = ("nose", "left_eye", "right_eye")  # not labelled on a person seen from the back


# --------------------------------------------------------------------------------------------
# Parameters


@dataclass(frozen=True)
class SceneParams:
    """How scenes are sampled. Ranges are (low, high); "log" ranges are sampled log-uniformly.

    Attributes:
        people: number of annotated people per image (inclusive range, at most 20 so that a
            crowd fits the reference's 30-person target cap with room for crowd members).
        people_skew: exponent on a uniform draw of the count; > 1 favours few people.
        height: log range of a scene's typical standing height, as a fraction of the shorter
            image side, before shrinking for crowded scenes.
        crowd_shrink: the typical height is divided by sqrt(1 + crowd_shrink * (n - 1)).
        depth_jitter: log range of each person's height relative to the scene's typical one
            (near people large, far people small).
        spread: log range of how far apart people stand, in typical heights per person; small
            values pack people together (high crowdIndex).
        unlabelled_joint_prob: chance that a joint inside the image is left unlabelled (v=0).
        crowd_region_prob: chance of an ``iscrowd`` region (COCO and CrowdPose only).
        clutter_shapes: inclusive range of background shapes.
        in_view: move each person (after placing the group) the least distance that brings
            the whole figure inside the image, so that nobody is cut by the border; a figure
            larger than the image is centred on it instead.
    """

    people: tuple[int, int] = (1, 20)
    people_skew: float = 2.0
    height: tuple[float, float] = (0.3, 0.85)
    crowd_shrink: float = 0.3
    depth_jitter: tuple[float, float] = (0.7, 1.4)
    spread: tuple[float, float] = (0.5, 3.0)
    unlabelled_joint_prob: float = 0.02
    crowd_region_prob: float = 0.25
    clutter_shapes: tuple[int, int] = (3, 14)
    in_view: bool = False

    def __post_init__(self) -> None:
        lo, hi = self.people
        if not 1 <= lo <= hi <= 20:
            raise AeposeError(
                f"SceneParams.people must satisfy 1 <= low <= high <= 20, got {self.people}"
            )
        for name in ("height", "depth_jitter", "spread"):
            a, b = getattr(self, name)
            if not 0 < a <= b:
                raise AeposeError(f"SceneParams.{name} must satisfy 0 < low <= high, got {(a, b)}")
        for name in ("unlabelled_joint_prob", "crowd_region_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise AeposeError(f"SceneParams.{name} must lie in [0, 1]")
        if self.people_skew <= 0 or not 0 <= self.clutter_shapes[0] <= self.clutter_shapes[1]:
            raise AeposeError("SceneParams: people_skew must be > 0 and clutter_shapes ordered")


@dataclass(frozen=True)
class Pose:
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
_TORSO = 0.30
_SHOULDER_DROP = 0.025
_SHOULDER_HALF = 0.11
_HIP_HALF = 0.07
_NECK = 0.04
_HEAD_R = 0.065
_UPPER_ARM = 0.165
_FOREARM = 0.145
_HAND_R = 0.028
_THIGH = 0.245
_SHIN = 0.24
_FOOT = 0.055
_NECK_WIDTH = 0.06


@dataclass(frozen=True, eq=False)
class Figure:
    """One drawn person.

    Attributes:
        points: float64 [len(CANONICAL_JOINTS) + 5, 2] image (x, y) of every keypoint name in
            :data:`CANONICAL_JOINTS`, then head centre, hand centres and toe tips.
        height: standing height in pixels (scales widths and radii).
        front: faces the camera (person's left on the image right when upright).
        style: colours and widths.
        labelled: bool [len(CANONICAL_JOINTS)]; False = never labelled (v=0).
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
        return {n: (x, y) for n, (x, y) in zip(_POINT_NAMES, self.points.tolist(), strict=True)}

    @cached_property
    def _parts(self) -> list[_Part]:
        """The figure's drawing primitives in painting order (computed once)."""
        return _figure_parts(self)


@dataclass(frozen=True, eq=False)
class Scene:
    """Everything needed to render one image.

    ``people`` are annotated, ordered far to near (drawing order); ``crowd`` are the small
    people of an ``iscrowd`` region (drawn first, never annotated one by one).
    """

    background: ImageArray  # BGR uint8 [H, W, 3]
    people: tuple[Figure, ...]
    crowd: tuple[Figure, ...] = ()

    @property
    def width(self) -> int:
        """Image width W in pixels."""
        return int(self.background.shape[1])

    @property
    def height(self) -> int:
        """Image height H in pixels."""
        return int(self.background.shape[0])


@dataclass(frozen=True, eq=False)
class RenderedScene:
    """A rendered scene: ``image`` BGR uint8 [H, W, 3] and ``labels`` uint8 [H, W] holding, per
    pixel, 0 (background), i + 1 for ``scene.people[i]`` (topmost wins) or
    :data:`CROWD_LABEL`."""

    image: ImageArray
    labels: ImageArray


# --------------------------------------------------------------------------------------------
# Figure geometry (forward kinematics)


Vec = tuple[float, float]


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


def _add(p: Vec, d: Vec, k: float) -> Vec:
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
    mid = _add(root, d1, lengths[0])
    d2 = _limb_dir(frame, side, degs[0] + degs[1])
    return mid, _add(mid, d2, lengths[1]), d2


def _head_points(neck: Vec, head: _Frame, h: float) -> dict[str, Vec]:
    r = _HEAD_R * h
    centre = _add(neck, head.up, _NECK * h + r)
    brow = _add(centre, head.up, 0.15 * r)
    return {
        "head_centre": centre,
        "head_top": _add(centre, head.up, 0.8 * r),  # inside the drawn head, not on its rim
        "nose": _add(centre, head.up, -0.25 * r),
        "left_eye": _add(brow, head.left, 0.38 * r),
        "right_eye": _add(brow, head.left, -0.38 * r),
        "left_ear": _add(centre, head.left, r),
        "right_ear": _add(centre, head.left, -r),
    }


def _side_points(
    name: str, pose: Pose, body: _Frame, torso: _Frame, pelvis: Vec, neck: Vec, h: float
) -> dict[str, Vec]:
    """Arm and leg points of the ``name`` ("left" or "right") side."""
    i, side = (0, 1.0) if name == "left" else (1, -1.0)
    shoulder = _add(
        _add(neck, torso.up, -_SHOULDER_DROP * h), torso.left, side * _SHOULDER_HALF * pose.yaw * h
    )
    arm_len = (_UPPER_ARM * h * pose.upper_arm_scale[i], _FOREARM * h * pose.forearm_scale[i])
    elbow, wrist, d = _chain(shoulder, torso, side, (pose.arm_deg[i], pose.elbow_deg[i]), arm_len)
    hip = _add(pelvis, body.left, side * _HIP_HALF * pose.yaw * h)
    leg_len = (_THIGH * h * pose.thigh_scale[i], _SHIN * h * pose.shin_scale[i])
    knee, ankle, _ = _chain(hip, body, side, (pose.leg_deg[i], pose.knee_deg[i]), leg_len)
    # Feet point outwards, roughly square to the shin.
    foot = _limb_dir(body, side, pose.leg_deg[i] + pose.knee_deg[i] + 75.0)
    return {
        f"{name}_shoulder": shoulder,
        f"{name}_elbow": elbow,
        f"{name}_wrist": wrist,
        f"{name}_hand": _add(wrist, d, 0.9 * _HAND_R * h),
        f"{name}_hip": hip,
        f"{name}_knee": knee,
        f"{name}_ankle": ankle,
        f"{name}_toe": _add(ankle, foot, _FOOT * h),
    }


def build_figure(
    pose: Pose,
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
    neck = _add(pelvis, torso.up, _TORSO * height)
    pts = {"neck": neck} | _head_points(neck, head, height)
    for name in ("left", "right"):
        pts |= _side_points(name, pose, body, torso, pelvis, neck, height)
    points = np.array([pts[n] for n in _POINT_NAMES], dtype=np.float64)
    points.setflags(write=False)  # drawing caches derive from these points
    labelled = np.array([front or n not in _FACE for n in CANONICAL_JOINTS], dtype=bool)
    return Figure(points=points, height=float(height), front=front, style=style, labelled=labelled)


# --------------------------------------------------------------------------------------------
# Drawing


class _Part(NamedTuple):
    """One drawing primitive. ``pts`` are fixed-point (x, y) pairs (``_SHIFT`` bits); ``size``
    is a line's width, a disc's radius or a polygon's rounded edge width, in pixels. Only
    ``solid`` parts make the silhouette (label map, outline); the rest are painted details."""

    kind: Literal["line", "disc", "poly"]
    pts: tuple[tuple[int, int], ...]
    size: float
    colour: BGR
    solid: bool = True


def _fixed(p: Sequence[float]) -> tuple[int, int]:
    return round(float(p[0]) * _ONE), round(float(p[1]) * _ONE)


def _shade(colour: BGR, factor: float) -> BGR:
    b, g, r = (min(255, int(c * factor)) for c in colour)
    return b, g, r


def _direction(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Unit vector from ``a`` to ``b`` ((0, 0) when they coincide)."""
    dx, dy = float(b[0]) - float(a[0]), float(b[1]) - float(a[1])
    n = math.hypot(dx, dy)
    return (dx / n, dy / n) if n > 0 else (0.0, 0.0)


def _line(a: Sequence[float], b: Sequence[float], width: float, colour: BGR) -> _Part:
    return _Part("line", (_fixed(a), _fixed(b)), max(2.0, width), colour)


def _disc(c: Sequence[float], radius: float, colour: BGR, solid: bool = True) -> _Part:
    return _Part("disc", (_fixed(c),), max(0.6, radius), colour, solid)


def _limb_parts(fig: Figure, side: str) -> tuple[list[_Part], list[_Part]]:
    """(leg parts, arm parts) of one side, each drawn upper segment first."""
    p, st, h = fig.point, fig.style, fig.height
    leg_w, arm_w = st.leg_width * h, st.arm_width * h
    forearm = _shade(st.shirt, 0.8) if st.long_sleeves else st.skin
    leg = [
        _line(p(f"{side}_hip"), p(f"{side}_knee"), leg_w, st.trousers),
        _line(p(f"{side}_knee"), p(f"{side}_ankle"), 0.9 * leg_w, st.trousers),
        # A darker knee ball marks the joint itself, not only the bend.
        _disc(p(f"{side}_knee"), 0.5 * leg_w, _shade(st.trousers, 0.7)),
        _line(p(f"{side}_ankle"), p(f"{side}_toe"), 0.75 * leg_w, st.shoes),
    ]
    arm = [
        # A shaded sleeve keeps the upper arm visible where it crosses the torso.
        _line(p(f"{side}_shoulder"), p(f"{side}_elbow"), arm_w, _shade(st.shirt, 0.8)),
        _line(p(f"{side}_elbow"), p(f"{side}_wrist"), 0.9 * arm_w, forearm),
        _disc(p(f"{side}_elbow"), 0.5 * arm_w, _shade(forearm, 0.7)),
        _disc(p(f"{side}_hand"), _HAND_R * h, st.skin),
    ]
    return leg, arm


def _torso_parts(fig: Figure) -> list[_Part]:
    """Torso quadrilateral widened by the limb widths, plus (facing the camera) a collar."""
    p, st, h = fig.point, fig.style, fig.height
    across_sh = _direction(p("right_shoulder"), p("left_shoulder"))
    across_hip = _direction(p("right_hip"), p("left_hip"))
    a, b = 0.5 * st.arm_width * h, 0.5 * st.leg_width * h
    quad = (
        _add(p("left_shoulder"), across_sh, a),
        _add(p("right_shoulder"), across_sh, -a),
        _add(p("right_hip"), across_hip, -b),
        _add(p("left_hip"), across_hip, b),
    )
    # The rounded edge (half an arm wide) softens the corners without swallowing the arms.
    parts = [_Part("poly", tuple(_fixed(q) for q in quad), 0.5 * st.arm_width * h, st.shirt)]
    if fig.front:
        (lx, ly), (rx, ry) = p("left_hip"), p("right_hip")
        down = _direction(p("neck"), (0.5 * (lx + rx), 0.5 * (ly + ry)))
        v = _add(p("neck"), down, 0.09 * h)
        collar = (p("neck"), _add(v, across_sh, 0.045 * h), _add(v, across_sh, -0.045 * h))
        parts.append(_Part("poly", tuple(_fixed(q) for q in collar), 0.0, st.skin, False))
    return parts


def _head_parts(fig: Figure) -> list[_Part]:
    """Neck, ears and head; facing the camera also a face with eyes and a nose."""
    p, st, h = fig.point, fig.style, fig.height
    r = _HEAD_R * h
    parts = [
        _line(p("neck"), p("head_centre"), _NECK_WIDTH * h, st.skin),
        _disc(p("left_ear"), 0.3 * r, st.skin),
        _disc(p("right_ear"), 0.3 * r, st.skin),
        _disc(p("head_centre"), r, st.hair),
    ]
    if fig.front:
        down = _direction(p("head_top"), p("head_centre"))
        parts += [
            _disc(_add(p("head_centre"), down, 0.15 * r), 0.8 * r, st.skin, False),
            _disc(p("left_eye"), 0.13 * r, (25, 25, 25), False),
            _disc(p("right_eye"), 0.13 * r, (25, 25, 25), False),
            _disc(p("nose"), 0.14 * r, _shade(st.skin, 0.6), False),
        ]
    return parts


def _figure_parts(fig: Figure) -> list[_Part]:
    """All primitives of a figure in painting order (legs, torso, head, arms)."""
    left_leg, left_arm = _limb_parts(fig, "left")
    right_leg, right_arm = _limb_parts(fig, "right")
    return left_leg + right_leg + _torso_parts(fig) + _head_parts(fig) + left_arm + right_arm


def _outline_width(fig: Figure) -> float:
    """Dark border around the silhouette, in pixels per side: separates touching people."""
    return max(1.0, 0.012 * fig.height)


def _draw(canvas: ImageArray, part: _Part, colour: BGR | int, grow: float) -> None:
    """Paint ``part`` grown by ``grow`` pixels on every side (the outline pass)."""
    if part.kind == "line":
        width = max(1, round(part.size + 2 * grow))
        cv2.line(canvas, part.pts[0], part.pts[1], colour, width, cv2.LINE_8, _SHIFT)
    elif part.kind == "disc":
        radius = round((part.size + grow) * _ONE)
        cv2.circle(canvas, part.pts[0], radius, colour, -1, cv2.LINE_8, _SHIFT)
    else:
        pts = np.array(part.pts, dtype=np.int32)
        cv2.fillPoly(canvas, [pts], colour, cv2.LINE_8, _SHIFT)
        edge = round(part.size + 2 * grow)
        if edge >= 1:
            cv2.polylines(canvas, [pts], True, colour, edge, cv2.LINE_8, _SHIFT)


def _paint(image: ImageArray, labels: ImageArray, fig: Figure, label: int) -> None:
    """Paint a figure over what is already drawn (it is nearer) and claim its pixels."""
    parts = fig._parts
    grow = _outline_width(fig)
    solid = [part for part in parts if part.solid]
    for part in solid:
        _draw(image, part, fig.style.outline, grow)
    for part in parts:
        _draw(image, part, part.colour, 0.0)
    for part in solid:
        _draw(labels, part, label, grow)


def render_scene(scene: Scene) -> RenderedScene:
    """Paint the crowd, then the people far to near, over a copy of the background."""
    image = scene.background.copy()
    labels = np.zeros(image.shape[:2], dtype=np.uint8)
    for fig in scene.crowd:
        _paint(image, labels, fig, CROWD_LABEL)
    for i, fig in enumerate(scene.people):
        _paint(image, labels, fig, i + 1)
    return RenderedScene(image=image, labels=labels)


def figure_mask(fig: Figure, width: int, height: int) -> BoolArray:
    """bool [height, width]: the pixels ``fig`` covers when drawn alone (outline included)."""
    canvas = np.zeros((height, width), dtype=np.uint8)
    grow = _outline_width(fig)
    for part in fig._parts:
        if part.solid:
            _draw(canvas, part, 1, grow)
    return canvas.astype(bool)


def _extent(fig: Figure) -> tuple[FloatArray, FloatArray]:
    """Unclipped (x, y) minimum and maximum of the whole drawn figure.

    Computed from the primitives (endpoints and centres +- half widths or radii), so it covers
    parts hidden by nearer people.
    """
    grow = _outline_width(fig)
    solid = [part for part in fig._parts if part.solid]
    pts = np.array([q for part in solid for q in part.pts], dtype=np.float64) / _ONE
    reach = np.array(
        [
            part.size + grow if part.kind == "disc" else 0.5 * part.size + grow
            for part in solid
            for _ in part.pts
        ]
    )[:, None]
    return (pts - reach).min(axis=0), (pts + reach).max(axis=0)


def figure_bbox(fig: Figure, width: int, height: int) -> tuple[float, float, float, float]:
    """COCO box (x, y, w, h) of the whole drawn figure (:func:`_extent`), clipped to the image;
    it agrees with the pixel extent of :func:`figure_mask` to about a pixel."""
    low, high = _extent(fig)
    x0, y0 = np.maximum(0.0, low).tolist()
    x1, y1 = np.minimum((width - 1.0, height - 1.0), high).tolist()
    return x0, y0, max(0.0, x1 - x0), max(0.0, y1 - y0)


# --------------------------------------------------------------------------------------------
# Random scenes


def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(math.exp(rng.uniform(math.log(bounds[0]), math.log(bounds[1]))))


def _bgr_from_hsv(h: float, s: float, v: float) -> BGR:
    r, g, b = colorsys.hsv_to_rgb(h, s, v)
    return int(b * 255), int(g * 255), int(r * 255)


# RGB skin and hair tones (light to dark), jittered per person.
_SKIN_RGB = ((255, 219, 172), (241, 194, 125), (224, 172, 105), (198, 134, 66), (141, 85, 36),
             (92, 51, 23))  # fmt: skip
_HAIR_RGB = ((20, 15, 10), (60, 40, 20), (110, 80, 40), (200, 170, 110), (150, 150, 150),
             (90, 30, 10))  # fmt: skip


def _jitter(rng: np.random.Generator, rgb: tuple[int, int, int], amount: int) -> BGR:
    r, g, b = np.clip(np.array(rgb) + rng.integers(-amount, amount + 1, 3), 0, 255).tolist()
    return b, g, r


def _sample_style(rng: np.random.Generator) -> FigureStyle:
    skin = _SKIN_RGB[int(rng.integers(len(_SKIN_RGB)))]
    hair = _HAIR_RGB[int(rng.integers(len(_HAIR_RGB)))]
    return FigureStyle(
        skin=_jitter(rng, skin, 12),
        hair=_jitter(rng, hair, 12),
        shirt=_bgr_from_hsv(rng.random(), rng.uniform(0.3, 1.0), rng.uniform(0.35, 1.0)),
        trousers=_bgr_from_hsv(rng.random(), rng.uniform(0.0, 0.8), rng.uniform(0.15, 0.7)),
        shoes=_bgr_from_hsv(rng.random(), rng.uniform(0.0, 0.5), rng.uniform(0.05, 0.3)),
        outline=_bgr_from_hsv(rng.random(), rng.uniform(0.0, 0.5), rng.uniform(0.0, 0.15)),
        arm_width=rng.uniform(0.045, 0.075),
        leg_width=rng.uniform(0.06, 0.095),
        long_sleeves=bool(rng.random() < 0.5),
    )


def _pair(rng: np.random.Generator, low: float, high: float) -> tuple[float, float]:
    a, b = rng.uniform(low, high, 2)
    return float(a), float(b)


def _signed_pair(rng: np.random.Generator, low: float, high: float) -> tuple[float, float]:
    """Two magnitudes in [low, high] with random signs: a 2-D projection of a bent joint can
    bend either way."""
    a, b = rng.uniform(low, high, 2) * rng.choice((-1.0, 1.0), 2)
    return float(a), float(b)


def _clamp(value: float, limit: float) -> float:
    return max(-limit, min(limit, float(value)))


def _sample_pose(rng: np.random.Generator) -> Pose:
    """Mostly upright people with relaxed limbs; a minority with raised arms or wide legs."""
    arm_hi = 170.0 if rng.random() < 0.4 else 60.0
    leg_hi = 85.0 if rng.random() < 0.15 else 35.0
    knee_hi = 110.0 if rng.random() < 0.2 else 60.0
    return Pose(
        body_deg=_clamp(rng.normal(0.0, 8.0), 25.0),
        lean_deg=_clamp(rng.normal(0.0, 6.0), 20.0),
        head_deg=_clamp(rng.normal(0.0, 10.0), 30.0),
        yaw=float(rng.uniform(0.55, 1.0)),
        arm_deg=_pair(rng, -20.0, arm_hi),
        elbow_deg=_signed_pair(rng, 0.0, 140.0),
        leg_deg=_pair(rng, -10.0, leg_hi),
        knee_deg=_signed_pair(rng, 0.0, knee_hi),
        upper_arm_scale=_pair(rng, 0.75, 1.0),
        forearm_scale=_pair(rng, 0.75, 1.0),
        thigh_scale=_pair(rng, 0.8, 1.0),
        shin_scale=_pair(rng, 0.8, 1.0),
    )


def _sample_figure(
    rng: np.random.Generator, pelvis: tuple[float, float], height: float, unlabelled: float
) -> Figure:
    front = bool(rng.random() < 0.75)
    fig = build_figure(_sample_pose(rng), _sample_style(rng), pelvis, height, front=front)
    keep = rng.random(len(CANONICAL_JOINTS)) >= unlabelled
    return Figure(fig.points, fig.height, fig.front, fig.style, fig.labelled & keep)


def _sample_people(
    rng: np.random.Generator, width: int, height: int, params: SceneParams
) -> tuple[Figure, ...]:
    """1-20 people standing in one group whose tightness sets the crowdIndex; sorted far to
    near (smaller = farther, and placed a little higher: a rough ground plane)."""
    lo, hi = params.people
    n = lo + min(hi - lo, int((hi - lo + 1) * rng.random() ** params.people_skew))
    typical = min(width, height) * _log_uniform(rng, params.height)
    typical /= math.sqrt(1.0 + params.crowd_shrink * (n - 1))
    a, b = (math.log(x) for x in params.depth_jitter)
    heights = np.sort(typical * np.exp(rng.uniform(a, b, n)))
    spread = _log_uniform(rng, params.spread)
    # Each person gets (spread * typical)^2 of a group area twice as wide as high; a crowd
    # larger than the image is squeezed into it, which is what makes big crowds hard.
    area = n * (spread * typical) ** 2
    group_w = float(np.clip(math.sqrt(2.0 * area), 0.2 * typical, width))
    group_h = float(np.clip(area / group_w, 0.1 * typical, height))
    cx, cy = rng.uniform(0.2, 0.8) * width, rng.uniform(0.35, 0.65) * height
    xs = cx + (rng.random(n) - 0.5) * group_w
    ys = cy + (rng.random(n) - 0.5) * group_h + 0.3 * (heights - typical)
    # The pelvis stays inside the image so that every person is at least partly in view.
    xs = np.clip(xs, 0.0, width - 1.0)
    ys = np.clip(ys, 0.0, height - 1.0)
    figures = (
        _sample_figure(rng, (float(x), float(y)), float(s), params.unlabelled_joint_prob)
        for x, y, s in zip(xs, ys, heights, strict=True)
    )
    if params.in_view:
        return tuple(_into_view(fig, width, height) for fig in figures)
    return tuple(figures)


def _into_view(fig: Figure, width: int, height: int) -> Figure:
    """``fig`` moved the least distance that puts its whole drawing inside the image; along
    an axis where it is larger than the image it is centred instead."""
    low, high = _extent(fig)
    dx = _axis_shift(float(low[0]), float(high[0]), width)
    dy = _axis_shift(float(low[1]), float(high[1]), height)
    points = fig.points + np.array([dx, dy])
    points.setflags(write=False)  # drawing caches derive from these points
    return Figure(points, fig.height, fig.front, fig.style, fig.labelled)


def _axis_shift(low: float, high: float, size: int, margin: float = 2.0) -> float:
    """Shift along one axis that brings [low, high] inside [margin, size - 1 - margin]; the
    margin absorbs the pixel by which the drawing may exceed :func:`_extent`."""
    end = size - 1 - margin
    if high - low > end - margin:
        return 0.5 * (end + margin - low - high)
    return max(0.0, margin - low) + min(0.0, end - high)


def _sample_crowd(rng: np.random.Generator, width: int, height: int) -> tuple[Figure, ...]:
    """5-12 small people side by side in a band of the upper image: a distant crowd."""
    small = min(width, height) * rng.uniform(0.06, 0.12)
    band_w = rng.uniform(0.25, 0.6) * width
    x0 = rng.uniform(0.0, width - band_w)
    feet = rng.uniform(small, 0.6 * height)
    m = int(rng.integers(5, 13))
    xs = np.sort(x0 + rng.random(m) * band_w)
    sizes = small * rng.uniform(0.85, 1.15, m)
    return tuple(
        _sample_figure(rng, (float(x), float(feet - 0.5 * s)), float(s), 0.0)
        for x, s in zip(xs, sizes, strict=True)
    )


def _sample_background(
    rng: np.random.Generator, width: int, height: int, params: SceneParams
) -> ImageArray:
    """Smooth colour field + coarse noise texture + random shapes (rectangles, discs,
    ellipses, poles and triangles); all drawn before the people."""
    grid = rng.integers(0, 256, (int(rng.integers(2, 5)), int(rng.integers(2, 5)), 3))
    smooth = cv2.resize(grid.astype(np.uint8), (width, height), interpolation=cv2.INTER_LINEAR)
    image: ImageArray = np.asarray(smooth, dtype=np.uint8)
    amplitude = int(rng.integers(0, 30))
    if amplitude:
        cell = int(rng.integers(1, 5))
        shape = (-(-height // cell), -(-width // cell))
        coarse = rng.integers(-amplitude, amplitude + 1, shape, dtype=np.int16)
        noise = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_NEAREST)
        textured = image.astype(np.int16) + np.asarray(noise)[..., None]
        image = np.clip(textured, 0, 255).astype(np.uint8)
    lo, hi = params.clutter_shapes
    for _ in range(int(rng.integers(lo, hi + 1))):
        _draw_clutter(rng, image)
    return image


def _draw_clutter(rng: np.random.Generator, image: ImageArray) -> None:
    height, width = image.shape[:2]
    side = min(width, height)
    colour = tuple(int(c) for c in rng.integers(0, 256, 3))
    thick = -1 if rng.random() < 0.6 else int(rng.integers(1, 6))
    kind = int(rng.integers(0, 5))
    x, y = int(rng.integers(-side // 4, width)), int(rng.integers(-side // 4, height))
    size = int(side * rng.uniform(0.03, 0.3)) + 1
    if kind == 0:
        cv2.rectangle(image, (x, y), (x + size, y + int(size * rng.uniform(0.3, 2))), colour, thick)
    elif kind == 1:
        cv2.circle(image, (x, y), size // 2, colour, thick)
    elif kind == 2:
        axes = (size // 2, int(size * rng.uniform(0.1, 0.5)) + 1)
        cv2.ellipse(image, (x, y), axes, float(rng.uniform(0, 180)), 0, 360, colour, thick)
    elif kind == 3:
        end = (
            x + int(rng.integers(-size, size + 1)),
            y + int(rng.integers(-2 * size, 2 * size + 1)),
        )
        cv2.line(image, (x, y), end, colour, int(rng.integers(1, 9)))
    else:
        tri = np.array([(x, y), (x + size, y), (x, y + size)], dtype=np.int32)
        tri += rng.integers(-size // 3 - 1, size // 3 + 1, (3, 2)).astype(np.int32)
        cv2.fillConvexPoly(image, tri, colour)


def sample_scene(
    rng: np.random.Generator,
    width: int,
    height: int,
    params: SceneParams = SceneParams(),
    *,
    crowd_region: bool = True,
) -> Scene:
    """A random scene of ``width`` x ``height``. Draws background, then people, then (with
    ``crowd_region`` and probability ``params.crowd_region_prob``) a distant crowd, so one
    seed gives the same background and people whether or not a crowd may be added."""
    background = _sample_background(rng, width, height, params)
    people = _sample_people(rng, width, height, params)
    want_crowd = rng.random() < params.crowd_region_prob
    crowd = _sample_crowd(rng, width, height) if crowd_region and want_crowd else ()
    return Scene(background=background, people=people, crowd=crowd)


# --------------------------------------------------------------------------------------------
# Annotation


@cache
def _spec_points(spec: KeypointSpec) -> npt.NDArray[np.intp]:
    """Index into :data:`CANONICAL_JOINTS` of each keypoint of ``spec``, in spec order."""
    try:
        return np.array([_P[_ALIASES.get(n, n)] for n in spec.keypoint_names], dtype=np.intp)
    except KeyError as err:
        raise AeposeError(
            f"keypoint spec {spec.name!r}: the generator draws no point called {err.args[0]!r}"
        ) from None


def keypoints_for(fig: Figure, label: int, labels: ImageArray, spec: KeypointSpec) -> FloatArray:
    """float64 [K, 3] COCO keypoints (x, y, v) of ``fig`` drawn with value ``label`` in the
    label map ``labels`` (uint8 [H, W]); v = 0 rows are (0, 0, 0). See the module docstring."""
    idx = _spec_points(spec)
    xy = fig.points[idx]
    height, width = labels.shape
    inside = (xy[:, 0] >= 0) & (xy[:, 0] <= width - 1) & (xy[:, 1] >= 0) & (xy[:, 1] <= height - 1)
    keep = fig.labelled[idx] & inside
    col = np.clip(np.rint(xy[:, 0]), 0, width - 1).astype(np.intp)
    row = np.clip(np.rint(xy[:, 1]), 0, height - 1).astype(np.intp)
    # A person's own primitives cover each of its joints, so any other label there is a
    # nearer person painted on top.
    own = labels[row, col] == label
    out = np.zeros((len(idx), 3))
    out[keep, :2] = xy[keep]
    out[:, 2] = np.where(keep, np.where(own, 2, 1), 0)
    return out


def crowd_index(keypoints: FloatArray, boxes: FloatArray) -> float:
    """The CrowdPose paper's Crowd Index of one image.

    ``keypoints`` [P, K, 3] (x, y, v) and ``boxes`` [P, 4] COCO (x, y, w, h) of the P annotated
    (non-crowd) people. For person i, with N_a(i) = its labelled (v > 0) joints and N_b(i) = the
    labelled joints of the OTHER people lying in its box (edges included), the index is
    mean_i N_b(i) / N_a(i) over the people with N_a(i) > 0; 0.0 when there are none.
    """
    labelled = keypoints[..., 2] > 0  # [P, K]
    x, y = keypoints[..., 0], keypoints[..., 1]
    x0, y0 = boxes[:, 0, None, None], boxes[:, 1, None, None]
    x1, y1 = x0 + boxes[:, 2, None, None], y0 + boxes[:, 3, None, None]
    # inside[i, j, k]: joint k of person j is labelled and inside person i's box.
    inside = labelled[None] & (x[None] >= x0) & (x[None] <= x1) & (y[None] >= y0) & (y[None] <= y1)
    counts = inside.sum(axis=2)  # [P, P]
    others = counts.sum(axis=1) - np.diagonal(counts)
    own = labelled.sum(axis=1)
    valid = own > 0
    if not valid.any():
        return 0.0
    return float(np.mean(others[valid] / own[valid]))


def _round(values: Sequence[float] | FloatArray) -> list[float]:
    return [round(float(v), 2) for v in values]


def _flat_keypoints(kpts: FloatArray) -> list[float | int]:
    flat: list[float | int] = []
    for x, y, v in kpts:
        flat += [round(float(x), 2), round(float(y), 2), int(v)]
    return flat


def _mask_bbox(mask: BoolArray, ox: int = 0, oy: int = 0) -> list[float]:
    """COCO box of the True pixels of ``mask`` (offset by ``ox``, ``oy``), as pycocotools'
    ``toBbox`` computes it: width = last column - first column + 1."""
    cols, rows = np.flatnonzero(mask.any(axis=0)), np.flatnonzero(mask.any(axis=1))
    return [
        float(cols[0] + ox),
        float(rows[0] + oy),
        float(cols[-1] - cols[0] + 1),
        float(rows[-1] - rows[0] + 1),
    ]


def _polygons(mask: BoolArray, ox: int, oy: int) -> list[list[float]]:
    """COCO polygons of the outer contours of ``mask``; a contour with fewer than 3 vertices
    (a one-pixel sliver) becomes the region's box, since COCO tools need 3."""
    contours, _ = cv2.findContours(
        mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    polys = [
        (c.reshape(-1, 2) + np.array([ox, oy])).astype(np.float64).ravel().tolist()
        for c in contours
        if len(c) >= 3
    ]
    if polys:
        return polys
    x, y, w, h = _mask_bbox(mask, ox, oy)
    return [[x, y, x + w - 1, y, x + w - 1, y + h - 1, x, y + h - 1]]


def _rle(mask: BoolArray) -> dict[str, Any]:
    """Uncompressed COCO RLE (column-major run lengths, starting with a run of zeros), the
    form COCO uses for crowd regions."""
    flat = mask.ravel(order="F")
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], changes, [flat.size]))
    counts = np.diff(bounds).tolist()
    if flat[0]:
        counts = [0, *counts]
    return {"counts": counts, "size": [int(mask.shape[0]), int(mask.shape[1])]}


@dataclass(frozen=True)
class _Format:
    """What a dataset's annotation files carry (see the fixtures in ../shared/fixtures)."""

    iscrowd: bool  # annotations carry iscrowd (AIC's have none)
    visible_region: bool  # COCO: bbox, area and polygons describe the visible pixels
    crowd_regions: bool  # some images carry an iscrowd=1 region with RLE segmentation
    crowd_index: bool  # image records carry crowdIndex (CrowdPose)
    header: bool  # top-level info and licenses (CrowdPose's files have neither)
    naming: Literal["coco", "number", "sha1"]


_FORMATS: dict[str, _Format] = {
    "coco": _Format(iscrowd=True, visible_region=True, crowd_regions=True, crowd_index=False,
                    header=True, naming="coco"),
    "crowdpose": _Format(iscrowd=True, visible_region=False, crowd_regions=True,
                         crowd_index=True, header=False, naming="number"),
    "aic": _Format(iscrowd=False, visible_region=False, crowd_regions=False, crowd_index=False,
                   header=True, naming="sha1"),
}  # fmt: skip


def _visible_fields(fig: Figure, label: int, labels: ImageArray) -> dict[str, Any] | None:
    """COCO's bbox, area (pixel count) and polygons of the pixels where ``fig`` is on top;
    None when a nearer person hides it completely (COCO does not annotate what is unseen)."""
    x, y, w, h = figure_bbox(fig, labels.shape[1], labels.shape[0])
    # The visible pixels lie inside the whole figure's box; a 2-pixel margin absorbs rounding.
    ox, oy = max(0, int(x) - 2), max(0, int(y) - 2)
    mask = labels[oy : int(y + h) + 3, ox : int(x + w) + 3] == label
    if not mask.any():
        return None
    return {
        "bbox": _mask_bbox(mask, ox, oy),
        "area": float(mask.sum()),
        "segmentation": _polygons(mask, ox, oy),
        "iscrowd": 0,
    }


def _person_record(
    fig: Figure, label: int, labels: ImageArray, spec: KeypointSpec, fmt: _Format
) -> dict[str, Any] | None:
    """One person's annotation (without ``id`` and ``image_id``); None if COCO would skip it."""
    kpts = keypoints_for(fig, label, labels, spec)
    record: dict[str, Any] = {
        "category_id": 1,
        "keypoints": _flat_keypoints(kpts),
        "num_keypoints": int(np.count_nonzero(kpts[:, 2])),
    }
    if fmt.visible_region:
        visible = _visible_fields(fig, label, labels)
        if visible is None:
            return None
        return record | visible
    record["bbox"] = _round(figure_bbox(fig, labels.shape[1], labels.shape[0]))
    if fmt.iscrowd:
        record["iscrowd"] = 0
    return record


def _crowd_record(labels: ImageArray, spec: KeypointSpec, fmt: _Format) -> dict[str, Any] | None:
    """The iscrowd=1 annotation of the visible crowd pixels; None if people hide them all."""
    mask = labels == CROWD_LABEL
    if not mask.any():
        return None
    record: dict[str, Any] = {
        "category_id": 1,
        "iscrowd": 1,
        "keypoints": [0] * (3 * spec.num_keypoints),
        "num_keypoints": 0,
        "bbox": _mask_bbox(mask),
        "segmentation": _rle(mask),
    }
    if fmt.visible_region:
        record["area"] = float(mask.sum())
    return record


@dataclass(frozen=True, eq=False)
class ImageSample:
    """One generated image: its scene, rendering, COCO annotation records (people first, then
    any crowd region; without ``id`` / ``image_id``) and its :func:`crowd_index`, computed from
    the records' rounded keypoints and boxes."""

    scene: Scene
    rendered: RenderedScene
    annotations: tuple[dict[str, Any], ...]
    crowd_index: float


def _records_crowd_index(records: Sequence[dict[str, Any]], num_keypoints: int) -> float:
    people = [r for r in records if not r.get("iscrowd", 0)]
    kpts = np.array([r["keypoints"] for r in people], dtype=np.float64)
    boxes = np.array([r["bbox"] for r in people], dtype=np.float64)
    return crowd_index(kpts.reshape(len(people), num_keypoints, 3), boxes.reshape(-1, 4))


def annotate_scene(
    scene: Scene, rendered: RenderedScene, spec_name: str
) -> tuple[dict[str, Any], ...]:
    """COCO annotation records of a rendered scene in ``spec_name``'s format, without ``id``
    and ``image_id``: one per person, near or far, (COCO skips people hidden completely),
    then the crowd region's ``iscrowd`` record if the scene has a visible crowd."""
    spec = get_spec(spec_name)
    fmt = _FORMATS[spec.name]
    labels = rendered.labels
    records = [_person_record(fig, i + 1, labels, spec, fmt) for i, fig in enumerate(scene.people)]
    people = tuple(r for r in records if r is not None)
    crowd = _crowd_record(labels, spec, fmt) if scene.crowd else None
    return (*people, crowd) if crowd is not None else people


def generate_image(
    rng: np.random.Generator,
    spec_name: str,
    width: int,
    height: int,
    params: SceneParams = SceneParams(),
) -> ImageSample:
    """Sample, render and annotate one ``width`` x ``height`` scene in ``spec_name``'s format
    (a crowd region is only ever added for the formats that have them: COCO, CrowdPose)."""
    spec = get_spec(spec_name)
    crowd_region = _FORMATS[spec.name].crowd_regions
    scene = sample_scene(rng, width, height, params, crowd_region=crowd_region)
    rendered = render_scene(scene)
    annotations = annotate_scene(scene, rendered, spec.name)
    index = _records_crowd_index(annotations, spec.num_keypoints)
    return ImageSample(scene, rendered, annotations, index)


# --------------------------------------------------------------------------------------------
# Dataset folders


@dataclass(frozen=True)
class SplitSummary:
    """What one split received: files, counts and every image's crowdIndex (2 decimals)."""

    name: str  # "train" or "val"
    annotation_file: Path
    image_dir: Path
    images: int
    people: int
    crowd_regions: int
    crowd_index: tuple[float, ...]

    def crowd_buckets(self) -> tuple[int, int, int]:
        """Images per CrowdPose difficulty: easy (< 0.2), medium, hard (>= 0.8)."""
        ci = np.asarray(self.crowd_index)
        easy, hard = int(np.sum(ci < 0.2)), int(np.sum(ci >= 0.8))
        return easy, len(ci) - easy - hard, hard


@dataclass(frozen=True)
class SynthSummary:
    """Result of :func:`generate_dataset`: the dataset root (a ``--data-root``) and its splits."""

    spec: str
    root: Path
    splits: tuple[SplitSummary, ...]


@dataclass(frozen=True)
class _Job:
    """Settings shared by every image of one :func:`generate_dataset` call."""

    root: Path
    spec: KeypointSpec
    fmt: _Format
    seed: int
    sides: tuple[int, int]
    params: SceneParams


def split_counts(total: int, val_fraction: float = 0.2) -> tuple[int, int]:
    """(train, val) image counts for ``--images total``: ``round(total * val_fraction)``
    validation images, at least 1 (and at most ``total - 1``) when ``total >= 2``."""
    if total < 1:
        raise AeposeError(f"--images must be at least 1, got {total}")
    if total == 1:
        return 1, 0
    val = min(total - 1, max(1, round(total * val_fraction)))
    return total - val, val


def parse_size(text: str) -> tuple[int, int]:
    """``"256..640"`` -> (256, 640); ``"320"`` -> (320, 320) (the CLI's ``--size``)."""
    low, sep, high = text.partition("..")
    try:
        sides = (int(low), int(high)) if sep else (int(low), int(low))
    except ValueError:
        raise AeposeError(f"--size must be N or MIN..MAX, got {text!r}") from None
    return _check_sides(sides)


def _check_sides(size: int | tuple[int, int]) -> tuple[int, int]:
    lo, hi = (size, size) if isinstance(size, int) else size
    if not SIZE_LIMITS[0] <= lo <= hi <= SIZE_LIMITS[1]:
        raise AeposeError(
            f"image size must satisfy {SIZE_LIMITS[0]} <= min <= max <= {SIZE_LIMITS[1]}, "
            f"got {lo}..{hi}"
        )
    return lo, hi


def _file_name(job: _Job, image_id: int, split_index: int, index: int) -> str:
    """The dataset's own naming: COCO 12-digit ids, CrowdPose plain ids, AIC 40-hex digests."""
    if job.fmt.naming == "coco":
        return f"{image_id:012d}.jpg"
    if job.fmt.naming == "number":
        return f"{image_id}.jpg"
    key = f"aepose-synth:{job.seed}:{split_index}:{index}".encode()
    return hashlib.sha1(key).hexdigest() + ".jpg"


def _encode_jpeg(image: ImageArray) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise AeposeError("OpenCV could not encode a generated image as JPEG")
    return bytes(buf.tobytes())


def _document(
    job: _Job, split: str, images: list[dict[str, Any]], annotations: list[dict[str, Any]]
) -> dict[str, Any]:
    """The whole annotation file of one split."""
    spec = job.spec
    category = {
        "id": 1,
        "name": "person",
        "supercategory": "person",
        "keypoints": list(spec.keypoint_names),
        "skeleton": [[a + 1, b + 1] for a, b in spec.skeleton],  # COCO counts joints from 1
    }
    doc: dict[str, Any] = {"categories": [category], "images": images, "annotations": annotations}
    if job.fmt.header:
        doc["info"] = {
            "description": f"aepose generated crowd scenes ({spec.name}, {split}, seed {job.seed})",
            "version": "1.0",
        }
        doc["licenses"] = [{"id": 1, "name": "", "url": ""}]
    return doc


def _write_image(
    job: _Job, split_index: int, index: int, image_id: int, image_dir: Path
) -> tuple[dict[str, Any], ImageSample]:
    """Generate, encode and write image ``index`` of a split; returns its image record."""
    # Image i owns its stream: it is the same however many images are generated.
    rng = np.random.default_rng(np.random.SeedSequence(job.seed, spawn_key=(split_index, index)))
    width, height = (int(s) for s in rng.integers(job.sides[0], job.sides[1] + 1, 2))
    sample = generate_image(rng, job.spec.name, width, height, job.params)
    file_name = _file_name(job, image_id, split_index, index)
    (image_dir / file_name).write_bytes(_encode_jpeg(sample.rendered.image))
    record: dict[str, Any] = {
        "id": image_id,
        "file_name": file_name,
        "width": width,
        "height": height,
    }
    if job.fmt.crowd_index:
        record["crowdIndex"] = round(sample.crowd_index, 2)
    return record, sample


def _write_split(
    job: _Job, split_index: int, name: str, count: int, first_ids: tuple[int, int]
) -> tuple[SplitSummary, tuple[int, int]]:
    """Write ``count`` images and the annotation file of one split; ids continue from
    ``first_ids`` (image id, annotation id) and the next free ones are returned."""
    layout = DATASET_FILES[job.spec.name]
    ann_file = job.root / layout[2 * split_index]
    image_dir = job.root / layout[2 * split_index + 1]
    image_dir.mkdir(parents=True, exist_ok=True)
    image_id, ann_id = first_ids
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    indices: list[float] = []
    for index in range(count):
        record, sample = _write_image(job, split_index, index, image_id + index, image_dir)
        images.append(record)
        indices.append(round(sample.crowd_index, 2))
        for ann in sample.annotations:
            annotations.append(ann | {"id": ann_id, "image_id": record["id"]})
            ann_id += 1
    ann_file.parent.mkdir(parents=True, exist_ok=True)
    doc = _document(job, name, images, annotations)
    ann_file.write_text(json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n", "utf-8")
    crowd = sum(1 for a in annotations if a.get("iscrowd", 0))
    people = len(annotations) - crowd
    summary = SplitSummary(name, ann_file, image_dir, count, people, crowd, tuple(indices))
    return summary, (image_id + count, ann_id)


def generate_dataset(
    out_dir: str | Path,
    spec_name: str,
    *,
    train_images: int,
    val_images: int,
    seed: int = 0,
    size: int | tuple[int, int] = (256, 640),
    params: SceneParams = SceneParams(),
    overwrite: bool = False,
) -> SynthSummary:
    """Write a generated dataset under ``out_dir`` in the layout of the real ``spec_name``
    dataset (``DATASET_FILES``), so ``out_dir`` works as ``--data-root`` of train and test.

    Args:
        out_dir: dataset root; created if missing.
        spec_name: ``"crowdpose"``, ``"aic"`` or ``"coco"``.
        train_images, val_images: images per split (:func:`split_counts` turns the CLI's
            ``--images N`` into these). Image ids run on from train into val.
        seed: non-negative; the same seed (and arguments) gives byte-identical files.
        size: image side, or (min, max) range from which width and height are drawn
            independently per image.
        params: scene sampling parameters.
        overwrite: replace existing annotation files (images are always rewritten; stray
            files already in the folders are left alone).
    """
    spec = get_spec(spec_name)
    if train_images < 0 or val_images < 0:
        raise AeposeError(f"image counts must be >= 0, got train {train_images}, val {val_images}")
    if seed < 0:
        raise AeposeError(f"seed must be >= 0, got {seed}")
    job = _Job(Path(out_dir), spec, _FORMATS[spec.name], seed, _check_sides(size), params)
    if job.root.exists() and not job.root.is_dir():
        raise AeposeError(f"{job.root} exists and is not a folder")
    layout = DATASET_FILES[spec.name]
    for ann in (job.root / layout[0], job.root / layout[2]):
        if ann.exists() and not overwrite:
            raise AeposeError(f"{ann} already exists; choose another folder or overwrite it")
    ids = (1, 1)
    splits = []
    for split_index, (name, count) in enumerate((("train", train_images), ("val", val_images))):
        summary, ids = _write_split(job, split_index, name, count, ids)
        splits.append(summary)
    return SynthSummary(spec.name, job.root, tuple(splits))
