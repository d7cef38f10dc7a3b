"""``WS /stream``: poses of a client's video frames, tracked, one
:class:`~aepose.tracking.tracker.PoseTracker` per connection.

The client sends binary messages, each an 8-byte little-endian float64 timestamp in
milliseconds followed by a JPEG or PNG; the server answers each frame it processed with one
text message ``{"timestamp_ms", "people": [{"track_id", "keypoints", "score"}], "dropped",
"latency_ms"}``. One frame runs at a time (through the same batcher as ``POST /predict``,
so streams batch with each other and with requests); a frame arriving meanwhile replaces
the one waiting, which is dropped and counted in the next reply's ``dropped``: the backlog
never grows. Frames are also spaced by at least ``1 / max_fps``. A bad message is answered
with ``{"error": "one line"}`` and the stream goes on; past ``max_streams`` streams a new
one is told so and closed (code 1013, try again later).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import math
import struct
import time
from dataclasses import dataclass
from typing import Any

import anyio
from starlette.websockets import WebSocket, WebSocketDisconnect

from aepose.errors import AeposeError
from aepose.pipeline.prediction import Prediction
from aepose.pipeline.run import track_poses
from aepose.serve.batching import QueueFull
from aepose.serve.limits import (
    STREAM_OPTIONS,
    RequestError,
    RequestOptions,
    error_record,
    request_options,
)
from aepose.serve.service import Service
from aepose.tracking.tracker import PoseTracker

__all__ = ["stream_endpoint"]

_STAMP = struct.Struct("<d")


@dataclass
class _Frame:
    timestamp_ms: float
    data: bytes
    arrived: float  # time.perf_counter()


class _Stream:
    """One connection's state: the frame waiting (at most one), the drops since the last
    reply, the tracker."""

    def __init__(self, service: Service, websocket: WebSocket, options: RequestOptions):
        self.service, self.websocket, self.options = service, websocket, options
        self.tracker = PoseTracker(service.spec, dataclasses.replace(
            service.settings.tracker, fps=service.limits.max_fps))
        self.waiting: _Frame | None = None
        self.dropped = 0
        self.arrived = asyncio.Event()
        self.closed = False
        self.last_timestamp = -math.inf

    async def receive(self) -> None:
        """Read messages until the client leaves; each frame replaces the one waiting."""
        try:
            while True:
                message = await self.websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                data = message.get("bytes")
                if data is None:
                    await self.error("send binary messages: an 8-byte little-endian float64 "
                                     "timestamp in ms, then a JPEG or PNG")
                    continue
                frame = self._frame(data)
                if frame is None:
                    continue
                if self.waiting is not None:
                    self._drop()
                self.waiting = frame
                self.arrived.set()
        finally:
            self.closed = True
            self.arrived.set()

    def _drop(self) -> None:
        self.dropped += 1
        self.service.metrics.dropped(1)

    def _frame(self, data: bytes) -> _Frame | None:
        if len(data) <= _STAMP.size:
            self._later_error("a frame is an 8-byte timestamp followed by an image; got "
                              f"{len(data)} bytes")
            return None
        (stamp,) = _STAMP.unpack_from(data)
        if not math.isfinite(stamp):
            self._later_error(f"the frame's timestamp is {stamp}, not a finite number")
            return None
        return _Frame(stamp, data[_STAMP.size:], time.perf_counter())

    def _later_error(self, message: str) -> None:
        self.service.metrics.error("stream_bad_frame")
        asyncio.get_running_loop().create_task(self.error(message))

    async def error(self, message: str) -> None:
        with contextlib.suppress(Exception):  # the client may be gone
            await self.websocket.send_text(_json(error_record(message)))

    async def process(self) -> None:
        """Run the waiting frame, reply, repeat, at most ``max_fps`` frames a second."""
        spacing = 1.0 / self.service.limits.max_fps
        started = -math.inf
        while True:
            await self.arrived.wait()
            self.arrived.clear()
            if self.closed:
                return
            frame, self.waiting = self.waiting, None
            if frame is None:
                continue
            rest = started + spacing - time.perf_counter()
            if rest > 0:  # the newest frame after the pause is the one that runs
                await asyncio.sleep(rest)
                if self.waiting is not None:
                    frame, self.waiting = self.waiting, None
                    self._drop()
            started = time.perf_counter()
            try:
                reply = await self._run(frame)
            except (RequestError, AeposeError) as problem:
                self.service.metrics.error("stream_bad_frame")
                await self.error(str(problem))
                continue
            except QueueFull as full:
                self.service.metrics.error("queue_full")
                await self.error(f"{full}; frame dropped")
                continue
            if self.closed:
                return
            with contextlib.suppress(Exception):  # the client may leave meanwhile
                await self.websocket.send_text(_json(reply))
            self.service.metrics.request("/stream", 200, time.perf_counter() - frame.arrived)

    async def _run(self, frame: _Frame) -> dict[str, Any]:
        service = self.service
        if frame.timestamp_ms <= self.last_timestamp:
            raise RequestError(400, f"timestamp {frame.timestamp_ms} ms is not after the last "
                               f"frame's ({self.last_timestamp} ms)")
        prediction = await service.predict(frame.data, self.options)
        self.last_timestamp = frame.timestamp_ms
        people = await anyio.to_thread.run_sync(self._tracked, prediction, frame.timestamp_ms)
        dropped, self.dropped = self.dropped, 0
        return {"timestamp_ms": frame.timestamp_ms,
                "people": [{"track_id": p.track_id,
                            "keypoints": p.keypoints.astype(float).tolist(),
                            "score": float(p.score)} for p in people],
                "dropped": dropped,
                "latency_ms": round((time.perf_counter() - frame.arrived) * 1000.0, 3)}

    def _tracked(self, prediction: Prediction, timestamp_ms: float) -> list[Any]:
        people = self.service.people(prediction, self.options)
        return self.service.marked(track_poses(self.tracker, people, timestamp_ms))


async def stream_endpoint(service: Service, websocket: WebSocket) -> None:
    """Serve one WebSocket stream (see the module docstring)."""
    await websocket.accept()
    try:
        options = request_options(websocket.query_params.multi_items(), STREAM_OPTIONS)
    except RequestError as error:
        await websocket.send_text(_json(error_record(str(error))))
        await websocket.close(code=1008)
        return
    if service.metrics.streams >= service.limits.max_streams:
        service.metrics.error("too_many_streams")
        await websocket.send_text(_json(error_record(
            f"{service.limits.max_streams} streams are open already, the most this server "
            "takes")))
        await websocket.close(code=1013)
        return
    service.metrics.streams += 1
    stream = _Stream(service, websocket, options)
    worker = asyncio.get_running_loop().create_task(stream.process())
    try:
        await stream.receive()
    finally:
        service.metrics.streams -= 1
        with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
            await worker


def _json(record: dict[str, Any]) -> str:
    return json.dumps(record, allow_nan=False)
