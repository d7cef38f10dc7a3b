"""Generated datasets with a custom keypoint set (aepose.synth.skeleton; issue 24).

Oracles: the links are recomputed by a loop over the anatomy's root paths (not the module's
tree walk); the written files are read with pycocotools and faster-coco-eval; the points a
custom set shares with a dataset's are compared with that dataset's own file for the same
seed; visibility with solo renders of every figure.
"""

from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path
from typing import Any

import faster_coco_eval
import numpy as np
import pytest
from helpers import run_cli
from pycocotools import coco as oracle_coco

from aepose.errors import AeposeError
from aepose.keypoints import get_spec, mirror_name
from aepose.skeleton_file import spec_from_annotations
from aepose.synth import NAMED_SETS, PointSet, custom_points, generate_dataset, parse_points
from aepose.synth.annotate import generate_image, keypoints_for
from aepose.synth.figure import (
    DRAW_POINT_JOINTS,
    FACE_POINTS,
    POINT_INDEX,
    POINT_NAMES,
    FigureStyle,
    JointAngles,
    build_figure,
)
from aepose.synth.render import Scene, figure_mask, render_scene
from aepose.synth.scene import SceneParams
from aepose.synth.skeleton import ANATOMY
from aepose.synth.video import sequence_truth

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
SMALL = (96, 160)
FEET = "coco+hands+toes"


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def named_links(points: PointSet) -> set[frozenset[str]]:
    names = points.keypoint_names
    return {frozenset((names[a], names[b])) for a, b in points.skeleton}


# --------------------------------------------------------------------------------------------
# Choosing points and linking them


def test_named_sets_and_their_order() -> None:
    feet = parse_points(FEET)
    assert feet.keypoint_names == (
        *get_spec("coco").keypoint_names, "left_hand", "right_hand", "left_toe", "right_toe")
    assert feet.num_keypoints == 21 and feet.name == "custom"
    assert parse_points("body9").num_keypoints == 9
    assert parse_points("all").keypoint_names == POINT_NAMES
    # CrowdPose's top_head is the generator's head_top; comma lists keep the order given.
    assert "head_top" in NAMED_SETS["crowdpose"]
    assert parse_points("neck, left_toe,nose").keypoint_names == ("neck", "left_toe", "nose")
    assert parse_points("toes+hands") == custom_points(
        ["left_toe", "right_toe", "left_hand", "right_hand"])


def oracle_links(names: tuple[str, ...]) -> set[frozenset[str]]:
    """Two chosen points are linked when the anatomy tree's path between them has no other
    chosen point inside; the two hips also when both are chosen. Paths come from the points'
    chains up to the neck (the tree's root) here, not from a walk."""
    parent = dict(ANATOMY)

    def up(name: str) -> list[str]:
        chain = [name]
        while chain[-1] in parent:
            chain.append(parent[chain[-1]])
        return chain

    links = set()
    for a, b in combinations(names, 2):
        ua, ub = up(a), up(b)
        common = next(n for n in ua if n in ub)  # the lowest common ancestor
        inside = ua[: ua.index(common)] + ub[: ub.index(common)] + [common]
        inside = [n for n in inside if n not in (a, b)]
        if not any(n in names for n in inside):
            links.add(frozenset((a, b)))
    if {"left_hip", "right_hip"} <= set(names):
        links.add(frozenset(("left_hip", "right_hip")))
    return links


def connected(points: PointSet) -> bool:
    reached, todo = {0}, [0]
    while todo:
        i = todo.pop()
        for a, b in points.skeleton:
            for j in ((b,) if a == i else (a,) if b == i else ()):
                if j not in reached:
                    reached.add(j)
                    todo.append(j)
    return len(reached) == points.num_keypoints


def test_links_are_the_anatomy_restricted_to_the_chosen_points() -> None:
    rng = np.random.default_rng(0)
    choices = [parse_points(name) for name in NAMED_SETS if len(NAMED_SETS[name]) > 1]
    choices += [parse_points(FEET), parse_points("body9")]
    for _ in range(200):
        k = int(rng.integers(2, len(POINT_NAMES) + 1))
        choices.append(custom_points([str(n) for n in rng.permutation(POINT_NAMES)[:k]]))
    for points in choices:
        k = points.num_keypoints
        assert all(0 <= a < b < k for a, b in points.skeleton)
        assert len(set(points.skeleton)) == len(points.skeleton)
        assert list(points.skeleton) == sorted(points.skeleton)
        assert named_links(points) == oracle_links(points.keypoint_names)
        assert connected(points)


def test_hands_and_toes_hang_from_their_limbs() -> None:
    links = named_links(parse_points(FEET))
    for side in ("left", "right"):
        assert frozenset((f"{side}_hand", f"{side}_wrist")) in links
        assert frozenset((f"{side}_toe", f"{side}_ankle")) in links
    # Without the ankle a toe hangs from the knee; body9's wrists from the shoulders.
    assert frozenset(("left_toe", "left_knee")) in named_links(
        parse_points("left_knee,left_toe,right_knee"))
    assert named_links(parse_points("body9")) >= {
        frozenset(("left_wrist", "left_shoulder")), frozenset(("head_centre", "left_shoulder")),
        frozenset(("left_hip", "right_hip")), frozenset(("left_ankle", "left_hip"))}


@pytest.mark.parametrize(("text", "match"), [
    ("coco+nose", "'coco\\+nose': nose chosen twice"),
    ("hands,left_hand,toes,left_toe", "left_hand, left_toe chosen twice"),
    ("nose", "at least 2 points, got 1"),
    ("coco+zzz", "no point called 'zzz' \\(named sets: coco, aic"),
    ("coco+left_han", "no point called 'left_han'; did you mean 'left_hand'"),
    ("top_head,neck", "no point called 'top_head'"),
    ("coco++hands", "an empty name"),
    ("", "an empty name"),
])
def test_bad_choices_are_one_line_errors(text: str, match: str) -> None:
    with pytest.raises(AeposeError, match=match) as info:
        parse_points(text)
    assert "\n" not in str(info.value) and str(info.value).startswith("--keypoints")


# --------------------------------------------------------------------------------------------
# Written files


def test_files_carry_the_skeleton_and_k_keypoints_per_person(tmp_path: Path) -> None:
    points = parse_points(FEET)
    summary = generate_dataset(tmp_path, points, train_images=3, val_images=1, seed=2,
                               size=SMALL, params=SceneParams(crowd_region_prob=1.0))
    assert summary.spec == "custom"
    written = {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()}
    assert {"train.json", "val.json"} <= written
    assert {w.split("/")[0] for w in written} == {"train.json", "val.json", "train", "val"}
    for split in summary.splits:
        data = load(split.annotation_file)
        (category,) = data["categories"]
        names = category["keypoints"]
        assert names == list(points.keypoint_names) and len(names) == 21
        assert {mirror_name(n) for n in names} == set(names)  # every left has its right
        links = category["skeleton"]
        assert all(1 <= a <= 21 and 1 <= b <= 21 for a, b in links)  # COCO counts from 1
        pairs = {frozenset((names[a - 1], names[b - 1])) for a, b in links}
        assert pairs == {frozenset(map(mirror_name, p)) for p in pairs}  # mirror-symmetric
        crowds = 0
        for ann in data["annotations"]:
            kpts = np.array(ann["keypoints"], dtype=float).reshape(-1, 3)
            assert kpts.shape == (21, 3) and set(kpts[:, 2]) <= {0, 1, 2}
            assert ann["num_keypoints"] == np.count_nonzero(kpts[:, 2])
            assert {"bbox", "area", "segmentation", "iscrowd"} <= ann.keys()  # COCO's fields
            crowds += ann["iscrowd"]
        assert crowds == split.crowd_regions > 0
        fast = faster_coco_eval.COCO(str(split.annotation_file))
        oracle = oracle_coco.COCO(str(split.annotation_file))
        assert sorted(fast.getAnnIds()) == sorted(oracle.getAnnIds()) == sorted(
            a["id"] for a in data["annotations"])
        assert oracle.loadCats(1)[0]["keypoints"] == names


def test_the_written_skeleton_reads_back_as_a_keypoint_spec_with_flip_pairs(
    tmp_path: Path,
) -> None:
    """What train --ann reads (aepose.skeleton_file): names, links and, inferred from the
    names, the left/right pairs, hands and toes included."""
    points = parse_points(FEET)
    generate_dataset(tmp_path, points, train_images=1, val_images=0, size=SMALL)
    spec = spec_from_annotations(tmp_path / "train.json")
    assert spec.keypoint_names == points.keypoint_names
    assert spec.skeleton == points.skeleton
    names = spec.keypoint_names
    pairs = {(names[a], names[b]) for a, b in spec.flip_pairs}
    assert ("left_hand", "right_hand") in pairs and ("left_toe", "right_toe") in pairs
    assert len(pairs) == 10  # eyes, ears, shoulders, elbows, wrists, hips, knees, ankles + 2


def test_same_seed_same_bytes_and_the_points_shared_with_coco_agree(tmp_path: Path) -> None:
    kwargs: dict[str, Any] = {"train_images": 2, "val_images": 1, "size": SMALL}
    for name, seed in (("a", 4), ("b", 4), ("c", 5)):
        generate_dataset(tmp_path / name, parse_points(FEET), seed=seed, **kwargs)
    generate_dataset(tmp_path / "coco", "coco", seed=4, **kwargs)

    def tree(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}

    a, b, c = tree(tmp_path / "a"), tree(tmp_path / "b"), tree(tmp_path / "c")
    assert a == b and a.keys() == c.keys() and a != c
    # Same seed, same people: the 17 COCO points are COCO's file's, the images its images.
    coco = load(tmp_path / "coco/annotations/person_keypoints_train2017.json")
    feet = load(tmp_path / "a/train.json")
    assert len(coco["annotations"]) == len(feet["annotations"])
    for ours, theirs in zip(feet["annotations"], coco["annotations"], strict=True):
        assert ours["keypoints"][: 17 * 3] == theirs["keypoints"]
        assert ours["bbox"] == theirs["bbox"]
    image = coco["images"][0]["file_name"]
    assert a[f"train/{image}"] == (tmp_path / "coco/train2017" / image).read_bytes()


def test_added_points_lie_on_their_figure_and_visibility_matches_solo_renders() -> None:
    """As tests/test_synth_annotate.py checks the datasets' points, for all 24 points."""
    points = parse_points("all")
    checked = {1: 0, 2: 0}
    for index in range(4):
        rng = np.random.default_rng(np.random.SeedSequence(11, spawn_key=(index,)))
        s = generate_image(rng, points, 160, 160, SceneParams(unlabelled_joint_prob=0.0))
        masks = [figure_mask(f, 160, 160) for f in s.scene.people]
        for i, fig in enumerate(s.scene.people):
            kpts = keypoints_for(fig, i + 1, s.rendered.labels, points)
            for x, y, v in kpts[kpts[:, 2] > 0]:
                r, c = round(y), round(x)
                assert masks[i][r, c]
                assert v == (1 if any(m[r, c] for m in masks[i + 1 :]) else 2)
                checked[int(v)] += 1
    assert checked[1] > 10 and checked[2] > 100


def test_face_points_unlabelled_from_the_back_and_added_points_share_their_joints_draw() -> None:
    points = parse_points("all")
    fig = build_figure(JointAngles(), FigureStyle(), (60.0, 70.0), 90.0, front=False)
    rendered = render_scene(Scene(np.full((140, 160, 3), 127, np.uint8), (fig,)))
    v = keypoints_for(fig, 1, rendered.labels, points)[:, 2]
    face = [POINT_INDEX[n] for n in FACE_POINTS]
    assert (v[face] == 0).all() and (np.delete(v, face) == 2).all()
    # Half the joints dropped at random: a hand, toe or head centre goes with its joint.
    rng = np.random.default_rng(np.random.SeedSequence(3))
    s = generate_image(rng, points, 160, 160, SceneParams(unlabelled_joint_prob=0.5))
    added = [POINT_INDEX[n] for n in ("head_centre", "left_hand", "right_hand", "left_toe",
                                      "right_toe")]
    joints = [POINT_INDEX[n] for n in DRAW_POINT_JOINTS]
    labelled = np.array([f.labelled for f in s.scene.people])
    assert (labelled[:, added] == labelled[:, joints]).all()
    assert 0 < labelled[:, joints].mean() < 1


def test_clip_truth_with_a_custom_set() -> None:
    truth = sequence_truth(parse_points("body9"), frames=6, people=3, size=(128, 96), seed=1)
    assert truth["keypoint_names"] == list(NAMED_SETS["body9"])
    people = [p for f in truth["frames"] for p in f["people"]]
    assert people and all(len(p["keypoints"]) == 27 for p in people)
    # The body9 points are the crowdpose truth's same points of the same people.
    crowd = sequence_truth("crowdpose", frames=6, people=3, size=(128, 96), seed=1)
    names = get_spec("crowdpose").keypoint_names
    shared = [n for n in NAMED_SETS["body9"] if n in names]
    for ours, theirs in zip(truth["frames"], crowd["frames"], strict=True):
        for p, q in zip(ours["people"], theirs["people"], strict=True):
            for n in shared:
                i, j = NAMED_SETS["body9"].index(n), names.index(n)
                assert p["keypoints"][3 * i : 3 * i + 3] == q["keypoints"][3 * j : 3 * j + 3]


# --------------------------------------------------------------------------------------------
# Command line


def test_cli_writes_a_custom_dataset_and_refuses_bad_choices(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "feet"
    code, stdout, _ = run_cli(capsys, "synth", str(out), "--keypoints", FEET, "--images", "3",
                              "--size", "96")
    assert code == 0
    assert (f"use it as --ann {out / 'train.json'} --images {out / 'train'} "
            f"--val-ann {out / 'val.json'} --val-images {out / 'val'}\n") in stdout
    assert len(load(out / "val.json")["categories"][0]["keypoints"]) == 21
    code, _, err = run_cli(capsys, "synth", str(tmp_path / "x"), "--keypoints", "coco+nose")
    assert code != 0 and err.count("\n") == 1 and "nose chosen twice" in err
    code, _, err = run_cli(capsys, "synth", str(tmp_path / "x"), "--keypoints", "body9",
                           "--spec", "coco")
    assert code != 0 and "--spec would be ignored with --keypoints" in err
    assert not (tmp_path / "x").exists()
