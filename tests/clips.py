"""Small clips shared by the video test files (imported as a plain module, like helpers.py).

Videos are written with aepose's own VideoWriter (H.264 through PyAV); the codec is lossy, so
frame content is compared through a white square's position.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from aepose.video.writer import VideoWriter

WIDTH, HEIGHT, SQUARE, STEP = 64, 48, 10, 8


def square_frame(index: int) -> npt.NDArray[np.uint8]:
    """Black frame with a white square whose left edge is at x = 4 + STEP * index."""
    frame = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
    left = 4 + STEP * index
    frame[19 : 19 + SQUARE, left : left + SQUARE] = 255
    return frame


def write_squares(path: Path, frames: int = 5) -> None:
    with VideoWriter(path, fps=10.0, width=WIDTH, height=HEIGHT) as writer:
        for i in range(frames):
            writer.write(square_frame(i))
            assert not path.exists()  # only the finished file gets the real name


def grey(width: int, height: int, level: int) -> npt.NDArray[np.uint8]:
    return np.full((height, width, 3), level, np.uint8)
