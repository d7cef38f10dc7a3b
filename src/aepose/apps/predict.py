"""``aepose predict``: poses for images, folders, globs and videos, as JSON and overlays.

Every image and video frame runs through the streamed pipeline
(:func:`aepose.pipeline.engine.stream`). Output folder:

``predictions.json``  self-describing: model, weights, test settings, keypoint names and
                      skeleton, then per image (or video frame, with its index and time)
                      the people as ``keypoints [[x, y, score], ...]``, ``score``, ``bbox``;
``results.json``      the same people as COCO result records (flat ``keypoints``), which
                      ``aepose test --results`` scores;
``a/NAME.jpg``        overlays, in the inputs' own folder layout below the deepest folder
                      holding them all: JPEG for a JPEG image, PNG for other images, an
                      H.264 MP4 for a video (a webcam or stream: its short name, at the top).

While the run goes on, each finished image is appended to ``predictions.jsonl`` (see
:mod:`aepose.apps.predictions`): after a crash it holds every finished image. At the end, or on
Ctrl-C, the two JSON files are written from it (atomically) and it is removed. A bad input is
reported and skipped; the rest finish. Under torchrun each rank takes its share of the
inputs and rank 0 writes one merged output.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Sequence
from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

import aepose
from aepose.apps.predictions import (
    PARTIAL_NAME,
    PredictionWriter,
    list_overlay,
    merge_predictions,
    remove_listed_overlays,
)
from aepose.apps.settings import command_line_config, command_line_network
from aepose.choices import KEYPOINT_THRESHOLD, PREDICT_MIN_SCORE, PREDICT_POSE_NMS
from aepose.engine.distributed import (
    DistInfo,
    all_gather_objects,
    broadcast_object,
    claim_run_folder_on_all_ranks,
    init_distributed,
    shutdown,
)
from aepose.errors import AeposeError, Interrupted, one_line
from aepose.io import check_writable, interrupt_after, terminated
from aepose.pipeline.draw import save_image
from aepose.pipeline.inputs import Input, Inputs, expand_inputs
from aepose.pipeline.prediction import Prediction
from aepose.pipeline.predictor import Predictor
from aepose.pipeline.run import RunOptions, run
from aepose.pipeline.timer import StageTimer
from aepose.tracking.offline import OfflineConfig
from aepose.tracking.tracker import TrackerConfig
from aepose.video.writer import VideoWriter

__all__ = ["PredictCommand", "PredictOptions", "PredictSummary", "output_paths", "predict_command",
           "run_predict"]

logger = logging.getLogger("aepose")


@dataclass(frozen=True)
class PredictOptions:
    """How ``aepose predict`` runs and what it writes.

    batch_size: images per forward pass; read_workers: reading threads; decode_workers:
    post-processing workers (None: :func:`~aepose.pipeline.workers.default_decode_workers`);
    draw: write overlays; min_score, pose_nms, keypoint_threshold: which people and
    keypoints every output holds (:class:`~aepose.pipeline.run.RunOptions`); weights: what
    to record as the weights; overwrite: replace the outputs of an earlier run in the
    folder (its JSON files and the overlays its ``overlays.txt`` lists); progress: a bar.

    Videos and streams: track: give every person a ``track_id`` (one
    :class:`~aepose.tracking.tracker.PoseTracker` per video, configured by ``tracker``, whose
    ``smooth`` turns on One-Euro smoothing; its ``fps`` is replaced by the video's; an
    :class:`~aepose.tracking.offline.OfflineConfig` tracks each video file offline);
    max_frames / duration_s: stop each video or stream after this many frames / seconds of
    stream time (None: to its end); drop: read through a newest-frame-only reader that drops
    frames when processing falls behind (None: for live sources only, never for files).
    """

    batch_size: int = 8
    read_workers: int = 2
    decode_workers: int | None = None
    draw: bool = True
    keypoint_threshold: float = KEYPOINT_THRESHOLD
    min_score: float = PREDICT_MIN_SCORE
    pose_nms: float | None = PREDICT_POSE_NMS
    weights: str = ""
    overwrite: bool = False
    progress: bool = True
    track: bool = True
    tracker: TrackerConfig | OfflineConfig = field(default_factory=TrackerConfig)
    max_frames: int | None = None
    duration_s: float | None = None
    drop: bool | None = None

    def run_options(self) -> RunOptions:
        """What the driver (:func:`aepose.pipeline.run.run`) needs of these options."""
        return RunOptions(
            batch_size=self.batch_size, read_workers=self.read_workers,
            decode_workers=self.decode_workers, keep_images=self.draw,
            min_score=self.min_score, pose_nms=self.pose_nms,
            keypoint_threshold=self.keypoint_threshold,
            tracker=self.tracker if self.track else None,
            max_frames=self.max_frames, duration_s=self.duration_s, drop=self.drop)


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
        """The closing summary: counts (skipped inputs too), rate and the time of each stage
        per image."""
        rate = self.images / self.seconds if self.seconds > 0 else 0.0
        stages = ", ".join(f"{name} {ms:.1f}" for name, ms in self.timer.ms_per_image().items())
        skipped = f", {len(self.problems)} skipped (see above)" if self.problems else ""
        return (f"{self.images} images/frames, {self.people} people{skipped} in "
                f"{self.seconds:.1f} s ({rate:.1f} images/s); ms per image: {stages or '-'}")


@dataclass(frozen=True)
class PredictCommand:
    """``aepose predict`` as the command line gives it: the inputs, the weights and where
    the network runs (``backend`` "torch" or "onnxruntime"; ``device`` None: the default
    device), the test settings over the weights' own (``overrides``: ``test.x=y`` items,
    applied in order), the fast paths
    (``dtype``, ``channels_last``, ``compile_mode``), the output folder (None:
    runs/predict-TIMESTAMP) and the run's :class:`PredictOptions`."""

    sources: tuple[str, ...]
    weights: str
    out: Path | None = None
    preset: str | None = None
    backend: str = "torch"
    device: str | None = None
    overrides: tuple[str, ...] = ()
    dtype: str = "fp32"
    channels_last: bool = False
    compile_mode: str | None = None
    options: PredictOptions = field(default_factory=PredictOptions)


def predict_command(command: PredictCommand) -> None:
    """Run ``aepose predict`` on this rank (under torchrun, its share) and, on rank 0, print
    the closing summary. Stopped by Ctrl-C: :class:`~aepose.errors.Interrupted` naming where
    the finished images are; stopped by an error, or nothing predicted: one AeposeError."""
    info = init_distributed(command.device)  # checks the device: one line when it is missing
    try:
        summary = _predict_on_this_rank(command, info)
    finally:
        shutdown()
    if not info.is_main:
        return
    # Skipped inputs were reported (once each) as they happened.
    print(summary.describe())
    print(f"predictions: {summary.json_path}")
    if summary.interrupted:
        raise Interrupted(f"the {summary.images} finished images/frames are in "
                          f"{summary.json_path}")
    if summary.stopped_by is not None:
        raise AeposeError(f"{summary.stopped_by}; the {summary.images} finished "
                          f"images/frames are in {summary.json_path}")
    if summary.images == 0:
        raise AeposeError(f"nothing could be predicted ({len(summary.problems)} input(s) "
                          "skipped, see above)")


def _predict_on_this_rank(command: PredictCommand, info: DistInfo) -> PredictSummary:
    out = Path(broadcast_object(
        str(command.out or f"runs/predict-{time.strftime('%Y%m%d-%H%M%S')}"), info))
    check_writable(out)  # before the weights are loaded: an unwritable --out costs nothing
    predictor = _predictor(command, info.device)
    partial = out / PARTIAL_NAME
    earlier = partial.exists()
    try:
        return run_predict(command.sources, predictor, out, command.options, info)
    except (AeposeError, OSError) as error:
        # Images finished before the failure are in this run's JSONL: say so.
        if earlier or not partial.is_file():
            raise
        raise AeposeError(f"{one_line(error)}; the images finished before it are in "
                          f"{partial}") from None


def _predictor(command: PredictCommand, device: torch.device) -> Predictor:
    """The Predictor of the command's network, backend and test settings. Weights named
    ``*.onnx`` run in ONNX Runtime, as ``--backend onnxruntime`` asks; pre- and
    post-processing are the same code either way."""
    network, cfg = command_line_network(
        command.weights, device, preset=command.preset,
        onnx=command.backend == "onnxruntime", dtype=command.dtype,
        channels_last=command.channels_last, compile_mode=command.compile_mode)
    cfg = command_line_config(cfg, command.overrides)
    return Predictor(network, cfg)  # the pose NMS is the run's (PredictOptions.pose_nms)


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
    inputs = expand_inputs(sources, unique=True)
    with ExitStack() as stack:
        stack.enter_context(claim_run_folder_on_all_ranks(
            summary.out_dir, info, lambda out: _refuse_old_outputs(out, options.overwrite)))
        positions = {item.name: item.position for item in inputs.items}
        with PredictionWriter(summary.out_dir, positions, info.rank) as writer:
            sink = _Sink(summary, writer, output_paths(inputs.items), options)
            _run_all(inputs.shard(info.rank, info.world_size), predictor, options, sink)
        # Stopped by SIGTERM under torchrun (a rank died, and torchrun stops the others),
        # a collective would wait for the dead: rank 0 merges what every rank wrote.
        survivors = info.distributed and summary.interrupted and terminated()
        if not survivors:
            _gather(summary, info)
        if info.is_main:
            try:
                with interrupt_after():  # a merge cut short would leave the old results
                    summary.json_path = merge_predictions(
                        summary.out_dir, _header(predictor, options), info.world_size)
            except KeyboardInterrupt:
                summary.interrupted = True  # Ctrl-C during the merge: it finished first
            except MemoryError:  # the partial files stay: the caller names them
                raise AeposeError("out of memory merging the predictions into "
                                  f"{summary.out_dir / 'predictions.json'}") from None
            if survivors:
                summary.images = _merged_count(summary.json_path)
    return summary


def _merged_count(path: Path | None) -> int:
    """Images and frames in a merged predictions.json (when the ranks' counts could not be
    gathered)."""
    if path is None or not path.is_file():
        return 0
    return len(json.loads(path.read_text(encoding="utf-8"))["images"])


def _refuse_old_outputs(out: Path, overwrite: bool) -> None:
    ranks = sorted(p.name for p in out.glob("predictions.rank*.jsonl"))
    old = [name for name in ("predictions.json", PARTIAL_NAME) if (out / name).exists()]
    if (old or ranks) and not overwrite:
        raise AeposeError(f"{out} already holds {(old + ranks)[0]} of an earlier run; choose "
                          "another --out or pass --overwrite")
    if overwrite:  # now, not at the end: a run that dies before it writes its own results
        # must not leave the old ones, nor a dead torchrun rank's partial file to merge.
        for name in ("predictions.json", "results.json", *ranks):
            (out / name).unlink(missing_ok=True)
        remove_listed_overlays(out)


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


def _run_all(inputs: Inputs, predictor: Predictor, options: PredictOptions,
             sink: _Sink) -> None:
    """This rank's inputs through the driver into ``sink``; on Ctrl-C or an error that
    stops the run (a decode worker killed) stop there: the caller writes the outputs of
    what finished."""
    start = time.perf_counter()
    results = run(inputs, predictor, options.run_options(), timer=sink.summary.timer)
    try:
        with closing(results), sink, tqdm(desc="images/frames", disable=not options.progress,
                                          dynamic_ncols=True, leave=False) as bar:
            for result in results:
                sink.add(result)
                bar.update(1)
    except KeyboardInterrupt:
        sink.summary.interrupted = True
    except AeposeError as error:
        sink.summary.stopped_by = str(error)
    finally:
        sink.summary.seconds = time.perf_counter() - start


_JPEG_SUFFIXES = (".jpg", ".jpeg")


def output_paths(items: Sequence[Input]) -> dict[int, Path]:
    """Each input's overlay, relative to the output folder, by input position.

    A file keeps its path below the deepest folder holding every input file (``shots/a/x.jpg``
    and ``shots/b/x.jpg`` give ``a/x.jpg`` and ``b/x.jpg``; one folder's files sit at the
    top); a stream (webcam, URL, image sequence) is its short name at the top. A JPEG image
    gives a JPEG overlay of its own name (PNG overlays are several times the size of JPEG
    photos), another image a PNG, a video an MP4. A path taken twice (``x.png`` of
    ``x.png`` and ``x.bmp``) gets ``_2``, ``_3`` ... on the later ones.
    """
    files = {item.position: Path(os.path.abspath(item.name)) for item in items
             if item.video is None or item.video.url is None}
    root = Path(os.path.commonpath([f.parent for f in files.values()])) if files else Path()
    paths: dict[int, Path] = {}
    used: set[str] = set()
    for item in items:
        file = files.get(item.position)
        place = file.relative_to(root) if file is not None else Path(
            item.video.path.stem if item.video is not None else item.name)
        if item.video is not None:
            suffix = ".mp4"
        else:
            suffix = place.suffix if place.suffix.lower() in _JPEG_SUFFIXES else ".png"
        stem, n = place.with_suffix("").as_posix(), 1
        while f"{stem if n == 1 else f'{stem}_{n}'}{suffix}".lower() in used:
            n += 1
        chosen = f"{stem if n == 1 else f'{stem}_{n}'}{suffix}"
        used.add(chosen.lower())
        paths[item.position] = Path(chosen)
    return paths


class _Sink:
    """Where each Prediction goes: the JSON lines, the counts, and the overlays (an image per
    image; per video one MP4, opened at its first drawn frame and closed whole at the
    video's end, also when the run stops midway), at :func:`output_paths`."""

    def __init__(self, summary: PredictSummary, writer: PredictionWriter,
                 paths: dict[int, Path], options: PredictOptions) -> None:
        self.summary, self.writer, self.paths = summary, writer, paths
        self.options = options
        self.video: VideoWriter | None = None
        self.video_position = -1  # the input self.video draws

    def __enter__(self) -> _Sink:
        return self

    def __exit__(self, *exc: object) -> None:
        self._close_video()

    def add(self, result: Prediction) -> None:
        if result.position != self.video_position:
            self._close_video()
        if result.error is not None:
            _skip(self.summary, result.error)
            return
        entry: dict[str, Any] = {"file_name": result.name}
        if result.frame is not None:
            entry |= {"frame": result.frame, "timestamp_ms": result.timestamp_ms}
        self.writer.add(entry | {"width": result.width, "height": result.height},
                        result.poses)
        self.summary.images += 1
        self.summary.people += len(result.poses)
        if self.options.draw and result.image is not None:
            try:
                self._draw(result)
            except MemoryError:  # the run stops here; what finished is merged
                frame = "" if result.frame is None else f" frame {result.frame}"
                raise AeposeError(f"out of memory drawing the overlay of {result.name}"
                                  f"{frame}") from None

    def _draw(self, result: Prediction) -> None:
        # Every person of the JSON, its detected keypoints (the run marked the others).
        drawn = result.plot(channel_order="rgb")
        out, overlay = self.summary.out_dir, self.paths[result.position]
        if result.frame is None:
            list_overlay(out, overlay)
            save_image(out / overlay, drawn)
            return
        if self.video is None:  # sized by the frames: a stream may not state its size
            height, width = drawn.shape[:2]
            list_overlay(out, overlay)
            self.video = VideoWriter(out / overlay, fps=result.fps or 0.0, width=width,
                                     height=height)
            self.video.__enter__()
            self.video_position = result.position
        # fit: an image sequence's frames may differ in size; the MP4 keeps the first's.
        # index: frames lost or dropped before this one keep their time on screen.
        self.video.write(drawn, fit=True, index=result.frame)

    def _close_video(self) -> None:
        """The overlay closed normally, whole (VideoWriter holds Ctrl-C until it is)."""
        video, self.video, self.video_position = self.video, None, -1
        if video is not None:
            video.__exit__(None, None, None)


def _skip(summary: PredictSummary, problem: str) -> None:
    summary.problems.append(problem)
    logger.warning("skipped: %s", problem)


# ---------------------------------------------------------------------------------------
# Output files


def _tracker_header(options: PredictOptions) -> dict[str, Any]:
    """The tracker's settings as predictions.json records them: fps is left out (each video
    brings its own); offline tracking's are its own, "mode" "offline", with the online
    tracker's under "online"."""
    settings = dataclasses.asdict(options.tracker)
    if isinstance(options.tracker, OfflineConfig):
        settings["online"].pop("fps")
        return {"mode": "offline", **settings}
    settings.pop("fps")
    return settings


def _header(predictor: Predictor, options: PredictOptions) -> dict[str, Any]:
    cfg, spec = predictor.config, predictor.spec
    return {
        "aepose": aepose.__version__,
        "model": {"preset": cfg.name, "weights": options.weights},
        "test": {**dataclasses.asdict(cfg.test), "pose_nms": options.pose_nms,
                 "min_score": options.min_score,
                 "keypoint_threshold": options.keypoint_threshold},
        "tracker": _tracker_header(options) if options.track else None,
        "keypoint_names": list(spec.keypoint_names),
        "skeleton": [list(link) for link in spec.skeleton],
        "format": "people[i].keypoints: [x, y, score] per keypoint in original-image pixel "
                  "indices, score 0: undetected (below keypoint_threshold); bbox: [x, y, w, "
                  "h] of the detected keypoints",
    }
