"""Drawing: figures painted far to near over a background, with a label map of who is where.

OpenCV draws with pixel centres on integer coordinates, so a point (x, y) lies in pixel
(round(x), round(y)). Images are BGR uint8 [H, W, 3]; label maps uint8 [H, W].
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

import cv2
import numpy as np
import numpy.typing as npt

from aepose.synth.figure import (
    BGR,
    HAND_R,
    HEAD_R,
    NECK_WIDTH,
    BoolArray,
    Figure,
    FloatArray,
    along,
)

__all__ = [
    "CROWD_LABEL",
    "RenderedScene",
    "Scene",
    "figure_bbox",
    "figure_extent",
    "figure_mask",
    "label_map",
    "render_scene",
]

ImageArray = npt.NDArray[np.uint8]

CROWD_LABEL = 255  # label-map value of the small unannotated people inside a crowd region
_SHIFT = 4  # OpenCV fixed-point bits: coordinates are drawn with 1/16 pixel precision
_ONE = 1 << _SHIFT


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
        _disc(p(f"{side}_hand"), HAND_R * h, st.skin),
    ]
    return leg, arm


def _torso_parts(fig: Figure) -> list[_Part]:
    """Torso quadrilateral widened by the limb widths, plus (facing the camera) a collar."""
    p, st, h = fig.point, fig.style, fig.height
    across_sh = _direction(p("right_shoulder"), p("left_shoulder"))
    across_hip = _direction(p("right_hip"), p("left_hip"))
    a, b = 0.5 * st.arm_width * h, 0.5 * st.leg_width * h
    quad = (
        along(p("left_shoulder"), across_sh, a),
        along(p("right_shoulder"), across_sh, -a),
        along(p("right_hip"), across_hip, -b),
        along(p("left_hip"), across_hip, b),
    )
    # The rounded edge (half an arm wide) softens the corners without swallowing the arms.
    parts = [_Part("poly", tuple(_fixed(q) for q in quad), 0.5 * st.arm_width * h, st.shirt)]
    if fig.front:
        (lx, ly), (rx, ry) = p("left_hip"), p("right_hip")
        down = _direction(p("neck"), (0.5 * (lx + rx), 0.5 * (ly + ry)))
        v = along(p("neck"), down, 0.09 * h)
        collar = (p("neck"), along(v, across_sh, 0.045 * h), along(v, across_sh, -0.045 * h))
        parts.append(_Part("poly", tuple(_fixed(q) for q in collar), 0.0, st.skin, False))
    return parts


def _head_parts(fig: Figure) -> list[_Part]:
    """Neck, ears and head; facing the camera also a face with eyes and a nose."""
    p, st, h = fig.point, fig.style, fig.height
    r = HEAD_R * h
    parts = [
        _line(p("neck"), p("head_centre"), NECK_WIDTH * h, st.skin),
        _disc(p("left_ear"), 0.3 * r, st.skin),
        _disc(p("right_ear"), 0.3 * r, st.skin),
        _disc(p("head_centre"), r, st.hair),
    ]
    if fig.front:
        down = _direction(p("head_top"), p("head_centre"))
        parts += [
            _disc(along(p("head_centre"), down, 0.15 * r), 0.8 * r, st.skin, False),
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


# Each figure's primitives, computed once: the painter, masks and boxes all read them. Keyed
# weakly by the (identity-hashed) figure, so the cache lives exactly as long as the figure.
_PARTS: weakref.WeakKeyDictionary[Figure, list[_Part]] = weakref.WeakKeyDictionary()


def _parts_of(fig: Figure) -> list[_Part]:
    """The figure's drawing primitives in painting order (computed once per figure)."""
    parts = _PARTS.get(fig)
    if parts is None:
        parts = _PARTS[fig] = _figure_parts(fig)
    return parts


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
    parts = _parts_of(fig)
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


def label_map(figures: Sequence[Figure], width: int, height: int) -> ImageArray:
    """uint8 [height, width]: i + 1 where ``figures[i]`` (ordered far to near) is on top, 0
    elsewhere. The label map :func:`render_scene` returns for these people (and no crowd),
    without painting the image: what visibility flags need, at a fraction of the cost."""
    labels = np.zeros((height, width), dtype=np.uint8)
    for i, fig in enumerate(figures):
        grow = _outline_width(fig)
        for part in _parts_of(fig):
            if part.solid:
                _draw(labels, part, i + 1, grow)
    return labels


def figure_mask(fig: Figure, width: int, height: int) -> BoolArray:
    """bool [height, width]: the pixels ``fig`` covers when drawn alone (outline included)."""
    canvas = np.zeros((height, width), dtype=np.uint8)
    grow = _outline_width(fig)
    for part in _parts_of(fig):
        if part.solid:
            _draw(canvas, part, 1, grow)
    return canvas.astype(bool)


def figure_extent(fig: Figure) -> tuple[FloatArray, FloatArray]:
    """Unclipped (x, y) minimum and maximum of the whole drawn figure.

    Computed from the primitives (endpoints and centres +- half widths or radii), so it covers
    parts hidden by nearer people.
    """
    grow = _outline_width(fig)
    solid = [part for part in _parts_of(fig) if part.solid]
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
    """COCO box (x, y, w, h) of the whole drawn figure (:func:`figure_extent`), clipped to the
    image; it agrees with the pixel extent of :func:`figure_mask` to about a pixel."""
    low, high = figure_extent(fig)
    x0, y0 = np.maximum(0.0, low).tolist()
    x1, y1 = np.minimum((width - 1.0, height - 1.0), high).tolist()
    return x0, y0, max(0.0, x1 - x0), max(0.0, y1 - y0)
