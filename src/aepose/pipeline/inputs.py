"""What the driver (:func:`aepose.pipeline.run.run`) reads: :func:`expand_inputs` turns
files, folders, globs, videos, URLs, image sequences, live streams and arrays into
:class:`Inputs`, one :class:`Input` per image or video, in order."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aepose.pipeline.predictor import ImageInput
from aepose.video.sources import SourceItem, expand_sources

__all__ = ["Input", "Inputs", "Source", "expand_inputs"]

Source = ImageInput | Sequence[ImageInput]


@dataclass(frozen=True)
class Input:
    """One input: an image (a path, or an array whose channels are in ``order``) or a
    video (``video`` set: a file, URL, image sequence or live stream)."""

    name: str
    position: int
    image: ImageInput | None = None
    order: str = "rgb"
    video: SourceItem | None = None


@dataclass(frozen=True)
class Inputs:
    """Expanded inputs in order, and one ``"ARGUMENT: reason"`` line per argument that
    names nothing readable (yielded by :func:`run` as error Predictions)."""

    items: tuple[Input, ...]
    problems: tuple[str, ...] = ()

    def shard(self, rank: int, world_size: int) -> Inputs:
        """Rank ``rank``'s share under torchrun: every world_size-th input; the problems
        are rank 0's to report."""
        return Inputs(self.items[rank::world_size], self.problems if rank == 0 else ())


def expand_inputs(source: Source, *, recursive: bool = False, channel_order: str = "bgr",
                  unique: bool = False) -> Inputs:
    """The inputs of ``source``: an image file, folder (its images and videos, sorted), glob
    pattern, video file or URL, image sequence (``frames/%05d.png``), live stream, a uint8
    array [H, W, 3] in ``channel_order``, or a list of any of these.

    ``unique``: a file named twice is one input (as ``aepose predict`` writes one output per
    file); otherwise every entry gives its inputs, so results line up with a list given.
    """
    entries = [source] if isinstance(source, str | Path | np.ndarray | int) else list(source)
    items: list[Input] = []
    problems: list[str] = []
    arrays = 0

    def add(found: Sequence[SourceItem]) -> None:
        for media in found:  # a video's frames come decoded as RGB; a file is read by path
            video = media if media.kind == "video" else None
            items.append(Input(media.name, len(items), None if video else media.path,
                               video=video))

    if unique and not any(isinstance(e, np.ndarray) for e in entries):
        found = expand_sources([str(e) for e in entries], recursive=recursive)
        add(found.items)
        return Inputs(tuple(items), found.problems)
    for entry in entries:
        if isinstance(entry, np.ndarray):
            items.append(Input(f"<array {arrays}>", len(items), entry, channel_order))
            arrays += 1
            continue
        found = expand_sources([str(entry)], recursive=recursive)
        problems += found.problems
        add(found.items)
    return Inputs(tuple(items), tuple(problems))
