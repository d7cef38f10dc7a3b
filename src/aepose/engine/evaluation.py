"""COCO-style keypoint evaluation as mmpose 0.x runs it (xtcocotools), computed by faster-coco-eval.

mmpose 0.x scores bottom-up results with xtcocotools (reference.md §5.2-5.5). faster-coco-eval
does the OKS and AP arithmetic here; this module only feeds it data prepared so that its
numbers equal xtcocotools' with the reference's settings:

- OKS sigmas of the :class:`~aepose.keypoints.KeypointSpec`; at most the 20 highest-scoring
  detections per image count (maxDets [20]).
- ``use_area=False``: the OKS scale of a ground-truth person is 0.53 x its bbox w x h. The
  medium/large area buckets of a person use the same 0.53 x w x h, which is why the prepared
  ground truth carries ``area = 0.53 w h`` (the library buckets people by ``area``). A
  detection's area is its bbox w x h.
- A person is ignored when ``iscrowd`` (missing = 0, as in AIC) or when it has no labelled
  keypoint: for CrowdPose ('keypoints_crowd') the annotation's ``num_keypoints`` field decides
  (it counts only v = 2 there), for AIC and COCO the count of v > 0 entries.
- Detections whose keypoint scores (third entries) are all <= 0 are dropped.
- CrowdPose adds AP(easy/medium/hard): images split by ``crowdIndex`` < 0.2 / < 0.8 / else,
  each value ``round(mean(precision[:, :, :, area all, maxDets 20]), 4)``. The mean keeps the
  library's -1 entries (no person to find in that bucket), so a bucket without people reads
  -1.0, exactly as the reference prints it.

Other metrics read -1.0 when their bucket holds no person (e.g. APm on a set of large people),
as COCOeval reports them. Empty predictions give 0.0 for every bucket that holds people.

Coordinates everywhere are original-image pixels (x = column, y = row), as in the annotation
files. Legend: P people, K keypoints.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from faster_coco_eval import COCO, COCOeval_faster

from aepose.errors import AeposeError
from aepose.io import read_json, write_json
from aepose.keypoints import KeypointSpec, get_spec
from aepose.pipeline.pose import coco_record

__all__ = [
    "CROWD_METRICS",
    "STANDARD_METRICS",
    "evaluate_keypoints",
    "format_table",
    "results_from_poses",
    "write_json",
    "write_results",
]

STANDARD_METRICS = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
"""Metric names in COCOeval.stats order (reference §5.4: 'AP', 'AP .5', ... 'AR (L)')."""

CROWD_METRICS = ("AP_easy", "AP_medium", "AP_hard")
"""CrowdPose's extra metrics, printed by the reference as AP(E), AP(M), AP(H)."""

_MAX_DETECTIONS = 20
_OKS_AREA_FACTOR = 0.53
_CROWD_INDEX_THRESHOLDS = (0.2, 0.8)

# (name, 1 = precision / 0 = recall, OKS threshold or None = mean over 0.50:0.95, area bucket)
_SUMMARY = (
    ("AP", 1, None, "all"),
    ("AP50", 1, 0.5, "all"),
    ("AP75", 1, 0.75, "all"),
    ("APm", 1, None, "medium"),
    ("APl", 1, None, "large"),
    ("AR", 0, None, "all"),
    ("AR50", 0, 0.5, "all"),
    ("AR75", 0, 0.75, "all"),
    ("ARm", 0, None, "medium"),
    ("ARl", 0, None, "large"),
)

# (column header, metric key) of format_table, in the column order of reference §1.10.
_TABLE_COLUMNS = (("AP", "AP"), ("AP50", "AP50"), ("AP75", "AP75"), ("AR", "AR"), ("AR50", "AR50"))
_AREA_COLUMNS = (("APm", "APm"), ("APl", "APl"))
_CROWD_COLUMNS = (("AP(E)", "AP_easy"), ("AP(M)", "AP_medium"), ("AP(H)", "AP_hard"))

_Json = dict[str, Any]


def results_from_poses(
    image_id: int, keypoints: npt.ArrayLike, scores: npt.ArrayLike
) -> list[_Json]:
    """COCO keypoint result records of one image, as mmpose writes them (reference §5.2).

    Args:
        image_id: the image's id in the annotation file.
        keypoints: [P, K, 3] (x, y, score) per person, original-image pixels.
        scores: [P] person scores.

    Returns:
        P JSON-ready records ``{image_id, category_id: 1, keypoints: K*3 floats, score, bbox}``
        where bbox = [min x, min y, max x - min x, max y - min y] over all K keypoints, including
        unfilled (0, 0) points, as the reference computes it.
    """
    kpts = np.asarray(keypoints, dtype=np.float64)
    person_scores = np.asarray(scores, dtype=np.float64)
    if kpts.ndim != 3 or kpts.shape[2] != 3 or person_scores.shape != (kpts.shape[0],):
        raise AeposeError(
            f"poses of image {image_id}: expected keypoints [P, K, 3] and scores [P], got "
            f"{list(kpts.shape)} and {list(person_scores.shape)}"
        )
    return [coco_record(image_id, person, score)
            for person, score in zip(kpts, person_scores, strict=True)]


def write_results(path: str | Path, records: Sequence[_Json]) -> None:
    """Write result records as JSON, atomically (:func:`aepose.io.write_json`); keys are
    sorted and indented as mmpose writes them."""
    write_json(path, list(records), sort_keys=True, indent=4)


def evaluate_keypoints(
    gt_json: str | Path | _Json,
    predictions: Sequence[_Json] | str | Path,
    spec: KeypointSpec | str,
) -> dict[str, float]:
    """OKS AP/AR of keypoint predictions against COCO-format ground truth (module docstring).

    Args:
        gt_json: annotation file path, or its content as a dict (not modified).
        predictions: result records (see :func:`results_from_poses`) or a JSON file of them.
            Every ``image_id`` must be an image of ``gt_json``.
        spec: the dataset's keypoint spec (or its name); gives K, the OKS sigmas and, for
            ``crowdpose``, the 'keypoints_crowd' rules and the easy/medium/hard split.

    Returns:
        ``{name: value}`` for :data:`STANDARD_METRICS` and, for CrowdPose, :data:`CROWD_METRICS`.

    Raises:
        AeposeError: unreadable or malformed ground truth or predictions, a prediction with
            other than K keypoints, or a prediction on an image the ground truth lacks.
    """
    spec = get_spec(spec) if isinstance(spec, str) else spec
    crowd = spec.name == "crowdpose"  # CrowdPose is the one dataset scored as 'keypoints_crowd'
    gt_data, gt_source = _load(gt_json, "ground truth")
    gt = _prepare_ground_truth(gt_data, gt_source, spec, crowd)
    pred_data, pred_source = _load(predictions, "predictions")
    image_ids = {image["id"] for image in gt["images"]}
    records = _prepare_predictions(pred_data, pred_source, image_ids, spec.num_keypoints)
    return _score(gt, records, spec, crowd)


def _score(gt: _Json, records: list[_Json], spec: KeypointSpec, crowd: bool) -> dict[str, float]:
    """Run the library on prepared ground truth and predictions; collect the metrics."""
    coco_gt = COCO(gt)
    evaluator = COCOeval_faster(
        coco_gt,
        coco_gt.loadRes(records),
        iouType="keypoints_crowd" if crowd else "keypoints",
        kpt_oks_sigmas=list(spec.sigmas),
        use_area=False,
        print_function=_silent,
    )
    evaluator.params.maxDets = [_MAX_DETECTIONS]
    # xtcocotools evaluates every category of the file; faster-coco-eval's 'keypoints' mode
    # would keep only categories that have annotations.
    evaluator.params.catIds = sorted(coco_gt.getCatIds())
    evaluator.evaluate()
    evaluator.accumulate()
    # _summarize is the per-statistic function of the library's summarize(); called directly
    # because its crowd layout has no APm/APl/ARm/ARl.
    metrics = {
        name: float(evaluator._summarize(ap, iouThr=thr, areaRng=area, maxDets=_MAX_DETECTIONS))
        for name, ap, thr, area in _SUMMARY
    }
    if crowd:
        # The library's own split re-reads crowdIndex from the prepared ground truth and
        # re-evaluates each subset (it changes params.imgIds, so it runs last).
        split = evaluator.get_type_result(*_CROWD_INDEX_THRESHOLDS)
        metrics.update(zip(CROWD_METRICS, (float(v) for v in split), strict=True))
    return metrics


def format_table(metrics: dict[str, float], spec: KeypointSpec | str) -> str:
    """Two-line text table (header line, value line) with 3 decimals, as the seeds report.

    AIC / COCO: AP AP50 AP75 AR AR50 APm APl; CrowdPose: AP AP50 AP75 AR AR50 AP(E) AP(M) AP(H).
    """
    spec = get_spec(spec) if isinstance(spec, str) else spec
    extra = _CROWD_COLUMNS if spec.name == "crowdpose" else _AREA_COLUMNS
    columns = _TABLE_COLUMNS + extra
    missing = [key for _, key in columns if key not in metrics]
    if missing:
        raise AeposeError(f"metrics lack {', '.join(missing)} for a {spec.name} table")
    values = [f"{metrics[key]:.3f}" for _, key in columns]
    widths = [max(len(h), len(v)) for (h, _), v in zip(columns, values, strict=True)]
    header_line = "  ".join(h.ljust(w) for (h, _), w in zip(columns, widths, strict=True))
    value_line = "  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True))
    return f"{header_line.rstrip()}\n{value_line.rstrip()}"


# --------------------------------------------------------------------------------------------
# Input preparation: validate, and rewrite the fields the library reads so that it applies
# xtcocotools' rules (module docstring).


def _silent(*_args: Any, **_kwargs: Any) -> None:
    """Print function for the library: its progress lines would clutter the CLI output."""


def _load(source: Any, what: str) -> tuple[Any, str]:
    """(parsed content, name for messages) of a JSON file path or an in-memory object."""
    if not isinstance(source, (str, Path)):
        return source, what
    path = Path(source)
    return read_json(path, what), str(path)


def _prepare_ground_truth(data: Any, source: str, spec: KeypointSpec, crowd: bool) -> _Json:
    """A new COCO dict with only what keypoint evaluation reads; ``data`` is left untouched."""
    if not isinstance(data, dict):
        raise AeposeError(f"{source} is not a COCO-format annotation file: not a JSON object")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise AeposeError(f"{source} is not a COCO-format annotation file: no '{key}' list")
    images = [_gt_image(image, i, source, crowd) for i, image in enumerate(data["images"])]
    ids = [image["id"] for image in images]
    if len(set(ids)) != len(ids):
        duplicate = next(i for i in ids if ids.count(i) > 1)
        raise AeposeError(f"image id {duplicate} appears twice in {source}")
    known = set(ids)
    annotations = [
        _gt_annotation(ann, i, source, spec, known, crowd)
        for i, ann in enumerate(data["annotations"])
    ]
    categories = [_gt_category(cat, i, source) for i, cat in enumerate(data["categories"])]
    return {"images": images, "annotations": annotations, "categories": categories}


def _gt_image(image: Any, index: int, source: str, crowd: bool) -> _Json:
    """{id} (+ crowdIndex for CrowdPose, which the easy/medium/hard split reads)."""
    if not isinstance(image, dict) or not _is_int(image.get("id")):
        raise AeposeError(f"image record #{index} in {source} has no integer 'id'")
    if not crowd:
        return {"id": image["id"]}
    crowd_index = _real(image.get("crowdIndex"))
    if crowd_index is None:
        raise AeposeError(
            f"image id {image['id']} in {source} has no numeric 'crowdIndex' "
            "(CrowdPose's easy/medium/hard split needs it on every image)"
        )
    return {"id": image["id"], "crowdIndex": crowd_index}


def _gt_category(category: Any, index: int, source: str) -> _Json:
    if not isinstance(category, dict) or not _is_int(category.get("id")):
        raise AeposeError(f"category #{index} in {source} has no integer 'id'")
    return {"id": category["id"], "name": str(category.get("name", ""))}


def _gt_annotation(
    ann: Any, index: int, source: str, spec: KeypointSpec, image_ids: set[int], crowd: bool
) -> _Json:
    """The evaluated fields of one person, with the area and ignore count xtcocotools uses."""
    name = f"annotation #{index}"
    if not isinstance(ann, dict):
        raise AeposeError(f"{name} in {source} is not an object")
    if "id" in ann:
        name += f" (id {ann['id']})"
    k = spec.num_keypoints
    keypoints = _numbers(ann.get("keypoints"), 3 * k)
    if keypoints is None:
        raise AeposeError(f"{name} in {source} has {_not_numbers(ann.get('keypoints'), 3 * k)}; "
                          f"it needs 'keypoints' of {3 * k} numbers ({k} x 3), all finite")
    bbox = _numbers(ann.get("bbox"), 4)
    if bbox is None:
        raise AeposeError(f"{name} in {source} needs a 'bbox' of 4 numbers")
    image_id = ann.get("image_id")
    if not _is_int(image_id) or image_id not in image_ids:
        raise AeposeError(
            f"{name} in {source} refers to image id {image_id!r}, which is not in its 'images'"
        )
    if not _is_int(ann.get("category_id")):
        raise AeposeError(f"{name} in {source} has no integer 'category_id'")
    return {
        # Ids are renumbered from 1: the library marks "unmatched" with id 0.
        "id": index + 1,
        "image_id": ann["image_id"],
        "category_id": ann["category_id"],
        "keypoints": keypoints,
        "bbox": bbox,
        "area": _OKS_AREA_FACTOR * bbox[2] * bbox[3],
        "iscrowd": int(bool(ann.get("iscrowd", 0))),
        "num_keypoints": _labelled_count(ann, keypoints, name, source, crowd),
    }


def _labelled_count(ann: _Json, keypoints: list[float], name: str, source: str, crowd: bool) -> int:
    """The count whose zero makes a person ignored: CrowdPose's own field, else v > 0 entries."""
    if not crowd:
        return sum(1 for v in keypoints[2::3] if v > 0)
    if not _is_int(ann.get("num_keypoints")):
        raise AeposeError(
            f"{name} in {source} has no integer 'num_keypoints' "
            "(CrowdPose evaluation ignores people by it)"
        )
    return int(ann["num_keypoints"])


def _prepare_predictions(data: Any, source: str, image_ids: set[int], k: int) -> list[_Json]:
    """Validated copies of the result records, minus those xtcocotools drops (no score > 0)."""
    if not isinstance(data, (list, tuple)):
        raise AeposeError(f"{source} must be a list of result records")
    records = [_prediction(record, i, source, image_ids, k) for i, record in enumerate(data)]
    return [r for r in records if any(v > 0 for v in r["keypoints"][2::3])]


def _prediction(record: Any, index: int, source: str, image_ids: set[int], k: int) -> _Json:
    name = f"result record #{index} in {source}"
    if not isinstance(record, dict):
        raise AeposeError(f"{name} is not an object")
    raw = record.get("keypoints")
    keypoints = _numbers(raw, 3 * k)
    if keypoints is None:
        raise AeposeError(f"{name} has {_not_numbers(raw, 3 * k)}; expected {k} keypoints "
                          f"x 3 = {3 * k} numbers, all finite")
    image_id = record.get("image_id")
    if not _is_int(image_id) or image_id not in image_ids:
        raise AeposeError(f"{name} has image_id {image_id!r}, which is not in the ground truth")
    score = _real(record.get("score"))
    if score is None or not _is_int(record.get("category_id")):
        raise AeposeError(f"{name} needs a numeric 'score' and an integer 'category_id'")
    bbox = _numbers(record["bbox"], 4) if "bbox" in record else None
    if bbox is None:
        bbox = _extent(keypoints[0::3], keypoints[1::3])
    return {
        "image_id": image_id,
        "category_id": record["category_id"],
        "keypoints": keypoints,
        "score": score,
        "bbox": bbox,
    }


def _extent(xs: Iterable[float], ys: Iterable[float]) -> list[float]:
    """[min x, min y, width, height] of the points (reference §5.2 result bbox)."""
    x_list, y_list = list(xs), list(ys)
    x0, y0 = min(x_list), min(y_list)
    return [float(x0), float(y0), float(max(x_list) - x0), float(max(y_list) - y0)]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _real(value: Any) -> float | None:
    """``value`` as a finite float, or None when it is not a finite real number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _not_numbers(values: Any, count: int) -> str:
    """What is wrong with ``values`` when :func:`_numbers` refuses it: the count first, then
    the first value that is not a finite number (a NaN is not a wrong count)."""
    if not isinstance(values, (list, tuple)):
        return "no keypoint list"
    if len(values) != count:
        return f"{len(values)} values"
    index, bad = next((i, v) for i, v in enumerate(values) if _real(v) is None)
    kind = "non-finite" if _is_number(bad) else "non-numeric"
    return f"the {kind} value {bad!r} at position {index}"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _numbers(values: Any, count: int) -> list[float] | None:
    """``values`` as ``count`` finite floats, or None when it is anything else."""
    if not isinstance(values, (list, tuple)) or len(values) != count:
        return None
    floats = [_real(v) for v in values]
    if any(v is None for v in floats):
        return None
    return [v for v in floats if v is not None]
