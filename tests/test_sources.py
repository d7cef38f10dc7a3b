"""Expanding prediction inputs and reading/writing videos (aepose.video.sources).

Videos are written with the module's own VideoWriter (H.264 through PyAV) and read back with
OpenCV; the codec is lossy, so frame content is compared through a white square's position.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import av
import cv2
import numpy as np
import numpy.typing as npt
import pytest
from helpers import read_back

from aepose.errors import AeposeError
from aepose.pipeline.draw import save_image
from aepose.video.readers import VideoFrames, VideoInfo, iter_video_frames, open_video, video_info
from aepose.video.sources import SourceItem, Sources, expand_sources
from aepose.video.writer import VideoWriter


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")  # expand_sources looks at names only; decoding comes later
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for name in (
        "b.jpg",
        "clip.MP4",
        "readme.txt",
        "photos/2.png",
        "photos/1.JPEG",
        "photos/10.webp",
        "photos/.hidden.jpg",
        "photos/notes.txt",
        "photos/clip.mp4",
        "photos/sub/3.png",
        "photos/sub/deeper/4.tif",
        "photos/.cache/5.png",
        "empty/readme.md",
    ):
        touch(tmp_path / name)
    return tmp_path


def images(*paths: Path) -> list[SourceItem]:
    return [SourceItem(p, "image") for p in paths]


def test_files_folders_globs_and_problems_expand_in_argument_order(tree: Path) -> None:
    photos = tree / "photos"
    result = expand_sources(
        [
            str(tree / "b.jpg"),
            str(photos),
            str(tree / "readme.txt"),
            str(tree / "missing.jpg"),
            str(tree / "clip.MP4"),
            str(photos / "*.png"),  # 2.png again: a duplicate
            f"{tree}/photos/../b.jpg",  # b.jpg spelled differently: a duplicate
            str(tree / "empty"),
            str(tree / "*.gif"),
        ]
    )
    assert isinstance(result, Sources)
    assert list(result.items) == [  # a folder's videos are taken too (sorted by path)
        *images(tree / "b.jpg", photos / "1.JPEG", photos / "10.webp", photos / "2.png"),
        SourceItem(photos / "clip.mp4", "video"),
        SourceItem(tree / "clip.MP4", "video"),
    ]
    assert result.problems == (
        f"{tree / 'readme.txt'}: unsupported file type '.txt'",
        f"{tree / 'missing.jpg'}: no such file or folder",
        f"{tree / 'empty'}: no images or videos in this folder",
        f"{tree / '*.gif'}: pattern matches no image or video files",
    )


def test_recursive_folder_takes_subfolders_sorted_by_path(tree: Path) -> None:
    photos = tree / "photos"
    result = expand_sources([str(photos)], recursive=True)
    assert list(result.items) == [
        *images(photos / "1.JPEG", photos / "10.webp", photos / "2.png"),
        SourceItem(photos / "clip.mp4", "video"),
        *images(photos / "sub" / "3.png", photos / "sub" / "deeper" / "4.tif"),
    ]
    assert result.problems == ()


def test_recursive_glob_matches_any_depth_and_keeps_videos(tree: Path) -> None:
    pngs = expand_sources([str(tree / "**" / "*.png")])
    assert [item.path for item in pngs.items] == [
        tree / "photos" / "2.png",
        tree / "photos" / "sub" / "3.png",
    ]
    everything = expand_sources([str(tree / "photos" / "*")])
    assert {item.path.name: item.kind for item in everything.items} == {
        "1.JPEG": "image",
        "10.webp": "image",
        "2.png": "image",
        "clip.mp4": "video",
    }  # notes.txt and the sub folder matched but are not media; .hidden.jpg is not matched
    assert everything.problems == ()


def test_relative_paths_keep_their_spelling(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tree)
    result = expand_sources(["b.jpg", "photos/../b.jpg", "photos/2.png"])
    assert [item.path for item in result.items] == [Path("b.jpg"), Path("photos/2.png")]


def test_empty_folder_message_mentions_subfolders_when_recursive(tree: Path) -> None:
    result = expand_sources([str(tree / "empty")], recursive=True)
    assert result.items == ()
    assert result.problems == (
        f"{tree / 'empty'}: no images or videos in this folder or its subfolders",)


# --- video -----------------------------------------------------------------------------------

WIDTH, HEIGHT, SQUARE, STEP = 64, 48, 10, 8


def square_frame(index: int) -> npt.NDArray[np.uint8]:
    """Black frame with a white square whose left edge is at x = 4 + STEP * index."""
    frame = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
    left = 4 + STEP * index
    frame[19 : 19 + SQUARE, left : left + SQUARE] = 255
    return frame


def square_center_x(frame: npt.NDArray[np.uint8]) -> float:
    _, cols = np.nonzero(frame.mean(axis=2) > 128)
    return float(cols.mean())


def write_squares(path: Path, frames: int = 5) -> None:
    with VideoWriter(path, fps=10.0, width=WIDTH, height=HEIGHT) as writer:
        for i in range(frames):
            writer.write(square_frame(i))
            assert not path.exists()  # only the finished file gets the real name


def test_video_round_trip_keeps_count_size_and_motion(tmp_path: Path) -> None:
    path = tmp_path / "out" / "squares.mp4"
    write_squares(path)
    assert [p.name for p in path.parent.iterdir()] == ["squares.mp4"]  # temp file renamed
    assert video_info(path) == VideoInfo(fps=10.0, width=WIDTH, height=HEIGHT, frames=5)

    frames = list(iter_video_frames(path))
    assert [i for i, _ in frames] == [0, 1, 2, 3, 4]
    for i, frame in frames:
        assert frame.shape == (HEIGHT, WIDTH, 3) and frame.dtype == np.uint8
        expected_x = 4 + STEP * i + (SQUARE - 1) / 2
        assert square_center_x(frame) == pytest.approx(expected_x, abs=1.0)
        assert np.abs(frame.astype(int) - square_frame(i)).mean() < 10  # lossy, yet close


def test_video_is_h264_that_browsers_play_and_opencv_reads(tmp_path: Path) -> None:
    path = tmp_path / "h264.mp4"
    write_squares(path, frames=7)
    fourcc, shapes = read_back(path)
    assert fourcc.lower() in {"avc1", "h264"}
    assert shapes == [(HEIGHT, WIDTH, 3)] * 7
    # What a browser needs: H.264 in MP4 with 4:2:0 chroma (4:4:4 or RGB H.264 does not play).
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert container.format.name.split(",")[0] == "mov"
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert (stream.codec_context.width, stream.codec_context.height) == (WIDTH, HEIGHT)


def test_video_colours_stay_in_rgb_order(tmp_path: Path) -> None:
    path = tmp_path / "red.mp4"
    red = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
    red[..., 0] = 220
    with VideoWriter(path, fps=5.0, width=WIDTH, height=HEIGHT) as writer:
        writer.write(red)
    (_, frame), *_ = iter_video_frames(path)
    np.testing.assert_allclose(frame[HEIGHT // 2, WIDTH // 2], (220, 0, 0), atol=20)


def test_odd_frame_size_is_padded_to_even(tmp_path: Path) -> None:
    path = tmp_path / "odd.mp4"
    frame = np.full((49, 65, 3), 60, dtype=np.uint8)
    frame[:, -1] = 250  # the last column must survive (mp4v would otherwise crop it)
    with VideoWriter(path, fps=5.0, width=65, height=49) as writer:
        writer.write(frame)
    (_, back), *_ = iter_video_frames(path)
    assert back.shape == (50, 66, 3)
    assert back[10:40, 64].mean() > 200 and back[10:40, 65].mean() > 200
    assert back[10:40, 10:50].mean() == pytest.approx(60, abs=6)


def test_frames_written_at_their_index_keep_their_time(tmp_path: Path) -> None:
    path = tmp_path / "gaps.mp4"
    with VideoWriter(path, fps=25.0, width=32, height=32) as writer:
        for index in (0, 1, 2, 5, 6, 9):  # frames 3, 4, 7 and 8 were lost
            writer.write(np.full((32, 32, 3), 20 * index, np.uint8), index=index)
        with pytest.raises(AeposeError, match=r"frame index 9 .* not after the previous"):
            writer.write(np.zeros((32, 32, 3), np.uint8), index=9)
    with av.open(str(path)) as container:
        times = [round(frame.time * 25) for frame in container.decode(video=0)]
    assert times == [0, 1, 2, 5, 6, 9]


def test_wrong_frame_size_raises_and_leaves_no_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.mp4"
    with (
        pytest.raises(AeposeError, match=r"frame 1 for video .*bad\.mp4 is uint8 \[48, 60, 3\]"),
        VideoWriter(path, fps=10.0, width=WIDTH, height=HEIGHT) as writer,
    ):
        writer.write(square_frame(0))
        writer.write(np.zeros((HEIGHT, 60, 3), dtype=np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_video_writer_refuses_nothing_to_write_and_bad_settings(tmp_path: Path) -> None:
    path = tmp_path / "empty.mp4"
    with (
        pytest.raises(AeposeError, match="no frames were written"),
        VideoWriter(path, fps=10.0, width=WIDTH, height=HEIGHT),
    ):
        pass
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(AeposeError, match=r"use a \.mp4 name"):
        VideoWriter(tmp_path / "x.avi", fps=10.0, width=WIDTH, height=HEIGHT)
    with pytest.raises(AeposeError, match=r"frame rate 0\.0 is not > 0"):
        VideoWriter(path, fps=0.0, width=WIDTH, height=HEIGHT)
    with pytest.raises(AeposeError, match="not open"):
        VideoWriter(path, fps=10.0, width=WIDTH, height=HEIGHT).write(square_frame(0))


def test_existing_file_survives_a_failed_write(tmp_path: Path) -> None:
    path = tmp_path / "keep.mp4"
    write_squares(path, frames=2)
    before = path.read_bytes()
    with (
        pytest.raises(AeposeError),
        VideoWriter(path, fps=10.0, width=WIDTH, height=HEIGHT) as writer,
    ):
        writer.write(square_frame(0))
        writer.write(np.zeros((1, 1, 3), dtype=np.uint8))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.mp4"]


def test_corrupt_truncated_and_missing_videos_raise_naming_the_file(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(0).bytes(4096))
    good = tmp_path / "good.mp4"
    write_squares(good)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    for path in (corrupt, truncated):
        with pytest.raises(AeposeError, match=f"video file {path} cannot be opened"):
            iter_video_frames(path)  # raises on the call, before any next()
        with pytest.raises(AeposeError, match=f"video file {path} cannot be opened"):
            video_info(path)
    with pytest.raises(AeposeError, match=r"video file .*missing\.mp4 not found"):
        iter_video_frames(tmp_path / "missing.mp4")


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


def test_looping_and_broken_links_are_reported(tmp_path: Path) -> None:
    folder = tmp_path / "d" / "a"
    touch(folder / "x.png")
    (folder / "up").symlink_to("..")
    (folder / "self.png").symlink_to("self.png")
    (tmp_path / "loop").symlink_to("loop")
    found = expand_sources([str(folder), str(tmp_path / "loop")], recursive=True)
    assert [item.path.name for item in found.items] == ["x.png"]
    assert found.problems == (
        f"{folder / 'self.png'}: broken or looping symbolic link, skipped",
        f"{folder / 'up' / 'a'}: symbolic link loop (a folder already scanned), skipped",
        f"{tmp_path / 'loop'}: broken or looping symbolic link",
    )


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


def _grey(width: int, height: int, level: int) -> npt.NDArray[np.uint8]:
    return np.full((height, width, 3), level, np.uint8)


def test_image_sequence_frames_keep_their_own_sizes(tmp_path: Path) -> None:
    # FFmpeg's image2 reader scaled every image to the first one's size, so poses in the
    # others came out in the wrong coordinates.
    folder = tmp_path / "seq"
    sizes = [(64, 48), (30, 90), (64, 48), (100, 20)]
    for number, (width, height) in enumerate(sizes, start=1):  # numbered from 1: allowed
        save_image(folder / f"{number:04d}.png", _grey(width, height, 40 * number))
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
        save_image(folder / f"{number}.png", _grey(8, 6, 10 * number))
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
    save_image(padded / "00001.png", _grey(8, 6, 0))
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


def test_video_writer_fits_frames_of_another_size_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "fit.mp4"
    with VideoWriter(path, fps=5.0, width=WIDTH, height=HEIGHT) as writer:
        writer.write(_grey(WIDTH, HEIGHT, 200))
        writer.write(_grey(32, 96, 200), fit=True)  # tall: 16 x 48, black left and right
        writer.write(_grey(128, 24, 200), fit=True)  # wide: 64 x 12, black above and below
        with pytest.raises(AeposeError, match=r"frame 3 .* is uint8 \[24, 128, 3\]"):
            writer.write(_grey(128, 24, 200))  # without fit: refused, as before
    frames = [frame.astype(int) for _, frame in iter_video_frames(path)]
    assert [frame.shape for frame in frames] == [(HEIGHT, WIDTH, 3)] * 3
    tall, wide = frames[1], frames[2]
    assert tall[4:44, 27:37].mean() == pytest.approx(200, abs=8)
    assert tall[:, :20].mean() < 10 and tall[:, 44:].mean() < 10
    assert wide[20:28, 4:60].mean() == pytest.approx(200, abs=8)
    assert wide[:14].mean() < 10 and wide[34:].mean() < 10
