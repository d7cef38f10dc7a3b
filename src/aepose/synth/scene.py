"""Random scenes: a cluttered background and 1-20 people in one group, plus a distant crowd.

All randomness of a still image lives here; figures (:mod:`aepose.synth.figure`) and drawing
(:mod:`aepose.synth.render`) are deterministic.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import cv2
import numpy as np

from aepose.errors import AeposeError
from aepose.synth.figure import (
    BGR,
    CANONICAL_JOINTS,
    DRAW_POINT_JOINTS,
    POINT_INDEX,
    Figure,
    FigureStyle,
    JointAngles,
    build_figure,
)
from aepose.synth.render import ImageArray, Scene, figure_extent

__all__ = ["SceneParams", "sample_background", "sample_scene", "sample_style"]


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
        unlabelled_joint_prob: chance that a joint inside the image is left unlabelled (v=0);
            a hand, toe or head centre shares its joint's draw (``DRAW_POINT_JOINTS``).
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


def sample_style(rng: np.random.Generator) -> FigureStyle:
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


def _sample_pose(rng: np.random.Generator) -> JointAngles:
    """Mostly upright people with relaxed limbs; a minority with raised arms or wide legs."""
    arm_hi = 170.0 if rng.random() < 0.4 else 60.0
    leg_hi = 85.0 if rng.random() < 0.15 else 35.0
    knee_hi = 110.0 if rng.random() < 0.2 else 60.0
    return JointAngles(
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
    fig = build_figure(_sample_pose(rng), sample_style(rng), pelvis, height, front=front)
    keep = rng.random(len(CANONICAL_JOINTS)) >= unlabelled
    keep = np.concatenate([keep, keep[[POINT_INDEX[n] for n in DRAW_POINT_JOINTS]]])
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
    low, high = figure_extent(fig)
    dx = _axis_shift(float(low[0]), float(high[0]), width)
    dy = _axis_shift(float(low[1]), float(high[1]), height)
    points = fig.points + np.array([dx, dy])
    points.setflags(write=False)  # drawing caches derive from these points
    return Figure(points, fig.height, fig.front, fig.style, fig.labelled)


def _axis_shift(low: float, high: float, size: int, margin: float = 2.0) -> float:
    """Shift along one axis that brings [low, high] inside [margin, size - 1 - margin]; the
    margin absorbs the pixel by which the drawing may exceed :func:`figure_extent`."""
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


def sample_background(
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
    background = sample_background(rng, width, height, params)
    people = _sample_people(rng, width, height, params)
    want_crowd = rng.random() < params.crowd_region_prob
    crowd = _sample_crowd(rng, width, height) if crowd_region and want_crowd else ()
    return Scene(background=background, people=people, crowd=crowd)
