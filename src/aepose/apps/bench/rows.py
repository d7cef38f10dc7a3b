"""A benchmark's result: one :class:`BenchRow` per measured setting, JSON-ready."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from aepose.apps.bench.job import Job
from aepose.apps.bench.measure import Outcome
from aepose.apps.profile import model_cost

__all__ = ["BenchRow", "make_row"]


@dataclass(frozen=True)
class BenchRow:
    """One measured setting.

    ``images_per_s`` = 1000 / ``ms_per_image`` (both from the same, lower-median iteration);
    ``parts``: ms per image of each pipeline stage of
    :data:`~aepose.apps.bench.crowd_pipeline.PARTS` (e2e only; empty otherwise); ``tflops``:
    achieved model TFLOP/s = GFLOPs per image x images/s / 1000 (x3 for train: forward +
    backward), ``None`` where not meaningful (decode, e2e, pipeline); ``peak_mem_mb``: CUDA
    peak allocated MiB (model, optimiser state and inputs included), ``None`` on the CPU;
    ``facts``: stage-specific numbers that show what was computed (forward/train:
    ``gflops_per_image``; train: ``loss_first``, ``loss_last``, ``weight_change``; decode:
    ``people_drawn``, ``people_per_image``; e2e and pipeline: ``images_out``,
    ``people_per_image``, ``network_input_w``, ``network_input_h``; pipeline: ``rate_*``,
    ``serial_images_per_s``, ``pipeline_images_per_s``, ``overlap_efficiency``); ``note``:
    what the numbers include or exclude.
    """

    stage: str
    preset: str
    device: str
    dtype: str
    batch: int
    compile: str | None  # torch.compile mode, None when eager
    channels_last: bool
    input: str
    images_per_s: float
    ms_per_image: float
    parts: dict[str, float]
    peak_mem_mb: float | None
    tflops: float | None
    repeats: int
    facts: dict[str, float] = dataclasses.field(default_factory=dict)
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return dataclasses.asdict(self)



def make_row(job: Job, out: Outcome) -> BenchRow:
    """The row of what ``job``'s stage measured: per-image times, TFLOP/s where the stage
    runs the model (FLOPs from :func:`~aepose.apps.profile.model_cost`), and the network
    settings as they applied (a stage without the network records fp32, eager, NCHW)."""
    per_iteration = out.images or job.batch
    seconds = out.timing.total / per_iteration
    facts, tflops = dict(out.facts), None
    if out.flop_factor is not None:
        gflops = model_cost(job.cfg, job.input_size)[1]
        facts["gflops_per_image"] = gflops
        tflops = gflops * out.flop_factor / seconds / 1000
    return BenchRow(
        stage=job.stage, preset=job.cfg.name, device=str(job.device),
        dtype=job.dtype if out.uses_network else "fp32",
        batch=job.batch, compile=job.compile if out.uses_network else None,
        channels_last=job.channels_last and out.uses_network, input=out.input,
        images_per_s=1.0 / seconds, ms_per_image=seconds * 1000,
        parts={k: v * 1000 / per_iteration for k, v in out.timing.parts.items()},
        peak_mem_mb=out.timing.peak_mb, tflops=tflops, repeats=out.timing.repeats, facts=facts,
        note=out.note,
    )

