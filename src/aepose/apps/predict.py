"""``aepose predict``: poses for images, folders, globs and videos, as JSON and overlays.

Every image and video frame runs through the streamed pipeline
(:func:`aepose.pipeline.engine.stream`). Output folder:

``predictions.json``  self-describing: model, weights, test settings, keypoint names and
                      skeleton, then per image (or video frame, with its index and time)
                      the people as ``keypoints [[x, y, score], ...]``, ``score``, ``bbox``;
``results.json``      the same people as COCO result records (flat ``keypoints``), which
                      ``aepose test --results`` scores;
``NAME.png``          overlays of images, ``NAME.mp4`` of videos (H.264).

While the run goes on, each finished image is appended to ``predictions.jsonl`` (see
:mod:`aepose.apps.predictions`): after a crash it holds every finished image. At the end, or on
Ctrl-C, the two JSON files are written from it (atomically) and it is removed. A bad input is
reported and skipped; the rest finish. Under torchrun each rank takes its share of the
inputs and rank 0 writes one merged output.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

import aepose
from aepose.apps.predictions import PARTIAL_NAME, PredictionWriter, merge_predictions
from aepose.choices import OVERLAY_MIN_SCORE
from aepose.data.coco import read_image
from aepose.engine.distributed import DistInfo, all_gather_objects, broadcast_object
from aepose.errors import AeposeError
from aepose.io import RunLock, check_writable, interrupt_after
from aepose.keypoints import RGB, KeypointSpec
from aepose.pipeline.draw import draw_poses, save_image, track_color
from aepose.pipeline.engine import Result, named_error, stream
from aepose.pipeline.predictor import Pose, Predictor, track_poses
from aepose.pipeline.timer import StageTimer
from aepose.tracking.tracker import PoseTracker, TrackerConfig
from aepose.video.sources import (
    FALLBACK_FPS,
    FrameReader,
    SourceItem,
    VideoInfo,
    VideoWriter,
    expand_sources,
    open_video,
)

__all__ = ["OVERLAY_MIN_SCORE", "PredictOptions", "PredictSummary", "overlay", "run_predict"]

logger = logging.getLogger("aepose")



@dataclass(frozen=True)
class PredictOptions:
    """How ``aepose predict`` runs and what it writes.

    batch_size: images per forward pass; read_workers: reading threads; decode_workers:
    post-processing workers (None: :func:`~aepose.pipeline.engine.default_decode_workers`);
    draw: write overlays; keypoint_threshold: keypoint score needed to draw it; min_score:
    people below it are left out of every output; weights: what to record as the weights;
    overwrite: replace the outputs of an earlier run in the folder; progress: a bar.

    Videos and streams: track: give every person a ``track_id`` (one
    :class:`~aepose.tracking.tracker.PoseTracker` per video, configured by ``tracker``, whose
    ``smooth`` turns on One-Euro smoothing; its ``fps`` is replaced by the video's);
    max_frames / duration_s: stop each video or stream after this many frames / seconds of
    stream time (None: to its end); drop: read through a newest-frame-only reader that drops
    frames when processing falls behind (None: for live sources only, never for files).
    """

    batch_size: int = 8
    read_workers: int = 2
    decode_workers: int | None = None
    draw: bool = True
    keypoint_threshold: float = 0.3
    min_score: float = 0.0
    weights: str = ""
    overwrite: bool = False
    progress: bool = True
    track: bool = True
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    max_frames: int | None = None
    duration_s: float | None = None
    drop: bool | None = None


@dataclass
class PredictSummary:
    """What a predict run wrote and what it skipped."""

    out_dir: Path
    images: int = 0  # images and video frames with predictions
    people: int = 0
    problems: list[str] = field(default_factory=list)  # "path: reason", one per skipped input
    json_path: Path | None = None
    seconds: float = 0.0
    interrupted: bool = False
    stopped_by: str | None = None  # the error that stopped the run early, if any
    timer: StageTimer = field(default_factory=StageTimer)

    def describe(self) -> str:
        """The closing summary: counts, rate and the time of each stage per image."""
        rate = self.images / self.seconds if self.seconds > 0 else 0.0
        stages = ", ".join(f"{name} {ms:.1f}" for name, ms in self.timer.ms_per_image().items())
        return (f"{self.images} images/frames, {self.people} people in {self.seconds:.1f} s "
                f"({rate:.1f} images/s); ms per image: {stages or '-'}")


def run_predict(
    sources: Sequence[str],
    predictor: Predictor,
    out_dir: str | Path,
    options: PredictOptions | None = None,
    info: DistInfo | None = None,
) -> PredictSummary:
    """Predict every image and video frame of ``sources`` and write the outputs.

    The folder is locked for the run (a second run into it is refused) and proven writable
    before any work. Ctrl-C stops the run with every finished image written
    (``summary.interrupted``). Under torchrun (``info``) rank r takes every world_size-th
    image and video, and rank 0 merges everything into one output in input order; the
    summary then counts all ranks.
    """
    options = options or PredictOptions()
    info = info or DistInfo(0, 1, 0, predictor.device)
    summary = PredictSummary(Path(out_dir))
    found = expand_sources(sources)
    if info.is_main:
        for problem in found.problems:  # reported here, once: the CLI does not repeat them
            _skip(summary, problem)
    with ExitStack() as stack:
        _claim_folder(stack, summary.out_dir, options.overwrite, info)
        positions = {item.name: n for n, item in enumerate(found.items)}
        with PredictionWriter(summary.out_dir, positions, info.rank) as writer:
            _run_all(found.items[info.rank :: info.world_size], _unique_names(found.items),
                     predictor, options, summary, writer)
        _gather(summary, info)
        if info.is_main:
            try:
                with interrupt_after():  # a merge cut short would leave the old results
                    summary.json_path = merge_predictions(
                        summary.out_dir, _header(predictor, options), info.world_size)
            except KeyboardInterrupt:
                summary.interrupted = True  # Ctrl-C during the merge: it finished first
    return summary


def _claim_folder(stack: ExitStack, out: Path, overwrite: bool, info: DistInfo) -> None:
    """Rank 0 proves the folder writable, locks it and checks it holds no earlier run;
    every rank stops with the same line if that fails."""
    error = None
    if info.is_main:
        try:
            check_writable(out)
            stack.enter_context(RunLock(out))
            _refuse_old_outputs(out, overwrite)
        except AeposeError as failure:
            error = str(failure)
    error = broadcast_object(error, info)
    if error is not None:
        raise AeposeError(error)


def _gather(summary: PredictSummary, info: DistInfo) -> None:
    """Every rank's counts and problems added into rank 0's summary."""
    if not info.distributed:
        return
    parts = all_gather_objects((summary.images, summary.people, summary.problems,
                                summary.interrupted, summary.stopped_by), info)
    summary.images = sum(p[0] for p in parts)
    summary.people = sum(p[1] for p in parts)
    summary.problems = [problem for p in parts for problem in p[2]]
    summary.interrupted = any(p[3] for p in parts)
    summary.stopped_by = next((p[4] for p in parts if p[4] is not None), None)


def _run_all(items: Sequence[SourceItem], names: dict[Path, str], predictor: Predictor,
             options: PredictOptions, summary: PredictSummary,
             writer: PredictionWriter) -> None:
    """Predict this rank's items; on Ctrl-C or an error that stops the run (a decode
    worker killed) stop there: the caller writes the outputs of what finished."""
    start = time.perf_counter()
    try:
        _predict_all(items, names, predictor, options, summary, writer)
    except KeyboardInterrupt:
        summary.interrupted = True
    except AeposeError as error:
        summary.stopped_by = str(error)
    finally:
        summary.seconds = time.perf_counter() - start


def _refuse_old_outputs(out: Path, overwrite: bool) -> None:
    old = [name for name in ("predictions.json", PARTIAL_NAME) if (out / name).exists()]
    if old and not overwrite:
        raise AeposeError(f"{out} already holds {old[0]} of an earlier run; choose another "
                          "--out or pass --overwrite")
    if overwrite:  # now, not at the end: a run that dies before it writes its own results
        for name in ("predictions.json", "results.json"):  # must not leave the old ones
            (out / name).unlink(missing_ok=True)


def _predict_all(items: Sequence[SourceItem], names: dict[Path, str], predictor: Predictor,
                 options: PredictOptions, summary: PredictSummary,
                 writer: PredictionWriter) -> None:
    images = [item for item in items if item.kind == "image"]
    with tqdm(total=len(images), desc="images", disable=not options.progress or not images,
              dynamic_ncols=True, leave=False) as bar:
        results = stream(predictor.stages, images, lambda item: read_image(item.path),
                         **_stream_options(options), timer=summary.timer)
        for result in results:
            _record_image(result, names[result.item.path], predictor, options, summary, writer)
            bar.update(1)
    for item in items:
        if item.kind == "video":
            _predict_video(item, names[item.path], predictor, options, summary, writer)


def _stream_options(options: PredictOptions) -> dict[str, Any]:
    return {"batch_size": options.batch_size, "read_workers": options.read_workers,
            "decode_workers": options.decode_workers, "keep_images": options.draw}


def _people(result: Result[Any], predictor: Predictor, options: PredictOptions) -> list[Pose]:
    poses = predictor.poses(result.poses, result.scores)
    return [p for p in poses if p.score >= options.min_score]


def _record_image(result: Result[SourceItem], name: str, predictor: Predictor,
                  options: PredictOptions, summary: PredictSummary,
                  writer: PredictionWriter) -> None:
    if result.error is not None:
        _skip(summary, named_error(str(result.item.path), result.error))
        return
    people = _people(result, predictor, options)
    writer.add({"file_name": str(result.item.path), "width": result.width,
                "height": result.height}, people)
    summary.images += 1
    summary.people += len(people)
    if options.draw and result.image is not None:
        save_image(summary.out_dir / f"{name}.png",
                   overlay(result.image, people, predictor.spec, options.keypoint_threshold))


def _unique_names(items: Sequence[SourceItem]) -> dict[Path, str]:
    """Output file stems: the input's stem, with ``_2``, ``_3`` ... on repeats."""
    names: dict[Path, str] = {}
    used: set[str] = set()
    for item in items:
        stem, n = item.path.stem, 1
        while (stem if n == 1 else f"{stem}_{n}") in used:
            n += 1
        names[item.path] = stem if n == 1 else f"{stem}_{n}"
        used.add(names[item.path])
    return names


def overlay(
    image: np.ndarray, poses: list[Pose], spec: KeypointSpec, threshold: float = 0.3,
    min_score: float = OVERLAY_MIN_SCORE,
) -> np.ndarray:
    """``image`` (RGB uint8 [H, W, 3]) with ``poses`` scoring at least ``min_score`` drawn:
    skeletons, person colours, scores; keypoints scoring below ``threshold`` are left out.
    Tracked poses (``track_id`` set) take their track's colour and are labelled ``#ID``, so
    a person keeps colour and label through a video; untracked ones (-1) are grey."""
    shown = [p for p in poses if p.score >= min_score]
    keypoints = np.stack([p.keypoints for p in shown]) if shown else np.zeros(
        (0, spec.num_keypoints, 3), np.float32)
    scores = np.array([p.score for p in shown], dtype=np.float32)
    colors: list[RGB] | None = None
    labels: list[str | None] | None = None
    if any(p.track_id is not None for p in shown):
        colors = [track_color(p.track_id) for p in shown]
        labels = [f"#{p.track_id}" if p.track_id is not None and p.track_id >= 0 else None
                  for p in shown]
    return draw_poses(image, keypoints, scores, spec, keypoint_threshold=threshold,
                      colors=colors, labels=labels)


def _predict_video(item: SourceItem, name: str, predictor: Predictor, options: PredictOptions,
                   summary: PredictSummary, writer: PredictionWriter) -> None:
    """Every frame of one video or stream, up to ``max_frames`` / ``duration_s``, tracked
    when ``options.track``. A source that cannot be opened or read is reported; if reading
    breaks off, or Ctrl-C stops the run, the frames already predicted stay in the JSON and
    the overlay MP4 holds the frames drawn. Frames a live reader dropped are reported as one
    problem line with their count."""
    try:
        info, reader = open_video(item, drop=options.drop)
    except AeposeError as error:
        _skip(summary, str(error))
        return
    try:
        _video_frames(item, name, info, reader, predictor, options, summary, writer)
    except AeposeError as error:
        _skip(summary, str(error))
    finally:
        reader.close()
        if reader.dropped and reader.problem:
            summary.problems.append(reader.problem)


def _video_frames(item: SourceItem, name: str, info: VideoInfo, reader: FrameReader,
                  predictor: Predictor, options: PredictOptions, summary: PredictSummary,
                  writer: PredictionWriter) -> None:
    """Predict, track, record and draw the frames ``reader`` yields (see _predict_video)."""
    fps = info.fps or FALLBACK_FPS
    settings = _stream_options(options)
    if options.drop or (options.drop is None and item.live):
        # One frame in flight: a batch or a read-ahead window would hold stale frames.
        settings |= {"batch_size": 1, "window": 1}
    total = info.frames if options.max_frames is None else min(info.frames, options.max_frames)
    stopped: AeposeError | KeyboardInterrupt | None = None
    with ExitStack() as stack:
        bar = stack.enter_context(tqdm(total=total or None, desc=item.path.name,
                                       disable=not options.progress, leave=False))
        frames = stream(predictor.stages, _limited(reader, fps, options), lambda f: f[1],
                        **settings, timer=summary.timer)
        sink = _FrameSink(item.name, summary.out_dir / f"{name}.mp4", fps, predictor, options,
                          summary, writer, stack)
        try:
            for result in frames:
                sink.add(result)
                bar.update(1)
        except (AeposeError, KeyboardInterrupt) as stop:
            stopped = stop
        # The overlay is closed normally, whole, also when stopped: the frames drawn so
        # far are kept, as their JSON lines are (VideoWriter holds Ctrl-C until it is).
        try:
            stack.close()
        except KeyboardInterrupt as stop:
            stopped = stopped or stop
    if stopped is not None:
        raise stopped


class _FrameSink:
    """Where one video's predicted frames go: the tracker, the JSON lines and the overlay
    MP4 (opened at the first drawn frame, in ``stack``)."""

    def __init__(self, name: str, overlay_path: Path, fps: float, predictor: Predictor,
                 options: PredictOptions, summary: PredictSummary, writer: PredictionWriter,
                 stack: ExitStack) -> None:
        self.name, self.overlay_path, self.fps = name, overlay_path, fps
        self.predictor, self.options, self.summary, self.writer = (predictor, options,
                                                                   summary, writer)
        self.stack = stack
        self.tracker = (PoseTracker(predictor.spec, dataclasses.replace(options.tracker, fps=fps))
                        if options.track else None)
        self.video: VideoWriter | None = None

    def add(self, result: Result[tuple[int, np.ndarray]]) -> None:
        index = result.item[0]
        timestamp_ms = round(index * 1000.0 / self.fps, 3)
        people = [] if result.error is not None else _people(result, self.predictor,
                                                             self.options)
        if self.tracker is not None:  # every frame, failed ones too: that is how tracks age
            # Unrounded: at an absurd stated rate, rounded times could tie, which it refuses.
            people = track_poses(self.tracker, people, index * 1000.0 / self.fps)
        if result.error is not None:
            _skip(self.summary, named_error(f"{self.name} frame {index}", result.error))
            return
        self.writer.add({"file_name": self.name, "frame": index, "timestamp_ms": timestamp_ms,
                         "width": result.width, "height": result.height}, people)
        self.summary.images += 1
        self.summary.people += len(people)
        if self.options.draw and result.image is not None:
            self._draw(index, result.image, people)

    def _draw(self, index: int, image: np.ndarray, people: list[Pose]) -> None:
        if self.video is None:  # sized by the frames: a stream may not state its size
            height, width = image.shape[:2]
            self.video = self.stack.enter_context(VideoWriter(
                self.overlay_path, fps=self.fps, width=width, height=height))
        drawn = overlay(image, people, self.predictor.spec, self.options.keypoint_threshold)
        # fit: an image sequence's frames may differ in size; the MP4 keeps the first's.
        # index: frames lost or dropped before this one keep their time on screen.
        self.video.write(drawn, fit=True, index=index)


def _limited(reader: FrameReader, fps: float, options: PredictOptions
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


def _skip(summary: PredictSummary, problem: str) -> None:
    summary.problems.append(problem)
    logger.warning("skipped: %s", problem)


# ---------------------------------------------------------------------------------------
# Output files


def _header(predictor: Predictor, options: PredictOptions) -> dict[str, Any]:
    cfg, spec = predictor.config, predictor.spec
    return {
        "aepose": aepose.__version__,
        "model": {"preset": cfg.name, "weights": options.weights},
        "test": {**dataclasses.asdict(cfg.test), "pose_nms": predictor.pose_nms,
                 "min_score": options.min_score},
        # fps is left out: each video brings its own.
        "tracker": ({k: v for k, v in dataclasses.asdict(options.tracker).items() if k != "fps"}
                    if options.track else None),
        "keypoint_names": list(spec.keypoint_names),
        "skeleton": [list(link) for link in spec.skeleton],
        "format": "people[i].keypoints: [x, y, score] per keypoint in original-image pixel "
                  "indices; bbox: [x, y, w, h] of all keypoints",
    }
