"""Generated video sequences with known identities (aepose.synth.video; issue 15).

The truth is checked against its own promises (ids stable and never reused, people entering
and leaving, crossings, visibility against the frame) and against an independent render: the
label map drawn for the truth equals the one the renderer paints, and the MP4 reads back with
OpenCV at the right count and size. Frames are tiny so the file runs in seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import read_back, run_cli

from aepose.errors import AeposeError
from aepose.keypoints import get_spec
from aepose.synth.figure import FACE_POINTS, Figure
from aepose.synth.render import Scene, label_map, render_scene
from aepose.synth.video import (
    MAX_FRAMES,
    _frames,
    _plan,
    sequence_truth,
    write_sequence,
    write_sequences,
)

SIZE = (128, 96)
FRAMES = 24


def truth(seed: int, people: int = 6, spec: str = "crowdpose", **kw: Any) -> dict[str, Any]:
    return sequence_truth(spec, frames=FRAMES, people=people, size=SIZE, seed=seed, **kw)


def tracks(doc: dict[str, Any]) -> dict[int, list[int]]:
    """track id -> frames in which it is listed."""
    out: dict[int, list[int]] = {}
    for frame in doc["frames"]:
        for person in frame["people"]:
            out.setdefault(person["track_id"], []).append(frame["frame"])
    return out


def boxes_overlap(a: list[float], b: list[float]) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def test_same_seed_same_truth_other_seed_other_truth() -> None:
    assert truth(3) == truth(3)
    assert truth(3)["frames"] != truth(4)["frames"]


def test_format_and_keypoint_count_follow_the_spec() -> None:
    for spec, k in (("aic", 14), ("crowdpose", 14), ("coco", 17)):
        doc = sequence_truth(spec, frames=3, people=2, size=SIZE, seed=1, fps=10.0)
        assert doc["keypoint_names"] == list(get_spec(spec).keypoint_names)
        assert (doc["fps"], doc["width"], doc["height"]) == (10.0, *SIZE)
        assert [f["frame"] for f in doc["frames"]] == [0, 1, 2]
        assert [f["timestamp_ms"] for f in doc["frames"]] == [0.0, 100.0, 200.0]
        people = [p for f in doc["frames"] for p in f["people"]]
        assert people
        for person in people:
            assert set(person) == {"track_id", "keypoints", "bbox"}
            assert len(person["keypoints"]) == 3 * k and len(person["bbox"]) == 4


@pytest.mark.parametrize("people", [1, 5, 12])
def test_track_ids_are_one_span_each_never_reused_and_count_the_people(people: int) -> None:
    doc = truth(7, people=people)
    spans = tracks(doc)
    assert sorted(spans) == list(range(1, people + 1))  # every person appears, ids from 1
    for frames in spans.values():
        # Listed in consecutive frames only: an id that left never comes back (nor is given
        # to someone else, since each person has exactly one id and one span).
        assert frames == list(range(frames[0], frames[-1] + 1))
    for frame in doc["frames"]:
        ids = [p["track_id"] for p in frame["people"]]
        assert ids == sorted(set(ids))
    firsts = sorted(frames[0] for frames in spans.values())
    assert firsts == [spans[i][0] for i in sorted(spans)]  # ids in order of appearance


def test_people_enter_and_leave() -> None:
    spans = tracks(truth(0, people=8))
    assert any(f[0] > 0 for f in spans.values())  # absent in the first frame, present later
    assert any(f[-1] < FRAMES - 1 for f in spans.values())  # present, then gone
    assert any(f[0] == 0 for f in spans.values())


def test_people_cross_and_hide_each_other() -> None:
    doc = truth(0, people=6)
    overlaps = hidden = 0
    for frame in doc["frames"]:
        people = frame["people"]
        pairs = [(a, b) for i, a in enumerate(people) for b in people[i + 1 :]]
        overlaps += sum(boxes_overlap(a["bbox"], b["bbox"]) for a, b in pairs)
        hidden += sum(p["keypoints"][2::3].count(1) for p in people)
    assert overlaps > 0 and hidden > 0


def spec_points(fig: Figure, spec: str) -> np.ndarray:
    """[K, 2] the figure's geometric keypoints in the spec's order (cropped or not)."""
    names = [n if n != "top_head" else "head_top" for n in get_spec(spec).keypoint_names]
    return np.array([fig.point(n) for n in names])


def test_visibility_agrees_with_the_frame() -> None:
    """Oracle: the figures' own geometry, uncropped. Each truth person is matched to the
    figure whose points its labelled keypoints are; then a joint inside the image has v > 0
    (except the face points of a person seen from the back) and a joint outside has v = 0."""
    spec = "coco"
    face = [get_spec(spec).keypoint_names.index(n) for n in FACE_POINTS]
    width, height = SIZE
    doc = truth(5, people=8, spec=spec)
    plan = _plan(5, FRAMES, 8, width, height)
    checked = {"inside": 0, "outside": 0}
    for frame in _frames(plan, FRAMES, width, height):
        figures = [(fig, spec_points(fig, spec)) for fig in frame.figures]
        for person in doc["frames"][frame.index]["people"]:
            kpts = np.array(person["keypoints"], dtype=float).reshape(-1, 3)
            seen = kpts[:, 2] > 0
            if not seen.any():
                continue
            assert (kpts[~seen] == 0).all()
            fig, xy = min(figures, key=lambda f: np.abs(f[1][seen] - kpts[seen, :2]).max())
            assert np.abs(xy[seen] - kpts[seen, :2]).max() <= 0.006  # rounded to 0.01
            inside = (xy[:, 0] >= 0) & (xy[:, 0] <= width - 1)
            inside &= (xy[:, 1] >= 0) & (xy[:, 1] <= height - 1)
            expected = inside.copy()
            if not fig.front:
                expected[face] = False
            assert (seen == expected).all()
            checked["inside"] += int(inside.sum())
            checked["outside"] += int((~inside).sum())
    assert checked["inside"] > 100 and checked["outside"] > 5


def test_truth_label_map_is_the_renderers() -> None:
    width, height = SIZE
    plan = _plan(4, 6, 5, width, height)
    background = np.zeros((height, width, 3), np.uint8)
    for frame in _frames(plan, 6, width, height):
        painted = render_scene(Scene(background, frame.figures)).labels
        assert np.array_equal(label_map(frame.figures, width, height), painted)


def test_written_clip_reads_back_and_matches_the_truth(tmp_path: Path) -> None:
    video, truth_path = write_sequence(
        tmp_path, "aic", frames=12, people=3, size=SIZE, seed=9, fps=12.5
    )
    doc = json.loads(truth_path.read_text())
    assert doc.pop("video") == video.name == "aic_seed9.mp4"
    assert doc == sequence_truth("aic", frames=12, people=3, size=SIZE, seed=9, fps=12.5)
    _, shapes = read_back(video)
    assert shapes == [(SIZE[1], SIZE[0], 3)] * 12
    again = tmp_path / "again"
    write_sequence(again, "aic", frames=12, people=3, size=SIZE, seed=9, fps=12.5)
    assert (again / video.name).read_bytes() == video.read_bytes()
    with pytest.raises(AeposeError, match="already exists"):
        write_sequence(tmp_path, "aic", frames=12, people=3, size=SIZE, seed=9, fps=12.5)


def test_clips_and_their_people_counts(tmp_path: Path) -> None:
    clips = write_sequences(tmp_path, "coco", clips=2, frames=3, size=(64, 48), seed=4)
    assert [c.video.name for c in clips] == ["clip_0000.mp4", "clip_0001.mp4"]
    assert [c.seed for c in clips] == [4, 5]
    for clip in clips:
        assert 1 <= clip.people <= 12
        doc = json.loads(clip.truth.read_text())
        assert len(tracks(doc)) == clip.people


def test_bad_arguments_raise_one_line_errors() -> None:
    for kwargs, match in (
        ({"frames": 0}, "frames"),
        ({"people": 0}, "people"),
        ({"people": 21}, "people"),
        ({"size": (8, 8)}, "frame size"),
        ({"seed": -1}, "seed"),
        ({"fps": 0.0}, "fps"),
    ):
        args: dict[str, Any] = {"frames": 2, "people": 1, "size": SIZE} | kwargs
        with pytest.raises(AeposeError, match=match):
            sequence_truth("coco", **args)


def test_cli_writes_clips_with_their_truth(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(
        capsys, "synth", str(tmp_path), "--video", "--images", "2", "--frames", "3",
        "--people", "2", "--frame-size", "64x48", "--spec", "aic", "--seed", "5",
    )  # fmt: skip
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "clip_0000.json", "clip_0000.mp4", "clip_0001.json", "clip_0001.mp4",
    ]  # fmt: skip
    assert "3 frames  2 people  seed 6" in out
    doc = json.loads((tmp_path / "clip_0001.json").read_text())
    assert doc["video"] == "clip_0001.mp4" and len(tracks(doc)) == 2
    assert len(doc["keypoint_names"]) == 14


def test_cli_refuses_existing_clips_and_overwrite_replaces_the_whole_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def synth(*extra: str) -> tuple[int, str, str]:
        return run_cli(capsys, "synth", str(tmp_path), "--video", "--frames", "2",
                       "--people", "1", "--frame-size", "64x48", *extra)

    assert synth("--images", "3")[0] == 0
    (tmp_path / "notes.json").write_text("{}")
    (tmp_path / "clip_0008.mp4").mkdir()  # not a clip file: left alone
    code, _, err = synth("--images", "1")
    assert code == 1 and err == (f"aepose: error: {tmp_path / 'clip_0000.mp4'} already exists; "
                                 "choose another folder or overwrite it (--overwrite)\n")
    assert synth("--images", "1", "--overwrite")[0] == 0
    # The larger earlier set's clips 1 and 2 are gone: they would join this one.
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "clip_0000.json", "clip_0000.mp4", "clip_0008.mp4", "notes.json"]


def test_an_endless_clip_is_refused_at_once(tmp_path: Path) -> None:
    """``--frames 100000000`` once built its truth in memory for hours, writing nothing: now
    a usage error (exit 2, as every other range check of the command line) before any work
    (in a child process, under a time and memory limit)."""
    out = tmp_path / "clips"
    done = subprocess.run(
        [sys.executable, "-c", _LIMITED, "synth", str(out), "--video", "--frames", "100000000"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(SRC)})
    assert done.returncode == 2 and done.stderr == (
        f"aepose synth: error: argument --frames: 100000000 is not an integer in "
        f"[1, {MAX_FRAMES}] (see aepose synth --help)\n"), done.stderr[-2000:]
    assert not out.exists()
    with pytest.raises(AeposeError, match="frames must be 1 to 10,000"):
        sequence_truth("coco", frames=MAX_FRAMES + 1, people=1, size=SIZE)


# aepose's command line with 30 s of CPU time and 2 GiB of address space at most.
_LIMITED = """
import resource, sys
resource.setrlimit(resource.RLIMIT_CPU, (30, 30))
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
from aepose.apps.cli import main
sys.exit(main(sys.argv[1:]))
"""
SRC = Path(__file__).resolve().parents[1] / "src"
