"""Drawing of predicted poses and heatmap debug views on RGB images.

Legend: H x W image (pixels), P people, K keypoints, h x w heatmap. Keypoint coordinates are
image pixels with x = column and y = row; an integer coordinate is the centre of that pixel
(OpenCV's drawing convention), and fractional coordinates are drawn with sub-pixel precision.

Colours: each person's links take the person's own colour (:func:`person_color`, a fixed
golden-ratio hue sequence), so neighbouring people in a crowd stay apart; keypoints keep the
dataset's colours from :class:`~aepose.keypoints.KeypointSpec` (left green, right orange,
centre blue, mmpose's palette), so left and right stay readable on every person.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import numpy.typing as npt

from aepose.choices import KEYPOINT_THRESHOLD, PREDICT_MIN_SCORE
from aepose.errors import AeposeError
from aepose.image import check_rgb
from aepose.io import write_bytes
from aepose.keypoints import RGB, KeypointSpec

if TYPE_CHECKING:  # a Pose draws itself with this module: no import cycle at run time
    from aepose.pipeline.pose import Pose

__all__ = [
    "UNTRACKED_COLOR",
    "draw_poses",
    "heatmap_overlay",
    "overlay",
    "person_color",
    "save_image",
    "track_color",
]

Image = npt.NDArray[np.uint8]

# Golden-ratio steps spread consecutive hues as far apart as possible for any person count.
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0
# cv2 draws integer coordinates; 4 fractional bits keep sub-pixel keypoint positions.
_SHIFT = 4
# Far beyond any image, but small enough that coordinate * 2**_SHIFT fits cv2's int32.
_COORD_LIMIT = 1e6
_JPEG = (".jpg", (cv2.IMWRITE_JPEG_QUALITY, 95))
_SAVE_FORMATS: dict[str, tuple[str, tuple[int, ...]]] = {
    ".png": (".png", ()),
    ".jpg": _JPEG,
    ".jpeg": _JPEG,
}


def person_color(index: int) -> RGB:
    """Colour of person ``index`` (0-based): a fixed, distinct, bright RGB colour."""
    hue = (0.05 + index * _GOLDEN) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    return round(r * 255), round(g * 255), round(b * 255)


UNTRACKED_COLOR: RGB = (160, 160, 160)
"""Grey, for a person in a tracked video that has no track (track id -1 or None)."""


def track_color(track_id: int | None) -> RGB:
    """The colour of a track: the same for an ID in every frame (``person_color(track_id)``),
    grey (:data:`UNTRACKED_COLOR`) for no track (None or a negative ID)."""
    return UNTRACKED_COLOR if track_id is None or track_id < 0 else person_color(track_id)


def draw_poses(
    image_rgb: npt.NDArray[np.uint8],
    keypoints: npt.ArrayLike,
    scores: npt.ArrayLike,
    spec: KeypointSpec,
    *,
    keypoint_threshold: float = 0.3,
    radius: int | None = None,
    thickness: int | None = None,
    show_scores: bool = True,
    colors: Sequence[RGB] | None = None,
    labels: Sequence[str | None] | None = None,
) -> Image:
    """Draw skeletons, keypoints and person scores on a copy of an RGB image.

    Args:
        image_rgb: [H, W, 3] uint8 RGB image; not modified.
        keypoints: [P, K, 3] (x, y, score) per person, x/y in image pixels.
        scores: [P] person scores, written as a label near each person's top-left.
        spec: the skeleton (links) and keypoint colours; K must match it.
        keypoint_threshold: keypoints with score below it (and links touching them) are not
            drawn (default: mmpose's demo ``kpt_thr``); nor are undetected ones (score 0) at
            any threshold.
        radius, thickness: keypoint radius and link width in pixels; by default they grow
            with the image (4 and 2 pixels at 640 pixels on the long side).
        show_scores: draw the person-score labels.
        colors: [P] RGB colour of each person's links and label (e.g. :func:`track_color`
            of its track ID, so a person keeps its colour through a video); default
            :func:`person_color` of its position in ``keypoints``.
        labels: [P] text of each person's label in place of its score (e.g. ``"#3 0.87"``);
            None entries fall back to the score. Drawn when ``show_scores`` is True.

    Returns:
        [H, W, 3] uint8 RGB image with the poses drawn (anti-aliased).
    """
    canvas = check_rgb(np.asarray(image_rgb)).copy()
    kpts, person_scores = _check_poses(keypoints, scores, spec)
    scale = max(canvas.shape[:2]) / 640.0
    radius = max(2, round(4 * scale)) if radius is None else radius
    thickness = max(1, round(2 * scale)) if thickness is None else thickness
    _check_per_person(len(kpts), colors, "colors")
    _check_per_person(len(kpts), labels, "labels")
    for index, (person, score) in enumerate(zip(kpts, person_scores, strict=True)):
        visible = ((person[:, 2] >= keypoint_threshold) & (person[:, 2] > 0)
                   & np.isfinite(person[:, :2]).all(axis=1))
        if not visible.any():
            continue
        color = person_color(index) if colors is None else colors[index]
        _draw_person(canvas, person[:, :2], visible, spec, color, radius, thickness)
        if show_scores:
            label = labels[index] if labels is not None else None
            text = f"{score:.2f}" if label is None else label
            corner = person[visible, :2].min(axis=0)
            _draw_label(canvas, text, (float(corner[0]), float(corner[1])), color, scale)
    return canvas


def _check_per_person(people: int, values: Sequence[object] | None, what: str) -> None:
    if values is not None and len(values) != people:
        raise AeposeError(f"{people} people but {len(values)} {what}")


def _check_poses(
    keypoints: npt.ArrayLike, scores: npt.ArrayLike, spec: KeypointSpec
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    kpts = np.asarray(keypoints, dtype=np.float64)
    person_scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    k = spec.num_keypoints
    if kpts.size == 0 and person_scores.size == 0:
        return np.zeros((0, k, 3)), person_scores
    if kpts.ndim != 3 or kpts.shape[1:] != (k, 3):
        raise AeposeError(f"keypoints must be [P, {k}, 3] for {spec.name}, got {list(kpts.shape)}")
    if len(person_scores) != len(kpts):
        raise AeposeError(f"{len(kpts)} people but {len(person_scores)} person scores")
    return kpts, person_scores


def _fixed_point(xy: npt.NDArray[np.float64]) -> tuple[int, int]:
    x, y = np.clip(xy, -_COORD_LIMIT, _COORD_LIMIT) * (1 << _SHIFT)
    return round(float(x)), round(float(y))


def _draw_person(
    canvas: Image,
    xy: npt.NDArray[np.float64],
    visible: npt.NDArray[np.bool_],
    spec: KeypointSpec,
    color: RGB,
    radius: int,
    thickness: int,
) -> None:
    # Links first so keypoint dots stay on top of them.
    for a, b in spec.skeleton:
        if visible[a] and visible[b]:
            pa, pb = _fixed_point(xy[a]), _fixed_point(xy[b])
            cv2.line(canvas, pa, pb, color, thickness, cv2.LINE_AA, _SHIFT)
    for k in np.flatnonzero(visible):
        center = _fixed_point(xy[k])
        cv2.circle(
            canvas, center, radius << _SHIFT, spec.keypoint_colors[k], -1, cv2.LINE_AA, _SHIFT
        )


def _draw_label(
    canvas: Image, text: str, corner: tuple[float, float], color: RGB, scale: float
) -> None:
    """Write ``text`` on a box of ``color`` just above ``corner`` (x, y), kept inside the image."""
    font, font_scale = cv2.FONT_HERSHEY_SIMPLEX, max(0.3, 0.5 * scale)
    weight = max(1, round(scale))
    (text_w, text_h), baseline = cv2.getTextSize(text, font, font_scale, weight)
    pad = max(1, round(2 * scale))
    box_w, box_h = text_w + 2 * pad, text_h + baseline + 2 * pad
    height, width = canvas.shape[:2]
    left = int(np.clip(corner[0], 0, max(0, width - box_w)))
    top = int(np.clip(corner[1] - box_h - pad, 0, max(0, height - box_h)))
    cv2.rectangle(canvas, (left, top), (left + box_w, top + box_h), color, -1)
    # Dark text on light boxes, light text on dark ones (ITU-R BT.601 luma).
    luma = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
    ink = (0, 0, 0) if luma > 128 else (255, 255, 255)
    origin = (left + pad, top + pad + text_h)
    cv2.putText(canvas, text, origin, font, font_scale, ink, weight, cv2.LINE_AA)


def heatmap_overlay(
    image_rgb: npt.NDArray[np.uint8], heatmaps: npt.ArrayLike, *, alpha: float = 0.5
) -> Image:
    """Blend the per-pixel maximum over joints of ``heatmaps`` onto an image (debug view).

    Args:
        image_rgb: [H, W, 3] uint8 RGB image covering the same field of view as the heatmaps
            (e.g. the network input); not modified.
        heatmaps: [K, h, w] float heatmaps; values are clipped to [0, 1] (the range of the
            training targets) rather than normalised, so weak maps look weak.
        alpha: weight of the colour-mapped heatmap (0 = image only, 1 = heatmap only).

    Returns:
        [H, W, 3] uint8 RGB image: the jet-coloured max heatmap, stretched to H x W with
        bilinear interpolation, blended over the image.
    """
    image = check_rgb(np.asarray(image_rgb))
    maps = np.asarray(heatmaps, dtype=np.float32)
    if maps.ndim != 3 or 0 in maps.shape:
        raise AeposeError(f"heatmaps must be [K, h, w] with K, h, w > 0, got {list(maps.shape)}")
    peak = np.nan_to_num(maps.max(axis=0), nan=0.0).clip(0.0, 1.0)
    gray = np.round(peak * 255).astype(np.uint8)
    height, width = image.shape[:2]
    gray = cv2.resize(gray, (width, height), interpolation=cv2.INTER_LINEAR)
    colored = cv2.cvtColor(cv2.applyColorMap(gray, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    blended = cv2.addWeighted(image, 1.0 - alpha, colored, alpha, 0.0)
    return np.asarray(blended, dtype=np.uint8)


def save_image(path: str | Path, image_rgb: npt.NDArray[np.uint8]) -> None:
    """Write an RGB image as PNG (lossless) or JPEG (quality 95), chosen by the suffix.

    The file appears complete or not at all: it is encoded in memory and written with
    :func:`aepose.io.write_bytes`. Parent folders are created.

    Args:
        path: destination ending in ``.png``, ``.jpg`` or ``.jpeg`` (any case).
        image_rgb: [H, W, 3] uint8 RGB image.
    """
    file = Path(path)
    encoding = _SAVE_FORMATS.get(file.suffix.lower())
    if encoding is None:
        raise AeposeError(f"cannot save image {file}: use a .png, .jpg or .jpeg name")
    bgr = cv2.cvtColor(check_rgb(np.asarray(image_rgb)), cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(encoding[0], bgr, list(encoding[1]))
    if not ok:
        raise AeposeError(f"cannot encode image {file}")
    write_bytes(file, encoded.tobytes(), what="image")


def overlay(
    image: Image, poses: Sequence[Pose], spec: KeypointSpec,
    threshold: float = KEYPOINT_THRESHOLD, min_score: float = PREDICT_MIN_SCORE,
) -> Image:
    """``image`` (RGB uint8 [H, W, 3]) with ``poses`` scoring at least ``min_score`` drawn:
    skeletons, person colours, scores; keypoints scoring below ``threshold``, and undetected
    ones (score 0), are left out.
    Tracked poses (``track_id`` set) take their track's colour and are labelled ``#ID``, so
    a person keeps colour and label through a video; untracked ones (-1) are grey."""
    shown = [p for p in poses if p.score >= min_score]
    keypoints = np.stack([p.keypoints for p in shown]) if shown else np.zeros(
        (0, spec.num_keypoints, 3), np.float32)
    scores = np.array([p.score for p in shown], dtype=np.float32)
    colors: list[RGB] | None = None
    labels: list[str | None] | None = None
    if any(p.track_id is not None for p in shown):
        colors = [track_color(p.track_id) for p in shown]
        labels = [f"#{p.track_id}" if p.track_id is not None and p.track_id >= 0 else None
                  for p in shown]
    return draw_poses(image, keypoints, scores, spec, keypoint_threshold=threshold,
                      colors=colors, labels=labels)
