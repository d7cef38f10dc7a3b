"""The ``decode`` row: the preset's :class:`~aepose.codec.decode.Decoder` on generated maps
of a crowd (:func:`~aepose.apps.bench.inputs.crowd_maps`) at the input resolution, one
image after the other."""

from __future__ import annotations

import statistics

import torch

from aepose.apps.bench.inputs import crowd_maps
from aepose.apps.bench.job import Job
from aepose.apps.bench.measure import Outcome, measure
from aepose.codec.decode import Decoder
from aepose.keypoints import get_spec

__all__ = ["time_decode"]


def time_decode(job: Job) -> Outcome:
    """Decoding of ``job.batch`` maps of ``job.people`` people each; the facts compare the
    people decoded with the people drawn."""
    k = job.cfg.model.num_keypoints
    decoder = Decoder.from_config(job.cfg.test, get_spec(job.cfg.data.dataset))
    maps = [tuple(m.to(job.device) for m in crowd_maps(job.people, job.input_size, k, seed=i))
            for i in range(job.batch)]
    found: list[int] = []

    def step() -> dict[str, float]:
        found[:] = [len(decoder(h, t)[0]) for h, t in maps]
        return {}

    with torch.inference_mode():
        timing = measure(step, job)
    facts = {"people_drawn": float(job.people), "people_per_image": statistics.mean(found)}
    note = f"{job.people}-person generated maps, L=2, decoded one image at a time"
    return Outcome(timing, job.square, uses_network=False, facts=facts, note=note)
