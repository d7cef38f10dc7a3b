"""Run a network over an annotation file's images and score it: ``aepose test`` and the
trainer's periodic validation.

Under torchrun every rank takes every ``world_size``-th image (no padding, so each image is
decoded exactly once), the poses are gathered on rank 0, which writes them as COCO result
records and scores them as arrays (the records' numbers, without a JSON round trip), and
the metrics are shared with every rank.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch import nn
from tqdm import tqdm

from aepose.config import Config
from aepose.data.coco import load_annotations, read_image
from aepose.data.dataset import EvalImage, eval_images
from aepose.engine.distributed import DistInfo, all_gather_objects, broadcast_object
from aepose.engine.eval_inputs import detections_from_poses
from aepose.engine.evaluation import evaluate_keypoints, results_from_poses, write_results
from aepose.keypoints import spec_of
from aepose.pipeline.engine import named_error, stream
from aepose.pipeline.stages import Stages

__all__ = ["EvalResult", "evaluate_model"]


@dataclass(frozen=True)
class EvalResult:
    """What one evaluation produced (the same on every rank)."""

    metrics: dict[str, float]
    images: int  # images decoded, over all ranks
    people: int  # people found (result records)
    seconds: float  # wall time of the prediction loop (rank 0)
    skipped: tuple[str, ...] = field(default=())  # "path: reason" of unreadable images


def evaluate_model(
    model: nn.Module,
    cfg: Config,
    ann_file: str | Path,
    image_dir: str | Path,
    info: DistInfo,
    *,
    batch_size: int = 8,
    workers: int = 2,
    decode_workers: int | None = None,
    results_file: str | Path | None = None,
    progress: bool = True,
) -> EvalResult:
    """Predict every image of ``ann_file`` with ``model`` (eval mode) and score the results.

    The test settings are ``cfg.test``'s (override them with
    :func:`~aepose.pipeline.predictor.with_test_settings`). Images whose test inputs have the same
    size share a forward pass (up to ``batch_size`` of them); ``workers`` threads read
    them, ``decode_workers`` decode them (default
    :func:`~aepose.pipeline.workers.default_decode_workers`). ``results_file``, when given,
    receives the COCO-format records (written by rank 0).
    """
    # The network's own keypoints (a custom skeleton's sigmas), else the dataset's.
    spec = spec_of(model, cfg.data.dataset)
    annotations = load_annotations(ann_file, spec, image_dir=image_dir, test_mode=True)
    mine = eval_images(annotations)[info.rank :: info.world_size]
    start = time.perf_counter()
    was_training = model.training
    model.eval()
    try:
        poses, skipped = _predict_shard(
            Stages(model, cfg), mine, batch_size, workers, decode_workers,
            progress and info.is_main)
    finally:
        model.train(was_training)
    seconds = time.perf_counter() - start
    gathered = all_gather_objects((poses, skipped), info)
    all_poses = [p for part, _ in gathered for p in part]
    all_skipped = tuple(s for _, part in gathered for s in part)
    metrics: dict[str, float] = {}
    if info.is_main:
        if results_file is not None:
            write_results(results_file, [record for image_id, kpts, scores in all_poses
                                         for record in results_from_poses(image_id, kpts,
                                                                          scores)])
        detections = detections_from_poses([p[0] for p in all_poses], [p[1] for p in all_poses],
                                           [p[2] for p in all_poses], spec.num_keypoints)
        metrics = evaluate_keypoints(annotations.ann_file, detections, spec)
    metrics = broadcast_object(metrics, info)
    decoded = len(annotations.images) - len(all_skipped)
    people = sum(len(scores) for _, _, scores in all_poses)
    return EvalResult(metrics, decoded, people, seconds, all_skipped)


def _predict_shard(
    stages: Stages,
    images: Sequence[EvalImage],
    batch_size: int,
    workers: int,
    decode_workers: int | None,
    progress: bool,
) -> tuple[list[tuple[int, np.ndarray, np.ndarray]], list[str]]:
    """(image id, keypoints [P, K, 3], scores [P]) of every image read, and the skipped."""
    poses: list[tuple[int, np.ndarray, np.ndarray]] = []
    skipped: list[str] = []
    results = stream(stages, images, lambda image: read_image(image.path),
                     batch_size=batch_size, read_workers=workers, decode_workers=decode_workers)
    with tqdm(total=len(images), desc="test", disable=not progress, dynamic_ncols=True,
              leave=False) as bar:
        for result in results:
            if result.error is not None:
                skipped.append(named_error(str(result.item.path), result.error))
            else:
                poses.append((result.item.image_id, np.array(result.poses[:, :, :3]),
                              np.array(result.scores)))
            bar.update(1)
    return poses, skipped
