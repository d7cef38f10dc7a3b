"""Throughput of the network, the training step, decoding and the whole test pipeline.

:func:`run_benchmark` measures one setting and returns a :class:`BenchRow`;
:func:`format_rows` prints rows as a fixed-width table (``aepose benchmark`` and
``benchmarks/gpu_suite.py`` use both). Every row times the real code: the network, the
training loop's own :func:`~aepose.engine.train.train_step`, the preset's
:class:`~aepose.codec.decode.Decoder`, the pipeline's :func:`~aepose.pipeline.engine.stream`.
Stages (:data:`STAGES`), one module each:

``forward`` (:mod:`.forward`)
    the network alone, eval mode, on random normal input [B, 3, S, S]; ms per image is the
    pass's time / B, as the pipeline row divides by its images (whose network, with flip,
    takes two test-size inputs per image).
``train`` (:mod:`.training`)
    one optimiser step of the training loop on random inputs and targets already on the
    device; the data pipeline is not included.
``decode`` (:mod:`.decoding`)
    decoding generated maps of a crowd (:func:`crowd_maps`) at the input resolution, one
    image after the other.
``e2e`` (:mod:`.e2e`)
    generated RGB images (:func:`crowd_images`) through the one test-time pipeline with its
    stages run one after the other, each timed by the pipeline's own
    :class:`~aepose.pipeline.timer.StageTimer` (:data:`PARTS`).
``pipeline`` (:mod:`.pipeline`)
    the same images through the streamed pipeline (read thread, network, decode worker
    processes overlapped), beside each stage's own rate and the overlap efficiency.

The rest: :mod:`.job` checks a request, :mod:`.measure` holds the timing rule (warm-up, then
the lower median of synchronised iterations: a given number, or as many as fit in about
10 s) and the progress lines every stage gives, :mod:`.weights` the random networks that
behave like trained ones (:func:`realistic_weights`, :func:`mimic_trained_maps`),
:mod:`.inputs` the generated inputs, :mod:`.crowd_pipeline` the pipeline the e2e and
pipeline rows share, :mod:`.rows` and :mod:`.table` the result and its table,
:mod:`.accuracy` what a precision setting costs (:func:`outputs_match`), :mod:`.contention`
the bounded background load of ``benchmarks/contention.py`` (:func:`.contention.busy_core`).

Legend: B batch, S square input side.
"""

from aepose.apps.bench.accuracy import outputs_match
from aepose.apps.bench.crowd_pipeline import PARTS
from aepose.apps.bench.inputs import crowd_images, crowd_maps
from aepose.apps.bench.rows import BenchRow
from aepose.apps.bench.run import STAGES, run_benchmark
from aepose.apps.bench.table import format_rows
from aepose.apps.bench.weights import mimic_trained_maps, realistic_weights

__all__ = [
    "PARTS",
    "STAGES",
    "BenchRow",
    "crowd_images",
    "crowd_maps",
    "format_rows",
    "mimic_trained_maps",
    "outputs_match",
    "realistic_weights",
    "run_benchmark",
]
