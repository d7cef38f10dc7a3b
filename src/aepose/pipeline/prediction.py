"""What :func:`aepose.pipeline.run.run` yields per image or video frame: :class:`Prediction`.

A Prediction holds the people of one image (:class:`~aepose.pipeline.pose.Pose` objects, in
order), where they came from, and the keypoint definition (``spec``) they were predicted
with, so that it can give them as one array (:attr:`Prediction.keypoints`), draw them with
the right skeleton (:meth:`Prediction.plot`) and save the drawing (:meth:`Prediction.save`)
with nothing else at hand.

Legend: N people, K keypoints, H x W image.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from aepose.data.coco import read_image
from aepose.errors import AeposeError
from aepose.image import check_channel_order, to_rgb
from aepose.keypoints import KeypointSpec
from aepose.pipeline.draw import overlay, save_image
from aepose.pipeline.pose import Pose

__all__ = ["Prediction"]


@dataclass(frozen=True)
class Prediction:
    """The people found in one image or video frame, or why there are none.

    name: the file as found (a folder's or glob's files by their path), the URL or
        sequence pattern as given, or ``"<array I>"`` for the I-th array given.
    poses: the people, each a :class:`~aepose.pipeline.pose.Pose` (keypoints [K, 3] x, y in
        the image's pixels and score, 0 for an undetected keypoint), in the grouping's
        order; a video frame's carry their ``track_id`` when tracked. ``len(prediction)``
        is the number of people and iterating it gives them. width, height: the image's
        size.
    frame: the frame index in a video, else None; timestamp_ms: its time in the video
        (index / frame rate, rounded to a microsecond); fps: the video's frame rate.
    error: None, or one line naming the input and what went wrong (then no poses).
    image: the RGB image [H, W, 3] when the run keeps images (always for arrays given),
        else None.
    position: the input's place among all inputs (a video's frames share it).
    spec: the keypoint definition (names, skeleton, colours) the poses follow.
    """

    name: str
    poses: list[Pose]
    frame: int | None = None
    width: int = 0
    height: int = 0
    timestamp_ms: float | None = None
    fps: float | None = None
    error: str | None = None
    image: np.ndarray | None = field(default=None, repr=False, compare=False)
    position: int = 0
    spec: KeypointSpec | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.poses)

    def __iter__(self) -> Iterator[Pose]:
        return iter(self.poses)

    @property
    def keypoints(self) -> np.ndarray:
        """float32 [N, K, 3]: every person's keypoints (x, y, score; score 0: undetected),
        [0, K, 3] when there is nobody."""
        if self.poses:
            return np.stack([p.keypoints for p in self.poses]).astype(np.float32)
        return np.zeros((0, self.spec.num_keypoints if self.spec else 0, 3), np.float32)

    @property
    def scores(self) -> np.ndarray:
        """float32 [N]: every person's score."""
        return np.array([p.score for p in self.poses], dtype=np.float32)

    def plot(self, image: np.ndarray | None = None, *, threshold: float = 0.0,
             channel_order: str = "bgr") -> np.ndarray:
        """A copy of the image with every person drawn (skeleton in the person's or track's
        colour, detected keypoints scoring at least ``threshold``, score or track label).

        image: the picture to draw on, uint8 [H, W, 3] in ``channel_order``; by default the
            image kept in the Prediction, else the file ``name`` read again. A video frame
            needs ``image``, or a run that keeps images (``keep_images=True``).
        channel_order: of ``image`` and of the result: "bgr" (the default, ready for
            ``cv2.imwrite`` and ``cv2.imshow``) or "rgb".
        """
        order = check_channel_order(channel_order)
        drawn = self._drawn(image, threshold, order)
        return np.ascontiguousarray(drawn[..., ::-1]) if order == "bgr" else drawn

    def save(self, path: str | Path, image: np.ndarray | None = None, *,
             threshold: float = 0.0, channel_order: str = "bgr") -> Path:
        """Write :meth:`plot`'s drawing to ``path`` (``.jpg``/``.jpeg``: JPEG quality 95,
        ``.png``: PNG), whole or not at all; parent folders are created. Returns the path.
        ``channel_order`` is that of ``image``."""
        save_image(path, self._drawn(image, threshold, check_channel_order(channel_order)))
        return Path(path)

    def _drawn(self, image: np.ndarray | None, threshold: float, order: str) -> np.ndarray:
        """RGB [H, W, 3]: every person drawn on ``image`` (in ``order``) or on the picture
        behind the poses."""
        if self.spec is None:
            raise AeposeError(f"{self._where()}: no keypoint definition to draw with")
        rgb = to_rgb(image, order) if image is not None else self._image()
        return overlay(rgb, self.poses, self.spec, threshold, min_score=0.0)

    def _where(self) -> str:
        return self.name if self.frame is None else f"{self.name} frame {self.frame}"

    def _image(self) -> np.ndarray:
        """The RGB picture behind the poses: kept, or the image file read again."""
        if self.image is not None:
            return self.image
        if self.error is None and self.frame is None and not self.name.startswith("<array"):
            return read_image(self.name)
        raise AeposeError(f"{self._where()}: no image kept to draw on; pass image=, or "
                          "predict with keep_images=True")
