"""The one driver from sources to poses: :func:`run` (a generator).

``run(inputs, predictor, options)`` expands nothing twice and copies nothing: it reads the
inputs (image files, arrays, videos, video URLs, image sequences, live streams) in order,
streams them through the pipeline (:func:`aepose.pipeline.engine.stream`: reading threads,
batched forward passes, decoding beside the network), builds :class:`~aepose.pipeline.pose.Pose`
objects, keeps the people a user expects (:class:`RunOptions`: a person-score threshold and
pose NMS, chosen on generated crowds; the reference's every-person output with
``min_score=0, pose_nms=None``), tracks the frames of each video with a fresh
:class:`~aepose.tracking.tracker.PoseTracker`, marks undetected keypoints (score 0: below the
keypoint threshold), and yields one :class:`~aepose.pipeline.prediction.Prediction` per image
or frame in input order, with its source, frame index and timestamp. Every consumer is a loop
over it: :func:`aepose.pipeline.api.predict` (``aepose.predict``) keeps the results,
``aepose predict`` (:mod:`aepose.apps.predict`) writes them to files as they come, and under
torchrun each rank runs its :meth:`Inputs.shard`.

A bad input never stops the others: it is yielded as a Prediction whose ``error`` is one line
naming it. Only a failure of the pipeline itself (a decode worker killed) ends the run, with
an :class:`~aepose.errors.AeposeError`.

Legend: K keypoints, P people.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Generator, Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aepose.choices import (
    KEYPOINT_THRESHOLD,
    PREDICT_MIN_SCORE,
    PREDICT_POSE_NMS,
)
from aepose.codec.pose_nms import oks_nms
from aepose.errors import AeposeError
from aepose.image import to_rgb
from aepose.pipeline.engine import READ_AHEAD_BYTES, Result, named_error, stream
from aepose.pipeline.inputs import Input, Inputs, expand_inputs
from aepose.pipeline.pose import Pose
from aepose.pipeline.prediction import Prediction
from aepose.pipeline.predictor import Predictor, load_rgb
from aepose.pipeline.timer import StageTimer
from aepose.pipeline.workers import decode_pool, default_decode_workers
from aepose.tracking.offline import OfflineConfig, track_offline
from aepose.tracking.tracker import PoseTracker, TrackerConfig
from aepose.validate import integer_in, number_in, require
from aepose.video.capture import FALLBACK_FPS
from aepose.video.readers import FrameReader, LatestFrames, open_video

__all__ = ["Input", "Inputs", "Prediction", "RunOptions", "expand_inputs", "run",
           "track_poses"]

@dataclass(frozen=True)
class RunOptions:
    """How :func:`run` reads and what it gives back.

    batch_size: most images per forward pass; read_workers: reading threads;
    decode_workers: post-processing workers (None:
    :func:`~aepose.pipeline.workers.default_decode_workers` when there is more than one image
    or any video, else 0); keep_images: put each image in its Prediction (an array given is
    kept whatever this says: :meth:`Prediction.plot` has no file to read it from);
    read_ahead_bytes: the most bytes the images and frames read ahead of the output may
    hold, their network inputs included (:data:`~aepose.pipeline.engine.READ_AHEAD_BYTES`,
    1 GiB; one item always goes through, however large).

    Which people and keypoints: min_score: people scoring below it are left out (0: none
    are); pose_nms: then a person is dropped when its OKS with a better-scored one exceeds
    this (mmpose's demo pose NMS; None: none is); keypoint_threshold: keypoints scoring
    below it get score 0, which marks them undetected (0: every keypoint keeps its score).
    The defaults are :mod:`aepose.choices`' PREDICT_MIN_SCORE, PREDICT_POSE_NMS and
    KEYPOINT_THRESHOLD; ``min_score=0, pose_nms=None, keypoint_threshold=0`` gives the
    decoder's output as ``aepose test`` scores it. A Predictor's own ``pose_nms`` applies
    before all of this.

    Videos: tracker: one :class:`~aepose.tracking.tracker.PoseTracker` per video with this
    config (its ``fps`` replaced by the video's), None for no ``track_id``; an
    :class:`~aepose.tracking.offline.OfflineConfig` tracks each video offline (files only:
    see :meth:`_Driver.video`); max_frames /
    duration_s: stop each video after this many frames / seconds of stream time from its
    first frame read (None: to its end), a live source also after that many seconds of
    wall-clock time, waiting for a frame included; drop: read through a newest-frame-only
    reader that drops frames when processing falls behind (None: for live sources only).
    """

    batch_size: int = 8
    read_workers: int = 2
    decode_workers: int | None = None
    keep_images: bool = False
    min_score: float = PREDICT_MIN_SCORE
    pose_nms: float | None = PREDICT_POSE_NMS
    keypoint_threshold: float = KEYPOINT_THRESHOLD
    tracker: TrackerConfig | OfflineConfig | None = field(default_factory=TrackerConfig)
    max_frames: int | None = None
    duration_s: float | None = None
    drop: bool | None = None
    read_ahead_bytes: int = READ_AHEAD_BYTES

    def __post_init__(self) -> None:
        require(self, "RunOptions", min_score=number_in(self.min_score, 0, 1),
                pose_nms=None if self.pose_nms is None else number_in(self.pose_nms, 0, 1),
                keypoint_threshold=number_in(self.keypoint_threshold, 0, 1),
                read_ahead_bytes=integer_in(self.read_ahead_bytes, 1))


def run(inputs: Inputs, predictor: Predictor, options: RunOptions | None = None, *,
        timer: StageTimer | None = None, decoders: Executor | None = None
        ) -> Generator[Prediction, None, None]:
    """One :class:`Prediction` per image and video frame of ``inputs``, in input order,
    preceded by one per problem of the expansion (see the module docstring).

    Consecutive images share one stream (and its batches); each video has its own, since
    its frames are read in order and tracked. One decode pool serves the whole run, started
    before any reading thread. ``timer`` receives the seconds of every stage. Close the
    generator (``contextlib.closing``) when leaving it early: that stops its threads.
    ``decoders``: an executor from :func:`~aepose.pipeline.workers.decode_pool` to decode in
    instead of starting one (``decode_workers`` is then unused); it stays open, so that
    successive runs share its warm workers (``aepose serve``'s batches).
    """
    options = options or RunOptions()
    spec = predictor.spec
    for problem in inputs.problems:
        yield Prediction(problem.split(": ", 1)[0], [], error=problem, spec=spec)
    many = len(inputs.items) > 1 or any(i.video is not None for i in inputs.items)
    workers = options.decode_workers
    if workers is None:
        workers = default_decode_workers(predictor.device) if many else 0
    pool = decode_pool(predictor.device, workers) if decoders is None else decoders
    driver = _Driver(predictor, options, timer or StageTimer(), pool)
    try:
        for segment in _segments(inputs.items):
            if segment[0].video is None:
                yield from driver.images(segment)
            else:
                yield from driver.video(segment[0])
    finally:  # on an error, Ctrl-C or an early close nothing queued is worth finishing
        if decoders is None:
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
            "read_ahead_bytes": o.read_ahead_bytes,
        }
        return stream(self.predictor.stages, items, read, **(given | settings))

    def _people(self, result: Result[Any]) -> list[Pose]:
        """The people of one decoded image that the options keep: scoring at least
        ``min_score``, then those the pose NMS keeps, in the order they came."""
        poses = self.predictor.poses(result.poses, result.scores)
        low, nms = self.options.min_score, self.options.pose_nms
        if low > 0:  # 0 keeps everyone, a NaN score too
            poses = [p for p in poses if p.score >= low]
        if nms is None or len(poses) < 2:
            return poses
        keep = oks_nms(np.stack([p.keypoints for p in poses]),
                       np.array([p.score for p in poses], np.float32),
                       self.predictor.spec.sigmas, nms)
        return [poses[i] for i in np.sort(keep)]

    def _marked(self, poses: list[Pose]) -> list[Pose]:
        """``poses`` with their undetected keypoints' scores set to 0 (last: the tracker
        and its smoothing see the decoder's scores)."""
        return [p.with_keypoint_threshold(self.options.keypoint_threshold) for p in poses]

    def _prediction(self, item: Input, poses: list[Pose], **fields: Any) -> Prediction:
        return Prediction(item.name, poses, position=item.position, spec=self.predictor.spec,
                          **fields)

    def images(self, items: list[Input]) -> Iterator[Prediction]:
        results = self._stream(items, lambda item: load_rgb(item.image, item.order))
        with contextlib.closing(results):
            for result in results:
                item: Input = result.item
                if result.error is not None:
                    yield self._prediction(item, [],
                                           error=named_error(item.name, result.error))
                    continue
                image = result.image
                if image is None and isinstance(item.image, np.ndarray):
                    image = to_rgb(item.image, item.order)  # plot() has no file to read
                yield self._prediction(item, self._marked(self._people(result)),
                                       width=result.width, height=result.height, image=image)

    def video(self, item: Input) -> Iterator[Prediction]:
        """Every frame of one video, up to ``max_frames`` / ``duration_s``, tracked. A video
        that cannot be opened, or breaks off, is one error Prediction (its frames read so
        far stay yielded); frames a live reader dropped are one more, at its end."""
        assert item.video is not None
        offline = isinstance(self.options.tracker, OfflineConfig)
        if offline and (item.video.live or self.options.drop):
            yield self._prediction(item, [], error=(
                f"{item.name}: offline tracking needs the whole video before its first frame's "
                "IDs, and a live source never ends; use online tracking (--track online)"))
            return
        try:
            info, reader = open_video(item.video, drop=self.options.drop)
        except AeposeError as error:
            yield self._prediction(item, [], error=str(error))
            return
        try:
            fps = info.fps or FALLBACK_FPS
            frames = (self._offline_frames(item, fps, reader) if offline
                      else self._frames(item, fps, reader))
            yield from frames
        except AeposeError as error:
            yield self._prediction(item, [], error=str(error))
        finally:
            reader.close()
        if reader.dropped and reader.problem:
            yield self._prediction(item, [], error=reader.problem)

    def _frames(self, item: Input, fps: float, reader: FrameReader) -> Iterator[Prediction]:
        assert item.video is not None
        settings: dict[str, Any] = {}
        drop = self.options.drop
        if drop or (drop is None and item.video.live):
            # One frame in flight: a batch or a read-ahead window would hold stale frames.
            settings = {"batch_size": 1, "window": 1}
        config = self.options.tracker
        assert not isinstance(config, OfflineConfig)  # video() sends those elsewhere
        tracker = (PoseTracker(self.predictor.spec, dataclasses.replace(config, fps=fps))
                   if config is not None else None)
        frames = self._stream(_limited(reader, fps, self.options, live=item.video.live),
                              lambda f: f[1], **settings)
        with contextlib.closing(frames):
            for result in frames:
                index = result.item[0]
                people = [] if result.error is not None else self._people(result)
                if tracker is not None:  # every frame, failed ones too: so tracks age
                    # Unrounded: at an absurd stated rate, rounded times could tie.
                    people = track_poses(tracker, people, index * 1000.0 / fps)
                if result.error is not None:
                    yield self._prediction(item, [], frame=index, fps=fps, error=named_error(
                        f"{item.name} frame {index}", result.error))
                    continue
                yield self._prediction(item, self._marked(people), frame=index,
                                       width=result.width, height=result.height,
                                       timestamp_ms=round(index * 1000.0 / fps, 3), fps=fps,
                                       image=result.image)


    def _offline_frames(self, item: Input, fps: float, reader: FrameReader
                        ) -> Iterator[Prediction]:
        """Every frame of one video file, tracked offline: the poses of all its frames are
        collected first (no images: memory grows with the people, not the pixels), tracked
        at once (:func:`~aepose.tracking.offline.track_offline`), then yielded with their
        final IDs and the interpolated people. The images, when kept (overlays), come from
        a second read of the file, in step with the results."""
        assert item.video is not None and isinstance(self.options.tracker, OfflineConfig)
        config = self.options.tracker
        config = dataclasses.replace(config, online=dataclasses.replace(config.online, fps=fps))
        frames = self._stream(_limited(reader, fps, self.options), lambda f: f[1],
                              keep_images=False)
        # Per frame only what the results need: the item holds the frame's pixels.
        collected: list[_FrameResult] = []
        with contextlib.closing(frames):
            for result in frames:
                collected.append(_FrameResult(
                    result.item[0], result.width, result.height, result.error,
                    [] if result.error is not None else self._people(result)))
        spec = self.predictor.spec
        tracked = track_offline(
            [np.stack([p.keypoints for p in f.people]) if f.people
             else np.zeros((0, spec.num_keypoints, 3)) for f in collected],
            [[p.score for p in f.people] for f in collected], spec, config,
            [f.index * 1000.0 / fps for f in collected])
        images = self._images_again(item, fps) if self.options.keep_images else None
        for f, frame in zip(collected, tracked, strict=True):
            if f.error is not None:
                yield self._prediction(item, [], frame=f.index, fps=fps, error=named_error(
                    f"{item.name} frame {f.index}", f.error))
                continue
            poses = [dataclasses.replace(pose, keypoints=points, track_id=track_id)
                     for pose, points, track_id in zip(f.people, frame.keypoints,
                                                       frame.track_ids, strict=True)]
            poses += [Pose(points, score, track_id=track_id, interpolated=True)
                      for track_id, points, score in frame.filled]
            yield self._prediction(item, self._marked(poses), frame=f.index,
                                   width=f.width, height=f.height,
                                   timestamp_ms=round(f.index * 1000.0 / fps, 3), fps=fps,
                                   image=None if images is None else images.get(f.index))
        if images is not None:
            images.close()

    def _images_again(self, item: Input, fps: float) -> _Rereader:
        """The frames of a video file read a second time, by index (for overlays)."""
        assert item.video is not None
        _, reader = open_video(item.video, drop=False)
        return _Rereader(reader, _limited(reader, fps, self.options))


@dataclass(frozen=True)
class _FrameResult:
    """One frame's outcome, kept until a video's offline tracking is done."""

    index: int
    width: int
    height: int
    error: str | None
    people: list[Pose]


@dataclass
class _Rereader:
    """A video's frames read again in order, handed out by index: each frame is read once,
    and frames asked for out of order are not kept (one frame in memory at a time)."""

    reader: FrameReader
    frames: Iterator[tuple[int, np.ndarray]]

    def get(self, index: int) -> np.ndarray | None:
        """The frame at ``index``; None when the second read does not reach it (the file
        changed, or broke off at another place)."""
        for at, image in self.frames:
            if at == index:
                return image
            if at > index:
                return None
        return None

    def close(self) -> None:
        self.reader.close()


def track_poses(tracker: PoseTracker, poses: Sequence[Pose], timestamp_ms: float
                ) -> list[Pose]:
    """``poses`` (one video frame's) with their ``track_id`` from ``tracker``, and its
    smoothed keypoints when the tracker smooths."""
    tracked = tracker.update_poses(poses, timestamp_ms)
    return [dataclasses.replace(pose, keypoints=t.keypoints, track_id=t.track_id)
            for pose, t in zip(poses, tracked, strict=True)]


def _limited(reader: FrameReader, fps: float, options: RunOptions, *, live: bool = False
             ) -> Iterator[tuple[int, np.ndarray]]:
    """The reader's frames up to ``max_frames`` frames and ``duration_s`` of stream time
    from the first frame read (frame index / fps: frames a live reader dropped count as
    time passed). From the first frame read, not from index 0: a live reader's first frame
    can come well into the stream (the model's start-up), and would end a short run there.

    ``live``: also ``duration_s`` of wall-clock time, waiting included (a stream sending a
    frame every 3 s at a stated 25 fps once took 75 s for ``--duration 1``)."""
    taken, first = 0, None
    while options.max_frames is None or taken < options.max_frames:
        try:
            index, image = next(reader)
        except StopIteration:
            return
        if first is None:
            first = index
            if live and options.duration_s is not None and isinstance(reader, LatestFrames):
                reader.stop_at(time.monotonic() + options.duration_s)
        if options.duration_s is not None and index - first >= options.duration_s * fps:
            return
        taken += 1
        yield index, image
