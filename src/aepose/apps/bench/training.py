"""The ``train`` row: :func:`aepose.engine.train.train_step`, the training loop's own step
(autocast forward, float32 loss, ``zero_grad``, backward, Adam step; gradient scaling for
fp16), on random inputs and targets already on the device. The data pipeline is NOT
included: it is measured by ``benchmarks/data_pipeline.py``.

Legend: B batch, S square input side, K keypoints, M most people, o output side.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from aepose.apps.bench.inputs import random_images
from aepose.apps.bench.job import Job
from aepose.apps.bench.measure import Outcome, measure
from aepose.apps.bench.weights import bench_model
from aepose.data.dataset import Batch
from aepose.engine.train import train_step

__all__ = ["TRAIN_PEOPLE", "time_train_step"]

TRAIN_PEOPLE = 10  # valid people per image in the joint targets


def time_train_step(job: Job) -> Outcome:
    """Optimiser steps on one fixed batch; its facts show the step learns: the first and
    last loss (the last lower: it fits the batch) and the weights' relative change."""
    model, net = bench_model(job, training=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=job.cfg.train.lr)
    scaler = torch.amp.GradScaler(job.device.type, enabled=job.dtype == "fp16")
    batch = _train_batch(job)
    initial = [p.detach().clone() for p in model.parameters()]
    losses: list[Tensor] = []

    def step() -> dict[str, float]:
        terms = train_step(job.cfg, net, batch, optimizer, scaler, job.dtype)
        losses.append(terms["loss"].detach())  # read after timing: .item() waits for the GPU
        return {}

    timing = measure(step, job)
    final = [p.detach() for p in model.parameters()]
    facts = {"loss_first": float(losses[0]), "loss_last": float(losses[-1]),
             "weight_change": _relative_change(initial, final)}
    note = "GPU-side step only: data pipeline excluded (benchmarks/data_pipeline.py)"
    return Outcome(timing, job.square, flop_factor=3.0, facts=facts, note=note)


def _train_batch(job: Job) -> Batch:
    """Random normal images [B, 3, S, S] (channels_last if asked) and, per output: heatmaps
    [B, K, o, o] uniform in [0, 1], masks [B, o, o] ones, joints [B, M, K, 2] int32 with
    TRAIN_PEOPLE valid people at random pixels of each joint map; all on the device."""
    cfg, generator = job.cfg, torch.Generator().manual_seed(2)
    k, m, b = cfg.model.num_keypoints, cfg.data.max_people, job.batch
    people = min(TRAIN_PEOPLE, m)
    sizes = [job.input_size * h // cfg.data.input_size for h in cfg.data.heatmap_sizes]
    heatmaps, masks, joints = [], [], []
    for o in sizes:
        heatmaps.append(torch.rand(b, k, o, o, generator=generator).to(job.device))
        masks.append(torch.ones(b, o, o, device=job.device))
        flat = torch.randint(0, o * o, (b, people, k), generator=generator)
        packed = torch.zeros(b, m, k, 2, dtype=torch.int32)
        packed[:, :people, :, 0] = (flat + torch.arange(k) * o * o).to(torch.int32)
        packed[:, :people, :, 1] = 1
        joints.append(packed.to(job.device))
    return Batch(random_images(job), tuple(heatmaps), tuple(masks), tuple(joints))


def _relative_change(before: Sequence[Tensor], after: Sequence[Tensor]) -> float:
    """||after - before|| / ||before|| over all tensors together."""
    change = sum(float((a.float() - b.float()).pow(2).sum()) for a, b in zip(after, before,
                                                                              strict=True))
    size = sum(float(b.float().pow(2).sum()) for b in before)
    return math.sqrt(change / max(size, 1e-30))
