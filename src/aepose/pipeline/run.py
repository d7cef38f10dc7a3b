"""The one driver from sources to poses: :func:`run` (a generator) and :func:`predict`.

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
import inspect
import time
from collections.abc import Generator, Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from aepose.choices import (
    KEYPOINT_THRESHOLD,
    PREDICT_MIN_SCORE,
    PREDICT_POSE_NMS,
    SMOOTH_BETA,
    SMOOTH_MIN_CUTOFF,
    TRACK_MAX_AGE,
    TRACK_MIN_SCORE,
    TRACK_MIN_SIMILARITY,
)
from aepose.codec.pose_nms import oks_nms
from aepose.config import TestConfig, did_you_mean
from aepose.device import default_device
from aepose.errors import AeposeError
from aepose.image import check_channel_order, to_rgb
from aepose.models.checkpoint import load_with_config
from aepose.pipeline.engine import READ_AHEAD_BYTES, Result, named_error, stream
from aepose.pipeline.inputs import Input, Inputs, Source, expand_inputs
from aepose.pipeline.network import FastNetwork
from aepose.pipeline.pose import Pose
from aepose.pipeline.prediction import Prediction
from aepose.pipeline.predictor import Predictor, load_rgb
from aepose.pipeline.timer import StageTimer
from aepose.pipeline.workers import decode_pool, default_decode_workers
from aepose.tracking.one_euro import OneEuroConfig
from aepose.tracking.tracker import PoseTracker, TrackerConfig
from aepose.validate import integer_in, number_in, require
from aepose.video.capture import FALLBACK_FPS
from aepose.video.readers import FrameReader, LatestFrames, open_video

__all__ = ["Input", "Inputs", "Prediction", "RunOptions", "expand_inputs", "predict", "run",
           "tracker_config"]

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
    config (its ``fps`` replaced by the video's), None for no ``track_id``; max_frames /
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
    tracker: TrackerConfig | None = field(default_factory=TrackerConfig)
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
        try:
            info, reader = open_video(item.video, drop=self.options.drop)
        except AeposeError as error:
            yield self._prediction(item, [], error=str(error))
            return
        try:
            yield from self._frames(item, info.fps or FALLBACK_FPS, reader)
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


def predict(
    source: Source,
    weights: str | Path | Predictor,
    *,
    preset: str | None = None,
    device: str | torch.device | None = None,
    channel_order: str | None = None,
    batch_size: int = 8,
    recursive: bool = False,
    min_score: float = PREDICT_MIN_SCORE,
    pose_nms: float | None = PREDICT_POSE_NMS,
    threshold: float = KEYPOINT_THRESHOLD,
    workers: int = 2,
    decode_workers: int | None = None,
    keep_images: bool = False,
    read_ahead_bytes: int = READ_AHEAD_BYTES,
    track: bool | TrackerConfig = True,
    track_max_age: int | None = None,
    track_min_similarity: float | None = None,
    track_min_score: float | None = None,
    smooth: bool | None = None,
    smooth_min_cutoff: float | None = None,
    smooth_beta: float | None = None,
    max_frames: int | None = None,
    duration: float | None = None,
    dtype: str = "fp32",
    channels_last: bool = False,
    compile: bool = False,
    compile_mode: str | None = None,
    **settings: Any,
) -> list[Prediction]:
    """Poses of every image of ``source``, in order: one :class:`Prediction` per image or
    video frame (``list(run(...))`` with the first error raised).

    Every option of ``aepose predict`` is a keyword of the same name (``--min-score`` is
    ``min_score``; ``--no-flip``, ``--no-track`` are ``flip=False``, ``track=False``); the
    options that write files (``--out``, ``--no-draw``, ``--overwrite``) have
    :meth:`Prediction.save` instead. An unknown keyword is one line with a did-you-mean.

    Args:
        source: an image file, a folder (its images, sorted), a glob pattern
            (``"shots/*.jpg"``), a video file or video URL (every frame), an image
            sequence (``"frames/%05d.png"``), a uint8 array [H, W, 3] in
            ``channel_order``, or a list of any of these. Live sources (cameras,
            ``rtsp://``) are refused: they never end, and every result is kept.
        weights: a weights file, a preset name with released weights, an mmpose release file
            name or a URL (fetched once into the cache, :mod:`aepose.hub`), or a
            :class:`~aepose.pipeline.predictor.Predictor` to reuse (then no test settings,
            ``preset``, ``device`` or network options).
        preset, device: as :meth:`Predictor.from_checkpoint` (default: recognised from the
            weights; CUDA when available).
        channel_order: "bgr" (the default, as ``cv2.imread`` returns) or "rgb": the order of
            the arrays' channels (default: a given Predictor's own); files are decoded
            correctly either way.
        batch_size: most images per forward pass; workers: reading threads;
            decode_workers: decoding workers (see :class:`RunOptions`).
        recursive: also take images from the subfolders of a folder.
        min_score, pose_nms, threshold: which people and keypoints (:class:`RunOptions`'
            ``min_score``, ``pose_nms``, ``keypoint_threshold``); ``min_score=0,
            pose_nms=None, threshold=0`` gives every person the decoder grouped, with every
            keypoint's own score, as ``aepose test`` scores them.
        keep_images: keep each image (RGB) in its Prediction, for :meth:`Prediction.plot`
            of video frames (images are read again from their files; arrays are kept).
        read_ahead_bytes: the memory budget of reading ahead (:class:`RunOptions`).
        track: videos: give each person a ``track_id`` that persists across frames, one
            :class:`~aepose.tracking.tracker.PoseTracker` per video, as ``aepose predict``
            does: True (configured by ``track_max_age``, ``track_min_similarity``,
            ``track_min_score``, ``smooth``, ``smooth_min_cutoff``, ``smooth_beta``: see
            :func:`tracker_config`), or a TrackerConfig; False: no ``track_id``.
        max_frames, duration: stop each video after this many frames / seconds.
        dtype, channels_last, compile, compile_mode: the network's fast paths
            (:class:`~aepose.pipeline.network.FastNetwork`).
        settings: the Predictor's ``test=`` (a :class:`~aepose.config.TestConfig`) and test
            settings overriding the preset's: ``scales``, ``flip``, ``stage_average``,
            ``detection_threshold``... (see :class:`~aepose.pipeline.predictor.Predictor`).

    A source that yields nothing (missing file, empty folder, unsupported type) or an image
    that cannot be read raises a one-line :class:`~aepose.errors.AeposeError` naming it.
    """
    _check_keywords(settings)
    if not isinstance(track, bool | TrackerConfig):
        raise TypeError(f"predict: track must be True, False or a TrackerConfig, got {track!r}")
    tracking = {"track_max_age": track_max_age, "track_min_similarity": track_min_similarity,
                "track_min_score": track_min_score, "smooth": smooth,
                "smooth_min_cutoff": smooth_min_cutoff, "smooth_beta": smooth_beta}
    given: dict[str, Any] = {name: value for name, value in tracking.items()
                             if value is not None}
    if given and track is not True:
        raise AeposeError(f"{next(iter(given))} would be ignored with track={track!r}: give it "
                          "in the TrackerConfig, or drop track=False")
    network = {"dtype": dtype, "channels_last": channels_last,
               "compile_mode": compile_mode or ("default" if compile else None)}
    predictor = _predictor(weights, preset, device, channel_order or "bgr", network, settings)
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
    options = RunOptions(
        batch_size=batch_size, read_workers=workers, decode_workers=decode_workers,
        keep_images=keep_images, min_score=min_score, pose_nms=pose_nms,
        keypoint_threshold=threshold, max_frames=max_frames, duration_s=duration, drop=False,
        read_ahead_bytes=read_ahead_bytes,
        tracker=(tracker_config(**given) if track is True else track or None))
    out = []
    with contextlib.closing(run(inputs, predictor, options)) as results:
        for result in results:
            if result.error is not None:
                raise AeposeError(result.error)
            out.append(result)
    return out


def tracker_config(*, track_max_age: int = TRACK_MAX_AGE,
                   track_min_similarity: float = TRACK_MIN_SIMILARITY,
                   track_min_score: float = TRACK_MIN_SCORE, smooth: bool = False,
                   smooth_min_cutoff: float | None = None,
                   smooth_beta: float | None = None) -> TrackerConfig:
    """The :class:`~aepose.tracking.tracker.TrackerConfig` of ``aepose predict``'s tracking
    options, by their names there (``--track-max-age`` ...). The smoothing's two settings
    act only with ``smooth``: given without it they are refused (they would be ignored)."""
    if not smooth and (smooth_min_cutoff is not None or smooth_beta is not None):
        raise AeposeError("smooth_min_cutoff and smooth_beta would be ignored without smooth")
    euro = OneEuroConfig(
        min_cutoff=SMOOTH_MIN_CUTOFF if smooth_min_cutoff is None else smooth_min_cutoff,
        beta=SMOOTH_BETA if smooth_beta is None else smooth_beta)
    return TrackerConfig(max_age=track_max_age, smooth=smooth, one_euro=euro,
                         min_similarity=track_min_similarity, min_score=track_min_score)


# ``aepose predict`` options with no keyword of that name here, and what to write instead.
_OTHER_SPELLINGS = {
    "conf": "min_score (ultralytics' conf)",
    "no_flip": "flip=False",
    "no_track": "track=False",
    "kpt_thr": "threshold",
    "keypoint_threshold": "threshold",
    "read_workers": "workers",
    "duration_s": "duration",
    "set": "the test settings as keywords (detection_threshold=0.2)",
    "overrides": "the test settings as keywords (detection_threshold=0.2)",
    "out": "result.save(path) for each result: predict() writes no files",
    "no_draw": "nothing: predict() draws only on result.plot() or result.save(path)",
    "overwrite": "nothing: predict() writes no files (result.save(path) replaces path)",
    "no_drop": "nothing: predict() reads every frame of files and refuses live sources",
    "backend": "weights='model.onnx': an ONNX file runs in ONNX Runtime by itself",
}


def _check_keywords(settings: dict[str, Any]) -> None:
    """Refuse a keyword that is neither :func:`predict`'s own nor a test setting, in one
    line with what was probably meant."""
    known = {"test", *TestConfig.__dataclass_fields__}
    for name in settings:
        if name in known:
            continue
        if name in _OTHER_SPELLINGS:
            raise AeposeError(f"predict() got the keyword {name!r}; use "
                              f"{_OTHER_SPELLINGS[name]}")
        own = [p for p in inspect.signature(predict).parameters if p not in ("source",
                                                                           "settings")]
        raise AeposeError(f"predict() got an unknown keyword {name!r}"
                          f"{did_you_mean(name, [*own, *sorted(known)])}")


def _predictor(weights: str | Path | Predictor, preset: str | None,
               device: str | torch.device | None, order: str, network: dict[str, Any],
               settings: dict[str, Any]) -> Predictor:
    fast = network["dtype"] != "fp32" or network["channels_last"] or network["compile_mode"]
    if isinstance(weights, Predictor):
        if settings or preset is not None or device is not None or fast:
            raise AeposeError("give test settings, preset, device and network options to the "
                              "Predictor itself, not to predict() with a Predictor")
        return weights
    model: nn.Module
    model, config = load_with_config(weights, preset=preset, device=device or default_device())
    if fast:
        model = FastNetwork(model, dtype=network["dtype"],
                            channels_last=network["channels_last"],
                            compile=network["compile_mode"]).eval()
    return Predictor(model, config, channel_order=order, **settings)
