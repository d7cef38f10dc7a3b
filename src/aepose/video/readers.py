"""Reading frames: video files, live streams and local image sequences.

:func:`open_video` opens what a :class:`~aepose.video.sources.SourceItem` names and returns
its :class:`VideoInfo` and a :class:`FrameReader`: :class:`VideoFrames` (every frame in
order, through OpenCV's FFmpeg backend; webcams through OpenCV's default camera backend),
:class:`LatestFrames` (a live source: a thread keeps only the newest frame, so a consumer
slower than the camera gets the newest one each time it asks, the frames in between are
dropped and counted, and memory never grows; or every frame, when asked not to drop) or
:class:`ImageSequenceFrames` (file by file, with aepose's image reader). All three report
lost frames alike (:class:`ReportingReader`). FFmpeg's and OpenCV's own log lines are
silenced (:func:`quiet_native_video_logs`).

Legend: H x W frame (pixels). Frames are RGB uint8 [H, W, 3], as everywhere else in aepose;
the BGR order OpenCV uses stays inside this module.
"""

from __future__ import annotations

import atexit
import logging
import math
import threading
import time
from collections.abc import Generator, Iterator, Sequence
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import numpy.typing as npt

from aepose.errors import AeposeError
from aepose.video.capture import (
    STREAM_TIMEOUT_MS,
    Capture,
    VideoInfo,
    info_of,
    open_capture,
    open_stream,
)
from aepose.video.remote import is_http, unseekable_mp4
from aepose.video.sources import SourceItem, is_local_sequence, sequence_files

__all__ = [
    "SEQUENCE_FPS",
    "FrameReader",
    "ImageSequenceFrames",
    "LatestFrames",
    "ReportingReader",
    "VideoFrames",
    "iter_video_frames",
    "open_video",
]

MAX_BAD_FRAMES = 25  # consecutive unreadable frames that end a video (or its end of stream)
OFF_GRID = 0.1
"""How far (in frames) a frame's presentation time may lie from a whole frame of the stated
rate before the timestamps are taken as variable-rate and frames are counted instead."""

logger = logging.getLogger("aepose")


def _timed_index(msec: float, fps: float, last: int) -> int | None:
    """A frame's index in the stream from its presentation time ``msec`` (from the stream's
    start) at ``fps``, or None when the time cannot say: unknown, not after frame ``last``
    (the previous frame's index), or between two frames of that rate (a variable rate)."""
    if not (math.isfinite(msec) and msec >= 0):
        return None
    position = msec * fps / 1000.0
    index = round(position)
    return index if index > last and abs(position - index) <= OFF_GRID else None


class FrameReader(Protocol):
    """Frames of a video or stream: (index in the stream from 0, RGB uint8 [H, W, 3]).

    ``dropped``: frames skipped because the consumer fell behind (live sources only);
    ``problem``: a one-line report of lost frames, or None; ``close()`` stops reading.
    """

    dropped: int
    problem: str | None

    def __iter__(self) -> Iterator[tuple[int, npt.NDArray[np.uint8]]]: ...

    def __next__(self) -> tuple[int, npt.NDArray[np.uint8]]: ...

    def close(self) -> None: ...


class ReportingReader(Iterator[tuple[int, npt.NDArray[np.uint8]]]):
    """What every frame reader shares: how it reports lost frames.

    ``label`` names the source (``video file a.mp4``, ``stream rtsp://cam``, ``image
    sequence f/%05d.png``). Lost frames are reported once, when the frames end or the reader
    is closed: one line ``"LABEL: LOSS; LOSS; N frames read"``, kept as ``problem`` (None
    when nothing was lost) and logged as a warning on the ``aepose`` logger. A source with
    no frame at all raises instead. ``dropped``: frames skipped because the consumer fell
    behind (live sources only).
    """

    def __init__(self, label: str) -> None:
        self.label = label
        self.dropped = 0
        self.problem: str | None = None

    def _report_lost(self, losses: Sequence[str], read: int | None = None) -> None:
        """Report ``losses`` (one clause each), then the frames ``read`` when given, in the
        one ``problem`` line; nothing when there is no loss or a line was reported."""
        if self.problem is not None or not losses:
            return
        line = f"{self.label}: {'; '.join(losses)}"
        self.problem = line if read is None else f"{line}; {read} frames read"
        logger.warning("%s", self.problem)

    def _nothing(self, what: str) -> AeposeError:
        """The error for a source that yields no frame: ``"LABEL WHAT"``."""
        return AeposeError(f"{self.label} {what}")


class VideoFrames(ReportingReader):
    """The frames of one video as (index from 0, RGB uint8 [H, W, 3]); see iter_video_frames.

    After iteration, ``unreadable`` counts the frames missing inside the video (gaps in the
    indices) and ``problem`` is the one line reported about lost frames (``None`` when
    every frame was read; see :class:`ReportingReader`). Every frame is read: nothing is
    dropped (see :class:`LatestFrames` for live sources).
    """

    def __init__(self, capture: cv2.VideoCapture, file: Path | str, what: str = "video file"
                 ) -> None:
        super().__init__(f"{what} {file}")  # what: "video file" or "stream"
        self.source = str(file)
        self.expected = max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT)))
        self.unreadable = 0
        self._capture = capture
        self._frames = self._read(capture)

    def __next__(self) -> tuple[int, npt.NDArray[np.uint8]]:
        return next(self._frames)

    def close(self) -> None:
        """Stop reading and release the video (also when iteration stopped early)."""
        self._frames.close()
        self._capture.release()

    def _read(self, capture: cv2.VideoCapture
              ) -> Generator[tuple[int, npt.NDArray[np.uint8]], None, None]:
        # A frame's index comes from its presentation time when the container states a
        # frame rate: a failed read tells nothing about how many frames were lost. FFmpeg
        # often consumes no frame on a failed read (the decoder was waiting for more data:
        # the frames it held come out on the next reads), and can drop a damaged frame with
        # no failed read at all; counting reads shifted every later index. The time is
        # CAP_PROP_POS_MSEC after a successful read: the decoded frame's own timestamp from
        # the stream's start in OpenCV 4.x's FFmpeg backend. When it is unusable (no rate,
        # no timestamps, times off the rate's grid: a variable frame rate), frames are
        # counted as before, a failed read as one frame, for the rest of the video.
        fps = float(capture.get(cv2.CAP_PROP_FPS))
        timed = math.isfinite(fps) and fps > 0
        # Whether every frame so far had a time after the one before (a variable rate's
        # times too): then the last one tells how far into the video the frames reached.
        times = timed
        last = -1  # the index of the last frame yielded
        last_msec = -math.inf  # its presentation time
        read = failures = 0  # frames yielded, failed reads since the last one
        try:
            while failures < MAX_BAD_FRAMES:
                ok, bgr = capture.read()
                if not ok or bgr is None:
                    failures += 1  # a damaged frame: try the next one
                    continue
                msec = float(capture.get(cv2.CAP_PROP_POS_MSEC)) if times else math.nan
                times = times and math.isfinite(msec) and msec >= 0 and msec > last_msec
                last_msec = msec
                index = _timed_index(msec, fps, last) if timed else None
                if index is None:
                    timed = False  # mixing counted and timed indices could go backwards
                    index = last + 1 + failures
                self.unreadable += index - last - 1  # the frames missing before this one
                failures = 0
                last = index
                yield index, np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8)
                read += 1
        finally:
            capture.release()
        if read == 0:
            reason = (unseekable_mp4(self.source, STREAM_TIMEOUT_MS / 1000)
                      if is_http(self.source) else None)
            raise AeposeError(reason) if reason else self._nothing("has no decodable frames")
        counted_at = last_msec / 1000.0 if times and not timed else None
        self._report(read, last, counted_at, fps)

    def _report(self, read: int, last: int, counted_at: float | None, fps: float) -> None:
        """Report the frames lost inside the video and at a cut-off end, if any.

        ``counted_at``: the last frame's presentation time (s) when the indices were counted
        (a variable frame rate), else None. A container's frame count is then its duration
        times its nominal rate, not a count (a complete 40-frame MKV "had" 58): whether the
        video was cut off is judged by time, the last frame against that duration.
        """
        losses = [f"{self.unreadable} unreadable frame(s) skipped"] if self.unreadable else []
        # Containers round their frame counts; a frame or two short of it is the normal end.
        if counted_at is not None and self.expected > 0:
            duration = self.expected / fps
            if duration - (counted_at + 1.0 / fps) > 2.0 / fps:
                losses.append(f"unreadable after frame {last} at {counted_at:.2f} s (the "
                              f"container says {duration:.2f} s)")
        elif self.expected - (last + 1) > 2:
            losses.append(f"unreadable after frame {last} "
                          f"(the container says {self.expected} frames)")
        self._report_lost(losses, read)


def iter_video_frames(path: str | Path) -> VideoFrames:
    """Decode a video file frame by frame.

    The file is opened before this returns, so a missing or undecodable video raises
    :class:`AeposeError` here, not at the first ``next()``. A video that opens but yields
    no frame raises when iterated. An unreadable frame inside the video is skipped (OpenCV
    reads on past it); :data:`MAX_BAD_FRAMES` unreadable reads in a row end the video. Lost
    frames are reported once, as a warning on the ``aepose`` logger, and kept as the
    iterator's ``problem`` line.

    Yields:
        (frame index from 0, its position in the stream: from the frame's timestamp and the
        stated frame rate, so the frames lost before it leave a gap; counted when the
        timestamps cannot say, see :class:`VideoFrames`; RGB uint8 frame [H, W, 3]).
    """
    capture = open_capture(path)
    return VideoFrames(capture, Path(path))


class LatestFrames(ReportingReader):
    """Frames of a live source, read by a thread that keeps only the newest one.

    The thread reads as fast as the source delivers; ``next()`` takes the newest frame read
    since the last call (waiting for one when there is none). A frame replaced before it was
    taken is dropped and counted in ``dropped``: a consumer slower than the camera sees
    fresh frames and memory holds at most one pending frame. The index of each frame is its
    position in the stream, so gaps show what was dropped. Iteration ends when
    ``max_failures`` reads in a row fail (camera unplugged, stream ended), at the time given
    to :meth:`stop_at`, or on ``close()``. After ``close()``, ``read`` and ``dropped`` count
    the frames up to the last one taken: those the thread read after it were past the
    consumer's stop, not dropped.

    ``drop=False`` keeps every frame: the thread waits until the pending frame is taken
    before it reads the next one (a live source read in full, ``--no-drop``); the wait for
    a frame is still bounded by :meth:`stop_at`, which a read in the consumer's thread
    could not be.
    """

    def __init__(self, capture: Capture, name: str, *,
                 max_failures: int = MAX_BAD_FRAMES, drop: bool = True) -> None:
        super().__init__(f"stream {name}")
        self.read = 0  # frames read from the source (taken + dropped + one pending)
        self._capture = capture
        self._max_failures = max_failures
        self._drop = drop
        self._pending: tuple[int, npt.NDArray[np.uint8]] | None = None
        self._at_take = (0, 0)  # (read, dropped) when the last frame was taken
        self._deadline: float | None = None  # time.monotonic() at which iteration ends
        self._done = False
        self._stop = threading.Event()
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="aepose-live", daemon=True)
        _reading.add(self)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Frames read and not yet taken: 0 or 1."""
        return int(self._pending is not None)

    def stop_at(self, deadline: float) -> None:
        """End the iteration at ``deadline`` (a :func:`time.monotonic` time): ``next()``
        then stops, also while it waits for a frame that a slow or stalled source has not
        sent, and takes no frame after it."""
        with self._changed:
            self._deadline = deadline
            self._changed.notify_all()

    def _run(self) -> None:
        index = failures = 0
        try:
            while not self._stop.is_set() and failures < self._max_failures:
                if not self._drop and not self._taken():
                    break
                ok, bgr = self._capture.read()
                if self._stop.is_set():  # a read that outlasted close(): past the stop
                    break
                if not ok or bgr is None:
                    failures += 1
                    continue
                failures = 0
                rgb = np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8)
                with self._changed:
                    if self._pending is not None:
                        self.dropped += 1
                    self._pending = (index, rgb)
                    self.read += 1
                    self._changed.notify_all()
                index += 1
        finally:
            self._capture.release()
            with self._changed:
                self._done = True
                self._changed.notify_all()
            _reading.discard(self)

    def _taken(self) -> bool:
        """Wait until the pending frame is taken (``drop=False``); False once stopped."""
        with self._changed:
            while self._pending is not None and not self._stop.is_set():
                self._changed.wait()
        return not self._stop.is_set()

    def _left(self) -> float | None:
        """Seconds to the deadline (None: no deadline; 0 or less: past it)."""
        return None if self._deadline is None else self._deadline - time.monotonic()

    def __next__(self) -> tuple[int, npt.NDArray[np.uint8]]:
        with self._changed:
            while self._pending is None and not self._done:
                left = self._left()
                if left is not None and left <= 0:
                    break
                self._changed.wait(left)
            left = self._left()
            if left is not None and left <= 0:  # a stop, not the end: close() reports
                raise StopIteration
            if self._pending is None:
                self._report()
                raise StopIteration
            frame, self._pending = self._pending, None
            self._at_take = (self.read, self.dropped)
            self._changed.notify_all()  # the reading thread waits for this (drop=False)
            return frame

    def _report(self) -> None:
        if self.read == 0:
            raise self._nothing("delivered no frames")
        if self.dropped:
            self._report_lost([f"{self.dropped} of {self.read} frames dropped (processing "
                               "fell behind; --no-drop processes every frame)"])

    def close(self, timeout: float = 0.5) -> None:
        """Stop the reading thread, waiting up to ``timeout`` s for a read in progress.

        A read that takes longer (a stream that sends a frame every few seconds, or has
        stalled: up to :data:`STREAM_TIMEOUT_MS`) is not waited for: the thread releases the
        source when that read returns, and whatever it read is past the stop.
        """
        self._stop.set()
        with self._changed:
            self._changed.notify_all()  # a thread waiting for its frame to be taken
        self._thread.join(timeout)
        with self._changed:
            if not self._done or self._pending is not None:  # stopped before the stream ended
                self.read, self.dropped = self._at_take
            if self.dropped:  # read > 0 then: no error, only the line
                self._report()


_reading: set[LatestFrames] = set()
"""The live readers whose thread still runs (a read in progress after close(), or never
closed)."""


@atexit.register
def _stop_reading() -> None:
    """Stop every live reader and wait for the reads in progress (each ends within the
    stream's read timeout) before the interpreter shuts down: a thread left inside FFmpeg's
    read while the process tears down the libraries crashed it (SIGSEGV) after a run that
    had finished and written everything."""
    for reader in list(_reading):
        reader.close(timeout=STREAM_TIMEOUT_MS / 1000 + 1.0)


SEQUENCE_FPS = 25.0
"""The frame rate of an image sequence (FFmpeg's image2 default, as when FFmpeg read them)."""


class ImageSequenceFrames(ReportingReader):
    """The frames of a local image sequence (``frames/%05d.png``): (index from 0, RGB uint8
    [H, W, 3]), each file decoded by aepose's image reader (:func:`aepose.data.read_image`),
    so every frame keeps its own size.

    FFmpeg's image2 reader, which read local sequences before, scales every image to the
    first one's size, so poses in images of another size came out in the first one's
    coordinates. Which files belong is still FFmpeg's rule
    (:func:`~aepose.video.sources.sequence_files`). A frame's index is its number minus the first
    one's, so an unreadable file, skipped and counted in ``unreadable``, leaves a gap.
    Unreadable files and numbered files after the first missing number (not read, as by
    FFmpeg) are reported once, at the end, in the ``problem`` line (a warning on the
    ``aepose`` logger). The files (``files``) are listed when the sequence is opened, and
    the first readable image decoded: ``size`` is its (width, height), and a sequence with
    no readable image raises then. An image sequence never drops frames (``dropped`` is 0).
    """

    def __init__(self, pattern: str) -> None:
        super().__init__(f"image sequence {pattern}")
        self.unreadable = 0
        listed = sequence_files(pattern)
        self.files = list(listed.files)  # the sequence, in order
        self._missing, self._later = listed.missing, listed.later
        self._first_error: str | None = None
        # The first readable image is decoded now: its size is the sequence's in open_video,
        # and a sequence with no readable image fails when opened, as a bad video does.
        self._next = 0  # the index of the next file to read
        self._pending = self._decode_next()
        if self._pending is None:
            raise self._nothing(f"has no decodable images: {self._first_error}")
        self.size = self._pending[1].shape[1], self._pending[1].shape[0]  # (width, height)

    def _decode_next(self) -> tuple[int, npt.NDArray[np.uint8]] | None:
        """The next readable frame (index, image), skipping and counting unreadable files;
        None after the last file."""
        # Imported here: aepose.data brings torch, which reading videos does not need.
        from aepose.data.coco import read_image

        while self._next < len(self.files):
            index, self._next = self._next, self._next + 1
            try:
                return index, read_image(self.files[index])
            except AeposeError as error:  # one line naming the file
                self.unreadable += 1
                self._first_error = self._first_error or str(error)
        return None

    def __next__(self) -> tuple[int, npt.NDArray[np.uint8]]:
        frame, self._pending = self._pending, None
        if frame is None:
            frame = self._decode_next()
        if frame is None:
            self._report()
            raise StopIteration
        return frame

    def close(self) -> None:
        """Stop reading (nothing to release: each file is closed once read)."""
        self._next = len(self.files)
        self._pending = None

    def _report(self) -> None:
        losses = []
        if self.unreadable:
            losses.append(f"{self.unreadable} unreadable image(s) skipped (first: "
                          f"{self._first_error})")
        if self._later:
            losses.append(f"{self._later} numbered file(s) after the missing {self._missing} "
                          "not read")
        self._report_lost(losses, len(self.files) - self.unreadable)


def open_video(item: SourceItem | str | Path, *, drop: bool | None = None
               ) -> tuple[VideoInfo, FrameReader]:
    """Open a video file or stream once: its properties and a reader of its frames.

    Args:
        item: a :class:`~aepose.video.sources.SourceItem` (as
            :func:`~aepose.video.sources.expand_sources` makes them) or a video path.
        drop: True reads through :class:`LatestFrames` (frames dropped when the consumer
            falls behind), False reads every frame in order (:class:`VideoFrames`; a live
            source through ``LatestFrames(drop=False)``, whose wait for a frame can be
            bounded); None (default): drop for live sources (``item.live``) only. A local
            image sequence is read by :class:`ImageSequenceFrames` and never drops (its
            files are there to read, as a video file's frames are).

    Raises:
        AeposeError: one line naming the file, URL or camera when it cannot be opened.
    """
    if not isinstance(item, SourceItem):
        item = SourceItem(Path(item), "video")
    if item.url is not None and is_local_sequence(item.url):
        sequence = ImageSequenceFrames(item.url)
        return VideoInfo(SEQUENCE_FPS, *sequence.size, len(sequence.files)), sequence
    capture = open_capture(item.path) if item.url is None else open_stream(item.url)
    info = info_of(capture)
    if item.live if drop is None else drop:
        return info, LatestFrames(capture, item.name)
    if item.live:
        return info, LatestFrames(capture, item.name, drop=False)
    if item.url is None:
        return info, VideoFrames(capture, item.path)
    return info, VideoFrames(capture, item.url, "stream")

