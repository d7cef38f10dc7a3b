"""What a request may be: :class:`ServeLimits`, the image header check
(:func:`image_size`) and the per-request options (:func:`request_options`).

Everything here refuses in one line with the HTTP status that says why
(:class:`RequestError`): 400 for a malformed request, 413 for one too large, 415 for a body
that is not a JPEG or PNG. An image's size is read from its header before it is decoded, so
a small file declaring a huge image (a decompression bomb) costs nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aepose.config import MAX_PEOPLE, did_you_mean
from aepose.data.coco import MAX_IMAGE_SIDE
from aepose.validate import integer_in, number_in, require

__all__ = ["PREDICT_OPTIONS", "STREAM_OPTIONS", "RequestError", "RequestOptions", "ServeLimits",
           "error_record", "image_size", "request_options"]

PREDICT_OPTIONS = ("min_score", "max_people", "flip", "overlay")
"""Query options of ``POST /predict``."""
STREAM_OPTIONS = ("min_score", "max_people", "flip")
"""Query options of ``WS /stream``."""



def error_record(message: str) -> dict[str, str]:
    """The JSON of every refusal: ``{"error": message}``, the message on one line."""
    return {"error": " ".join(message.split())}


class RequestError(Exception):
    """A request refused: ``status`` (4xx) and one line saying what was wrong."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ServeLimits:
    """The server's limits, each an ``aepose serve`` option.

    max_batch: most images per forward pass; max_wait_ms: how long the first request of a
    batch waits for others while the device is busy with another batch (an idle device
    runs it at once); queue: most requests waiting for a batch (past it: 503 with
    Retry-After); queue_mb: most megabytes of decoded images (RGB, 3 bytes a pixel) waiting
    or running, whatever their count; max_body_mb: largest request body (and WebSocket
    message); max_megapixels: largest image (width x height, read from its header);
    max_streams: concurrent WebSocket streams; max_fps: frames processed per second per
    stream (faster ones are dropped, and counted); max_connections: requests in progress
    (being read, waiting, running or answered) and open streams, all endpoints together;
    past it a request gets 503 with Retry-After and its connection is closed, and a stream
    is closed with code 1013 (try again later), at once instead of waiting. An idle
    keep-alive connection holds no work and does not count, nor do the health endpoints
    (a busy server is alive, and ready).
    """

    max_batch: int = 8
    max_wait_ms: float = 10.0
    queue: int = 64
    queue_mb: float = 512.0
    max_body_mb: float = 20.0
    max_megapixels: float = 40.0
    max_streams: int = 4
    max_fps: float = 30.0
    max_connections: int = 256

    def __post_init__(self) -> None:
        require(self, "ServeLimits", max_batch=integer_in(self.max_batch, 1, 1024),
                max_wait_ms=number_in(self.max_wait_ms, 0, 10_000),
                queue=integer_in(self.queue, 1, 1_000_000),
                queue_mb=number_in(self.queue_mb, 0, low_open=True),
                max_body_mb=number_in(self.max_body_mb, 0, 4096, low_open=True),
                max_megapixels=number_in(self.max_megapixels, 0, 1024, low_open=True),
                max_streams=integer_in(self.max_streams, 0, 10_000),
                max_fps=number_in(self.max_fps, 0, 1000, low_open=True),
                max_connections=integer_in(self.max_connections, 1, 1_000_000))

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1e6)

    @property
    def queue_bytes(self) -> int:
        return int(self.queue_mb * 1e6)


@dataclass(frozen=True)
class RequestOptions:
    """One request's settings: min_score (people scoring below it are left out; None: the
    server's), max_people and flip (the test settings; None: the server's), overlay (a drawn
    JPEG in the reply)."""

    min_score: float | None = None
    max_people: int | None = None
    flip: bool | None = None
    overlay: bool = False


def request_options(query: Sequence[tuple[str, str]], known: Sequence[str]) -> RequestOptions:
    """The options of a query string's ``(name, value)`` pairs (``token`` is the
    credential's, not an option); an unknown, repeated or malformed one is a 400."""
    given: dict[str, str] = {}
    for name, value in query:
        if name == "token":
            continue
        if name not in known:
            raise RequestError(400, f"unknown option {name!r}{did_you_mean(name, known)} "
                               f"(options: {', '.join(known)})")
        if name in given:
            raise RequestError(400, f"option {name!r} given twice")
        given[name] = value
    return RequestOptions(
        min_score=_parsed(given, "min_score", _fraction),
        max_people=_parsed(given, "max_people", _people),
        flip=_parsed(given, "flip", _boolean),
        overlay=bool(_parsed(given, "overlay", _boolean)))


def _parsed(given: Mapping[str, str], name: str, parse: Callable[[str], Any]) -> Any:
    if name not in given:
        return None
    try:
        return parse(given[name])
    except ValueError as error:
        raise RequestError(400, f"option {name}={given[name][:40]!r}: {error}") from None


def _fraction(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or not 0 <= value <= 1:
        raise ValueError("must be a number in [0, 1]")
    return value


def _people(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_PEOPLE:
        raise ValueError(f"must be a whole number in [1, {MAX_PEOPLE}]")
    return int(text)


def _boolean(text: str) -> bool:
    if text not in ("true", "false"):
        raise ValueError("must be true or false")
    return text == "true"


# ---------------------------------------------------------------------------------------
# Image headers

_PNG = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (baseline, progressive, lossless...): they hold the size.
# 0xC4 (Huffman tables), 0xC8 (reserved) and 0xCC (arithmetic coding) are not frames.
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_NO_LENGTH = frozenset({0x01, *range(0xD0, 0xD9)})  # TEM, RSTn, SOI


def image_size(data: bytes, limits: ServeLimits) -> tuple[int, int]:
    """(width, height) of a JPEG or PNG from its header, checked against ``limits``'
    pixel bound and :data:`~aepose.data.coco.MAX_IMAGE_SIDE` (the bound on annotated
    images); 415 for anything else, 400 for a header cut short, 413 for too many pixels."""
    if data.startswith(_PNG):
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise RequestError(400, "the PNG's header is cut short or malformed")
        size = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    elif data.startswith(b"\xff\xd8"):
        size = _jpeg_size(data)
    else:
        raise RequestError(415, "the body is not a JPEG or PNG image" if data else
                           "the body is empty (send the image's bytes)")
    width, height = size
    if not (0 < width <= MAX_IMAGE_SIDE and 0 < height <= MAX_IMAGE_SIDE):
        raise RequestError(413 if width and height else 400,
                           f"a {width}x{height} image: each side must be 1 to "
                           f"{MAX_IMAGE_SIDE} pixels")
    if width * height > limits.max_megapixels * 1e6:
        raise RequestError(413, f"a {width}x{height} image is over the "
                           f"{limits.max_megapixels:g}-megapixel limit")
    return width, height


def _jpeg_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a JPEG's start-of-frame segment, found by skipping segments by
    their lengths."""
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            break
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _NO_LENGTH:
            pos += 2
            continue
        if marker in _SOF:
            if pos + 9 > len(data):
                break
            return (int.from_bytes(data[pos + 7:pos + 9], "big"),
                    int.from_bytes(data[pos + 5:pos + 7], "big"))
        if marker == 0xD9:  # end of image before any frame
            break
        pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
    raise RequestError(400, "the JPEG has no complete frame header (truncated or corrupt)")
