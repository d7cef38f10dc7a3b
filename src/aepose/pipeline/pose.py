"""One detected person (:class:`Pose`) and the one COCO result record it is written as.

Legend: K keypoints, P people, L tag dims.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from aepose.image import to_rgb
from aepose.keypoints import KeypointSpec, get_spec
from aepose.pipeline.draw import draw_poses

__all__ = ["COCO_PERSON", "Pose", "coco_record"]

COCO_PERSON = 1  # category_id of 'person' in every COCO-format keypoint file


def coco_record(image_id: int, keypoints: npt.NDArray[np.floating], score: float
                ) -> dict[str, Any]:
    """A COCO keypoint result record as mmpose writes it (reference §5.2): category 1, flat
    ``x, y, v`` list of ``keypoints`` [K, 3], the score, and ``bbox = [min x, min y,
    max x - min x, max y - min y]`` over ALL K keypoints (unfilled (0, 0) points too, as
    the reference computes it)."""
    points = np.asarray(keypoints, dtype=np.float64)
    low, high = points[:, :2].min(axis=0), points[:, :2].max(axis=0)
    return {
        "image_id": int(image_id),
        "category_id": COCO_PERSON,
        "keypoints": points.reshape(-1).tolist(),
        "score": float(score),
        "bbox": [float(low[0]), float(low[1]), *(float(v) for v in high - low)],
    }


@dataclass(frozen=True, eq=False)
class Pose:
    """One detected person.

    keypoints: float32 [K, 3]: x, y in original-image pixel indices and the heatmap value.
    score: the person score (mean heatmap value over all K joints before refinement).
    tags: float32 [K, L] embedding values of the grouped joints (0 for refined ones).
    track_id: the person's track in a video (:class:`aepose.tracking.tracker.PoseTracker`;
        -1: too weak to start a track); None when not tracked.
    """

    keypoints: np.ndarray
    score: float
    tags: np.ndarray | None = None
    track_id: int | None = None

    def to_coco(self, image_id: int) -> dict[str, Any]:
        """The COCO results record (:func:`coco_record`), plus ``track_id`` (PoseTrack's
        key; COCO evaluation ignores it) when tracked."""
        record = coco_record(image_id, self.keypoints, self.score)
        if self.track_id is not None:
            record["track_id"] = self.track_id
        return record

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``keypoints`` [[x, y, score], ...] (K of them), ``score`` and
        ``bbox`` [x, y, w, h] over all keypoints, as in ``predictions.json``."""
        coco = self.to_coco(0)
        record: dict[str, Any] = {"keypoints": self.keypoints.astype(np.float64).tolist(),
                                  "score": coco["score"], "bbox": coco["bbox"]}
        if self.track_id is not None:  # only tracked video frames carry the key
            record["track_id"] = self.track_id
        return record

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Pose:
        """The Pose of a :meth:`to_dict` record (no tags; its ``track_id`` if any)."""
        track = data.get("track_id")
        return cls(np.asarray(data["keypoints"], dtype=np.float32).reshape(-1, 3),
                   float(data["score"]), track_id=None if track is None else int(track))

    def draw(self, image: np.ndarray, spec: KeypointSpec | str,
             keypoint_threshold: float = 0.3, *, channel_order: str = "bgr") -> np.ndarray:
        """A copy of ``image`` (uint8 [H, W, 3] in ``channel_order``, BGR by default as
        :class:`~aepose.pipeline.predictor.Predictor` takes it) with this person's skeleton,
        keypoints scoring at least ``keypoint_threshold`` and score drawn (``spec``: the
        keypoint definition, e.g. ``predictor.spec``, or its name such as ``"crowdpose"``)."""
        spec = get_spec(spec) if isinstance(spec, str) else spec
        rgb = to_rgb(image, channel_order)  # the drawing colours are RGB
        drawn = draw_poses(rgb, self.keypoints[None], np.array([self.score], np.float32), spec,
                           keypoint_threshold=keypoint_threshold)
        return np.ascontiguousarray(drawn[..., ::-1]) if channel_order == "bgr" else drawn
