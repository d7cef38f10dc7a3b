"""Expanding prediction inputs and reading/writing videos (aepose.sources).

Videos are written with the module's own VideoWriter (H.264 through PyAV) and read back with
OpenCV; the codec is lossy, so frame content is compared through a white square's position.
"""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import numpy.typing as npt
import pytest
from helpers import read_back

from aepose.errors import AeposeError
from aepose.sources import (
    SourceItem,
    Sources,
    VideoInfo,
    VideoWriter,
    expand_sources,
    iter_video_frames,
    video_info,
)


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
    stream ends; it claims ``frames`` frames."""

    def __init__(self, script: list[bool], frames: int) -> None:
        self.script, self.frames, self.released = list(script), frames, False

    def get(self, prop: int) -> float:
        return float(self.frames) if prop == cv2.CAP_PROP_FRAME_COUNT else 0.0

    def read(self) -> tuple[bool, npt.NDArray[np.uint8] | None]:
        ok = self.script.pop(0) if self.script else False
        return ok, np.zeros((2, 2, 3), np.uint8) if ok else None

    def release(self) -> None:
        self.released = True


def test_frames_past_damage_are_read_and_the_loss_reported_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from aepose.sources import MAX_BAD_FRAMES, VideoFrames

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
