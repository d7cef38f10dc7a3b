"""Annotations of generated scenes (aepose.synth.annotate, with figure and render).

Independent oracles: visibility is recomputed from solo renders of every figure (not from the
generator's label map), crowdIndex from a plain loop over the written JSON, segmentations are
decoded with pycocotools.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pycocotools import mask as coco_mask

from aepose.keypoints import get_spec
from aepose.synth.annotate import annotate_scene, crowd_index, generate_image, keypoints_for
from aepose.synth.figure import Figure, FigureStyle, JointAngles, build_figure
from aepose.synth.render import CROWD_LABEL, Scene, figure_bbox, figure_mask, render_scene
from aepose.synth.scene import SceneParams
from aepose.synth.write import generate_dataset

SPECS = ("crowdpose", "aic", "coco")
# pycocotools (the oracle) trips a NumPy 2 deprecation inside its own decode.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
SMALL = (96, 160)


def sample(spec: str, index: int, params: SceneParams | None = None, side: int = 160) -> Any:
    rng = np.random.default_rng(np.random.SeedSequence(11, spawn_key=(index,)))
    return generate_image(rng, spec, side, side, params or SceneParams())


# --------------------------------------------------------------------------------------------
# Visibility and geometry


def make_scene(figures: tuple[Figure, ...], width: int = 160, height: int = 140) -> Scene:
    return Scene(np.full((height, width, 3), 127, np.uint8), figures)


def test_visibility_on_a_constructed_scene() -> None:
    thin, thick = FigureStyle(arm_width=0.05, leg_width=0.07), FigureStyle(arm_width=0.08)
    behind = build_figure(JointAngles(), thin, (60.0, 70.0), 90.0)
    # Same skeleton, wider limbs, drawn later (nearer): it covers the first one completely.
    front = build_figure(JointAngles(), thick, (60.0, 70.0), 90.0)
    # Raised left arm, pelvis near the right edge: its left wrist and elbow leave the image.
    waving = build_figure(
        JointAngles(arm_deg=(100.0, 15.0), elbow_deg=(0.0, 0.0)), thin, (140.0, 70.0), 80.0
    )
    scene = make_scene((behind, front, waving))
    rendered = render_scene(scene)
    spec = get_spec("crowdpose")
    v_behind = keypoints_for(behind, 1, rendered.labels, spec)[:, 2]
    v_front = keypoints_for(front, 2, rendered.labels, spec)[:, 2]
    assert (v_behind == 1).all() and (v_front == 2).all()

    waving_kpts = keypoints_for(waving, 3, rendered.labels, spec)
    names = spec.keypoint_names
    out = [names.index("left_wrist"), names.index("left_elbow")]
    assert (waving_kpts[out] == 0).all()
    assert (waving_kpts[[i for i in range(len(names)) if i not in out], 2] == 2).all()

    records = annotate_scene(scene, rendered, "crowdpose")
    assert [r["num_keypoints"] for r in records] == [14, 14, 12]
    # COCO annotates only what can be seen: the hidden person has no record there.
    coco = annotate_scene(scene, rendered, "coco")
    assert len(coco) == 2 and coco[0]["num_keypoints"] == 17


def test_back_view_face_points_are_unlabelled() -> None:
    spec = get_spec("coco")
    fig = build_figure(JointAngles(), FigureStyle(), (60.0, 70.0), 90.0, front=False)
    rendered = render_scene(make_scene((fig,)))
    v = keypoints_for(fig, 1, rendered.labels, spec)[:, 2]
    face = [spec.keypoint_names.index(n) for n in ("nose", "left_eye", "right_eye")]
    assert (v[face] == 0).all()
    assert (np.delete(v, face) == 2).all()
    # Seen from the back the person's left is on the image left (and in front, the right).
    assert fig.point("left_shoulder")[0] < fig.point("right_shoulder")[0]
    front = build_figure(JointAngles(), FigureStyle(), (60.0, 70.0), 90.0)
    assert front.point("left_shoulder")[0] > front.point("right_shoulder")[0]


def pixel(x: float, y: float) -> tuple[int, int]:
    return round(y), round(x)


@pytest.mark.parametrize("spec", SPECS)
def test_keypoints_lie_on_their_figure_and_visibility_matches_solo_renders(spec: str) -> None:
    """Oracle: each figure rendered ALONE. A labelled joint must fall on its own figure; it is
    visible (v=2) exactly when no nearer figure's solo render covers that pixel."""
    k_spec = get_spec(spec)
    checked = {1: 0, 2: 0}
    for index in range(4):
        s = sample(spec, index, SceneParams(unlabelled_joint_prob=0.0))
        w, h = s.scene.width, s.scene.height
        masks = [figure_mask(f, w, h) for f in s.scene.people]
        people = [a for a in s.annotations if not a.get("iscrowd", 0)]
        if spec != "coco":  # COCO drops fully hidden people, the others keep one per figure
            assert len(people) == len(s.scene.people)
        for i, fig in enumerate(s.scene.people):
            kpts = keypoints_for(fig, i + 1, s.rendered.labels, k_spec)
            for x, y, v in kpts[kpts[:, 2] > 0]:
                r, c = pixel(x, y)
                assert masks[i][r, c]
                covered = any(m[r, c] for m in masks[i + 1 :])
                assert v == (1 if covered else 2)
                checked[int(v)] += 1
    assert checked[1] > 10 and checked[2] > 100


def test_visible_joint_shows_the_figure_not_the_background() -> None:
    spec = get_spec("crowdpose")
    differs = []
    for index in range(3):
        s = sample("crowdpose", index)
        background = s.scene.background
        for i, fig in enumerate(s.scene.people):
            kpts = keypoints_for(fig, i + 1, s.rendered.labels, spec)
            for x, y, _ in kpts[kpts[:, 2] == 2]:
                r, c = pixel(x, y)
                differs.append(bool(np.any(s.rendered.image[r, c] != background[r, c])))
    assert len(differs) > 20 and all(differs)


@pytest.mark.parametrize("spec", ("crowdpose", "aic"))
def test_box_is_the_whole_figure(spec: str) -> None:
    for index in range(3):
        s = sample(spec, index)
        w, h = s.scene.width, s.scene.height
        people = [a for a in s.annotations if not a.get("iscrowd", 0)]
        for fig, ann in zip(s.scene.people, people, strict=True):
            x, y, bw, bh = ann["bbox"]
            assert ann["bbox"] == [round(v, 2) for v in figure_bbox(fig, w, h)]
            kpts = np.array(ann["keypoints"], dtype=float).reshape(-1, 3)
            lab = kpts[kpts[:, 2] > 0]
            assert (lab[:, 0] >= x).all() and (lab[:, 0] <= x + bw).all()
            assert (lab[:, 1] >= y).all() and (lab[:, 1] <= y + bh).all()
            rows, cols = np.nonzero(figure_mask(fig, w, h))
            extent = np.array([cols.min(), rows.min(), cols.max(), rows.max()])
            assert np.abs(np.array([x, y, x + bw, y + bh]) - extent).max() <= 1.5


def test_coco_box_area_and_polygons_are_the_visible_region() -> None:
    for index in range(3):
        s = sample("coco", index, SceneParams(crowd_region_prob=1.0))
        w, h = s.scene.width, s.scene.height
        labels = s.rendered.labels
        visible = [labels == i + 1 for i in range(len(s.scene.people))]
        people = iter(a for a in s.annotations if not a["iscrowd"])
        for mask in visible:
            if not mask.any():
                continue
            ann = next(people)
            rows, cols = np.nonzero(mask)
            assert ann["area"] == mask.sum()
            box = [cols.min(), rows.min(), cols.max() - cols.min() + 1, rows.max() - rows.min() + 1]
            assert ann["bbox"] == [float(v) for v in box]
            # Polygons trace the boundary pixels' centres: inside the region grown by 1 pixel.
            drawn = coco_mask.decode(
                coco_mask.merge(coco_mask.frPyObjects(ann["segmentation"], h, w))
            )
            grown = np.zeros_like(mask)
            grown[
                max(0, rows.min() - 1) : rows.max() + 2, max(0, cols.min() - 1) : cols.max() + 2
            ] = True
            assert not (drawn.astype(bool) & ~grown).any()
            assert drawn.sum() <= ann["area"] * 1.05
        crowd = [a for a in s.annotations if a["iscrowd"]]
        if crowd:
            rle = coco_mask.frPyObjects(crowd[0]["segmentation"], h, w)
            assert (coco_mask.decode(rle).astype(bool) == (labels == CROWD_LABEL)).all()


# --------------------------------------------------------------------------------------------
# Crowd index and scene statistics


def crowd_index_oracle(annotations: list[dict[str, Any]]) -> float:
    """CrowdPose paper, one person and one joint at a time."""
    people = [a for a in annotations if not a.get("iscrowd", 0)]
    ratios = []
    for i, person in enumerate(people):
        own = sum(1 for v in person["keypoints"][2::3] if v > 0)
        if own == 0:
            continue
        x, y, w, h = person["bbox"]
        inside = 0
        for j, other in enumerate(people):
            if j == i:
                continue
            kp = other["keypoints"]
            for k in range(0, len(kp), 3):
                if kp[k + 2] > 0 and x <= kp[k] <= x + w and y <= kp[k + 1] <= y + h:
                    inside += 1
        ratios.append(inside / own)
    return sum(ratios) / len(ratios) if ratios else 0.0


def test_crowd_index_matches_the_loop_oracle_in_the_written_files(tmp_path: Path) -> None:
    summary = generate_dataset(
        tmp_path, "crowdpose", train_images=6, val_images=2, seed=2, size=SMALL
    )
    for split in summary.splits:
        data = load(split.annotation_file)
        for image in data["images"]:
            anns = [a for a in data["annotations"] if a["image_id"] == image["id"]]
            assert image["crowdIndex"] == pytest.approx(crowd_index_oracle(anns), abs=0.005 + 1e-9)
        assert split.crowd_index == tuple(i["crowdIndex"] for i in data["images"])


def test_crowd_index_function_on_edge_cases() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        p, k = int(rng.integers(1, 6)), 14
        kpts = np.concatenate(
            [rng.uniform(0, 50, (p, k, 2)), rng.integers(0, 3, (p, k, 1))], axis=2
        )
        kpts[0, :, 2] = 0  # a person without labelled joints is skipped, not divided by
        boxes = np.concatenate([rng.uniform(0, 30, (p, 2)), rng.uniform(0, 40, (p, 2))], axis=1)
        anns = [
            {"keypoints": kpts[i].ravel().tolist(), "bbox": boxes[i].tolist()} for i in range(p)
        ]
        assert crowd_index(kpts, boxes) == pytest.approx(crowd_index_oracle(anns), abs=1e-12)
    # A joint exactly on the box edge counts as inside.
    kpts = np.array([[[0.0, 0.0, 2.0]], [[10.0, 5.0, 1.0]]])
    boxes = np.array([[0.0, 0.0, 10.0, 5.0], [100.0, 100.0, 1.0, 1.0]])
    assert crowd_index(kpts, boxes) == 0.5
    assert crowd_index(np.zeros((0, 14, 3)), np.zeros((0, 4))) == 0.0


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data
