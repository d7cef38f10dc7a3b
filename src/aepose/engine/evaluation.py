"""COCO-style keypoint evaluation exactly as mmpose 0.x runs it (xtcocotools), on arrays.

mmpose 0.x scores bottom-up results with xtcocotools (reference.md §5.2-5.5). This module
reads the files (:mod:`aepose.engine.eval_inputs`) and computes xtcocotools' numbers with
its arithmetic on arrays (:mod:`aepose.engine.keypoint_eval`), with the reference's settings:

- OKS sigmas of the :class:`~aepose.keypoints.KeypointSpec`; at most the 20 highest-scoring
  detections per image count (maxDets [20]).
- The OKS scale and the medium/large bucket of a ground-truth person follow the spec's
  ``oks_area``, as mmpose chooses per dataset: COCO uses each person's annotated ``area``
  (xtcocotools' default ``use_area=True``), AI Challenger and CrowdPose use
  0.53 x bbox w x h (``use_area=False``). A detection's area is its bbox w x h.
- A person is ignored when ``iscrowd`` (missing = 0, as in AIC) or when it has no labelled
  keypoint: for CrowdPose ('keypoints_crowd') the annotation's ``num_keypoints`` field decides
  (it counts only v = 2 there), for AIC and COCO the count of v > 0 entries.
- Detections whose keypoint scores (third entries) are all <= 0 are dropped, as xtcocotools
  drops them (pycocotools and faster-coco-eval keep them).
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

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from aepose.engine.eval_inputs import read_detections, read_ground_truth
from aepose.engine.keypoint_eval import CROWD_SUMMARY, SUMMARY, Detections, score_keypoints
from aepose.errors import AeposeError
from aepose.io import write_json
from aepose.keypoints import KeypointSpec, get_spec
from aepose.pipeline.pose import coco_record

__all__ = [
    "CROWD_METRICS",
    "STANDARD_METRICS",
    "Detections",
    "evaluate_keypoints",
    "format_table",
    "results_from_poses",
    "write_json",
    "write_results",
]

STANDARD_METRICS = tuple(name for name, *_ in SUMMARY)
"""Metric names in COCOeval.stats order (reference §5.4: 'AP', 'AP .5', ... 'AR (L)')."""

CROWD_METRICS = CROWD_SUMMARY
"""CrowdPose's extra metrics, printed by the reference as AP(E), AP(M), AP(H)."""

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
    predictions: Sequence[_Json] | str | Path | Detections,
    spec: KeypointSpec | str,
) -> dict[str, float]:
    """OKS AP/AR of keypoint predictions against COCO-format ground truth (module docstring).

    Args:
        gt_json: annotation file path, or its content as a dict (not modified).
        predictions: result records (see :func:`results_from_poses`), a JSON file of them,
            or :class:`Detections` (arrays). Every ``image_id`` must be an image of
            ``gt_json``.
        spec: the dataset's keypoint spec (or its name); gives K, the OKS sigmas, the OKS
            area rule and, for ``crowdpose``, the 'keypoints_crowd' rules and the
            easy/medium/hard split.

    Returns:
        ``{name: value}`` for :data:`STANDARD_METRICS` and, for CrowdPose, :data:`CROWD_METRICS`.

    Raises:
        AeposeError: unreadable or malformed ground truth or predictions, a prediction with
            other than K keypoints, or a prediction on an image the ground truth lacks.
    """
    spec = get_spec(spec) if isinstance(spec, str) else spec
    crowd = spec.name == "crowdpose"  # CrowdPose is the one dataset scored as 'keypoints_crowd'
    gt = read_ground_truth(gt_json, spec)
    detections = read_detections(predictions, gt, spec.num_keypoints)
    return score_keypoints(gt, detections, spec.sigmas, use_area=spec.oks_area == "annotated",
                           crowd_split=crowd)


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
