"""One detected person (:class:`Pose`) and the one COCO result record it is written as.

A keypoint is *detected* when its score is above 0. The decoder gives every person all K
keypoints, the ones it could not find placed where the heatmaps and tags suggest, with
their heatmap value as score; :meth:`Pose.with_keypoint_threshold` (applied by
:func:`aepose.pipeline.run.run`, so by ``aepose predict`` and ``aepose.predict``) sets the
score of those scoring below the keypoint threshold to 0, which marks them undetected: they
are left out of :attr:`Pose.bbox` and never drawn. Their x, y stay as the decoder placed them.

Legend: K keypoints, P people, L tag dims.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from aepose.choices import KEYPOINT_THRESHOLD
from aepose.image import to_rgb
from aepose.keypoints import KeypointSpec, get_spec
from aepose.pipeline.draw import draw_poses

__all__ = ["COCO_PERSON", "Pose", "coco_record", "detected_bbox"]

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


def detected_bbox(keypoints: npt.NDArray[np.floating]) -> list[float] | None:
    """``[min x, min y, max x - min x, max y - min y]`` of the detected keypoints of
    ``keypoints`` [K, 3] (score above 0, finite x and y); None when none is detected."""
    points = np.asarray(keypoints, dtype=np.float64)
    found = points[(points[:, 2] > 0) & np.isfinite(points).all(axis=1), :2]
    if len(found) == 0:
        return None
    low, high = found.min(axis=0), found.max(axis=0)
    return [float(low[0]), float(low[1]), *(float(v) for v in high - low)]


@dataclass(frozen=True, eq=False)
class Pose:
    """One detected person.

    keypoints: float32 [K, 3]: x, y in original-image pixel indices and the heatmap value;
        a score of 0 marks a keypoint undetected (see the module docstring).
    score: the person score (mean heatmap value over all K joints before refinement).
    tags: float32 [K, L] embedding values of the grouped joints (0 for refined ones).
    track_id: the person's track in a video (:class:`aepose.tracking.tracker.PoseTracker`;
        -1: too weak to start a track); None when not tracked.
    interpolated: not detected in this frame but filled in by offline tracking
        (:func:`aepose.tracking.offline.track_offline`) between detections of its track;
        its score is the interpolation's own (lower the farther from a detection).
    """

    keypoints: np.ndarray
    score: float
    tags: np.ndarray | None = None
    track_id: int | None = None
    interpolated: bool = False

    @property
    def detected(self) -> np.ndarray:
        """bool [K]: which keypoints are detected (score above 0, finite x and y)."""
        return np.asarray((self.keypoints[:, 2] > 0) & np.isfinite(self.keypoints).all(axis=1))

    @property
    def bbox(self) -> list[float] | None:
        """``[x, y, w, h]`` of the detected keypoints (:func:`detected_bbox`); None when
        none is detected."""
        return detected_bbox(self.keypoints)

    def with_keypoint_threshold(self, threshold: float) -> Pose:
        """This person with the score of every keypoint scoring below ``threshold`` set to
        0 (undetected); x, y, the person score, tags and track stay. 0: as it is."""
        if threshold <= 0:
            return self
        keypoints = self.keypoints.copy()
        keypoints[keypoints[:, 2] < threshold, 2] = 0
        return dataclasses.replace(self, keypoints=keypoints)

    def to_coco(self, image_id: int) -> dict[str, Any]:
        """The COCO results record (:func:`coco_record`), plus ``track_id`` (PoseTrack's
        key; COCO evaluation ignores it) when tracked."""
        record = coco_record(image_id, self.keypoints, self.score)
        if self.track_id is not None:
            record["track_id"] = self.track_id
        if self.interpolated:
            record["interpolated"] = True
        return record

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, as in ``predictions.json``: ``keypoints`` [[x, y, score], ...] (K of
        them; score 0: undetected), ``score`` and ``bbox`` [x, y, w, h] over the detected
        keypoints (None when none is; :meth:`to_coco` keeps the reference's box over all
        K)."""
        record: dict[str, Any] = {"keypoints": self.keypoints.astype(np.float64).tolist(),
                                  "score": float(self.score), "bbox": self.bbox}
        if self.track_id is not None:  # only tracked video frames carry the key
            record["track_id"] = self.track_id
        if self.interpolated:  # only offline tracking's filled-in people carry it
            record["interpolated"] = True
        return record

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Pose:
        """The Pose of a :meth:`to_dict` record (no tags; its ``track_id`` and
        ``interpolated`` if any)."""
        track = data.get("track_id")
        return cls(np.asarray(data["keypoints"], dtype=np.float32).reshape(-1, 3),
                   float(data["score"]), track_id=None if track is None else int(track),
                   interpolated=bool(data.get("interpolated", False)))

    def draw(self, image: np.ndarray, spec: KeypointSpec | str,
             keypoint_threshold: float = KEYPOINT_THRESHOLD, *, channel_order: str = "bgr"
             ) -> np.ndarray:
        """A copy of ``image`` (uint8 [H, W, 3] in ``channel_order``, BGR by default as
        :class:`~aepose.pipeline.predictor.Predictor` takes it) with this person's skeleton,
        detected keypoints scoring at least ``keypoint_threshold`` and score drawn (``spec``: the
        keypoint definition, e.g. ``predictor.spec``, or its name such as ``"crowdpose"``)."""
        spec = get_spec(spec) if isinstance(spec, str) else spec
        rgb = to_rgb(image, channel_order)  # the drawing colours are RGB
        drawn = draw_poses(rgb, self.keypoints[None], np.array([self.score], np.float32), spec,
                           keypoint_threshold=keypoint_threshold)
        return np.ascontiguousarray(drawn[..., ::-1]) if channel_order == "bgr" else drawn
