"""Wall-clock timing of work that may run on a GPU: the one lap clock and the stage totals.

CUDA kernels run asynchronously: a clock read right after a call on a GPU tensor times
the launch, not the work. :func:`sync` waits for the device first; :class:`Laps` reads the
clock only after it. The pipeline times its stages with them (:class:`StageTimer` sums
them over a run) and ``aepose benchmark`` its iterations.
"""

from __future__ import annotations

import collections
import threading
import time

import torch

__all__ = ["Laps", "StageTimer", "sync"]


def sync(device: torch.device) -> None:
    """Return once ``device`` has finished the work queued on it (no-op off CUDA)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Laps:
    """Seconds between successive laps, each read after the device finished its work; the
    first lap counts from the clock's creation."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str, device: torch.device) -> float:
        """End lap ``name`` once ``device`` is done; returns (and records) its seconds."""
        sync(device)
        now = time.perf_counter()
        self.seconds[name] = now - self._last
        self._last = now
        return self.seconds[name]


class StageTimer:
    """Seconds and image counts per stage, summed over a run (``aepose benchmark``, the
    closing summary of ``aepose predict``). Stages that run in parallel overlap, so their
    sum exceeds the wall time: the ratio is the pipeline's overlap."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = collections.defaultdict(float)
        self.images: dict[str, int] = collections.defaultdict(int)
        self._lock = threading.Lock()  # read threads add concurrently

    def add(self, stage: str, seconds: float, images: int = 1) -> None:
        with self._lock:
            self.seconds[stage] += seconds
            self.images[stage] += images

    def ms_per_image(self) -> dict[str, float]:
        """Mean milliseconds per image of each stage."""
        return {s: 1000 * t / max(1, self.images[s]) for s, t in self.seconds.items()}
