"""The ``pipeline`` row: the same images as ``e2e`` through the streamed pipeline (read
thread, network, decode workers overlapped); its facts give each stage's own rate (from a
serial run), the serial rate and the overlap efficiency (pipeline rate / slowest stage's
rate)."""

from __future__ import annotations

from aepose.apps.bench.crowd_pipeline import PARTS, crowd_pipeline, pipeline_facts, run_stream
from aepose.apps.bench.job import Job
from aepose.apps.bench.measure import Outcome, measure
from aepose.pipeline.engine import Result
from aepose.pipeline.timer import StageTimer
from aepose.pipeline.workers import decode_pool

__all__ = ["time_pipeline"]


def time_pipeline(job: Job) -> Outcome:
    """The streamed pipeline (read threads, network, decode workers overlapped) beside the
    same pipeline run stage after stage, whose stage times give each stage's own rate."""
    stages, images = crowd_pipeline(job)
    last: list[Result[int]] = []
    with decode_pool(job.device, job.decode_workers) as pool:

        def step() -> dict[str, float]:
            last[:] = run_stream(stages, images, job, StageTimer(), read_workers=1,
                                 decoders=pool)
            return {}

        timing = measure(step, job)
    # After the streamed iterations, which warmed the network up: one serial run.
    job.progress.say(f"one serial run of the {len(images)} images (each stage's own rate)")
    serial = StageTimer()
    run_stream(stages, images, job, serial, read_workers=0)
    facts = pipeline_facts(job, stages, last)
    facts.update(_stage_rates(serial, len(images), job.decode_workers))
    facts["pipeline_images_per_s"] = len(images) / timing.total
    facts["overlap_efficiency"] = facts["pipeline_images_per_s"] / min(
        v for k, v in facts.items() if k.startswith("rate_"))
    note = (f"streamed: 1 read thread, {job.decode_workers} decode worker(s), network "
            f"batch {job.batch}; rate_*: each stage alone (images/s, from a serial run)")
    return Outcome(timing, job.image, facts=facts, note=note, images=len(images))


def _stage_rates(serial: StageTimer, images: int, decode_workers: int) -> dict[str, float]:
    """Images/s each stage gives with its own resources: preprocess in one thread, the
    network, post-processing (aggregate, decode, back-project) in ``decode_workers``."""
    post = sum(serial.seconds[p] for p in ("aggregate", "decode", "back-project"))
    return {"rate_preprocess": images / serial.seconds["preprocess"],
            "rate_network": images / serial.seconds["network"],
            "rate_decode": images * max(1, decode_workers) / post,
            "serial_images_per_s": images / sum(serial.seconds[p] for p in PARTS)}
