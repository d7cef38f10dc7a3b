"""Writing videos: :class:`VideoWriter` encodes RGB frames as an H.264 MP4 that browsers play.

Used for prediction overlays and by the synthetic clip generator (:mod:`aepose.synth.video`);
it reads nothing and knows nothing of sources. Encoding goes through PyAV (libx264), not
OpenCV, whose own writer only offers MPEG-4 Part 2.

Legend: H x W frame (pixels). Frames are RGB uint8 [H, W, 3], as everywhere else in aepose.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import cv2
import numpy as np
import numpy.typing as npt

from aepose.errors import AeposeError
from aepose.io import AtomicFile, interrupt_after

__all__ = ["FASTSTART", "VideoWriter"]

FASTSTART = {"movflags": "+faststart"}
"""The MP4 muxer's option that moves the index (the ``moov`` atom) in front of the frames
when the file is closed. Without it the index comes last, and a reader that cannot seek
(an HTTP server that ignores Range requests, e.g. ``python -m http.server``) reaches it only
after every frame: FFmpeg then finds no decodable frame. Costs one rewrite of the file at
close (milliseconds for an overlay)."""


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
    padded by repeating the last column or row. The index comes first in the file
    (:data:`FASTSTART`), so a player or FFmpeg reading it over HTTP without byte ranges can
    start at the first frame.

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
        self._failure: str | None = None  # why a frame could not be written (a full disk)
        self._file: AtomicFile | None = None
        self._container: av.container.OutputContainer | None = None
        self._stream: av.VideoStream | None = None

    def __enter__(self) -> VideoWriter:
        # The muxer picks the container from the name, so the temporary name ends in .mp4 too.
        self._file = AtomicFile(self.path, what="video", suffix=".mp4")
        try:
            container = av.open(str(self._file.tmp), "w", format="mp4",
                                container_options=FASTSTART)
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
        if self._failure is not None:  # the file lacks a frame: none may follow it
            raise AeposeError(self._failure)
        # Ctrl-C waits for the frame: an interrupt between the encoder taking it and the
        # muxer writing the packets it gave back lost a frame from the middle of the video.
        with interrupt_after():
            video_frame = av.VideoFrame.from_ndarray(np.pad(frame, pad, mode="edge"),
                                                     format="rgb24")
            video_frame.pts = pts  # in frames: the stream's time base is 1 / rate
            try:
                self._container.mux(self._stream.encode(video_frame))
            except (av.FFmpegError, OSError) as err:  # a full disk, a file size limit
                assert self._file is not None  # open, as the container is
                self._failure = self._cannot_write(err, self._file.tmp)
                raise AeposeError(self._failure) from None
            self.frames_written += 1
            self._next_pts = pts + 1

    def _cannot_write(self, err: Exception, tmp: Path) -> str:
        """The line for a failed write: the final path and the reason, never the hidden
        temporary file ``tmp``, whose name FFmpeg's and the OS's messages carry."""
        reason = getattr(err, "strerror", None) or str(err)
        return f"cannot write video {self.path}: {reason.replace(str(tmp), str(self.path))}"

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
            self._failure = self._failure or self._cannot_write(err, file.tmp)
        if self._failure is not None:  # a frame or the index is missing: never kept
            file.discard()
            if exc_type is None:
                raise AeposeError(self._failure)
            return
        if exc_type is None and self.frames_written > 0:
            file.commit()
            return
        file.discard()
        if exc_type is None:
            raise AeposeError(f"no frames were written to video {self.path}")
