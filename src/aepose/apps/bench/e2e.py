"""The ``e2e`` row: generated RGB images through the one test-time pipeline with its
stages run one after the other, each timed by the pipeline's own
:class:`~aepose.pipeline.timer.StageTimer` (:data:`~aepose.apps.bench.crowd_pipeline.PARTS`)."""

from __future__ import annotations

from aepose.apps.bench.crowd_pipeline import PARTS, crowd_pipeline, pipeline_facts, run_stream
from aepose.apps.bench.job import Job
from aepose.apps.bench.measure import Outcome, measure
from aepose.apps.bench.weights import CANDIDATES_PER_JOINT
from aepose.pipeline.engine import Result
from aepose.pipeline.timer import StageTimer

__all__ = ["time_e2e"]


def time_e2e(job: Job) -> Outcome:
    """``job.images`` images per iteration, read in the calling thread and decoded inline;
    the parts are the stages' own seconds."""
    stages, images = crowd_pipeline(job)
    last: list[Result[int]] = []

    def step() -> dict[str, float]:
        timer = StageTimer()
        last[:] = run_stream(stages, images, job, timer, read_workers=0)
        return {part: timer.seconds[part] for part in PARTS}

    timing = measure(step, job)
    facts = pipeline_facts(job, stages, last)
    note = (f"network input {int(facts['network_input_w'])}x{int(facts['network_input_h'])}, "
            f"single scale{', flip (2B per pass)' if job.flip else ''}, stages one after "
            f"the other; random weights, maps adjusted to ~{CANDIDATES_PER_JOINT} candidates "
            "per joint")
    return Outcome(timing, job.image, facts=facts, note=note, images=len(images))
