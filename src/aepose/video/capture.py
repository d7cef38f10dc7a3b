"""Opening OpenCV captures of video files, cameras and stream URLs, and what their
containers say (:class:`VideoInfo`); FFmpeg's own log lines quieted."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2

from aepose.errors import AeposeError

__all__ = ["FALLBACK_FPS", "STREAM_TIMEOUT_MS", "Capture", "VideoInfo", "info_of",
           "open_capture", "open_stream", "quiet_native_video_logs", "video_info"]

FALLBACK_FPS = 25.0  # the frame rate assumed when a container does not state one


@dataclass(frozen=True)
class VideoInfo:
    """A video's properties as its container reports them.

    ``fps`` is 0.0 when the container does not say; ``frames`` may be approximate or 0 for
    some containers; only reading the frames (:func:`iter_video_frames`) counts them exactly.
    """

    fps: float
    width: int
    height: int
    frames: int


_native_logs_quiet = False


def quiet_native_video_logs() -> None:
    """Silence the log lines FFmpeg and OpenCV print themselves about videos, for the process.

    Opening a corrupt file would otherwise print ``[mov,mp4,... @ 0x...] moov atom not
    found`` and ``[ WARN:0@...] ... backend is generally available but can't be used to
    capture by name`` to stderr before aepose's own one-line message, and damaged frames
    ``[h264 @ ...] Invalid NAL unit size``; aepose detects and reports every such failure
    itself (the capture does not open, a read fails, frames go missing). Called before every
    capture is opened; only the first call does anything. A setting the user made wins: an
    ``OPENCV_FFMPEG_LOGLEVEL`` or ``OPENCV_LOG_LEVEL`` in the environment, or a log level
    set through ``cv2.utils.logging.setLogLevel`` before the first video is opened.
    """
    global _native_logs_quiet
    if _native_logs_quiet:
        return
    _native_logs_quiet = True
    # OpenCV's FFmpeg backend reads this variable when it opens a capture (OpenCV 4.x; some
    # versions only at the first open, hence before any capture): -8 is AV_LOG_QUIET. Unset,
    # the backend lets FFmpeg print its errors (AV_LOG_ERROR) to stderr.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    # OpenCV's own logger read OPENCV_LOG_LEVEL when cv2 was imported, so setting the
    # variable now would change nothing: the level is set directly. ERROR, not SILENT:
    # OpenCV's videoio reports failures we cannot see (invalid parameters) at that level.
    logging_ = cv2.utils.logging
    if ("OPENCV_LOG_LEVEL" not in os.environ
            and logging_.getLogLevel() == logging_.LOG_LEVEL_WARNING):  # still the default
        logging_.setLogLevel(logging_.LOG_LEVEL_ERROR)


def open_capture(path: str | Path) -> cv2.VideoCapture:
    file = Path(path)
    if not file.is_file():
        raise AeposeError(f"video file {file} not found")
    quiet_native_video_logs()
    capture = cv2.VideoCapture(str(file), cv2.CAP_FFMPEG)
    if not capture.isOpened():
        raise AeposeError(f"video file {file} cannot be opened (not a video, or corrupt)")
    return capture


def video_info(path: str | Path) -> VideoInfo:
    """Frame rate, frame size (pixels) and frame count of a video file."""
    capture = open_capture(path)
    try:
        return info_of(capture)
    finally:
        capture.release()


class Capture(Protocol):
    """What is used of ``cv2.VideoCapture`` (tests pass fakes)."""

    def read(self) -> tuple[bool, Any]: ...

    def get(self, prop: int) -> float: ...

    def release(self) -> None: ...


def info_of(capture: Capture) -> VideoInfo:
    fps = float(capture.get(cv2.CAP_PROP_FPS))
    return VideoInfo(
        fps=fps if math.isfinite(fps) and fps > 0 else 0.0,
        width=int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
        height=int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        frames=max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT))),
    )


STREAM_TIMEOUT_MS = 15000
"""How long opening a stream, or one read of it, may wait before it counts as failed."""


def open_stream(target: str) -> cv2.VideoCapture:
    """A capture of a webcam index or URL (one-line error if none)."""
    quiet_native_video_logs()
    if target.isdigit():
        capture = cv2.VideoCapture(int(target))  # the platform's camera API (V4L2, ...)
        what = f"webcam {target} cannot be opened (no such camera, or it is busy)"
    else:
        timeouts = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, STREAM_TIMEOUT_MS,
                    cv2.CAP_PROP_READ_TIMEOUT_MSEC, STREAM_TIMEOUT_MS]
        capture = cv2.VideoCapture(target, cv2.CAP_FFMPEG, timeouts)
        what = f"stream {target} cannot be opened (unreachable, refused, or not a video)"
    if not capture.isOpened():
        capture.release()
        raise AeposeError(what)
    return capture
