"""The checking reader of annotation and result files: every value checked in Python.

:mod:`aepose.engine.eval_inputs` reads files fast and hands them here when it meets
anything it does not expect; this reader either names the file, the record and the problem
in one :class:`~aepose.errors.AeposeError` line, or reads what is unusual but valid. Both
give the same arrays. Legend: P people, N records, K keypoints.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from aepose.engine.keypoint_eval import Detections, GroundTruth
from aepose.errors import AeposeError
from aepose.io import read_json
from aepose.keypoints import KeypointSpec

__all__ = ["checked_detections", "checked_ground_truth"]

_Json = dict[str, Any]


def checked_ground_truth(source: str | Path | _Json, spec: KeypointSpec) -> GroundTruth:
    """:func:`aepose.engine.eval_inputs.read_ground_truth`, value by value."""
    data, name = _parsed(source, "annotation", "ground truth")
    return _checked_ground_truth(data, name, spec)


def checked_detections(source: Any, gt: GroundTruth, k: int) -> Detections:
    """:func:`aepose.engine.eval_inputs.read_detections` (file or list), value by value."""
    data, name = _parsed(source, "predictions", "predictions")
    return _checked_detections(data, name, gt, k)


def _parsed(source: Any, what: str, name: str) -> tuple[Any, str]:
    """(parsed content, name for messages) of a JSON file path or an in-memory object."""
    if not isinstance(source, (str, Path)):
        return source, name
    return read_json(source, what), str(source)


def _checked_ground_truth(data: Any, source: str, spec: KeypointSpec) -> GroundTruth:
    crowd = spec.name == "crowdpose"
    if not isinstance(data, dict):
        raise AeposeError(f"{source} is not a COCO-format annotation file: not a JSON object")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise AeposeError(f"{source} is not a COCO-format annotation file: no '{key}' list")
    images = [_gt_image(image, i, source, crowd) for i, image in enumerate(data["images"])]
    ids = [image_id for image_id, _ in images]
    seen: set[int] = set()
    for image_id in ids:
        if image_id in seen:
            raise AeposeError(f"image id {image_id} appears twice in {source}")
        seen.add(image_id)
    categories = [_gt_category(cat, i, source) for i, cat in enumerate(data["categories"])]
    people = [_gt_annotation(ann, i, source, spec, seen)
              for i, ann in enumerate(data["annotations"])]
    k = spec.num_keypoints
    columns: list[Any] = [list(c) for c in zip(*people, strict=True)] or [[]] * 7
    image_id, category_id, keypoints, bbox, area, iscrowd, labelled = columns
    return GroundTruth(
        image_ids=np.array(ids, dtype=np.int64).reshape(len(ids)),
        crowd_index=np.array([c for _, c in images], dtype=np.float64) if crowd else None,
        category_ids=np.array(categories, dtype=np.int64).reshape(len(categories)),
        image_id=np.array(image_id, dtype=np.int64).reshape(len(people)),
        category_id=np.array(category_id, dtype=np.int64).reshape(len(people)),
        keypoints=np.array(keypoints, dtype=np.float64).reshape(len(people), k, 3),
        bbox=np.array(bbox, dtype=np.float64).reshape(len(people), 4),
        area=np.array(area, dtype=np.float64).reshape(len(people)),
        iscrowd=np.array(iscrowd, dtype=bool).reshape(len(people)),
        labelled=np.array(labelled, dtype=np.int64).reshape(len(people)),
    )


def _gt_image(image: Any, index: int, source: str, crowd: bool) -> tuple[int, float]:
    """(id, crowdIndex or NaN) of one image record."""
    if not isinstance(image, dict) or not _is_int(image.get("id")):
        raise AeposeError(f"image record #{index} in {source} has no integer 'id'")
    if not crowd:
        return image["id"], math.nan
    crowd_index = _real(image.get("crowdIndex"))
    if crowd_index is None:
        raise AeposeError(
            f"image id {image['id']} in {source} has no numeric 'crowdIndex' "
            "(CrowdPose's easy/medium/hard split needs it on every image)"
        )
    return image["id"], crowd_index


def _gt_category(category: Any, index: int, source: str) -> int:
    if not isinstance(category, dict) or not _is_int(category.get("id")):
        raise AeposeError(f"category #{index} in {source} has no integer 'id'")
    return int(category["id"])


def _gt_annotation(ann: Any, index: int, source: str, spec: KeypointSpec,
                   image_ids: set[int]) -> tuple[Any, ...]:
    """(image_id, category_id, keypoints, bbox, area, iscrowd, labelled) of one person."""
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
        raise AeposeError(f"{name} in {source} needs a 'bbox' of 4 finite numbers")
    if bbox[2] < 0 or bbox[3] < 0:
        raise AeposeError(f"{name} in {source} has a bbox of negative width or height")
    image_id = ann.get("image_id")
    if not _is_int(image_id) or image_id not in image_ids:
        raise AeposeError(
            f"{name} in {source} refers to image id {image_id!r}, which is not in its 'images'"
        )
    if not _is_int(ann.get("category_id")):
        raise AeposeError(f"{name} in {source} has no integer 'category_id'")
    area = math.nan
    if spec.oks_area == "annotated":
        area = _real(ann.get("area"))  # type: ignore[assignment]
        if area is None or area < 0:
            raise AeposeError(
                f"{name} in {source} needs a finite, non-negative 'area': {spec.name} scales "
                "OKS by each person's annotated area, as mmpose does (KeypointSpec.oks_area)")
    return (image_id, ann["category_id"], keypoints, bbox, area,
            bool(ann.get("iscrowd", 0)), _labelled_count(ann, keypoints, name, source, spec))


def _labelled_count(ann: _Json, keypoints: list[float], name: str, source: str,
                    spec: KeypointSpec) -> int:
    """The count whose zero makes a person ignored: CrowdPose's own field, else v > 0 entries."""
    if spec.name != "crowdpose":
        return sum(1 for v in keypoints[2::3] if v > 0)
    if not _is_int(ann.get("num_keypoints")):
        raise AeposeError(
            f"{name} in {source} has no integer 'num_keypoints' "
            "(CrowdPose evaluation ignores people by it)"
        )
    return int(ann["num_keypoints"])


def _checked_detections(data: Any, source: str, gt: GroundTruth, k: int) -> Detections:
    if not isinstance(data, (list, tuple)):
        raise AeposeError(f"{source} must be a list of result records")
    image_ids = set(gt.image_ids.tolist())
    rows = [_prediction(record, i, source, image_ids, k) for i, record in enumerate(data)]
    columns: list[Any] = [list(c) for c in zip(*rows, strict=True)] or [[]] * 5
    image_id, category_id, keypoints, score, area = columns
    n = len(rows)
    return Detections(
        image_id=np.array(image_id, dtype=np.int64).reshape(n),
        category_id=np.array(category_id, dtype=np.int64).reshape(n),
        keypoints=np.array(keypoints, dtype=np.float64).reshape(n, k, 3),
        score=np.array(score, dtype=np.float64).reshape(n),
        area=np.array(area, dtype=np.float64).reshape(n),
    )


def _prediction(record: Any, index: int, source: str, image_ids: set[int],
                k: int) -> tuple[Any, ...]:
    """(image_id, category_id, keypoints, score, area) of one result record."""
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
        xs, ys = keypoints[0::3], keypoints[1::3]
        bbox = [0.0, 0.0, max(xs) - min(xs), max(ys) - min(ys)]
    return image_id, record["category_id"], keypoints, score, bbox[2] * bbox[3]


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
