"""Writing videos (aepose.video.writer): H.264 MP4s, read back with aepose's readers.

The codec is lossy, so frame content is compared through a white square's position.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
import pytest
from clips import HEIGHT, SQUARE, STEP, WIDTH, grey, square_frame, write_squares
from helpers import read_back

from aepose.errors import AeposeError
from aepose.video.capture import VideoInfo, video_info
from aepose.video.readers import iter_video_frames
from aepose.video.writer import VideoWriter


def square_center_x(frame: npt.NDArray[np.uint8]) -> float:
    _, cols = np.nonzero(frame.mean(axis=2) > 128)
    return float(cols.mean())


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

def test_video_writer_fits_frames_of_another_size_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "fit.mp4"
    with VideoWriter(path, fps=5.0, width=WIDTH, height=HEIGHT) as writer:
        writer.write(grey(WIDTH, HEIGHT, 200))
        writer.write(grey(32, 96, 200), fit=True)  # tall: 16 x 48, black left and right
        writer.write(grey(128, 24, 200), fit=True)  # wide: 64 x 12, black above and below
        with pytest.raises(AeposeError, match=r"frame 3 .* is uint8 \[24, 128, 3\]"):
            writer.write(grey(128, 24, 200))  # without fit: refused, as before
    frames = [frame.astype(int) for _, frame in iter_video_frames(path)]
    assert [frame.shape for frame in frames] == [(HEIGHT, WIDTH, 3)] * 3
    tall, wide = frames[1], frames[2]
    assert tall[4:44, 27:37].mean() == pytest.approx(200, abs=8)
    assert tall[:, :20].mean() < 10 and tall[:, 44:].mean() < 10
    assert wide[20:28, 4:60].mean() == pytest.approx(200, abs=8)
    assert wide[:14].mean() < 10 and wide[34:].mean() < 10


def _top_level_boxes(path: Path) -> list[str]:
    """The types of an MP4 file's top-level ISO-BMFF boxes, in file order."""
    data, boxes, offset = path.read_bytes(), [], 0
    while offset + 8 <= len(data):
        size = int.from_bytes(data[offset:offset + 4], "big")
        boxes.append(data[offset + 4:offset + 8].decode("ascii"))
        if size == 1:
            size = int.from_bytes(data[offset + 8:offset + 16], "big")
        assert size >= 8, boxes
        offset += size
    assert offset == len(data)  # the boxes tile the file
    return boxes


def test_index_comes_before_the_frames(tmp_path: Path) -> None:
    """faststart: a reader that cannot seek (HTTP without Range) meets the index first."""
    path = tmp_path / "fast.mp4"
    write_squares(path)
    boxes = _top_level_boxes(path)
    assert boxes[0] == "ftyp" and boxes.count("moov") == boxes.count("mdat") == 1
    assert boxes.index("moov") < boxes.index("mdat")
    assert len(list(iter_video_frames(path))) == 5
