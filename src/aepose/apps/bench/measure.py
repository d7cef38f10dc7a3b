"""The timing rule every stage follows, its progress lines, and what a stage hands back.

``warmup`` untimed iterations (they absorb ``torch.compile``'s compilation, cuDNN's
autotuning and allocator growth), then timed iterations, each a lap of the pipeline's clock
(:class:`~aepose.pipeline.timer.Laps`, which waits for the GPU): ``repeats`` of them when
given, else as many as fit in :data:`TIME_BUDGET_S` seconds, at least :data:`MIN_REPEATS`
and at most :data:`MAX_REPEATS` (:func:`keep_timing`). The reported iteration is the lower
median: a real iteration, so its parts never add up to more than its total. Peak memory is
``torch.cuda.max_memory_allocated`` over the timed iterations; ``None`` on the CPU.

Progress goes to the ``aepose`` logger (stderr under the command line) through the job's
:class:`Progress`: a line when a stage starts preparing, warming up and timing, one every
:data:`PROGRESS_INTERVAL_S` seconds while it works, and one when it is done.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from aepose.pipeline.timer import Laps, sync

if TYPE_CHECKING:
    from aepose.apps.bench.job import Job

__all__ = ["MAX_REPEATS", "MIN_REPEATS", "PROGRESS_INTERVAL_S", "TIME_BUDGET_S", "Outcome",
           "Progress", "Step", "Timing", "keep_timing", "measure"]

Step = Callable[[], dict[str, float]]  # one iteration; returns seconds per part (may be {})

TIME_BUDGET_S = 10.0
"""Seconds of timed iterations per stage when the number of repeats is not given."""
MIN_REPEATS, MAX_REPEATS = 3, 20  # a median of at least 3; 20 settle it on fast stages
PROGRESS_INTERVAL_S = 5.0

logger = logging.getLogger("aepose")


@dataclass(frozen=True)
class Timing:
    """The reported iteration: total seconds, seconds per part, CUDA peak MiB, and how
    many timed iterations it is the lower median of."""

    total: float
    parts: dict[str, float]
    peak_mb: float | None
    repeats: int


@dataclass(frozen=True)
class Outcome:
    """What a stage measured; :func:`~aepose.apps.bench.rows.make_row` turns it into a row."""

    timing: Timing
    input: str
    flop_factor: float | None = None  # model FLOPs per image multiple, None: no TFLOP/s
    uses_network: bool = True
    facts: dict[str, float] = dataclasses.field(default_factory=dict)
    note: str = ""
    images: int | None = None  # images per iteration when not the batch size


class Progress:
    """Progress lines of one stage, ``"benchmark LABEL: ..."``, on the ``aepose`` logger."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.start = time.perf_counter()
        self._last = self.start

    def say(self, text: str) -> None:
        """One line now."""
        self._last = time.perf_counter()
        logger.info("benchmark %s: %s", self.label, text)

    def tick(self, text: str) -> None:
        """One line unless one was said less than :data:`PROGRESS_INTERVAL_S` ago."""
        if time.perf_counter() - self._last >= PROGRESS_INTERVAL_S:
            self.say(text)

    def elapsed(self) -> float:
        """Seconds since the stage started."""
        return time.perf_counter() - self.start


def keep_timing(done: int, seconds: float, repeats: int | None,
                budget: float = TIME_BUDGET_S) -> bool:
    """Whether to time another iteration after ``done`` timed ones that took ``seconds``
    together: ``repeats`` when given; else until the next one (at the mean so far) would
    pass ``budget``, within [:data:`MIN_REPEATS`, :data:`MAX_REPEATS`]."""
    if repeats is not None:
        return done < repeats
    if done < MIN_REPEATS:
        return True
    return done < MAX_REPEATS and seconds + seconds / done <= budget


def measure(step: Step, job: Job) -> Timing:
    """Warm up, then time synchronised iterations (see the module) of ``job``'s settings
    (``warmup``, ``repeats``, ``device``, ``progress``); report the lower median."""
    device, repeats, warmup, progress = job.device, job.repeats, job.warmup, job.progress
    if warmup:
        progress.say(f"warm-up, {warmup} iteration{'s' if warmup > 1 else ''}")
    for done in range(warmup):
        step()
        progress.tick(f"warm-up, {done + 1}/{warmup} iterations done")
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    progress.say(f"timing {repeats} iterations" if repeats is not None else
                 f"timing iterations for about {TIME_BUDGET_S:.0f} s ({MIN_REPEATS} to "
                 f"{MAX_REPEATS})")
    runs: list[tuple[float, dict[str, float]]] = []
    spent = 0.0
    while keep_timing(len(runs), spent, repeats):
        clock = Laps()
        parts = step()
        runs.append((clock.lap("iteration", device), parts))
        spent += runs[-1][0]
        progress.tick(f"{len(runs)} iterations timed, {spent:.0f} s")
    runs.sort(key=lambda run: run[0])
    total, parts = runs[(len(runs) - 1) // 2]
    return Timing(total, parts, _peak_mb(device), len(runs))


def _peak_mb(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20
