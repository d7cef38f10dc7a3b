"""``aepose synth``: a generated crowd dataset (images + COCO-format JSON) or clips of people
walking (H.264 + PoseTrack-like truth), offline and deterministic by seed, with a summary;
annotated with a dataset's keypoints or a custom set (``--keypoints``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aepose.keypoints import CUSTOM
from aepose.synth import (
    PointSet,
    generate_dataset,
    parse_points,
    parse_size,
    split_counts,
    write_sequences,
)

__all__ = ["SynthOptions", "run_synth"]

DATASET_IMAGES = 200  # images in a dataset when not given (a fifth go to val)


@dataclass(frozen=True)
class SynthOptions:
    """What ``aepose synth`` writes into ``out_dir`` (the dataset's own layout).

    spec: keypoint definition and folder layout; keypoints: a custom keypoint set instead
    (:func:`~aepose.synth.parse_points`: e.g. ``coco+hands+toes``), written in COCO's format
    as ``train.json``, ``train/``, ``val.json``, ``val/``; seed: same seed, same bytes;
    overwrite: replace an existing dataset. A dataset: ``images`` in total (default 200, a fifth, at
    least 1, to val), sides ``size`` (``N`` or ``MIN..MAX``). With ``video``: ``images``
    clips (default 1) of ``frames`` frames, ``people`` distinct people each (None: drawn
    from 1..12), ``frame_size`` (width, height) at ``fps``.
    """

    out_dir: Path
    spec: str = "crowdpose"
    keypoints: str | None = None
    images: int | None = None
    seed: int = 0
    size: str = "256..640"
    overwrite: bool = False
    video: bool = False
    frames: int = 100
    people: int | None = None
    frame_size: tuple[int, int] = (640, 480)
    fps: float = 25.0


def run_synth(options: SynthOptions) -> None:
    """Write the dataset or the clips and print one line per split or clip."""
    points: PointSet | str = (
        parse_points(options.keypoints) if options.keypoints is not None else options.spec
    )
    if options.video:
        clips = write_sequences(
            options.out_dir, points, clips=1 if options.images is None else options.images,
            frames=options.frames, people=options.people, size=options.frame_size,
            seed=options.seed, fps=options.fps, overwrite=options.overwrite,
        )
        for clip in clips:
            print(f"{clip.video}  {clip.frames} frames  {clip.people} people  "
                  f"seed {clip.seed}  truth {clip.truth.name}")
        return
    train, val = split_counts(DATASET_IMAGES if options.images is None else options.images)
    summary = generate_dataset(
        options.out_dir, points, train_images=train, val_images=val, seed=options.seed,
        size=parse_size(options.size), overwrite=options.overwrite,
    )
    for split in summary.splits:
        easy, medium, hard = split.crowd_buckets()
        print(f"{split.name:5} {split.images:6} images {split.people:7} people  "
              f"crowdIndex easy/medium/hard {easy}/{medium}/{hard}  -> {split.annotation_file}")
    if summary.spec == CUSTOM:
        # A skeleton of its own: no preset's layout, so the files are named one by one.
        fit, held_out = summary.splits
        print(f"use it as --ann {fit.annotation_file} --images {fit.image_dir}"
              + (f" --val-ann {held_out.annotation_file} --val-images {held_out.image_dir}"
                 if held_out.images else ""))
    else:
        print(f"use it as --data-root {summary.root}")
