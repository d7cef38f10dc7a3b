"""``aepose predict``: poses for images, folders, globs and videos, as JSON and overlays.

Output folder: ``predictions.json`` (COCO style: an ``images`` list naming each file, or
video and frame, and an ``annotations`` list of result records), ``NAME.png`` overlays for
images and ``NAME.mp4`` for videos. A bad file is reported and skipped; the rest finish,
and the JSON holds everything finished even when the run is interrupted.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from aepose.data.coco import read_image
from aepose.errors import AeposeError
from aepose.evaluation import write_json
from aepose.inference import Pose, Predictor
from aepose.keypoints import KeypointSpec
from aepose.sources import SourceItem, VideoWriter, expand_sources, iter_video_frames, video_info
from aepose.visualize import draw_poses, save_image

__all__ = ["PredictSummary", "overlay", "run_predict"]

logger = logging.getLogger("aepose")

_FALLBACK_FPS = 25.0  # containers that do not state a frame rate


@dataclass
class PredictSummary:
    """What a predict run wrote and what it skipped."""

    out_dir: Path
    images: int = 0  # images and video frames with predictions
    people: int = 0
    problems: list[str] = field(default_factory=list)  # "path: reason", one per skipped input
    json_path: Path | None = None


@dataclass
class _Collector:
    """COCO-style images and result records, in the order they were predicted."""

    images: list[dict[str, Any]] = field(default_factory=list)
    annotations: list[dict[str, Any]] = field(default_factory=list)

    def add(self, entry: dict[str, Any], poses: list[Pose]) -> None:
        entry = {"id": len(self.images) + 1, **entry}
        self.images.append(entry)
        self.annotations += [pose.to_coco(entry["id"]) for pose in poses]

    def write(self, path: Path) -> None:
        write_json(path, {"images": self.images, "annotations": self.annotations})


def run_predict(
    sources: Sequence[str],
    predictor: Predictor,
    out_dir: str | Path,
    *,
    batch_size: int = 8,
    draw: bool = True,
    keypoint_threshold: float = 0.3,
    progress: bool = True,
) -> PredictSummary:
    """Predict every image and video frame of ``sources`` and write the outputs.

    Images are read and predicted ``batch_size`` at a time (same-size images share a forward
    pass); video frames likewise, in order.
    """
    found = expand_sources(sources)
    summary = PredictSummary(Path(out_dir), problems=list(found.problems))
    collected = _Collector()
    names = _unique_names(found.items)
    spec = predictor.spec
    try:
        images = [(item, names[item.path]) for item in found.items if item.kind == "image"]
        for chunk in _chunks(images, batch_size):
            _predict_images(chunk, predictor, summary, collected, draw, keypoint_threshold, spec)
        for item in found.items:
            if item.kind == "video":
                _predict_video(item, names[item.path], predictor, summary, collected, batch_size,
                               draw, keypoint_threshold, progress)
    finally:
        summary.json_path = summary.out_dir / "predictions.json"
        collected.write(summary.json_path)
    return summary


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


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), max(1, size)):
        yield items[start : start + size]


def _predict_images(
    chunk: Sequence[tuple[SourceItem, str]],
    predictor: Predictor,
    summary: PredictSummary,
    collected: _Collector,
    draw: bool,
    threshold: float,
    spec: KeypointSpec,
) -> None:
    loaded = []
    for item, name in chunk:
        try:
            loaded.append((item, name, read_image(item.path)))
        except AeposeError as error:
            summary.problems.append(str(error))
            logger.warning("skipped: %s", error)
    results = predictor.predict_batch([image for _, _, image in loaded])
    for (item, name, image), poses in zip(loaded, results, strict=True):
        h, w = image.shape[:2]
        collected.add({"file_name": str(item.path), "width": w, "height": h}, poses)
        summary.images += 1
        summary.people += len(poses)
        if draw:
            save_image(summary.out_dir / f"{name}.png", overlay(image, poses, spec, threshold))


def overlay(
    image: np.ndarray, poses: list[Pose], spec: KeypointSpec, threshold: float = 0.3
) -> np.ndarray:
    """``image`` (RGB uint8 [H, W, 3]) with ``poses`` drawn: skeletons, person colours, scores;
    keypoints scoring below ``threshold`` are left out."""
    keypoints = np.stack([p.keypoints for p in poses]) if poses else np.zeros(
        (0, spec.num_keypoints, 3), np.float32)
    scores = np.array([p.score for p in poses], dtype=np.float32)
    return draw_poses(image, keypoints, scores, spec, keypoint_threshold=threshold)


def _predict_video(
    item: SourceItem,
    name: str,
    predictor: Predictor,
    summary: PredictSummary,
    collected: _Collector,
    batch_size: int,
    draw: bool,
    threshold: float,
    progress: bool,
) -> None:
    """Every frame of one video. A video that cannot be read is reported; if reading breaks
    off, the frames already predicted stay in the JSON (the partial MP4 is discarded)."""
    try:
        info = video_info(item.path)
        with ExitStack() as stack:
            writer = stack.enter_context(VideoWriter(
                summary.out_dir / f"{name}.mp4", fps=info.fps or _FALLBACK_FPS,
                width=info.width, height=info.height)) if draw else None
            bar = stack.enter_context(tqdm(total=info.frames or None, desc=item.path.name,
                                           disable=not progress, leave=False))
            for chunk in _chunks_of(iter_video_frames(item.path), batch_size):
                results = predictor.predict_batch([frame for _, frame in chunk])
                for (index, frame), poses in zip(chunk, results, strict=True):
                    collected.add({"file_name": str(item.path), "frame": index,
                                   "width": info.width, "height": info.height}, poses)
                    summary.images += 1
                    summary.people += len(poses)
                    if writer is not None:
                        writer.write(overlay(frame, poses, predictor.spec, threshold))
                bar.update(len(chunk))
    except AeposeError as error:
        summary.problems.append(str(error))
        logger.warning("skipped: %s", error)


def _chunks_of(frames: Iterator[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for frame in frames:
        chunk.append(frame)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
