"""The server's counters in Prometheus' text format (``GET /metrics``): :class:`Metrics`.

Written here rather than taken from prometheus_client: a handful of counters, two
histograms and four gauges under one lock are fewer lines than that library's registry
set-up, and one dependency fewer.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence

__all__ = ["BATCH_BUCKETS", "LATENCY_BUCKETS", "Metrics"]

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Seconds: the request latency histogram's upper bounds."""
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
"""Images: the batch size histogram's upper bounds."""


class _Histogram:
    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * len(self.bounds)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[i] += 1
                break
        self.total += value
        self.count += 1

    def lines(self, name: str) -> list[str]:
        out, cumulative = [], 0
        for bound, n in zip(self.bounds, self.counts, strict=True):
            cumulative += n
            out.append(f'{name}_bucket{{le="{bound:g}"}} {cumulative}')
        out += [f'{name}_bucket{{le="+Inf"}} {self.count}', f"{name}_sum {self.total:.6f}",
                f"{name}_count {self.count}"]
        return out


class Metrics:
    """What ``/metrics`` reports; every method is thread-safe (the batch worker and the
    event loop both write)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: Counter[tuple[str, int]] = Counter()  # (endpoint, status)
        self._errors: Counter[str] = Counter()  # by kind
        self._latency = _Histogram(LATENCY_BUCKETS)
        self._batches = _Histogram(BATCH_BUCKETS)
        self._dropped = 0
        self.queue_depth = 0  # set by the batcher
        self.streams = 0  # set by the stream endpoint
        self.connections = 0  # set by the app's guard: requests in progress and open streams

    def request(self, endpoint: str, status: int, seconds: float) -> None:
        with self._lock:
            self._requests[endpoint, status] += 1
            if endpoint in ("/predict", "/stream"):
                self._latency.observe(seconds)

    def error(self, kind: str) -> None:
        with self._lock:
            self._errors[kind] += 1

    def batch(self, size: int) -> None:
        with self._lock:
            self._batches.observe(size)

    def dropped(self, frames: int) -> None:
        with self._lock:
            self._dropped += frames

    def render(self) -> str:
        """The Prometheus text exposition (version 0.0.4)."""
        with self._lock:
            lines = ["# HELP aepose_requests_total Requests answered, by endpoint and status.",
                     "# TYPE aepose_requests_total counter"]
            lines += [f'aepose_requests_total{{endpoint="{e}",status="{s}"}} {n}'
                      for (e, s), n in sorted(self._requests.items())]
            lines += ["# HELP aepose_errors_total Refused or failed requests and frames, by "
                      "kind.", "# TYPE aepose_errors_total counter"]
            lines += [f'aepose_errors_total{{kind="{k}"}} {n}'
                      for k, n in sorted(self._errors.items())]
            lines += ["# HELP aepose_request_seconds Time from a request's arrival to its "
                      "reply (/predict, /stream frames).",
                      "# TYPE aepose_request_seconds histogram",
                      *self._latency.lines("aepose_request_seconds"),
                      "# HELP aepose_batch_size Images per batch run through the pipeline.",
                      "# TYPE aepose_batch_size histogram",
                      *self._batches.lines("aepose_batch_size"),
                      "# HELP aepose_queue_depth Requests waiting for a batch.",
                      "# TYPE aepose_queue_depth gauge",
                      f"aepose_queue_depth {self.queue_depth}",
                      "# HELP aepose_streams Open WebSocket streams.",
                      "# TYPE aepose_streams gauge", f"aepose_streams {self.streams}",
                      "# HELP aepose_connections Requests in progress (this one included) "
                      "and open streams, against --max-connections.",
                      "# TYPE aepose_connections gauge",
                      f"aepose_connections {self.connections}",
                      "# HELP aepose_dropped_frames_total Stream frames replaced by newer "
                      "ones before they ran.", "# TYPE aepose_dropped_frames_total counter",
                      f"aepose_dropped_frames_total {self._dropped}"]
        return "\n".join(lines) + "\n"
