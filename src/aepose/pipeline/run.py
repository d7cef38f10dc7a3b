"""The one driver from sources to poses: :func:`run` (a generator) and :func:`predict`.

``run(inputs, predictor, options)`` expands nothing twice and copies nothing: it reads the
inputs (image files, arrays, videos, video URLs, image sequences, live streams) in order,
streams them through the pipeline (:func:`aepose.pipeline.engine.stream`: reading threads,
batched forward passes, decoding beside the network), builds :class:`~aepose.pipeline.pose.Pose`
objects, tracks the frames of each video with a fresh
:class:`~aepose.tracking.tracker.PoseTracker`, and yields one :class:`Prediction` per image or
frame in input order, with its source, frame index and timestamp. Every consumer is a loop
over it: :func:`predict` (``aepose.predict``) keeps the results, ``aepose predict``
(:mod:`aepose.apps.predict`) writes them to files as they come, and under torchrun each rank
runs its :meth:`Inputs.shard`.

A bad input never stops the others: it is yielded as a Prediction whose ``error`` is one line
naming it. Only a failure of the pipeline itself (a decode worker killed) ends the run, with
an :class:`~aepose.errors.AeposeError`.

Legend: K keypoints, P people.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Generator, Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aepose.errors import AeposeError
from aepose.image import check_channel_order
from aepose.pipeline.engine import Result, named_error, stream
from aepose.pipeline.pose import Pose
from aepose.pipeline.predictor import ImageInput, Predictor, load_rgb
from aepose.pipeline.timer import StageTimer
from aepose.pipeline.workers import decode_pool, default_decode_workers
from aepose.tracking.tracker import PoseTracker, TrackerConfig
from aepose.video.readers import FALLBACK_FPS, FrameReader, open_video
from aepose.video.sources import SourceItem, expand_sources

__all__ = ["Input", "Inputs", "Prediction", "RunOptions", "expand_inputs", "predict", "run"]

Source = ImageInput | Sequence[ImageInput]


@dataclass(frozen=True)
class Prediction:
    """The people found in one image or video frame, or why there are none.

    name: the file as found (a folder's or glob's files by their path), the URL or
        sequence pattern as given, or ``"<array I>"`` for the I-th array given.
    poses: the people, each a :class:`~aepose.pipeline.pose.Pose` (keypoints [K, 3] x, y in
        the image's pixels and score), in the grouping's order; a video frame's carry their
        ``track_id`` when tracked. width, height: the image's size.
    frame: the frame index in a video, else None; timestamp_ms: its time in the video
        (index / frame rate, rounded to a microsecond); fps: the video's frame rate.
    error: None, or one line naming the input and what went wrong (then no poses).
    image: the RGB image [H, W, 3] when the run keeps images (for overlays), else None.
    position: the input's place among all inputs (a video's frames share it).
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


@dataclass(frozen=True)
class RunOptions:
    """How :func:`run` reads and what it gives back.

    batch_size: most images per forward pass; read_workers: reading threads;
    decode_workers: post-processing workers (None:
    :func:`~aepose.pipeline.workers.default_decode_workers` when there is more than one image
    or any video, else 0); keep_images: put each image in its Prediction; min_score: people
    scoring below it are left out (None: none are).

    Videos: tracker: one :class:`~aepose.tracking.tracker.PoseTracker` per video with this
    config (its ``fps`` replaced by the video's), None for no ``track_id``; max_frames /
    duration_s: stop each video after this many frames / seconds of stream time from its
    first frame read (None: to its end); drop: read through a newest-frame-only reader that
    drops frames when processing falls behind (None: for live sources only).
    """

    batch_size: int = 8
    read_workers: int = 2
    decode_workers: int | None = None
    keep_images: bool = False
    min_score: float | None = None
    tracker: TrackerConfig | None = field(default_factory=TrackerConfig)
    max_frames: int | None = None
    duration_s: float | None = None
    drop: bool | None = None


@dataclass(frozen=True)
class Input:
    """One input: an image (a path, or an array whose channels are in ``order``) or a
    video (``video`` set: a file, URL, image sequence or live stream)."""

    name: str
    position: int
    image: ImageInput | None = None
    order: str = "rgb"
    video: SourceItem | None = None


@dataclass(frozen=True)
class Inputs:
    """Expanded inputs in order, and one ``"ARGUMENT: reason"`` line per argument that
    names nothing readable (yielded by :func:`run` as error Predictions)."""

    items: tuple[Input, ...]
    problems: tuple[str, ...] = ()

    def shard(self, rank: int, world_size: int) -> Inputs:
        """Rank ``rank``'s share under torchrun: every world_size-th input; the problems
        are rank 0's to report."""
        return Inputs(self.items[rank::world_size], self.problems if rank == 0 else ())


def expand_inputs(source: Source, *, recursive: bool = False, channel_order: str = "bgr",
                  unique: bool = False) -> Inputs:
    """The inputs of ``source``: an image file, folder (its images and videos, sorted), glob
    pattern, video file or URL, image sequence (``frames/%05d.png``), live stream, a uint8
    array [H, W, 3] in ``channel_order``, or a list of any of these.

    ``unique``: a file named twice is one input (as ``aepose predict`` writes one output per
    file); otherwise every entry gives its inputs, so results line up with a list given.
    """
    entries = [source] if isinstance(source, str | Path | np.ndarray | int) else list(source)
    items: list[Input] = []
    problems: list[str] = []
    arrays = 0

    def add(found: Sequence[SourceItem]) -> None:
        for media in found:  # a video's frames come decoded as RGB; a file is read by path
            video = media if media.kind == "video" else None
            items.append(Input(media.name, len(items), None if video else media.path,
                               video=video))

    if unique and not any(isinstance(e, np.ndarray) for e in entries):
        found = expand_sources([str(e) for e in entries], recursive=recursive)
        add(found.items)
        return Inputs(tuple(items), found.problems)
    for entry in entries:
        if isinstance(entry, np.ndarray):
            items.append(Input(f"<array {arrays}>", len(items), entry, channel_order))
            arrays += 1
            continue
        found = expand_sources([str(entry)], recursive=recursive)
        problems += found.problems
        add(found.items)
    return Inputs(tuple(items), tuple(problems))


def run(inputs: Inputs, predictor: Predictor, options: RunOptions | None = None, *,
        timer: StageTimer | None = None) -> Generator[Prediction, None, None]:
    """One :class:`Prediction` per image and video frame of ``inputs``, in input order,
    preceded by one per problem of the expansion (see the module docstring).

    Consecutive images share one stream (and its batches); each video has its own, since
    its frames are read in order and tracked. One decode pool serves the whole run, started
    before any reading thread. ``timer`` receives the seconds of every stage. Close the
    generator (``contextlib.closing``) when leaving it early: that stops its threads.
    """
    options = options or RunOptions()
    for problem in inputs.problems:
        yield Prediction(problem.split(": ", 1)[0], [], error=problem)
    many = len(inputs.items) > 1 or any(i.video is not None for i in inputs.items)
    workers = options.decode_workers
    if workers is None:
        workers = default_decode_workers(predictor.device) if many else 0
    pool = decode_pool(predictor.device, workers)
    driver = _Driver(predictor, options, timer or StageTimer(), pool)
    try:
        for segment in _segments(inputs.items):
            if segment[0].video is None:
                yield from driver.images(segment)
            else:
                yield from driver.video(segment[0])
    finally:  # on an error, Ctrl-C or an early close nothing queued is worth finishing
        pool.shutdown(wait=True, cancel_futures=True)


def _segments(items: Sequence[Input]) -> Iterator[list[Input]]:
    """Runs of consecutive images, and each video alone."""
    run_of_images: list[Input] = []
    for item in items:
        if item.video is None:
            run_of_images.append(item)
            continue
        if run_of_images:
            yield run_of_images
            run_of_images = []
        yield [item]
    if run_of_images:
        yield run_of_images


@dataclass
class _Driver:
    """What every segment of one :func:`run` shares."""

    predictor: Predictor
    options: RunOptions
    timer: StageTimer
    pool: Executor  # decode_pool's

    def _stream(self, items: Any, read: Any, **settings: Any
                ) -> Generator[Result[Any], None, None]:
        o = self.options
        given: dict[str, Any] = {
            "batch_size": o.batch_size, "read_workers": o.read_workers,
            "keep_images": o.keep_images, "timer": self.timer, "decoders": self.pool,
        }
        return stream(self.predictor.stages, items, read, **(given | settings))

    def _people(self, result: Result[Any]) -> list[Pose]:
        poses = self.predictor.poses(result.poses, result.scores)
        low = self.options.min_score
        return poses if low is None else [p for p in poses if p.score >= low]

    def images(self, items: list[Input]) -> Iterator[Prediction]:
        results = self._stream(items, lambda item: load_rgb(item.image, item.order))
        with contextlib.closing(results):
            for result in results:
                item: Input = result.item
                if result.error is not None:
                    yield Prediction(item.name, [], error=named_error(item.name, result.error),
                                     position=item.position)
                    continue
                yield Prediction(item.name, self._people(result), None, result.width,
                                 result.height, image=result.image, position=item.position)

    def video(self, item: Input) -> Iterator[Prediction]:
        """Every frame of one video, up to ``max_frames`` / ``duration_s``, tracked. A video
        that cannot be opened, or breaks off, is one error Prediction (its frames read so
        far stay yielded); frames a live reader dropped are one more, at its end."""
        assert item.video is not None
        try:
            info, reader = open_video(item.video, drop=self.options.drop)
        except AeposeError as error:
            yield Prediction(item.name, [], error=str(error), position=item.position)
            return
        try:
            yield from self._frames(item, info.fps or FALLBACK_FPS, reader)
        except AeposeError as error:
            yield Prediction(item.name, [], error=str(error), position=item.position)
        finally:
            reader.close()
        if reader.dropped and reader.problem:
            yield Prediction(item.name, [], error=reader.problem, position=item.position)

    def _frames(self, item: Input, fps: float, reader: FrameReader) -> Iterator[Prediction]:
        assert item.video is not None
        settings: dict[str, Any] = {}
        drop = self.options.drop
        if drop or (drop is None and item.video.live):
            # One frame in flight: a batch or a read-ahead window would hold stale frames.
            settings = {"batch_size": 1, "window": 1}
        config = self.options.tracker
        tracker = (PoseTracker(self.predictor.spec, dataclasses.replace(config, fps=fps))
                   if config is not None else None)
        frames = self._stream(_limited(reader, fps, self.options), lambda f: f[1], **settings)
        with contextlib.closing(frames):
            for result in frames:
                index = result.item[0]
                people = [] if result.error is not None else self._people(result)
                if tracker is not None:  # every frame, failed ones too: so tracks age
                    # Unrounded: at an absurd stated rate, rounded times could tie.
                    people = track_poses(tracker, people, index * 1000.0 / fps)
                if result.error is not None:
                    yield Prediction(item.name, [], index, fps=fps, position=item.position,
                                     error=named_error(f"{item.name} frame {index}",
                                                       result.error))
                    continue
                yield Prediction(item.name, people, index, result.width, result.height,
                                 round(index * 1000.0 / fps, 3), fps, image=result.image,
                                 position=item.position)


def track_poses(tracker: PoseTracker, poses: Sequence[Pose], timestamp_ms: float
                ) -> list[Pose]:
    """``poses`` (one video frame's) with their ``track_id`` from ``tracker``, and its
    smoothed keypoints when the tracker smooths."""
    tracked = tracker.update_poses(poses, timestamp_ms)
    return [dataclasses.replace(pose, keypoints=t.keypoints, track_id=t.track_id)
            for pose, t in zip(poses, tracked, strict=True)]


def _limited(reader: FrameReader, fps: float, options: RunOptions
             ) -> Iterator[tuple[int, np.ndarray]]:
    """The reader's frames up to ``max_frames`` frames and ``duration_s`` of stream time
    from the first frame read (frame index / fps: frames a live reader dropped count as
    time passed). From the first frame read, not from index 0: a live reader's first frame
    can come well into the stream (the model's start-up), and would end a short run there."""
    taken, first = 0, None
    while options.max_frames is None or taken < options.max_frames:
        try:
            index, image = next(reader)
        except StopIteration:
            return
        first = index if first is None else first
        if options.duration_s is not None and index - first >= options.duration_s * fps:
            return
        taken += 1
        yield index, image


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
    video frame (``list(run(...))`` with the first error raised).

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
            :class:`~aepose.tracking.tracker.PoseTracker` per video, as ``aepose predict``
            does: True with the default :class:`~aepose.tracking.tracker.TrackerConfig`, or
            a TrackerConfig; False: no ``track_id``.
        settings: the Predictor's ``test=`` (a :class:`~aepose.config.TestConfig`),
            ``pose_nms`` and test settings overriding the preset's: ``scales``, ``flip``,
            ``detection_threshold``... (see :class:`~aepose.pipeline.predictor.Predictor`).

    A source that yields nothing (missing file, empty folder, unsupported type) or an image
    that cannot be read raises a one-line :class:`~aepose.errors.AeposeError` naming it.
    """
    if not isinstance(track, bool | TrackerConfig):
        raise TypeError(f"predict: track must be True, False or a TrackerConfig, got {track!r}")
    predictor = _predictor(weights, preset, device, channel_order or "bgr", settings)
    order = predictor.channel_order if channel_order is None else check_channel_order(
        channel_order)
    inputs = expand_inputs(source, recursive=recursive, channel_order=order)
    if inputs.problems:
        raise AeposeError(inputs.problems[0])
    if not inputs.items:
        raise AeposeError("no images to predict on (empty source list)")
    live = next((i for i in inputs.items if i.video is not None and i.video.live), None)
    if live is not None:
        raise AeposeError(
            f"{live.name}: a live source (camera or stream) never ends, and predict() keeps "
            "every frame's poses in memory; use 'aepose predict', or aepose.pipeline.run.run")
    options = RunOptions(batch_size=batch_size, drop=False,
                         tracker=TrackerConfig() if track is True else (track or None))
    out = []
    with contextlib.closing(run(inputs, predictor, options)) as results:
        for result in results:
            if result.error is not None:
                raise AeposeError(result.error)
            out.append(result)
    return out


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
