"""The ``forward`` row: the network alone, eval mode, on random normal input [B, 3, S, S]."""

from __future__ import annotations

import torch

from aepose.apps.bench.inputs import random_images
from aepose.apps.bench.job import Job
from aepose.apps.bench.measure import Outcome, measure
from aepose.apps.bench.weights import bench_model
from aepose.precision import autocast

__all__ = ["time_forward"]


def time_forward(job: Job) -> Outcome:
    """Forward passes of the job's network (precision, memory format, compile mode)."""
    _, net = bench_model(job, training=False)
    images = random_images(job)

    def step() -> dict[str, float]:
        net(images)
        return {}

    with torch.inference_mode(), autocast(job.device.type, job.dtype):
        timing = measure(step, job)
    # Per image of the B in a pass, as the pipeline row counts its images; the pipeline's
    # network takes 2 inputs per image with flip, of the test size (its rate_network fact).
    note = (f"network alone: {job.batch} random {job.square} input(s) per pass, no flip"
            + (f"; compiled (mode {job.compile}), compilation in the warm-up"
               if job.compile else ""))
    return Outcome(timing, job.square, flop_factor=1.0, note=note)
