"""COCO annotations of a rendered scene in the format of AIC, CrowdPose or COCO.

The keypoints are those of a :class:`~aepose.synth.skeleton.PointSet`: a dataset's own, or a
custom set, which takes COCO's format.

For each person and keypoint (x, y, v):

- v = 0, stored as (0, 0, 0): not labelled - outside the image, randomly left unlabelled
  (``SceneParams.unlabelled_joint_prob``) or a face point of a person seen from the back;
- v = 1: labelled but covered by a nearer person at the joint's pixel;
- v = 2: visible - the joint's pixel belongs to the person itself.

``num_keypoints`` counts v > 0. ``bbox`` is the full extent of the drawn figure (including
parts hidden by nearer people) clipped to the image, except for COCO, whose boxes (like its
``area`` and polygon ``segmentation``) describe the visible region only. ``crowdIndex`` is
:func:`crowd_index`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

import cv2
import numpy as np
import numpy.typing as npt

from aepose.errors import AeposeError
from aepose.keypoints import CUSTOM, KeypointSpec
from aepose.synth.figure import ALIASES, POINT_INDEX, BoolArray, Figure, FloatArray
from aepose.synth.render import (
    CROWD_LABEL,
    ImageArray,
    RenderedScene,
    Scene,
    figure_bbox,
    render_scene,
)
from aepose.synth.scene import SceneParams, sample_scene
from aepose.synth.skeleton import PointSet, point_set

__all__ = [
    "FORMATS",
    "DatasetFormat",
    "ImageSample",
    "annotate_scene",
    "crowd_index",
    "flat_keypoints",
    "generate_image",
    "keypoints_for",
]


@cache
def _spec_points(spec: KeypointSpec | PointSet) -> npt.NDArray[np.intp]:
    """Index into :data:`POINT_NAMES` of each keypoint of ``spec``, in spec order."""
    try:
        names = spec.keypoint_names
        return np.array([POINT_INDEX[ALIASES.get(n, n)] for n in names], dtype=np.intp)
    except KeyError as err:
        raise AeposeError(
            f"keypoint spec {spec.name!r}: the generator draws no point called {err.args[0]!r}"
        ) from None


def keypoints_for(
    fig: Figure, label: int, labels: ImageArray, spec: KeypointSpec | PointSet
) -> FloatArray:
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


def rounded(values: Sequence[float] | FloatArray) -> list[float]:
    return [round(float(v), 2) for v in values]


def flat_keypoints(kpts: FloatArray) -> list[float | int]:
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
class DatasetFormat:
    """What a dataset's annotation files carry (see the fixtures in ../shared/fixtures)."""

    iscrowd: bool  # annotations carry iscrowd (AIC's have none)
    visible_region: bool  # COCO: bbox, area and polygons describe the visible pixels
    crowd_regions: bool  # some images carry an iscrowd=1 region with RLE segmentation
    crowd_index: bool  # image records carry crowdIndex (CrowdPose)
    header: bool  # top-level info and licenses (CrowdPose's files have neither)
    naming: Literal["coco", "number", "sha1"]


FORMATS: dict[str, DatasetFormat] = {
    "coco": DatasetFormat(iscrowd=True, visible_region=True, crowd_regions=True,
                          crowd_index=False, header=True, naming="coco"),
    "crowdpose": DatasetFormat(iscrowd=True, visible_region=False, crowd_regions=True,
                               crowd_index=True, header=False, naming="number"),
    "aic": DatasetFormat(iscrowd=False, visible_region=False, crowd_regions=False,
                         crowd_index=False, header=True, naming="sha1"),
}  # fmt: skip
FORMATS[CUSTOM] = FORMATS["coco"]  # a custom keypoint set takes the most widely read format


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
    fig: Figure, label: int, labels: ImageArray, spec: PointSet, fmt: DatasetFormat
) -> dict[str, Any] | None:
    """One person's annotation (without ``id`` and ``image_id``); None if COCO would skip it."""
    kpts = keypoints_for(fig, label, labels, spec)
    record: dict[str, Any] = {
        "category_id": 1,
        "keypoints": flat_keypoints(kpts),
        "num_keypoints": int(np.count_nonzero(kpts[:, 2])),
    }
    if fmt.visible_region:
        visible = _visible_fields(fig, label, labels)
        if visible is None:
            return None
        return record | visible
    record["bbox"] = rounded(figure_bbox(fig, labels.shape[1], labels.shape[0]))
    if fmt.iscrowd:
        record["iscrowd"] = 0
    return record


def _crowd_record(
    labels: ImageArray, spec: PointSet, fmt: DatasetFormat
) -> dict[str, Any] | None:
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
    scene: Scene, rendered: RenderedScene, points: PointSet | str
) -> tuple[dict[str, Any], ...]:
    """COCO annotation records of a rendered scene with the keypoints ``points`` (a dataset's
    name or a :class:`PointSet`) in their format, without ``id`` and ``image_id``: one per
    person, near or far, (COCO skips people hidden completely), then the crowd region's
    ``iscrowd`` record if the scene has a visible crowd."""
    spec = point_set(points)
    fmt = FORMATS[spec.name]
    labels = rendered.labels
    records = [_person_record(fig, i + 1, labels, spec, fmt) for i, fig in enumerate(scene.people)]
    people = tuple(r for r in records if r is not None)
    crowd = _crowd_record(labels, spec, fmt) if scene.crowd else None
    return (*people, crowd) if crowd is not None else people


def generate_image(
    rng: np.random.Generator,
    points: PointSet | str,
    width: int,
    height: int,
    params: SceneParams = SceneParams(),
) -> ImageSample:
    """Sample, render and annotate one ``width`` x ``height`` scene with the keypoints
    ``points`` (a dataset's name or a :class:`PointSet`) in their format (a crowd region is
    only ever added for the formats that have them: COCO, CrowdPose, custom)."""
    spec = point_set(points)
    crowd_region = FORMATS[spec.name].crowd_regions
    scene = sample_scene(rng, width, height, params, crowd_region=crowd_region)
    rendered = render_scene(scene)
    annotations = annotate_scene(scene, rendered, spec)
    index = _records_crowd_index(annotations, spec.num_keypoints)
    return ImageSample(scene, rendered, annotations, index)
