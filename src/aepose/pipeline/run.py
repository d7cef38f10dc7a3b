"""``aepose.predict(source, weights=...)``: the poses of images in one call.

Built on :class:`~aepose.pipeline.predictor.Predictor` and the streamed pipeline
(:func:`aepose.pipeline.engine.stream`): files are read by threads while the network runs, images of
equal test size share forward passes, and decoding runs beside the network, as in
``aepose predict``. For inputs too many to keep every result in memory, use
:func:`~aepose.pipeline.engine.stream` with ``predictor.stages`` directly.

Legend: K keypoints, P people.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aepose.errors import AeposeError
from aepose.pipeline.engine import default_decode_workers, named_error, stream
from aepose.pipeline.predictor import (
    ImageInput,
    Pose,
    Predictor,
    check_channel_order,
    load_rgb,
    track_poses,
)
from aepose.tracking.tracker import PoseTracker, TrackerConfig
from aepose.video.readers import FALLBACK_FPS, open_video
from aepose.video.sources import SourceItem, expand_sources

__all__ = ["Prediction", "predict"]

Source = ImageInput | Sequence[ImageInput]


@dataclass(frozen=True)
class Prediction:
    """The people found in one image or video frame.

    name: the file as found (a folder's or glob's files by their path), the URL or
        sequence pattern as given, or ``"<array I>"`` for the I-th array given. frame: the
        frame index in a video, else None.
    poses: the people, each a :class:`~aepose.pipeline.predictor.Pose` (keypoints [K, 3] x, y in the
        image's pixels and score), in the grouping's order; a video frame's carry their
        ``track_id`` when tracked. width, height: the image's size.
    """

    name: str
    poses: list[Pose]
    frame: int | None = None
    width: int = 0
    height: int = 0


@dataclass(frozen=True)
class _Item:
    """One image to read: a path or an array in ``order``, named for the results; a video
    (frame -1) or one of its frames (frame >= 0) with the video's frame rate and its
    position among the source's videos (a video's first decodable frame need not be 0)."""

    name: str
    image: ImageInput
    order: str
    frame: int | None = None
    fps: float = FALLBACK_FPS
    video: int = -1
    source: SourceItem | None = None  # a video's, to open it


def predict(
    source: Source,
    weights: str | Path | Predictor,
    *,
    preset: str | None = None,
    device: str | torch.device | None = None,
    channel_order: str | None = None,
    batch_size: int = 8,
    recursive: bool = False,
    track: bool | TrackerConfig = True,
    **settings: Any,
) -> list[Prediction]:
    """Poses of every image of ``source``, in order: one :class:`Prediction` per image or
    video frame.

    Args:
        source: an image file, a folder (its images, sorted), a glob pattern
            (``"shots/*.jpg"``), a video file or video URL (every frame), an image
            sequence (``"frames/%05d.png"``), a uint8 array [H, W, 3] in
            ``channel_order``, or a list of any of these. Live sources (cameras,
            ``rtsp://``) are refused: they never end, and every result is kept.
        weights: a weights file, a preset name with released weights, an mmpose release file
            name or a URL (fetched once into the cache, :mod:`aepose.hub`), or a
            :class:`~aepose.pipeline.predictor.Predictor` to reuse (then no ``settings``).
        preset, device: as :meth:`Predictor.from_checkpoint` (default: recognised from the
            weights; CUDA when available).
        channel_order: "bgr" (the default, as ``cv2.imread`` returns) or "rgb": the order of
            the arrays' channels (default: a given Predictor's own); files are decoded
            correctly either way.
        batch_size: most images per forward pass.
        recursive: also take images from the subfolders of a folder.
        track: videos: give each person a ``track_id`` that persists across frames, one
            :class:`~aepose.tracking.tracker.PoseTracker` per video, as ``aepose predict`` does:
            True with the default :class:`~aepose.tracking.tracker.TrackerConfig`, or a
            TrackerConfig; False: no ``track_id``.
        settings: test settings overriding the preset's: ``scales``, ``flip``, ``pose_nms``,
            ``detection_threshold``... (see :class:`Predictor`).

    A source that yields nothing (missing file, empty folder, unsupported type) or an image
    that cannot be read raises a one-line :class:`~aepose.errors.AeposeError` naming it.
    """
    if not isinstance(track, bool | TrackerConfig):
        raise TypeError(f"predict: track must be True, False or a TrackerConfig, got {track!r}")
    predictor = _predictor(weights, preset, device, channel_order or "bgr", settings)
    order = predictor.channel_order if channel_order is None else check_channel_order(
        channel_order)
    items = list(_items(source, order, recursive))
    if not items:
        raise AeposeError("no images to predict on (empty source list)")
    workers = default_decode_workers(predictor.device) if len(items) > 1 else 0
    results = stream(predictor.stages, _expanded(items), lambda item: load_rgb(item.image,
                     item.order), batch_size=batch_size, decode_workers=workers)
    tracks = _VideoTracks(predictor, TrackerConfig() if track is True else (track or None))
    out = []
    for result in results:
        item = result.item
        if result.error is not None:
            raise AeposeError(named_error(item.name, result.error))
        poses = tracks(item, predictor.poses(result.poses, result.scores))
        out.append(Prediction(item.name, poses, item.frame, result.width, result.height))
    return out


class _VideoTracks:
    """Track IDs for video frames: a fresh PoseTracker for each video (its frames arrive in
    order, one video after another); images pass unchanged."""

    def __init__(self, predictor: Predictor, config: TrackerConfig | None) -> None:
        self.predictor, self.config = predictor, config
        self.tracker: PoseTracker | None = None
        self.video = -1  # the video self.tracker follows

    def __call__(self, item: _Item, poses: list[Pose]) -> list[Pose]:
        if self.config is None or item.frame is None:
            return poses
        if item.video != self.video or self.tracker is None:
            self.video = item.video
            config = dataclasses.replace(self.config, fps=item.fps)
            self.tracker = PoseTracker(self.predictor.spec, config)
        return track_poses(self.tracker, poses, item.frame * 1000.0 / item.fps)


def _predictor(weights: str | Path | Predictor, preset: str | None,
               device: str | torch.device | None, order: str,
               settings: dict[str, Any]) -> Predictor:
    if not isinstance(weights, Predictor):
        return Predictor.from_checkpoint(weights, preset, device, channel_order=order,
                                         **settings)
    if settings or preset is not None or device is not None:
        raise AeposeError("give test settings, preset and device to the Predictor itself, "
                          "not to predict() with a Predictor")
    return weights


def _items(source: Source, order: str, recursive: bool) -> Iterator[_Item]:
    """The images of ``source`` (videos stay one item each, expanded while streaming)."""
    # An int is a webcam index given as a number: refused below as "0" would be.
    entries = [source] if isinstance(source, str | Path | np.ndarray | int) else list(source)
    arrays = videos = 0
    for entry in entries:
        if isinstance(entry, np.ndarray):
            yield _Item(f"<array {arrays}>", entry, order)
            arrays += 1
            continue
        found = expand_sources([str(entry)], recursive=recursive)
        if found.problems:
            raise AeposeError(found.problems[0])
        for media in found.items:
            # A video's frames come decoded as RGB; a file is read by path.
            if media.kind == "video":
                yield _video_item(media, videos)
                videos += 1
            else:
                yield _Item(str(media.path), media.path, "rgb")


def _video_item(media: SourceItem, ordinal: int) -> _Item:
    """A video file, video URL or image sequence as one item, opened here once so that one
    that cannot be read fails before any image is predicted."""
    if media.live:
        raise AeposeError(
            f"{media.name}: a live source (camera or stream) never ends, and predict() keeps "
            "every frame's poses in memory; use 'aepose predict', or a Predictor with "
            "aepose.video.sources.open_video")
    info, reader = open_video(media, drop=False)
    reader.close()
    return _Item(media.name, media.path, "rgb", -1, info.fps or FALLBACK_FPS, ordinal, media)


def _expanded(items: list[_Item]) -> Iterator[_Item]:
    """Items with each video (frame -1) replaced by its frames, read as the stream asks."""
    for item in items:
        if item.source is None:
            yield item
            continue
        _, reader = open_video(item.source, drop=False)
        try:
            for index, frame in reader:
                yield _Item(item.name, frame, "rgb", index, item.fps, item.video)
        finally:
            reader.close()
