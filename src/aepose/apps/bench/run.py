"""``aepose benchmark``'s entry: one stage of :data:`STAGES` measured for one setting."""

from __future__ import annotations

from collections.abc import Callable

from aepose.apps.bench.decoding import time_decode
from aepose.apps.bench.e2e import time_e2e
from aepose.apps.bench.forward import time_forward
from aepose.apps.bench.job import Job, cudnn_autotune, make_job
from aepose.apps.bench.measure import Outcome
from aepose.apps.bench.pipeline import time_pipeline
from aepose.apps.bench.rows import BenchRow, make_row
from aepose.apps.bench.training import time_train_step
from aepose.errors import AeposeError
from aepose.threads import use_threads

__all__ = ["STAGES", "run_benchmark"]

STAGES: dict[str, Callable[[Job], Outcome]] = {
    "forward": time_forward,
    "decode": time_decode,
    "e2e": time_e2e,
    "pipeline": time_pipeline,
    "train": time_train_step,
}
"""Each stage's timing function; the names are :data:`aepose.choices.BENCHMARK_STAGES`."""


def run_benchmark(
    preset: str,
    *,
    stage: str,
    device: str = "cpu",
    batch_size: int = 1,
    dtype: str = "fp32",
    compile: str | None = None,
    channels_last: bool = False,
    repeats: int | None = None,
    warmup: int | None = None,
    input_size: int | None = None,
    image_size: tuple[int, int] = (640, 480),
    flip: bool = True,
    people: int = 30,
    images: int | None = None,
    decode_workers: int | None = None,
) -> BenchRow:
    """Measure ``stage`` (see :data:`STAGES` and :mod:`aepose.apps.bench`) for ``preset``.

    ``batch_size`` images per iteration (decode: maps decoded one after the other; e2e:
    generated images of ``image_size`` (W, H) run as one batch; pipeline: images per
    forward pass, of ``images`` per iteration (default
    :func:`~aepose.apps.bench.job.pipeline_images`: 32, or 8 for a network over 10 GFLOPs on
    the CPU) streamed with
    ``decode_workers`` post-processing workers (default
    :func:`~aepose.pipeline.workers.default_decode_workers`)); ``input_size`` S of the
    square network input for forward/train/decode (default: the preset's; e2e always uses the
    preset's test sizing); ``people``: people drawn in the decode stage's maps. ``dtype``,
    ``compile`` (a mode of :data:`aepose.pipeline.predictor.COMPILE_MODES`, None for eager) and
    ``channels_last`` apply to the network (the decode row records fp32, None, False).
    ``warmup`` untimed iterations (default 1, 3 when compiled) come first; then
    ``repeats`` timed ones, or by default as many as fit in about 10 s (3 to 20: see
    :mod:`aepose.apps.bench.measure`). Progress lines go to the ``aepose`` logger.
    Raises AeposeError for an unknown stage, dtype, compile mode, preset or device and for
    fp16 on the CPU. torch's threads are aepose's (:func:`aepose.threads.use_threads`).
    """
    if stage not in STAGES:
        raise AeposeError(f"unknown stage {stage!r} (choices: {', '.join(STAGES)})")
    use_threads()  # every stage on the threads aepose's own code runs on (aepose.threads)
    job = make_job(
        preset, stage=stage, device=device, batch_size=batch_size, dtype=dtype,
        compile=compile, channels_last=channels_last, repeats=repeats, warmup=warmup,
        input_size=input_size, image_size=image_size, flip=flip, people=people,
        images=images, decode_workers=decode_workers,
    )
    job.progress.say("preparing")
    with cudnn_autotune(job.device):
        row = make_row(job, STAGES[stage](job))
    job.progress.say(f"done in {job.progress.elapsed():.0f} s: {row.ms_per_image:.3g} ms per "
                     f"image over {row.repeats} timed iterations")
    return row
