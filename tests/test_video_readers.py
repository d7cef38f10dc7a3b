"""Reading frames (aepose.video.readers): damaged and cut videos, timestamps, the one
problem line, native log lines, image sequences."""

from __future__ import annotations

import functools
import http.server
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import numpy.typing as npt
import pytest
from clips import HEIGHT, WIDTH, grey, write_squares

from aepose.errors import AeposeError
from aepose.pipeline.draw import save_image
from aepose.video.capture import VideoInfo, video_info
from aepose.video.readers import VideoFrames, iter_video_frames, open_video
from aepose.video.sources import expand_sources
from aepose.video.writer import VideoWriter


def test_corrupt_truncated_and_missing_videos_raise_naming_the_file(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(0).bytes(4096))
    good = tmp_path / "good.mp4"
    write_squares(good)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.mp4"  # cut inside the index, which comes first
    truncated.write_bytes(data[: data.find(b"moov") + 100])
    for path in (corrupt, truncated):
        with pytest.raises(AeposeError, match=f"video file {path} cannot be opened"):
            iter_video_frames(path)  # raises on the call, before any next()
        with pytest.raises(AeposeError, match=f"video file {path} cannot be opened"):
            video_info(path)
    with pytest.raises(AeposeError, match=r"video file .*missing\.mp4 not found"):
        iter_video_frames(tmp_path / "missing.mp4")
    # Cut inside the frames: the whole index opens, and the loss is named when reading.
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 3 // 4])
    frames = iter_video_frames(cut)
    try:
        read = [index for index, _ in frames]
    except AeposeError as error:
        assert str(error) == f"video file {cut} has no decodable frames"
    else:
        assert len(read) < 5 and frames.problem is not None and str(cut) in frames.problem


def test_video_without_decodable_frames_raises_when_iterated(tmp_path: Path) -> None:
    path = tmp_path / "blank.mp4"
    write_squares(path)
    data = bytearray(path.read_bytes())
    # Zero the media payload ("mdat" box) but keep the index, so the file opens yet no
    # frame decodes.
    at = data.find(b"mdat")
    size = int.from_bytes(data[at - 4 : at], "big")
    data[at + 4 : at - 4 + size] = bytes(size - 8)
    path.write_bytes(bytes(data))
    frames = iter_video_frames(path)
    with pytest.raises(AeposeError, match=f"video file {path} has no decodable frames"):
        next(frames)


class _ScriptedCapture:
    """A stand-in for cv2.VideoCapture: reads succeed where ``script`` is True, then the
    stream ends; it claims ``frames`` frames. ``fps`` and ``times`` (ms, one per successful
    read) are what OpenCV's FFmpeg backend reports as CAP_PROP_FPS and, after each read, as
    CAP_PROP_POS_MSEC (0 after a failed one); by default 0, as from a backend that does
    not know."""

    def __init__(self, script: list[bool], frames: int, fps: float = 0.0,
                 times: Sequence[float] = ()) -> None:
        self.script, self.frames, self.released = list(script), frames, False
        self.fps, self.times, self.msec = fps, list(times), 0.0

    def get(self, prop: int) -> float:
        return {cv2.CAP_PROP_FRAME_COUNT: float(self.frames), cv2.CAP_PROP_FPS: self.fps,
                cv2.CAP_PROP_POS_MSEC: self.msec}.get(prop, 0.0)

    def read(self) -> tuple[bool, npt.NDArray[np.uint8] | None]:
        ok = self.script.pop(0) if self.script else False
        self.msec = self.times.pop(0) if ok and self.times else 0.0
        return ok, np.zeros((2, 2, 3), np.uint8) if ok else None

    def release(self) -> None:
        self.released = True


def test_frames_past_damage_are_read_and_the_loss_reported_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from aepose.video.readers import MAX_BAD_FRAMES, VideoFrames

    capture = _ScriptedCapture([True, True, False, False, True, True], frames=6)
    frames = VideoFrames(capture, tmp_path / "damaged.mp4")  # type: ignore[arg-type]
    with caplog.at_level("WARNING", logger="aepose"):
        assert [i for i, _ in frames] == [0, 1, 4, 5]  # positions in the stream
    assert capture.released and frames.unreadable == 2
    assert frames.problem == (f"video file {tmp_path / 'damaged.mp4'}: 2 unreadable frame(s) "
                              "skipped; 4 frames read")
    assert caplog.messages == [frames.problem]

    # A video that breaks off for good: MAX_BAD_FRAMES failures in a row end it.
    capture = _ScriptedCapture([True] * 3 + [False] * MAX_BAD_FRAMES + [True] * 5, frames=33)
    frames = VideoFrames(capture, tmp_path / "cut.mp4")  # type: ignore[arg-type]
    assert len(list(frames)) == 3 and capture.script == [True] * 5
    assert frames.problem is not None and "unreadable after frame 2 (the container says 33 " \
        "frames); 3 frames read" in frames.problem

    clean = VideoFrames(_ScriptedCapture([True] * 4, frames=4),  # type: ignore[arg-type]
                        tmp_path / "fine.mp4")
    assert len(list(clean)) == 4 and clean.problem is None and clean.unreadable == 0


def _indices(capture: _ScriptedCapture, path: Path) -> tuple[list[int], VideoFrames]:
    frames = VideoFrames(capture, path)  # type: ignore[arg-type]
    return [i for i, _ in frames], frames


def test_frame_indices_come_from_timestamps_not_from_counting_reads(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "v.mp4"
    # FFmpeg's decoder often consumes no frame on a failed read (it waited for more data):
    # the frame after it is the next one, not one further.
    with caplog.at_level("WARNING", logger="aepose"):
        indices, frames = _indices(_ScriptedCapture([True, True, False, True, True], frames=4,
                                                    fps=10.0, times=[0, 100, 200, 300]), path)
    assert indices == [0, 1, 2, 3]
    assert frames.unreadable == 0 and frames.problem is None and caplog.messages == []

    # A frame the decoder dropped without any failed read leaves its gap and is counted;
    # so are frames lost before the first readable one.
    indices, frames = _indices(_ScriptedCapture([True] * 4, frames=5, fps=10.0,
                                                times=[0, 100, 300, 400]), path)
    assert indices == [0, 1, 3, 4] and frames.unreadable == 1
    assert frames.problem == f"video file {path}: 1 unreadable frame(s) skipped; 4 frames read"
    indices, frames = _indices(_ScriptedCapture([True] * 2, frames=4, fps=10.0,
                                                times=[200, 300]), path)
    assert indices == [2, 3] and frames.unreadable == 2

    # NTSC rates: 29.97 fps timestamps are whole frames too.
    ntsc = 30000 / 1001
    indices, _ = _indices(_ScriptedCapture([True] * 4, frames=5, fps=ntsc, times=[
        n * 1000 / ntsc for n in (0, 1, 2, 4)]), path)
    assert indices == [0, 1, 2, 4]

    # Timestamps that cannot say (between two frames of the rate: a variable rate; not
    # after the previous frame; missing) make the rest of the video counted, as before:
    # a failed read as one frame.
    for times in ([0, 100, 250, 300], [0, 100, 100, 200], [0, 100]):
        indices, frames = _indices(_ScriptedCapture([True, True, False, True, True],
                                                    frames=5, fps=10.0, times=times), path)
        assert indices == [0, 1, 3, 4], times
        assert frames.unreadable == 1


# --- damaged video files, each frame identified by its pixels ----------------------------

NUMBERED = 20


def numbered_frame(number: int) -> npt.NDArray[np.uint8]:
    """A frame whose number is the grey level of a big central block (20 + 10 * number),
    on noise that differs every frame (so every frame takes bytes: a cut file ends between
    frames, not inside the first one)."""
    frame = np.random.default_rng(number).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    frame[8:40, 16:48] = 20 + 10 * number
    return frame


def frame_number(frame: npt.NDArray[np.uint8]) -> int:
    """The number of a decoded numbered_frame (the block's centre, away from its edges)."""
    level = float(frame[12:36, 20:44].mean())
    assert abs((level - 20) / 10 - round((level - 20) / 10)) < 0.3, level  # not a blend
    return round((level - 20) / 10)


def faststart_copy(source: Path, target: Path) -> None:
    """``source`` remuxed with its index (moov) first, as streamed MP4s are, so a copy cut
    short still opens."""
    with av.open(str(source)) as src, av.open(str(target), "w", format="mp4",
                                              options={"movflags": "faststart"}) as out:
        stream = out.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:  # the demuxer's empty end-of-stream packet
                packet.stream = stream
                out.mux(packet)


def cut_clip(folder: Path) -> Path:
    """A numbered H.264 clip (VideoWriter's: the decoder holds frames back) cut in half."""
    clip, fast, cut = folder / "clip.mp4", folder / "fast.mp4", folder / "cut.mp4"
    with VideoWriter(clip, fps=10.0, width=WIDTH, height=HEIGHT) as writer:
        for number in range(NUMBERED):
            writer.write(numbered_frame(number))
    faststart_copy(clip, fast)
    data = fast.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    return cut


def test_frames_after_a_failed_read_keep_their_true_indices(tmp_path: Path) -> None:
    # Where the data stops, a read fails but consumes no frame: the decoder still holds
    # frames, which come out on the next reads. Counted as a lost frame, it shifted them
    # (frames 7 and 8 reported as 8 and 9, and "1 unreadable frame(s) skipped").
    cut = cut_clip(tmp_path)
    frames = iter_video_frames(cut)
    decoded = [(index, frame_number(frame)) for index, frame in frames]
    assert len(decoded) >= 5
    assert [index for index, _ in decoded] == [number for _, number in decoded]
    assert [index for index, _ in decoded] == list(range(len(decoded)))  # only the end lost
    assert frames.unreadable == 0
    assert frames.problem == (f"video file {cut}: unreadable after frame {len(decoded) - 1} "
                              f"(the container says {NUMBERED} frames); {len(decoded)} "
                              "frames read")


def test_a_damaged_frame_inside_a_video_leaves_its_gap(tmp_path: Path) -> None:
    # Intra-only, so the damaged frame is the only one lost (no other refers to it).
    clip = tmp_path / "intra.mp4"
    with av.open(str(clip), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.codec_context.gop_size = 1
        for number in range(NUMBERED):
            frame = av.VideoFrame.from_ndarray(numbered_frame(number), format="rgb24")
            frame.pts = number
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with av.open(str(clip)) as container:
        packets = sorted((p.pts, p.pos, p.size)
                         for p in container.demux(container.streams.video[0])
                         if p.size and p.pts is not None and p.pos is not None)
    _, pos, size = packets[8]  # in presentation order: frame 8
    data = bytearray(clip.read_bytes())
    data[pos : pos + 4] = (size * 50).to_bytes(4, "big")  # frame 8's NAL length: impossible
    clip.write_bytes(bytes(data))

    frames = iter_video_frames(clip)
    decoded = [(index, frame_number(frame)) for index, frame in frames]
    assert [index for index, _ in decoded] == [n for n in range(NUMBERED) if n != 8]
    assert [index for index, _ in decoded] == [number for _, number in decoded]
    assert frames.unreadable == 1
    assert frames.problem == f"video file {clip}: 1 unreadable frame(s) skipped; 19 frames read"


# --- native log lines ------------------------------------------------------------------

_READ_ALL = """
import sys
from aepose.errors import AeposeError
from aepose.video.readers import iter_video_frames
for path in sys.argv[1:]:
    try:
        for _ in iter_video_frames(path):
            pass
    except AeposeError as error:
        print(error, file=sys.stderr)
"""


def _read_in_subprocess(env: dict[str, str], *paths: Path) -> subprocess.CompletedProcess[str]:
    # A subprocess: FFmpeg and OpenCV write to the C-level stderr, which pytest cannot see.
    return subprocess.run([sys.executable, "-c", _READ_ALL, *map(str, paths)],
                          capture_output=True, text=True, env=env, timeout=120, check=True)


def test_ffmpeg_and_opencv_print_nothing_of_their_own(tmp_path: Path) -> None:
    zero = tmp_path / "zero.mp4"
    zero.write_bytes(b"")
    cut = cut_clip(tmp_path)
    env = {k: v for k, v in os.environ.items()
           if k not in {"OPENCV_FFMPEG_LOGLEVEL", "OPENCV_LOG_LEVEL"}}
    run = _read_in_subprocess(env, zero, cut)
    lines = run.stderr.splitlines()
    # Only aepose's lines: the error for the empty file, the warning about the cut one
    # (Python's last-resort handler prints it, no logging being set up).
    assert len(lines) == 2, run.stderr
    assert lines[0] == f"video file {zero} cannot be opened (not a video, or corrupt)"
    assert lines[1].startswith(f"video file {cut}: unreadable after frame ")
    assert run.stdout == ""

    # A level the user set wins: OpenCV's warnings come back, and FFmpeg's messages (which
    # OpenCV then prints itself, to stdout).
    run = _read_in_subprocess(env | {"OPENCV_LOG_LEVEL": "WARNING",
                                     "OPENCV_FFMPEG_LOGLEVEL": "16"}, zero)
    assert "[ WARN" in run.stderr and "moov atom not found" in run.stdout


# --- image sequences ---------------------------------------------------------------------


def test_image_sequence_frames_keep_their_own_sizes(tmp_path: Path) -> None:
    # FFmpeg's image2 reader scaled every image to the first one's size, so poses in the
    # others came out in the wrong coordinates.
    folder = tmp_path / "seq"
    sizes = [(64, 48), (30, 90), (64, 48), (100, 20)]
    for number, (width, height) in enumerate(sizes, start=1):  # numbered from 1: allowed
        save_image(folder / f"{number:04d}.png", grey(width, height, 40 * number))
    pattern = str(folder / "%04d.png")
    (item,) = expand_sources([pattern]).items
    info, reader = open_video(item)
    assert info == VideoInfo(fps=25.0, width=64, height=48, frames=4)  # the first image's
    frames = [(index, frame.shape, int(frame[0, 0, 0])) for index, frame in reader]
    assert frames == [(index, (height, width, 3), 40 * (index + 1))
                      for index, (width, height) in enumerate(sizes)]
    assert reader.dropped == 0 and reader.problem is None


def test_image_sequence_problems_are_one_line_each(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "seq"
    for number in (0, 1, 2, 4, 5):  # 3 missing: FFmpeg's sequence ends at 2
        save_image(folder / f"{number}.png", grey(8, 6, 10 * number))
    (folder / "1.png").write_bytes(b"not an image")
    pattern = str(folder / "%d.png")
    info, reader = open_video(expand_sources([pattern]).items[0])
    assert info.frames == 3
    with caplog.at_level("WARNING", logger="aepose"):
        assert [(i, int(f[0, 0, 0])) for i, f in reader] == [(0, 0), (2, 20)]  # 1's gap
    assert reader.problem == (
        f"image sequence {pattern}: 1 unreadable image(s) skipped (first: image file "
        f"{folder / '1.png'} cannot be decoded (not an image, or corrupt)); 2 numbered "
        f"file(s) after the missing {folder / '3.png'} not read; 2 frames read")
    assert caplog.messages == [reader.problem]

    # Zero-padded names that the pattern does not spell: the files tried, and one there is.
    padded = tmp_path / "padded"
    save_image(padded / "00001.png", grey(8, 6, 0))
    with pytest.raises(AeposeError) as error:
        open_video(expand_sources([str(padded / "%d.png")]).items[0])
    assert str(error.value) == (
        f"image sequence {padded / '%d.png'}: no file {padded / '0.png'} to "
        f"{padded / '4.png'} (the first number must be 0 to 4, spelled as the pattern says; "
        f"there is {padded / '00001.png'})")

    # No readable image at all: refused when opened. "%%" is a literal "%", as for FFmpeg.
    (padded / "%00000.png").write_bytes(b"")
    with pytest.raises(AeposeError, match=r"has no decodable images: image file .*%00000\.png "
                       "is empty"):
        open_video(expand_sources([str(padded / "%%%05d.png")]).items[0])
    assert expand_sources([str(padded / "%d_%d.png")]).problems == (
        f"{padded / '%d_%d.png'}: more than one frame-number field (%d) in the "
        "image-sequence pattern",)


# ---------------------------------------------------------------------------------------
# MP4s over plain HTTP (a server that ignores Range requests)


class _NoRangeHandler(http.server.SimpleHTTPRequestHandler):
    """``python -m http.server``'s handler: answers every request with the whole file."""

    def log_message(self, *args: object) -> None:  # quiet
        pass


@pytest.fixture
def plain_server(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """(folder, its URL) on 127.0.0.1, served without Range support; stops itself."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(_NoRangeHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _noise_frames(count: int) -> list[npt.NDArray[np.uint8]]:
    """Frames of random noise: they barely compress, so the clip outgrows FFmpeg's read
    buffer (32 KiB), which would otherwise hide the missing seek."""
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (120, 160, 3), dtype=np.uint8) for _ in range(count)]


def _read_url(url: str) -> list[int]:
    _, reader = open_video(expand_sources([url]).items[0])
    return [index for index, _ in reader]


def test_clips_aepose_writes_are_read_over_http_without_range(
    plain_server: tuple[Path, str]
) -> None:
    folder, url = plain_server
    with VideoWriter(folder / "noise.mp4", fps=25, width=160, height=120) as writer:
        for frame in _noise_frames(10):
            writer.write(frame)
    assert (folder / "noise.mp4").stat().st_size > 64 * 1024
    assert _read_url(f"{url}/noise.mp4") == list(range(10))


def test_index_at_the_end_over_http_without_range_is_named_in_one_line(
    plain_server: tuple[Path, str]
) -> None:
    folder, url = plain_server
    # Written as most encoders do by default: the index (moov) after the frames (mdat).
    with av.open(str(folder / "late.mp4"), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        for frame in _noise_frames(10):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    data = (folder / "late.mp4").read_bytes()
    assert data.find(b"mdat") < data.find(b"moov")
    with pytest.raises(AeposeError) as error:
        _read_url(f"{url}/late.mp4")
    assert str(error.value) == (
        f"stream {url}/late.mp4: the server ignores HTTP Range requests and this MP4 has its "
        "index (moov atom) after the frames, so the frames cannot be reached; serve it from a "
        "server that supports Range requests, or move the index to the front (ffmpeg -i "
        "IN.mp4 -c copy -movflags +faststart OUT.mp4)")
    # Not every unreadable remote file is blamed on the server: garbage keeps its own line.
    (folder / "junk.mp4").write_bytes(np.random.default_rng(1).bytes(200_000))
    with pytest.raises(AeposeError, match=r"junk\.mp4 (cannot be opened|has no decodable)"):
        _read_url(f"{url}/junk.mp4")


# --- variable frame rate ------------------------------------------------------------------


def vfr_clip(path: Path, frames: int) -> None:
    """An MKV of numbered frames shown for 80 ms, then two for 33 ms, and so on: a variable
    rate (30 fps nominal), whose container states a duration, not a frame count."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.codec_context.time_base = stream.time_base = Fraction(1, 1000)
        msec = 0
        for number in range(frames):
            frame = av.VideoFrame.from_ndarray(numbered_frame(number), format="rgb24")
            frame.pts, frame.time_base = msec, Fraction(1, 1000)
            msec += 80 if number % 3 == 0 else 33
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def test_a_complete_variable_rate_video_reports_nothing_and_a_cut_one_its_time(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The container's "frame count" is its duration times 30 fps (29 for these 20 frames):
    # the whole video was once reported "unreadable after frame 19".
    clip = tmp_path / "vfr.mkv"
    vfr_clip(clip, NUMBERED)
    frames = iter_video_frames(clip)
    with caplog.at_level("WARNING", logger="aepose"):
        decoded = [(index, frame_number(frame)) for index, frame in frames]
    assert decoded == [(n, n) for n in range(NUMBERED)]
    assert frames.expected > NUMBERED + 2  # the premise: the "count" is not one
    assert frames.problem is None and caplog.messages == []

    cut = tmp_path / "cut.mkv"
    data = clip.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    frames = iter_video_frames(cut)
    read = len(list(frames))
    assert 0 < read < NUMBERED
    duration = frames.expected / 30.0
    assert frames.problem is not None and re.fullmatch(
        rf"video file {re.escape(str(cut))}: unreadable after frame {read - 1} at "
        rf"\d+\.\d\d s \(the container says {duration:.2f} s\); {read} frames read",
        frames.problem), frames.problem
