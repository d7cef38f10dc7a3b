"""The timing rule every stage follows, and what a stage hands back.

``warmup`` untimed iterations (they absorb ``torch.compile``'s compilation, cuDNN's
autotuning and allocator growth), then ``repeats`` timed iterations, each a lap of the
pipeline's clock (:class:`~aepose.pipeline.timer.Laps`, which waits for the GPU). The
reported iteration is the lower median: a real iteration, so its parts never add up to more
than its total. Peak memory is ``torch.cuda.max_memory_allocated`` over the timed
iterations; ``None`` on the CPU.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch

from aepose.pipeline.timer import Laps, sync

__all__ = ["Outcome", "Step", "Timing", "measure"]

Step = Callable[[], dict[str, float]]  # one iteration; returns seconds per part (may be {})


@dataclass(frozen=True)
class Timing:
    """The reported iteration: total seconds, seconds per part, CUDA peak MiB."""

    total: float
    parts: dict[str, float]
    peak_mb: float | None


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


def measure(step: Step, device: torch.device, repeats: int, warmup: int) -> Timing:
    """Warm up, then time ``repeats`` synchronised iterations; report the lower median."""
    for _ in range(warmup):
        step()
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    runs: list[tuple[float, dict[str, float]]] = []
    for _ in range(repeats):
        clock = Laps()
        parts = step()
        runs.append((clock.lap("iteration", device), parts))
    runs.sort(key=lambda run: run[0])
    total, parts = runs[(len(runs) - 1) // 2]
    return Timing(total, parts, _peak_mb(device))


def _peak_mb(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20
