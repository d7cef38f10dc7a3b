"""``aepose predict``: poses for images, folders, globs and videos, as JSON and overlays.

Every image and video frame runs through the streamed pipeline (:func:`aepose.pipeline.stream`).
Output folder:

``predictions.json``  self-describing: model, weights, test settings, keypoint names and
                      skeleton, then per image (or video frame, with its index and time)
                      the people as ``keypoints [[x, y, score], ...]``, ``score``, ``bbox``;
``results.json``      the same people as COCO result records (flat ``keypoints``), which
                      ``aepose test --results`` scores;
``NAME.png``          overlays of images, ``NAME.mp4`` of videos (H.264).

While the run goes on, each finished image is appended to ``predictions.jsonl`` (one JSON
object a line, flushed): after a crash it holds every finished image. At the end, or on
Ctrl-C, the two JSON files are written from it (atomically) and it is removed. A bad input is
reported and skipped; the rest finish.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
from tqdm import tqdm

import aepose
from aepose.data.coco import read_image
from aepose.errors import AeposeError
from aepose.inference import Pose, Predictor
from aepose.io import RunLock, atomic_write, check_writable
from aepose.keypoints import KeypointSpec
from aepose.pipeline import Result, StageTimer, default_decode_workers, named_error, stream
from aepose.sources import SourceItem, VideoWriter, expand_sources, iter_video_frames, video_info
from aepose.visualize import draw_poses, save_image

__all__ = ["OVERLAY_MIN_SCORE", "PredictOptions", "PredictSummary", "overlay", "run_predict"]

logger = logging.getLogger("aepose")

_FALLBACK_FPS = 25.0  # containers that do not state a frame rate

OVERLAY_MIN_SCORE = 0.2
"""People scoring below this are left out of overlays: grouping splits off fragments of
one or two joints that score about 0.01. The JSON keeps them (evaluation needs them)."""


@dataclass(frozen=True)
class PredictOptions:
    """How ``aepose predict`` runs and what it writes.

    batch_size: images per forward pass; read_workers: reading threads; decode_workers:
    post-processing workers (None: :func:`~aepose.pipeline.default_decode_workers`);
    draw: write overlays; keypoint_threshold: keypoint score needed to draw it; min_score:
    people below it are left out of every output; weights: what to record as the weights;
    overwrite: replace the outputs of an earlier run in the folder; progress: a bar.
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
) -> PredictSummary:
    """Predict every image and video frame of ``sources`` and write the outputs.

    The folder is locked for the run (a second run into it is refused) and proven writable
    before any work. Ctrl-C stops the run with every finished image written
    (``summary.interrupted``).
    """
    options = options or PredictOptions()
    summary = PredictSummary(Path(out_dir))
    found = expand_sources(sources)
    summary.problems += found.problems
    check_writable(summary.out_dir)
    with RunLock(summary.out_dir):
        _refuse_old_outputs(summary.out_dir, options.overwrite)
        with _Writer(summary.out_dir, predictor, options) as writer:
            summary.json_path = _run_all(found.items, predictor, options, summary, writer)
    return summary


def _run_all(items: Sequence[SourceItem], predictor: Predictor, options: PredictOptions,
             summary: PredictSummary, writer: _Writer) -> Path:
    """Predict everything; on Ctrl-C stop there. Either way write the outputs."""
    start = time.perf_counter()
    try:
        _predict_all(items, predictor, options, summary, writer)
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        summary.seconds = time.perf_counter() - start
    return writer.finish()


def _refuse_old_outputs(out: Path, overwrite: bool) -> None:
    old = [name for name in ("predictions.json", "predictions.jsonl") if (out / name).exists()]
    if old and not overwrite:
        raise AeposeError(f"{out} already holds {old[0]} of an earlier run; choose another "
                          "--out or pass --overwrite")


def _predict_all(items: Sequence[SourceItem], predictor: Predictor, options: PredictOptions,
                 summary: PredictSummary, writer: _Writer) -> None:
    names = _unique_names(items)
    images = [item for item in items if item.kind == "image"]
    with tqdm(total=len(images), desc="images", disable=not options.progress or not images,
              dynamic_ncols=True, leave=False) as bar:
        results = stream(predictor.stages, images, lambda item: read_image(item.path),
                         **_stream_options(options, predictor), timer=summary.timer)
        for result in results:
            _record_image(result, names[result.item.path], predictor, options, summary, writer)
            bar.update(1)
    for item in items:
        if item.kind == "video":
            _predict_video(item, names[item.path], predictor, options, summary, writer)


def _stream_options(options: PredictOptions, predictor: Predictor) -> dict[str, Any]:
    return {"batch_size": options.batch_size, "read_workers": options.read_workers,
            "decode_workers": options.decode_workers if options.decode_workers is not None
            else default_decode_workers(predictor.device), "keep_images": options.draw}


def _people(result: Result[Any], predictor: Predictor, options: PredictOptions) -> list[Pose]:
    poses = predictor.poses(result.poses, result.scores)
    return [p for p in poses if p.score >= options.min_score]


def _record_image(result: Result[SourceItem], name: str, predictor: Predictor,
                  options: PredictOptions, summary: PredictSummary, writer: _Writer) -> None:
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
    skeletons, person colours, scores; keypoints scoring below ``threshold`` are left out."""
    shown = [p for p in poses if p.score >= min_score]
    keypoints = np.stack([p.keypoints for p in shown]) if shown else np.zeros(
        (0, spec.num_keypoints, 3), np.float32)
    scores = np.array([p.score for p in shown], dtype=np.float32)
    return draw_poses(image, keypoints, scores, spec, keypoint_threshold=threshold)


def _predict_video(item: SourceItem, name: str, predictor: Predictor, options: PredictOptions,
                   summary: PredictSummary, writer: _Writer) -> None:
    """Every frame of one video. A video that cannot be read is reported; if reading breaks
    off, the frames already predicted stay in the JSON (the partial MP4 is discarded)."""
    try:
        info = video_info(item.path)
        fps = info.fps or _FALLBACK_FPS
        with ExitStack() as stack:
            video = stack.enter_context(VideoWriter(
                summary.out_dir / f"{name}.mp4", fps=fps, width=info.width,
                height=info.height)) if options.draw else None
            bar = stack.enter_context(tqdm(total=info.frames or None, desc=item.path.name,
                                           disable=not options.progress, leave=False))
            frames = stream(predictor.stages, iter_video_frames(item.path), lambda f: f[1],
                            **_stream_options(options, predictor), timer=summary.timer)
            for result in frames:
                index = result.item[0]
                if result.error is not None:
                    _skip(summary, named_error(f"{item.path} frame {index}", result.error))
                    continue
                people = _people(result, predictor, options)
                writer.add({"file_name": str(item.path), "frame": index,
                            "timestamp_ms": round(index * 1000.0 / fps, 3),
                            "width": info.width, "height": info.height}, people)
                summary.images += 1
                summary.people += len(people)
                if video is not None and result.image is not None:
                    video.write(overlay(result.image, people, predictor.spec,
                                        options.keypoint_threshold))
                bar.update(1)
    except AeposeError as error:
        _skip(summary, str(error))


def _skip(summary: PredictSummary, problem: str) -> None:
    summary.problems.append(problem)
    logger.warning("skipped: %s", problem)


# ---------------------------------------------------------------------------------------
# Output files


class _Writer:
    """predictions.jsonl while the run goes on; predictions.json and results.json at the end.

    The header (model, weights, settings, keypoints) is held in memory; the images are not:
    the final files are streamed from the JSONL, so memory stays flat however many images.
    """

    def __init__(self, out: Path, predictor: Predictor, options: PredictOptions) -> None:
        self.out = out
        self.partial = out / "predictions.jsonl"
        self.header = _header(predictor, options)
        self.count = 0
        self.file: IO[str] | None = None

    def __enter__(self) -> _Writer:
        self.file = self.partial.open("w", encoding="utf-8")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.file is not None:
            self.file.close()

    def add(self, entry: dict[str, Any], people: list[Pose]) -> None:
        """Append one image's entry (``id`` from 1 in the order written) and flush it."""
        assert self.file is not None
        self.count += 1
        record = {"id": self.count, **entry, "people": [p.to_dict() for p in people]}
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()

    def finish(self) -> Path:
        """Write predictions.json and results.json from the JSONL, then remove it."""
        assert self.file is not None
        self.file.close()
        path = atomic_write(self.out / "predictions.json", self._write_predictions,
                            what="predictions")
        atomic_write(self.out / "results.json", self._write_results, what="COCO results")
        self.partial.unlink()
        return path

    def _entries(self) -> Iterator[dict[str, Any]]:
        with self.partial.open(encoding="utf-8") as lines:
            for line in lines:
                yield json.loads(line)

    def _write_predictions(self, tmp: Path) -> None:
        head = json.dumps({**self.header, "images": []}, indent=1)
        opening, closing = head.rsplit("[]", 1)
        with tmp.open("w", encoding="utf-8") as f:
            f.write(opening + "[")
            for n, entry in enumerate(self._entries()):
                f.write(("," if n else "") + "\n  " + json.dumps(entry))
            f.write("\n ]" + closing + "\n")

    def _write_results(self, tmp: Path) -> None:
        with tmp.open("w", encoding="utf-8") as f:
            f.write("[")
            first = True
            for entry in self._entries():
                for person in entry["people"]:
                    record = Pose.from_dict(person).to_coco(entry["id"])
                    f.write(("" if first else ",") + "\n" + json.dumps(record))
                    first = False
            f.write("\n]\n")


def _header(predictor: Predictor, options: PredictOptions) -> dict[str, Any]:
    cfg, spec = predictor.config, predictor.spec
    return {
        "aepose": aepose.__version__,
        "model": {"preset": cfg.name, "weights": options.weights},
        "test": {**dataclasses.asdict(cfg.test), "pose_nms": predictor.pose_nms,
                 "min_score": options.min_score},
        "keypoint_names": list(spec.keypoint_names),
        "skeleton": [list(link) for link in spec.skeleton],
        "format": "people[i].keypoints: [x, y, score] per keypoint in original-image pixel "
                  "indices; bbox: [x, y, w, h] of all keypoints",
    }
