"""Video sequences: generated people walking across a fixed camera, with known identities.

Each person walks along a horizontal line at their own depth (far people smaller and higher
in the image), limbs swinging with the distance walked, entering the frame on one side and
leaving on the other; people at different depths cross and hide each other. The ground truth
is PoseTrack-like (:func:`sequence_truth`): per frame, the people in view with a ``track_id``
that a person keeps from the frame they come into view to the frame they leave, and never
reuses. :func:`write_sequence` also renders the frames with the still images' renderer (same
figures, colours and backgrounds) and writes an H.264 MP4.

Keypoints are COCO triples (x, y, v) in the spec's order: v = 2 visible, v = 1 hidden by a
nearer person, v = 0 stored as (0, 0, 0) for a point outside the image or not labelled (the
face points of a person seen from the back). A person is listed from the first to the last
frame in which any of their keypoints has v > 0, with ``bbox`` [x, y, w, h] the whole drawn
figure clipped to the image (parts hidden by nearer people included).

Determinism: the people are drawn from ``SeedSequence(seed, spawn_key=(0,))`` and the
background from ``spawn_key=(1,)``, so the truth does not depend on whether frames are
rendered, and the same arguments give the same truth and the same video bytes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from aepose.choices import CLIP_MAX_FRAMES, FRAME_SIDES
from aepose.errors import AeposeError
from aepose.io import write_text
from aepose.keypoints import KeypointSpec
from aepose.synth.annotate import flat_keypoints, keypoints_for
from aepose.synth.figure import Figure, FigureStyle, JointAngles, build_figure
from aepose.synth.render import Scene, figure_bbox, figure_extent, label_map, render_scene
from aepose.synth.scene import SceneParams, sample_background, sample_style
from aepose.synth.skeleton import PointSet, point_set
from aepose.video.writer import VideoWriter

__all__ = [
    "MAX_FRAMES",
    "MAX_PEOPLE",
    "ClipSummary",
    "draw_people_count",
    "sequence_truth",
    "write_sequence",
    "write_sequences",
]

MAX_PEOPLE = 20
SIDE_LIMITS = FRAME_SIDES  # accepted frame sides in pixels
MAX_FRAMES = CLIP_MAX_FRAMES
"""The longest clip (6 min 40 s at 25 fps). A clip's ground truth is built in memory before
its frames are rendered (about 30 KiB a frame with 20 people: 300 MB at most);
``--frames 100000000`` once grew memory for hours with nothing written."""

# Gait, in degrees and standing heights: one cycle (two steps) per STRIDE heights walked.
STRIDE = 1.3
LEG_SWING = 24.0
KNEE_FLEX = 40.0
ARM_SWING = 22.0
ELBOW_FLEX = 20.0


@dataclass(frozen=True)
class Walker:
    """One person's walk along a horizontal line.

    At frame ``t`` the pelvis is at x = ``x_mid + direction * speed * (t - t_mid)`` (pixels),
    y = ``pelvis_y``; ``depth`` in [0, 1) orders painting (far first).
    """

    style: FigureStyle
    front: bool  # faces the camera (else seen from the back)
    yaw: float  # < 1: half turned, so shoulders and hips narrow as in a walk seen from aside
    height: float  # standing height in pixels
    depth: float
    pelvis_y: float
    x_mid: float
    t_mid: int
    direction: float  # +1 walks towards the image right, -1 towards the left
    speed: float  # pixels per frame
    phase: float  # gait phase at t_mid, radians

    def figure(self, t: int) -> Figure:
        """The figure at frame ``t``."""
        walked = self.speed * (t - self.t_mid)
        angles = _gait(self, self.phase + 2.0 * math.pi * walked / (STRIDE * self.height))
        pelvis = (self.x_mid + self.direction * walked, self.pelvis_y)
        return build_figure(angles, self.style, pelvis, self.height, front=self.front)


def _gait(walker: Walker, phase: float) -> JointAngles:
    """Joint angles at a gait phase. Swings are computed on screen (positive = forwards) and
    turned into the figure's convention (positive = away from the midline), which for a
    person's left side points to the image right when they face the camera."""
    s, c = math.sin(phase), math.cos(phase)
    # Screen x direction of "away from the midline", for the left and the right side.
    left_x = walker.direction * (1.0 if walker.front else -1.0)
    sides = (left_x, -left_x)
    legs = (LEG_SWING * s, -LEG_SWING * s)
    # The knee folds back most while its leg swings forwards (phase where the swing grows).
    knees = (-KNEE_FLEX * max(0.0, c) - 4.0, -KNEE_FLEX * max(0.0, -c) - 4.0)
    arms = (-ARM_SWING * s, ARM_SWING * s)  # each arm swings against its own side's leg
    elbows = (ELBOW_FLEX * (1.0 + max(0.0, -s)), ELBOW_FLEX * (1.0 + max(0.0, s)))

    def limb(pair: tuple[float, float], rest: float = 0.0) -> tuple[float, float]:
        return rest + pair[0] * sides[0], rest + pair[1] * sides[1]

    return JointAngles(
        body_deg=3.0 * walker.direction,  # a slight forward lean
        yaw=walker.yaw,
        arm_deg=limb(arms, rest=6.0),
        elbow_deg=limb(elbows),
        leg_deg=limb(legs, rest=2.0),
        knee_deg=limb(knees),
    )


def _streams(seed: int) -> tuple[np.random.Generator, np.random.Generator]:
    """(people, background) generators of a sequence."""
    if seed < 0:
        raise AeposeError(f"seed must be >= 0, got {seed}")
    people, background = (
        np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(k,))) for k in (0, 1)
    )
    return people, background


def _walker(rng: np.random.Generator, frames: int, width: int, height: int) -> Walker:
    depth = float(rng.random())
    side = min(width, height)
    size = side * (0.3 + 0.35 * depth) * float(rng.uniform(0.9, 1.1))
    feet = height * (0.62 + 0.33 * depth)
    # From fully outside one edge to fully outside the other in 0.5-1.5 clip lengths, so
    # short clips still show people entering and leaving.
    crossing = float(rng.uniform(0.5, 1.5)) * max(frames, 2)
    return Walker(
        style=sample_style(rng),
        front=bool(rng.random() < 0.75),
        yaw=float(rng.uniform(0.5, 0.8)),
        height=size,
        depth=depth,
        pelvis_y=feet - 0.5 * size,
        x_mid=float(rng.uniform(0.2, 0.8)) * width,
        t_mid=int(rng.integers(0, frames)),
        direction=1.0 if rng.random() < 0.5 else -1.0,
        speed=(width + 1.2 * size) / crossing,
        phase=float(rng.uniform(0.0, 2.0 * math.pi)),
    )


def _check(frames: int, people: int, size: tuple[int, int], fps: float) -> None:
    if not 1 <= frames <= MAX_FRAMES:
        raise AeposeError(f"frames must be 1 to {MAX_FRAMES:,} (a clip's truth is built in "
                          f"memory), got {frames:,}")
    if not 1 <= people <= MAX_PEOPLE:
        raise AeposeError(f"people must be between 1 and {MAX_PEOPLE}, got {people}")
    lo, hi = SIDE_LIMITS
    if not all(lo <= s <= hi for s in size):
        raise AeposeError(f"frame size must be {lo}..{hi} pixels a side, got {size}")
    if not (math.isfinite(fps) and fps > 0):
        raise AeposeError(f"fps must be > 0, got {fps}")


def _plan(seed: int, frames: int, people: int, width: int, height: int) -> list[Walker]:
    """The walkers, ordered far to near (painting order)."""
    rng, _ = _streams(seed)
    walkers = [_walker(rng, frames, width, height) for _ in range(people)]
    return sorted(walkers, key=lambda w: w.depth)


def _in_frame(fig: Figure, width: int, height: int) -> bool:
    low, high = figure_extent(fig)
    return bool(low[0] <= width - 1 and low[1] <= height - 1 and high[0] >= 0 and high[1] >= 0)


@dataclass(frozen=True)
class _Frame:
    """One frame: the walkers in it (indices into the plan, far to near) and their figures."""

    index: int
    walkers: tuple[int, ...]
    figures: tuple[Figure, ...]


def _frames(plan: list[Walker], frames: int, width: int, height: int) -> Iterator[_Frame]:
    for t in range(frames):
        pairs = [(i, w.figure(t)) for i, w in enumerate(plan)]
        pairs = [(i, fig) for i, fig in pairs if _in_frame(fig, width, height)]
        yield _Frame(t, tuple(i for i, _ in pairs), tuple(fig for _, fig in pairs))


def _frame_people(
    frame: _Frame, spec: PointSet, width: int, height: int
) -> dict[int, dict[str, Any]]:
    """Walker index -> {keypoints, bbox} of every walker drawn in the frame."""
    labels = label_map(frame.figures, width, height)
    out = {}
    for label, (i, fig) in enumerate(zip(frame.walkers, frame.figures, strict=True), start=1):
        kpts = keypoints_for(fig, label, labels, spec)
        box = figure_bbox(fig, width, height)
        out[i] = {
            "keypoints": flat_keypoints(kpts),
            "bbox": [round(v, 2) for v in box],
            "seen": bool(kpts[:, 2].any()),
        }
    return out


def _track_ids(
    per_frame: list[dict[int, dict[str, Any]]],
) -> tuple[dict[int, int], dict[int, tuple[int, int]]]:
    """Walker index -> track id (1, 2, ... in order of first appearance) and walker index ->
    (first, last) frame in which any of its keypoints is labelled."""
    spans: dict[int, tuple[int, int]] = {}
    for t, people in enumerate(per_frame):
        for i, person in people.items():
            if person["seen"]:
                first = spans.get(i, (t, t))[0]
                spans[i] = (first, t)
    order = sorted(spans, key=lambda i: (spans[i][0], i))
    return {i: n for n, i in enumerate(order, start=1)}, spans


def _empty_keypoints(spec: PointSet) -> list[float | int]:
    return [0] * (3 * spec.num_keypoints)


def sequence_truth(
    spec: PointSet | KeypointSpec | str,
    *,
    frames: int,
    people: int,
    size: tuple[int, int] = (640, 480),
    seed: int = 0,
    fps: float = 25.0,
) -> dict[str, Any]:
    """Ground truth of a generated sequence, without rendering it.

    Args:
        spec: keypoint definition (or its name: ``"coco"``, ``"crowdpose"``, ``"aic"``), or
            a custom :class:`~aepose.synth.skeleton.PointSet`.
        frames: clip length F, 1 to :data:`MAX_FRAMES`.
        people: distinct people P who appear over the clip (1..20); each is in view at least
            once, some only enter after the first frame or leave before the last.
        size: (W, H) frame size in pixels.
        seed: non-negative; the same arguments give the same truth.
        fps: frame rate, for the timestamps.

    Returns:
        ``{"fps", "width", "height", "keypoint_names", "frames": [{"frame": i,
        "timestamp_ms", "people": [{"track_id", "keypoints": [x, y, v] * K, "bbox": [x, y, w,
        h]}]}]}``, people sorted by track id, track ids 1..P in order of first appearance.
    """
    spec = point_set(spec)
    width, height = size
    _check(frames, people, size, fps)
    plan = _plan(seed, frames, people, width, height)
    per_frame = [_frame_people(f, spec, width, height) for f in _frames(plan, frames, *size)]
    ids, spans = _track_ids(per_frame)
    records = []
    for t, drawn in enumerate(per_frame):
        listed = [i for i in ids if spans[i][0] <= t <= spans[i][1]]
        persons = []
        for i in sorted(listed, key=ids.__getitem__):
            # A person between two sightings with no keypoint in view (an arm swinging back
            # out of the frame at the edge) stays listed, so a track never has gaps.
            person = drawn.get(i, {"keypoints": _empty_keypoints(spec), "bbox": [0.0] * 4})
            persons.append({"track_id": ids[i], "keypoints": person["keypoints"],
                            "bbox": person["bbox"]})  # fmt: skip
        timestamp = round(1000.0 * t / fps, 3)
        records.append({"frame": t, "timestamp_ms": timestamp, "people": persons})
    return {
        "fps": float(fps),
        "width": width,
        "height": height,
        "keypoint_names": list(spec.keypoint_names),
        "frames": records,
    }


def draw_people_count(seed: int, low: int = 1, high: int = 12) -> int:
    """A people count in [low, high] drawn from ``seed`` alone (its own stream, so it does
    not change the sequence drawn from the same seed)."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2,)))
    return int(rng.integers(low, high + 1))


def write_sequence(
    out_dir: str | Path,
    spec: PointSet | KeypointSpec | str,
    *,
    frames: int,
    people: int,
    size: tuple[int, int] = (640, 480),
    seed: int = 0,
    fps: float = 25.0,
    name: str | None = None,
    overwrite: bool = False,
) -> tuple[Path, Path]:
    """Render a sequence to ``out_dir/NAME.mp4`` (H.264) and write its truth to
    ``out_dir/NAME.json``: :func:`sequence_truth` plus ``"video"``, the MP4's file name.

    ``name`` defaults to ``"{spec}_seed{seed}"``. Frames look like the still images (same
    renderer, one background for the clip: the camera does not move). Returns
    (video path, truth path).
    """
    spec = point_set(spec)
    truth = sequence_truth(spec, frames=frames, people=people, size=size, seed=seed, fps=fps)
    stem = name or f"{spec.name}_seed{seed}"
    root = Path(out_dir)
    video, truth_path = root / f"{stem}.mp4", root / f"{stem}.json"
    for path in (video, truth_path):
        if path.exists() and not overwrite:
            raise AeposeError(f"{path} already exists; choose another folder or overwrite it "
                               "(--overwrite)")
    width, height = size
    plan = _plan(seed, frames, people, width, height)
    _, rng = _streams(seed)
    background = sample_background(rng, width, height, SceneParams())
    with VideoWriter(video, fps=fps, width=width, height=height) as writer:
        for frame in _frames(plan, frames, width, height):
            image = render_scene(Scene(background, frame.figures)).image
            writer.write(np.asarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), dtype=np.uint8))
    doc = truth | {"video": video.name}
    write_text(truth_path, json.dumps(doc, separators=(",", ":")) + "\n", what="truth")
    return video, truth_path


@dataclass(frozen=True)
class ClipSummary:
    """One clip written by :func:`write_sequences`."""

    video: Path
    truth: Path
    seed: int
    frames: int
    people: int


def write_sequences(
    out_dir: str | Path,
    spec: PointSet | KeypointSpec | str,
    *,
    clips: int,
    frames: int,
    people: int | None = None,
    size: tuple[int, int] = (640, 480),
    seed: int = 0,
    fps: float = 25.0,
    overwrite: bool = False,
) -> list[ClipSummary]:
    """Write ``clips`` sequences ``clip_0000.mp4`` + ``.json``, ... under ``out_dir``.

    Clip i is :func:`write_sequence` with seed ``seed + i`` (so any one clip can be made again
    alone) and ``people`` people, or a count drawn from 1..12 by :func:`draw_people_count`.
    With ``overwrite``, the folder's other clips (``clip_NNNN`` beyond ``clips``, from an
    earlier, larger run) are deleted: every clip is its own truth, so a leftover one would
    join this dataset.
    """
    if clips < 1:
        raise AeposeError(f"the number of clips must be at least 1, got {clips}")
    if seed < 0:
        raise AeposeError(f"seed must be >= 0, got {seed}")
    written = []
    for i in range(clips):
        clip_seed = seed + i
        count = people if people is not None else draw_people_count(clip_seed)
        video, truth = write_sequence(
            out_dir, spec, frames=frames, people=count, size=size, seed=clip_seed, fps=fps,
            name=f"clip_{i:04d}", overwrite=overwrite,
        )  # fmt: skip
        written.append(ClipSummary(video, truth, clip_seed, frames, count))
    if overwrite:
        _delete_other_clips(Path(out_dir), clips)
    return written


def _delete_other_clips(folder: Path, clips: int) -> None:
    """Delete ``clip_NNNN.mp4`` / ``.json`` with NNNN >= clips (as write_sequences names)."""
    for path in folder.glob("clip_[0-9][0-9][0-9][0-9].*"):
        if path.suffix in (".mp4", ".json") and int(path.stem[5:]) >= clips and path.is_file():
            path.unlink()
