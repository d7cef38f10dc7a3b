"""Run a network over an annotation file's images and score it: ``aepose test`` and the
trainer's periodic validation.

Under torchrun every rank takes every ``world_size``-th image (no padding, so each image is
decoded exactly once), the COCO result records are gathered on rank 0, which writes and
scores them, and the metrics are shared with every rank.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from aepose.config import Config
from aepose.data.coco import load_annotations, read_image
from aepose.data.dataset import EvalImage, eval_images
from aepose.distributed import DistInfo, all_gather_objects, broadcast_object
from aepose.errors import AeposeError
from aepose.evaluation import evaluate_keypoints, results_from_poses, write_results
from aepose.inference import StageAverage, predict_images
from aepose.keypoints import get_spec

__all__ = ["EvalResult", "evaluate_model"]


@dataclass(frozen=True)
class EvalResult:
    """What one evaluation produced (the same on every rank)."""

    metrics: dict[str, float]
    images: int  # images decoded, over all ranks
    people: int  # result records written
    seconds: float  # wall time of the prediction loop (rank 0)
    skipped: tuple[str, ...] = field(default=())  # "path: reason" of unreadable images


class _Images(Dataset[tuple[int, np.ndarray | str]]):
    """Reads one image per item in DataLoader workers; a bad file yields its error text."""

    def __init__(self, images: Sequence[EvalImage]) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[int, np.ndarray | str]:
        try:
            return index, read_image(self.images[index].path)
        except AeposeError as error:
            return index, str(error)


def evaluate_model(
    model: nn.Module,
    cfg: Config,
    ann_file: str | Path,
    image_dir: str | Path,
    info: DistInfo,
    *,
    scales: Sequence[float] | None = None,
    flip: bool | None = None,
    stage_average: StageAverage = "v0.29",
    batch_size: int = 8,
    workers: int = 2,
    results_file: str | Path | None = None,
    progress: bool = True,
) -> EvalResult:
    """Predict every image of ``ann_file`` with ``model`` (eval mode) and score the results.

    ``scales``/``flip`` default to ``cfg.test``'s. Images whose test inputs have the same
    size share a forward pass (up to ``batch_size`` of them). ``results_file``, when given,
    receives the COCO-format records (written by rank 0).
    """
    spec = get_spec(cfg.data.dataset)
    annotations = load_annotations(ann_file, spec, image_dir=image_dir, test_mode=True)
    mine = eval_images(annotations)[info.rank :: info.world_size]
    start = time.perf_counter()
    records, skipped = _predict_shard(model, cfg, mine, scales, flip, stage_average,
                                      batch_size, workers, progress and info.is_main)
    seconds = time.perf_counter() - start
    gathered = all_gather_objects((records, skipped), info)
    all_records = [r for part, _ in gathered for r in part]
    all_skipped = tuple(s for _, part in gathered for s in part)
    metrics: dict[str, float] = {}
    if info.is_main:
        if results_file is not None:
            write_results(results_file, all_records)
        metrics = evaluate_keypoints(annotations.ann_file, all_records, spec)
    metrics = broadcast_object(metrics, info)
    decoded = len(annotations.images) - len(all_skipped)
    return EvalResult(metrics, decoded, len(all_records), seconds, all_skipped)


def _predict_shard(
    model: nn.Module,
    cfg: Config,
    images: Sequence[EvalImage],
    scales: Sequence[float] | None,
    flip: bool | None,
    stage_average: StageAverage,
    batch_size: int,
    workers: int,
    progress: bool,
) -> tuple[list[dict[str, Any]], list[str]]:
    loader = DataLoader(_Images(images), batch_size=batch_size, num_workers=workers,
                        collate_fn=list)
    records: list[dict[str, Any]] = []
    skipped: list[str] = []
    was_training = model.training
    model.eval()
    with tqdm(total=len(images), desc="test", disable=not progress, dynamic_ncols=True,
              leave=False) as bar:
        for chunk in loader:
            good = [(i, image) for i, image in chunk if isinstance(image, np.ndarray)]
            skipped += [image for _, image in chunk if isinstance(image, str)]
            outputs = predict_images(model, cfg, [image for _, image in good], scales=scales,
                                     flip=flip, stage_average=stage_average)
            for (i, _), (poses, scores) in zip(good, outputs, strict=True):
                records += results_from_poses(images[i].image_id, poses[:, :, :3], scores)
            bar.update(len(chunk))
    model.train(was_training)
    return records, skipped
