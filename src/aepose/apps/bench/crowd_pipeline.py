"""The one test-time pipeline (:mod:`aepose.pipeline.engine`) set up for the ``e2e`` and
``pipeline`` rows: generated crowd scenes through :func:`~aepose.pipeline.engine.stream` on
a random network whose maps load the decoder like a trained network's."""

from __future__ import annotations

import dataclasses
import statistics
from typing import Any

import numpy as np
import torch

from aepose.apps.bench.inputs import crowd_images
from aepose.apps.bench.job import Job
from aepose.apps.bench.weights import bench_model, reset_compiler
from aepose.config import with_test_settings
from aepose.data.transforms import test_sizes
from aepose.pipeline.engine import Result, stream
from aepose.pipeline.network import FastNetwork
from aepose.pipeline.stages import Stages, prepare
from aepose.pipeline.timer import StageTimer

__all__ = ["PARTS", "crowd_pipeline", "pipeline_facts", "run_stream"]

PARTS = ("preprocess", "network", "aggregate", "decode", "back-project")
"""The pipeline's stages timed by the e2e and pipeline rows (images are in memory: no read)."""


def crowd_pipeline(job: Job) -> tuple[Stages, list[np.ndarray]]:
    """The one test-time pipeline (single scale, the job's flip, precision, memory format
    and compile mode) on a network adjusted to decode like a crowd, and its images."""
    images = crowd_images(job.images, job.image_size)
    # The maps are adjusted on the first images as the pipeline's preprocess gives them.
    sample = torch.stack([prepare(im, job.cfg.data.input_size, (1.0,)).inputs[0]
                          for im in images[:2]])
    plain = dataclasses.replace(job, compile=None, channels_last=False)
    model, _ = bench_model(plain, training=False, mimic_on=sample.to(job.device))
    if job.compile:
        reset_compiler()
    network = FastNetwork(model, dtype=job.dtype, channels_last=job.channels_last,
                          compile=job.compile).eval()
    cfg = with_test_settings(job.cfg, scales=(1.0,), flip=job.flip)
    return Stages(network, cfg, job.device), images


def run_stream(stages: Stages, images: list[np.ndarray], job: Job, timer: StageTimer,
               **options: Any) -> list[Result[int]]:
    """Every image through :func:`~aepose.pipeline.engine.stream` in batches of
    ``job.batch`` (``options``: the stream's read and decode workers)."""
    return list(stream(stages, range(len(images)), images.__getitem__, batch_size=job.batch,
                       timer=timer, **options))


def pipeline_facts(job: Job, stages: Stages, results: list[Result[int]]) -> dict[str, float]:
    """Images out, people decoded per image and the network input's size."""
    width, height = test_sizes(*job.image_size, stages.config.data.input_size).base_size
    return {"images_out": float(len(results)),
            "people_per_image": statistics.mean(len(r.poses) for r in results),
            "network_input_w": float(width), "network_input_h": float(height)}
