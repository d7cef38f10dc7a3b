"""Input sources for prediction: image files, folders, glob patterns, videos and streams.

:func:`expand_sources` turns command-line arguments into an ordered list of media files plus
one-line problems for the arguments that yield nothing, so a run can report bad inputs and
finish the rest. Besides files it recognises frame sources that are not files (streams):
webcam indices (``0``), URLs (``rtsp://``, ``http(s)://`` ...) and image sequences given as
a printf pattern (``frames/%05d.png``). Videos and streams are read with
:func:`open_video` (OpenCV's FFmpeg backend; webcams through OpenCV's default camera
backend; local image sequences file by file, with aepose's image reader) and overlays
written as H.264 MP4 with :class:`VideoWriter` (PyAV). FFmpeg's and OpenCV's own log lines
are silenced (:func:`quiet_native_video_logs`): every failure is reported in one line.

A live source (a webcam, ``rtsp://`` and the like) is read by :class:`LatestFrames`: a
thread that keeps only the newest frame, so a consumer slower than the camera gets the
newest frame each time it asks, the frames in between are dropped and counted, and memory
never grows.

Legend: H x W frame (pixels). Frames are RGB uint8 [H, W, 3] on both sides, as everywhere
else in aepose; the BGR order OpenCV uses stays inside this module.
"""

from __future__ import annotations

import glob
import logging
import math
import os
import re
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

import av
import cv2
import numpy as np
import numpy.typing as npt

from aepose.errors import AeposeError
from aepose.io import AtomicFile, interrupt_after

__all__ = [
    "FALLBACK_FPS",
    "IMAGE_EXTENSIONS",
    "LIVE_SCHEMES",
    "SEQUENCE_FPS",
    "STREAM_SCHEMES",
    "VIDEO_EXTENSIONS",
    "FrameReader",
    "ImageSequenceFrames",
    "LatestFrames",
    "SourceItem",
    "Sources",
    "VideoFrames",
    "VideoInfo",
    "VideoWriter",
    "expand_sources",
    "iter_video_frames",
    "open_video",
    "quiet_native_video_logs",
    "video_info",
]

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"})

Kind = Literal["image", "video"]


STREAM_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt"})
"""URL schemes read as video streams (through OpenCV's FFmpeg backend)."""
LIVE_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "udp", "tcp", "srt"})
"""Schemes of live streams (frames dropped when processing falls behind). An http(s) URL is
live unless its path ends in a video extension (``http://host/clip.mp4`` is a file) or
names an image sequence (``http://host/frames/%05d.png``)."""

_PRINTF = re.compile(r"%0?\d*d")  # the frame-number field of an image-sequence pattern
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


@dataclass(frozen=True)
class SourceItem:
    """One media file or stream to predict on.

    ``path`` is spelled as the user (or the glob) gave it; for a stream (``url`` set: a
    webcam index, a URL or an image-sequence pattern, as given) it is a short name for the
    outputs (``webcam0``, ``clip`` for ``http://host/clip.mp4``, the pattern's folder).
    ``live``: a camera or live stream, whose frames are dropped when processing falls behind.
    """

    path: Path
    kind: Kind
    url: str | None = None
    live: bool = False

    @property
    def name(self) -> str:
        """The source as the user named it (the URL, webcam index or file path)."""
        return self.url if self.url is not None else str(self.path)


@dataclass(frozen=True)
class Sources:
    """Expanded inputs: the files in order, and one ``"PATH: reason"`` line per bad argument."""

    items: tuple[SourceItem, ...]
    problems: tuple[str, ...]


def _kind(path: Path) -> Kind | None:
    suffix = path.suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        return "image"
    if suffix in VIDEO_EXTENSIONS:
        return "video"
    return None


def _is_glob(text: str) -> bool:
    return any(char in text for char in "*?[")


def _folder_media(folder: Path, recursive: bool) -> tuple[list[SourceItem], list[str]]:
    """The images and videos in ``folder`` (and below it when ``recursive``, through symbolic
    links to folders too), sorted, and one problem line per link that loops or leads
    nowhere."""
    # Hidden files and folders are skipped: editors' and OSes' droppings (._x.jpg,
    # .ipynb_checkpoints) and half-written temporary files (our atomic writes use hidden
    # names) are not inputs.
    files: list[Path] = []
    problems: list[str] = []
    seen: set[tuple[int, int]] = set()  # (device, inode) of every folder scanned
    for root, dirs, names in os.walk(folder, followlinks=True):
        status = os.stat(root)
        if (status.st_dev, status.st_ino) in seen:  # a link back into scanned folders
            problems.append(f"{root}: symbolic link loop (a folder already scanned), skipped")
            dirs[:] = []
            continue
        seen.add((status.st_dev, status.st_ino))
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in names:
            path = Path(root) / name
            if name.startswith("."):
                continue
            if path.is_symlink() and not path.exists():
                problems.append(f"{path}: broken or looping symbolic link, skipped")
            elif _kind(path) is not None and path.is_file():
                files.append(path)
        if not recursive:
            break
    return [SourceItem(p, _kind(p) or "image") for p in sorted(files)], problems


def _glob_media(pattern: str) -> list[SourceItem]:
    # Files the pattern matches that are not media (a README under "data/*") are skipped
    # silently; listing each one as a problem would bury the real ones.
    items = []
    for name in sorted(glob.glob(pattern, recursive=True)):
        path = Path(name)
        kind = _kind(path)
        if kind is not None and path.is_file():
            items.append(SourceItem(path, kind))
    return items


def _expand_one(source: str, recursive: bool) -> tuple[list[SourceItem], list[str]]:
    """The items one argument names, and its problem lines (one when it names nothing)."""
    path = Path(source)
    if path.is_dir():
        items, problems = _folder_media(path, recursive)
        where = "folder or its subfolders" if recursive else "folder"
        return items, problems if items else [
            *problems, f"{source}: no images or videos in this {where}"]
    if path.is_file():
        kind = _kind(path)
        if kind is None:
            suffix = repr(path.suffix) if path.suffix else "(no extension)"
            return [], [f"{source}: unsupported file type {suffix}"]
        return [SourceItem(path, kind)], []
    if path.is_symlink():
        return [], [f"{source}: broken or looping symbolic link"]
    stream = _stream_item(source)
    if stream is not None:
        return stream
    if _is_glob(source):
        items = _glob_media(source)
        return items, [] if items else [f"{source}: pattern matches no image or video files"]
    return [], [f"{source}: no such file or folder"]


def _stream_item(source: str) -> tuple[list[SourceItem], list[str]] | None:
    """The stream ``source`` names (webcam index, URL, image-sequence pattern), or None when
    it names no stream; a URL of another scheme or a pattern matching no file is a problem."""
    url = _URL.match(source)
    if url:
        scheme = url.group(1).lower()
        if scheme not in STREAM_SCHEMES:
            return [], [f"{source}: unsupported URL scheme {scheme!r} (streams: "
                        f"{', '.join(sorted(STREAM_SCHEMES))})"]
        file = Path(urlsplit(source).path)
        # A remote image sequence (http://host/frames/%05d.png) is files too: never live.
        sequence = file.suffix.lower() in IMAGE_EXTENSIONS and bool(_PRINTF.search(file.name))
        is_file = file.suffix.lower() in VIDEO_EXTENSIONS or sequence
        live = scheme in LIVE_SCHEMES or not is_file
        stem = file.parent.name if sequence else file.stem  # as a local sequence is named
        name = stem or urlsplit(source).hostname or "stream"
        return [SourceItem(Path(name), "video", url=source, live=live)], []
    if source.isdigit():
        return [SourceItem(Path(f"webcam{int(source)}"), "video", url=source, live=True)], []
    if _PRINTF.search(source):
        try:
            matched = glob.glob(_sequence_glob(source))
        except AeposeError as error:  # a pattern FFmpeg would refuse too
            return [], [str(error)]
        if not matched:
            return [], [f"{source}: image-sequence pattern matches no files"]
        folder = Path(source).parent  # names the outputs ('.' by the folder's own name)
        stem = folder.name or folder.resolve().name or "sequence"
        return [SourceItem(Path(stem), "video", url=source)], []
    return None


def expand_sources(sources: Sequence[str], *, recursive: bool = False) -> Sources:
    """Expand image files, folders, glob patterns, video files and streams into sources.

    Args:
        sources: each entry is an image file (``.jpg .jpeg .png .bmp .webp .tif .tiff``), a
            video file (``.mp4 .avi .mov .mkv .webm .m4v``), a folder (the images and videos
            directly in it, sorted by path, hidden files skipped), a glob pattern
            (``data/*.jpg``; ``**`` matches any depth), a webcam index (``0``: when no file
            of that name exists), a stream URL (schemes :data:`STREAM_SCHEMES`) or an image
            sequence as a printf pattern (``frames/%05d.png``: numbered files read as one
            video, numbering from 0 to 4 onwards, FFmpeg's rule). Extensions are
            case-insensitive.
        recursive: also take images and videos from a folder's subfolders.

    Returns:
        The files and streams in argument order, each once (the first spelling of a file is
        kept), and one ``"ARGUMENT: reason"`` line per argument that is missing, of an
        unsupported type or URL scheme, an empty folder, a pattern matching nothing or a
        broken link, and one line per symbolic link inside a folder that loops or leads
        nowhere. Streams are not opened here (a camera or server is only tried when read).
    """
    items: list[SourceItem] = []
    problems: list[str] = []
    seen: set[Path | str] = set()
    for source in sources:
        found, found_problems = _expand_one(source, recursive)
        problems += found_problems
        for item in found:
            key = item.url if item.url is not None else item.path.resolve()
            if key not in seen:
                seen.add(key)
                items.append(item)
    return Sources(tuple(items), tuple(problems))


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


def _open_capture(path: str | Path) -> cv2.VideoCapture:
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
    capture = _open_capture(path)
    try:
        return _info_of(capture)
    finally:
        capture.release()


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


class VideoFrames(Iterator[tuple[int, npt.NDArray[np.uint8]]]):
    """The frames of one video as (index from 0, RGB uint8 [H, W, 3]); see iter_video_frames.

    After iteration, ``unreadable`` counts the frames missing inside the video (gaps in the
    indices) and ``problem`` is the one line reported about lost frames (``None`` when
    every frame was read).
    """

    def __init__(self, capture: cv2.VideoCapture, file: Path | str, what: str = "video file"
                 ) -> None:
        self.file = file
        self.what = what  # how messages name the source: "video file", "stream"
        self.expected = max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT)))
        self.unreadable = 0
        self.dropped = 0  # never: every frame is read (see LatestFrames for live sources)
        self.problem: str | None = None
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
        last = -1  # the index of the last frame yielded
        read = failures = 0  # frames yielded, failed reads since the last one
        try:
            while failures < MAX_BAD_FRAMES:
                ok, bgr = capture.read()
                if not ok or bgr is None:
                    failures += 1  # a damaged frame: try the next one
                    continue
                index = (_timed_index(float(capture.get(cv2.CAP_PROP_POS_MSEC)), fps, last)
                         if timed else None)
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
            raise AeposeError(f"{self.what} {self.file} has no decodable frames")
        self._report(read, last)

    def _report(self, read: int, last: int) -> None:
        """One warning line when frames were lost (inside, or a cut-off end), else nothing."""
        # Containers round their frame counts; a frame or two short of it is the normal end.
        cut = self.expected - (last + 1) > 2
        if not cut and not self.unreadable:
            return
        parts = [f"{self.unreadable} unreadable frame(s) skipped"] if self.unreadable else []
        if cut:
            parts.append(f"unreadable after frame {last} "
                         f"(the container says {self.expected} frames)")
        self.problem = f"{self.what} {self.file}: {'; '.join(parts)}; {read} frames read"
        logger.warning("%s", self.problem)


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
    capture = _open_capture(path)
    return VideoFrames(capture, Path(path))


class Capture(Protocol):
    """What is used of ``cv2.VideoCapture`` (tests pass fakes)."""

    def read(self) -> tuple[bool, Any]: ...

    def get(self, prop: int) -> float: ...

    def release(self) -> None: ...


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


class LatestFrames(Iterator[tuple[int, npt.NDArray[np.uint8]]]):
    """Frames of a live source, read by a thread that keeps only the newest one.

    The thread reads as fast as the source delivers; ``next()`` takes the newest frame read
    since the last call (waiting for one when there is none). A frame replaced before it was
    taken is dropped and counted in ``dropped``: a consumer slower than the camera sees
    fresh frames and memory holds at most one pending frame. The index of each frame is its
    position in the stream, so gaps show what was dropped. Iteration ends when
    ``max_failures`` reads in a row fail (camera unplugged, stream ended) or on ``close()``.
    After ``close()``, ``read`` and ``dropped`` count the frames up to the last one taken:
    those the thread read after it were past the consumer's stop, not dropped.
    """

    def __init__(self, capture: Capture, name: str, *,
                 max_failures: int = MAX_BAD_FRAMES) -> None:
        self.name = name
        self.dropped = 0
        self.read = 0  # frames read from the source (taken + dropped + one pending)
        self.problem: str | None = None
        self._capture = capture
        self._max_failures = max_failures
        self._pending: tuple[int, npt.NDArray[np.uint8]] | None = None
        self._at_take = (0, 0)  # (read, dropped) when the last frame was taken
        self._done = False
        self._stop = threading.Event()
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="aepose-live", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Frames read and not yet taken: 0 or 1."""
        return int(self._pending is not None)

    def _run(self) -> None:
        index = failures = 0
        try:
            while not self._stop.is_set() and failures < self._max_failures:
                ok, bgr = self._capture.read()
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

    def __next__(self) -> tuple[int, npt.NDArray[np.uint8]]:
        with self._changed:
            while self._pending is None and not self._done:
                self._changed.wait()
            if self._pending is None:
                self._report()
                raise StopIteration
            frame, self._pending = self._pending, None
            self._at_take = (self.read, self.dropped)
            return frame

    def _report(self) -> None:
        if self.read == 0:
            raise AeposeError(f"stream {self.name} delivered no frames")
        if self.dropped and self.problem is None:
            self.problem = (f"stream {self.name}: {self.dropped} of {self.read} frames dropped "
                            "(processing fell behind; --no-drop processes every frame)")
            logger.warning("%s", self.problem)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the reading thread (waits up to ``timeout`` s for a read in progress)."""
        self._stop.set()
        self._thread.join(timeout)
        with self._changed:
            if not self._done or self._pending is not None:  # stopped before the stream ended
                self.read, self.dropped = self._at_take
            if self.dropped and self.problem is None:
                self._report()


def _info_of(capture: Capture) -> VideoInfo:
    fps = float(capture.get(cv2.CAP_PROP_FPS))
    return VideoInfo(
        fps=fps if math.isfinite(fps) and fps > 0 else 0.0,
        width=int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
        height=int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        frames=max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT))),
    )


STREAM_TIMEOUT_MS = 15000
"""How long opening a stream, or one read of it, may wait before it counts as failed."""


def _open_stream(target: str) -> cv2.VideoCapture:
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


SEQUENCE_FPS = 25.0
"""The frame rate of an image sequence (FFmpeg's image2 default, as when FFmpeg read them)."""
SEQUENCE_START_RANGE = 5
"""An image sequence's first file is numbered 0 to 4 (FFmpeg image2's start_number_range)."""
_SEQUENCE_FIELD = re.compile(r"%%|%(\d*)d")  # a literal %, or the frame-number field


def _sequence_parts(pattern: str) -> tuple[str, int, str]:
    """An image-sequence pattern as (text before the frame number, its width, text after),
    as FFmpeg reads it: ``%d`` is the number, ``%05d`` (or ``%5d``: FFmpeg pads with zeros
    either way) at least that many digits, zero-padded, and ``%%`` a literal ``%``."""
    pieces: list[str] = []  # the text before the field, then the text after it
    width: int | None = None
    text, start = "", 0
    for field in _SEQUENCE_FIELD.finditer(pattern):
        text += pattern[start:field.start()]
        start = field.end()
        if field.group() == "%%":
            text += "%"
        elif width is None:
            width = int(field.group(1) or 0)
            pieces.append(text)
            text = ""
        else:
            raise AeposeError(f"{pattern}: more than one frame-number field (%d) in the "
                              "image-sequence pattern")
    if width is None:
        raise AeposeError(f"{pattern}: no frame-number field (%d) in the image-sequence "
                          "pattern")
    return pieces[0], width, text + pattern[start:]


def _sequence_namer(pattern: str) -> Callable[[int], str]:
    """The file name of frame number ``n`` of an image-sequence pattern."""
    before, width, after = _sequence_parts(pattern)
    return lambda number: f"{before}{number:0{width}d}{after}"


def _sequence_glob(pattern: str) -> str:
    """A glob matching every file an image-sequence pattern could name."""
    before, _, after = _sequence_parts(pattern)
    return f"{glob.escape(before)}[0-9]*{glob.escape(after)}"


class ImageSequenceFrames(Iterator[tuple[int, npt.NDArray[np.uint8]]]):
    """The frames of a local image sequence (``frames/%05d.png``): (index from 0, RGB uint8
    [H, W, 3]), each file decoded by aepose's image reader (:func:`aepose.data.read_image`),
    so every frame keeps its own size.

    FFmpeg's image2 reader, which read local sequences before, scales every image to the
    first one's size, so poses in images of another size came out in the first one's
    coordinates. Which files belong is still FFmpeg's rule: the first number is the lowest
    of 0 to 4 whose file exists (:data:`SEQUENCE_START_RANGE`), and the sequence runs on
    while the next number's file exists. A frame's index is its number minus the first
    one's, so an unreadable file, skipped and counted in ``unreadable``, leaves a gap.
    Unreadable files and numbered files after the first missing number (not read, as by
    FFmpeg) are reported once, at the end, in the ``problem`` line (a warning on the
    ``aepose`` logger). The files (``files``) are listed when the sequence is opened, and
    the first readable image decoded: ``size`` is its (width, height), and a sequence with
    no readable image raises then. An image sequence never drops frames (``dropped`` is 0).
    """

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.dropped = 0
        self.unreadable = 0
        self.problem: str | None = None
        name = _sequence_namer(pattern)
        first = next((n for n in range(SEQUENCE_START_RANGE) if Path(name(n)).is_file()), None)
        if first is None:
            raise AeposeError(self._no_start(name))
        self.files: list[Path] = []  # the sequence, in order
        while Path(name(first + len(self.files))).is_file():
            self.files.append(Path(name(first + len(self.files))))
        self._missing = name(first + len(self.files))  # the first missing file: the end
        self._later = self._numbered_after(name, first + len(self.files))
        self._first_error: str | None = None
        # The first readable image is decoded now: its size is the sequence's in open_video,
        # and a sequence with no readable image fails when opened, as a bad video does.
        self._next = 0  # the index of the next file to read
        self._pending = self._decode_next()
        if self._pending is None:
            raise AeposeError(f"image sequence {pattern} has no decodable images: "
                              f"{self._first_error}")
        self.size = self._pending[1].shape[1], self._pending[1].shape[0]  # (width, height)

    def _no_start(self, name: Callable[[int], str]) -> str:
        """The line for a pattern whose first file is missing: the names tried and, when
        other numbered files exist (numbering that starts too late, or zero-padding the
        pattern does not spell), one of them."""
        line = (f"image sequence {self.pattern}: no file {name(0)} to "
                f"{name(SEQUENCE_START_RANGE - 1)} (the first number must be 0 to "
                f"{SEQUENCE_START_RANGE - 1}, spelled as the pattern says")
        numbered = sorted(glob.glob(_sequence_glob(self.pattern)))
        return f"{line}; there is {numbered[0]})" if numbered else f"{line})"

    def _numbered_after(self, name: Callable[[int], str], missing: int) -> int:
        """How many files the pattern names with numbers after ``missing``."""
        later = 0
        for path in glob.glob(_sequence_glob(self.pattern)):
            # A file is the pattern's when some number in its path gives back its name.
            numbers = (int(digits) for digits in re.findall(r"\d+", path))
            later += any(n > missing and name(n) == path for n in numbers)
        return later

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
        if self.problem is not None:
            return
        parts = []
        if self.unreadable:
            parts.append(f"{self.unreadable} unreadable image(s) skipped (first: "
                         f"{self._first_error})")
        if self._later:
            parts.append(f"{self._later} numbered file(s) after the missing {self._missing} "
                         "not read")
        if parts:
            read = len(self.files) - self.unreadable
            self.problem = (f"image sequence {self.pattern}: {'; '.join(parts)}; "
                            f"{read} frames read")
            logger.warning("%s", self.problem)


def open_video(item: SourceItem | str | Path, *, drop: bool | None = None
               ) -> tuple[VideoInfo, FrameReader]:
    """Open a video file or stream once: its properties and a reader of its frames.

    Args:
        item: a :class:`SourceItem` (as :func:`expand_sources` makes them) or a video path.
        drop: True reads through :class:`LatestFrames` (frames dropped when the consumer
            falls behind), False reads every frame in order (:class:`VideoFrames`); None
            (default): drop for live sources (``item.live``) only. A local image sequence
            is read by :class:`ImageSequenceFrames` and never drops (its files are there
            to read, as a video file's frames are).

    Raises:
        AeposeError: one line naming the file, URL or camera when it cannot be opened.
    """
    if not isinstance(item, SourceItem):
        item = SourceItem(Path(item), "video")
    if item.url is not None and _PRINTF.search(item.url) and not _URL.match(item.url):
        sequence = ImageSequenceFrames(item.url)
        return VideoInfo(SEQUENCE_FPS, *sequence.size, len(sequence.files)), sequence
    capture = _open_capture(item.path) if item.url is None else _open_stream(item.url)
    info = _info_of(capture)
    if item.live if drop is None else drop:
        return info, LatestFrames(capture, item.name)
    if item.url is None:
        return info, VideoFrames(capture, item.path)
    return info, VideoFrames(capture, item.url, "stream")


def _letterbox(frame: npt.NDArray[np.uint8], width: int, height: int
               ) -> npt.NDArray[np.uint8]:
    """``frame`` scaled to fit width x height, aspect ratio kept, centred on black."""
    scale = min(width / frame.shape[1], height / frame.shape[0])
    w = min(width, max(1, round(frame.shape[1] * scale)))
    h = min(height, max(1, round(frame.shape[0] * scale)))
    # Shrinking averages the pixels each output pixel covers (INTER_AREA: no aliasing).
    resized = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA if scale < 1
                         else cv2.INTER_LINEAR)
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    top, left = (height - h) // 2, (width - w) // 2
    canvas[top : top + h, left : left + w] = resized
    return canvas


class VideoWriter:
    """Write RGB frames to an H.264 MP4 file that browsers play, atomically.

    Encoded with libx264 (preset ``veryfast``, 4:2:0 chroma) through PyAV; OpenCV's own writer
    only offers MPEG-4 Part 2 ('mp4v'), which browsers do not play (BENCHMARKS.md, "Video
    writer", compares the candidates). Frames go to a hidden temporary file beside ``path``
    that is renamed to ``path`` when the ``with`` block ends normally; after an exception, or
    when no frame was written, the temporary file is deleted and ``path`` is left as it was.
    ``path`` must end in ``.mp4``. 4:2:0 chroma needs even sizes, so an odd width or height is
    padded by repeating the last column or row.

    Example::

        with VideoWriter("out/overlay.mp4", fps=info.fps, width=info.width,
                         height=info.height) as writer:
            for _, frame in iter_video_frames("clip.mp4"):
                writer.write(frame)
    """

    def __init__(self, path: str | Path, *, fps: float, width: int, height: int) -> None:
        """Args: destination path; frames per second (> 0); frame width and height (pixels)."""
        self.path = Path(path)
        if self.path.suffix.lower() != ".mp4":
            raise AeposeError(f"cannot write video {self.path}: use a .mp4 name")
        if not (math.isfinite(fps) and fps > 0):
            raise AeposeError(f"cannot write video {self.path}: frame rate {fps} is not > 0")
        if width <= 0 or height <= 0:
            raise AeposeError(f"cannot write video {self.path}: frame size {width}x{height}")
        self.fps, self.width, self.height = float(fps), width, height
        self.frames_written = 0
        self._next_pts = 0  # the default place of the next frame
        self._file: AtomicFile | None = None
        self._container: av.container.OutputContainer | None = None
        self._stream: av.VideoStream | None = None

    def __enter__(self) -> VideoWriter:
        # The muxer picks the container from the name, so the temporary name ends in .mp4 too.
        self._file = AtomicFile(self.path, what="video", suffix=".mp4")
        try:
            container = av.open(str(self._file.tmp), "w", format="mp4")
        except (av.FFmpegError, OSError) as err:
            self._file.discard()
            raise AeposeError(f"cannot write video {self.path}: {err}") from None
        try:
            # NTSC-style rates (29.97) become exact fractions (30000/1001).
            rate = Fraction(self.fps).limit_denominator(1001)
            stream = container.add_stream("libx264", rate=rate)
            stream.width, stream.height = self.width + self.width % 2, self.height + self.height % 2
            stream.pix_fmt = "yuv420p"  # 4:4:4 or RGB H.264 does not play in browsers
            stream.options = {"preset": "veryfast"}  # 2.5x faster than medium, same size
        except (av.FFmpegError, ValueError) as err:
            container.close()
            self._file.discard()
            raise AeposeError(f"cannot write video {self.path}: H.264 encoder: {err}") from None
        self._container, self._stream = container, stream
        return self

    def write(self, frame_rgb: npt.NDArray[np.uint8], *, fit: bool = False,
              index: int | None = None) -> None:
        """Append one RGB uint8 frame [height, width, 3].

        ``fit``: an RGB uint8 frame of another size is scaled to fit the video's frame, its
        aspect ratio kept, and centred on black (the images of a sequence may differ in
        size); without it, such a frame raises.
        ``index``: the frame's place in the video, in frames at ``fps`` (default: right
        after the previous one); past a gap the previous frame stays on screen, so frames a
        source lost or dropped keep the overlay in time with it. Must increase.
        """
        if self._container is None or self._stream is None:
            raise AeposeError(f"video {self.path} is not open (use VideoWriter in a with block)")
        pts = self._next_pts if index is None else index
        if pts < self._next_pts:
            raise AeposeError(f"frame index {index} for video {self.path} is not after the "
                              f"previous frame's ({self._next_pts - 1})")
        frame = np.asarray(frame_rgb)
        expected = (self.height, self.width, 3)
        if (fit and frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
                and frame.shape != expected and min(frame.shape[:2]) > 0):
            frame = _letterbox(frame, self.width, self.height)
        if frame.shape != expected or frame.dtype != np.uint8:
            raise AeposeError(
                f"frame {self.frames_written} for video {self.path} is {frame.dtype} "
                f"{list(frame.shape)}, expected uint8 {list(expected)}"
            )
        pad = ((0, self.height % 2), (0, self.width % 2), (0, 0))
        # Ctrl-C waits for the frame: an interrupt between the encoder taking it and the
        # muxer writing the packets it gave back lost a frame from the middle of the video.
        with interrupt_after():
            video_frame = av.VideoFrame.from_ndarray(np.pad(frame, pad, mode="edge"),
                                                     format="rgb24")
            video_frame.pts = pts  # in frames: the stream's time base is 1 / rate
            self._container.mux(self._stream.encode(video_frame))
            self.frames_written += 1
            self._next_pts = pts + 1

    def _close(self) -> None:
        """Flush the encoder (frames it still holds) and close the file."""
        container, stream = self._container, self._stream
        self._container = self._stream = None
        if container is None:
            return
        try:
            if stream is not None and self.frames_written > 0:
                container.mux(stream.encode(None))
        finally:
            container.close()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self._finish(exc_type)
            return
        with interrupt_after():  # Ctrl-C during the flush and rename would lose the file
            self._finish(None)

    def _finish(self, exc_type: type[BaseException] | None) -> None:
        """Close the file and keep it (renamed to ``path``) unless the block failed
        (``exc_type``) or wrote no frame."""
        file, self._file = self._file, None
        if file is None:
            return
        try:
            self._close()
        except (av.FFmpegError, OSError) as err:
            file.discard()
            if exc_type is None:
                raise AeposeError(f"cannot write video {self.path}: {err}") from None
            return
        if exc_type is None and self.frames_written > 0:
            file.commit()
            return
        file.discard()
        if exc_type is None:
            raise AeposeError(f"no frames were written to video {self.path}")
