"""Generated crowd dataset (issue 3, "Generated crowd dataset").

Independent oracles: visibility is recomputed from solo renders of every figure (not from the
generator's label map), crowdIndex from a plain loop over the written JSON, segmentations are
decoded with pycocotools, and every file is loaded with faster-coco-eval and pycocotools.
Images are kept small so the whole file runs in a few seconds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import faster_coco_eval
import numpy as np
import pytest
from pycocotools import coco as oracle_coco
from pycocotools import mask as coco_mask

from aepose.config import DATASET_FILES
from aepose.data.synthetic import (
    CROWD_LABEL,
    Figure,
    FigureStyle,
    Pose,
    Scene,
    SceneParams,
    annotate_scene,
    build_figure,
    crowd_index,
    figure_bbox,
    figure_mask,
    generate_dataset,
    generate_image,
    keypoints_for,
    parse_size,
    render_scene,
    split_counts,
)
from aepose.errors import AeposeError
from aepose.keypoints import get_spec

SPECS = ("crowdpose", "aic", "coco")
# pycocotools (the oracle) trips a NumPy 2 deprecation inside its own decode.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
SMALL = (96, 160)  # image sides of the generated test sets


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def sample(spec: str, index: int, params: SceneParams | None = None, side: int = 160) -> Any:
    rng = np.random.default_rng(np.random.SeedSequence(11, spawn_key=(index,)))
    return generate_image(rng, spec, side, side, params or SceneParams())


# --------------------------------------------------------------------------------------------
# Files: determinism, layout, format


@pytest.mark.parametrize("spec", SPECS)
def test_same_seed_same_bytes_other_seed_other_bytes(spec: str, tmp_path: Path) -> None:
    kwargs: dict[str, Any] = {"train_images": 3, "val_images": 2, "size": SMALL}
    generate_dataset(tmp_path / "a", spec, seed=7, **kwargs)
    generate_dataset(tmp_path / "b", spec, seed=7, **kwargs)
    generate_dataset(tmp_path / "c", spec, seed=8, **kwargs)
    a, b, c = (tree_bytes(tmp_path / n) for n in "abc")
    assert a == b
    assert a.keys() == c.keys() or spec == "aic"  # AIC's file names are digests of the seed
    assert sorted(a.values()) != sorted(c.values())
    jpegs_a = {v for k, v in a.items() if k.endswith(".jpg")}
    jpegs_c = {v for k, v in c.items() if k.endswith(".jpg")}
    assert not jpegs_a & jpegs_c


def test_an_image_does_not_depend_on_the_others(tmp_path: Path) -> None:
    generate_dataset(
        tmp_path / "few", "crowdpose", train_images=2, val_images=1, seed=3, size=SMALL
    )
    generate_dataset(
        tmp_path / "many", "crowdpose", train_images=4, val_images=1, seed=3, size=SMALL
    )
    few, many = tree_bytes(tmp_path / "few"), tree_bytes(tmp_path / "many")
    for name in ("images/1.jpg", "images/2.jpg"):  # train images 1 and 2
        assert few[name] == many[name]
    assert few["images/3.jpg"] == many["images/5.jpg"]  # val image 0: its id moved, not its pixels


@pytest.mark.parametrize("spec", SPECS)
def test_layout_is_the_real_datasets(spec: str, tmp_path: Path) -> None:
    summary = generate_dataset(tmp_path, spec, train_images=3, val_images=2, seed=1, size=SMALL)
    train_ann, train_dir, val_ann, val_dir = DATASET_FILES[spec]
    expected = {train_ann, val_ann}
    for ann, folder in ((train_ann, train_dir), (val_ann, val_dir)):
        for image in load(tmp_path / ann)["images"]:
            expected.add(f"{folder}/{image['file_name']}")
    written = {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()}
    assert written == expected
    assert len(expected) == 2 + 5
    assert [s.annotation_file for s in summary.splits] == [tmp_path / train_ann, tmp_path / val_ann]
    assert [s.image_dir for s in summary.splits] == [tmp_path / train_dir, tmp_path / val_dir]
    assert [s.images for s in summary.splits] == [3, 2]


def check_record_fields(spec: str, data: dict[str, Any]) -> None:
    """The fields each real format has (../shared/fixtures), plus crowd regions with
    segmentation where the brief asks for them (COCO, CrowdPose)."""
    k = get_spec(spec).num_keypoints
    category = data["categories"][0]
    assert category["keypoints"] == list(get_spec(spec).keypoint_names)
    assert category["skeleton"] == [[a + 1, b + 1] for a, b in get_spec(spec).skeleton]
    assert ("info" in data) == (spec != "crowdpose")
    for image in data["images"]:
        assert {"id", "file_name", "width", "height"} <= image.keys()
        assert ("crowdIndex" in image) == (spec == "crowdpose")
    for ann in data["annotations"]:
        kpts = np.array(ann["keypoints"], dtype=float).reshape(-1, 3)
        assert kpts.shape == (k, 3)
        assert set(kpts[:, 2]) <= {0, 1, 2}
        assert (kpts[kpts[:, 2] == 0, :2] == 0).all()
        assert ann["num_keypoints"] == np.count_nonzero(kpts[:, 2])
        assert ann["category_id"] == 1
        crowd = ann.get("iscrowd", 0) == 1
        assert ("iscrowd" in ann) == (spec != "aic")
        assert ("area" in ann) == (spec == "coco")
        assert ("segmentation" in ann) == (spec == "coco" or crowd)


@pytest.mark.parametrize("spec", SPECS)
def test_annotation_files_load_in_both_coco_apis(spec: str, tmp_path: Path) -> None:
    params = SceneParams(crowd_region_prob=1.0)
    summary = generate_dataset(
        tmp_path, spec, train_images=3, val_images=1, seed=5, size=SMALL, params=params
    )
    for split in summary.splits:
        data = load(split.annotation_file)
        check_record_fields(spec, data)
        fast = faster_coco_eval.COCO(str(split.annotation_file))
        oracle = oracle_coco.COCO(str(split.annotation_file))
        assert (
            sorted(fast.getImgIds())
            == sorted(oracle.getImgIds())
            == [i["id"] for i in data["images"]]
        )
        assert sorted(fast.getAnnIds()) == sorted(oracle.getAnnIds())
        crowds = [a for a in data["annotations"] if a.get("iscrowd")]
        assert len(crowds) == split.crowd_regions
        assert (split.crowd_regions > 0) == (spec != "aic")
        for ann in crowds:  # RLE decoded by a maintained library agrees with box and area
            mask = oracle.annToMask(ann)
            assert mask.any()
            assert list(coco_mask.toBbox(oracle.annToRLE(ann))) == ann["bbox"]
            if spec == "coco":
                assert mask.sum() == ann["area"]


# --------------------------------------------------------------------------------------------
# Visibility and geometry


def make_scene(figures: tuple[Figure, ...], width: int = 160, height: int = 140) -> Scene:
    return Scene(np.full((height, width, 3), 127, np.uint8), figures)


def test_visibility_on_a_constructed_scene() -> None:
    thin, thick = FigureStyle(arm_width=0.05, leg_width=0.07), FigureStyle(arm_width=0.08)
    behind = build_figure(Pose(), thin, (60.0, 70.0), 90.0)
    # Same skeleton, wider limbs, drawn later (nearer): it covers the first one completely.
    front = build_figure(Pose(), thick, (60.0, 70.0), 90.0)
    # Raised left arm, pelvis near the right edge: its left wrist and elbow leave the image.
    waving = build_figure(
        Pose(arm_deg=(100.0, 15.0), elbow_deg=(0.0, 0.0)), thin, (140.0, 70.0), 80.0
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
    fig = build_figure(Pose(), FigureStyle(), (60.0, 70.0), 90.0, front=False)
    rendered = render_scene(make_scene((fig,)))
    v = keypoints_for(fig, 1, rendered.labels, spec)[:, 2]
    face = [spec.keypoint_names.index(n) for n in ("nose", "left_eye", "right_eye")]
    assert (v[face] == 0).all()
    assert (np.delete(v, face) == 2).all()
    # Seen from the back the person's left is on the image left (and in front, the right).
    assert fig.point("left_shoulder")[0] < fig.point("right_shoulder")[0]
    front = build_figure(Pose(), FigureStyle(), (60.0, 70.0), 90.0)
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


def test_in_view_keeps_whole_people_inside_the_image() -> None:
    """With ``in_view`` every figure that fits is drawn whole: its pixel mask does not touch
    the border and every labelled joint lies inside; the same seed without it cuts people."""
    side = 128
    cut = 0
    for index in range(12):
        params = SceneParams(people=(1, 4), height=(0.4, 0.7), crowd_region_prob=0.0)
        free = sample("crowdpose", index, params, side=side)
        kept = sample("crowdpose", index, SceneParams(**{**vars(params), "in_view": True}),
                      side=side)
        assert len(free.scene.people) == len(kept.scene.people)
        for before, fig in zip(free.scene.people, kept.scene.people, strict=True):
            shift = fig.points - before.points  # one translation of the whole figure
            assert np.allclose(shift, shift[0])
            rows, cols = np.nonzero(figure_mask(fig, side, side))
            assert rows.min() > 0 and cols.min() > 0
            assert rows.max() < side - 1 and cols.max() < side - 1
            assert np.all((fig.points >= 0) & (fig.points <= side - 1))
            mask = figure_mask(before, side, side)
            cut += bool(mask[0].any() | mask[-1].any() | mask[:, 0].any() | mask[:, -1].any())
    assert cut >= 3


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


def test_scenes_span_easy_to_hard_with_one_to_twenty_people() -> None:
    indices: list[float] = []
    counts: list[int] = []
    for index in range(40):
        s = sample("crowdpose", 100 + index, side=128)
        indices.append(s.crowd_index)
        counts.append(len(s.scene.people))
        assert 1 <= len([a for a in s.annotations if not a["iscrowd"]]) <= 20
    ci = np.array(indices)
    easy, hard = int(np.sum(ci < 0.2)), int(np.sum(ci >= 0.8))
    assert min(easy, len(ci) - easy - hard, hard) >= 4, (easy, hard)
    assert min(counts) == 1 and max(counts) >= 10
    assert max(counts) <= 20


# --------------------------------------------------------------------------------------------
# Arguments


def test_split_counts_and_size_parsing() -> None:
    assert split_counts(1) == (1, 0)
    assert split_counts(2) == (1, 1)
    assert split_counts(10) == (8, 2)
    assert split_counts(1000) == (800, 200)
    assert parse_size("256..640") == (256, 640)
    assert parse_size("320") == (320, 320)
    for bad in ("", "a..b", "640..256", "10"):
        with pytest.raises(AeposeError):
            parse_size(bad)
    with pytest.raises(AeposeError):
        split_counts(0)


def test_bad_arguments_raise_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(AeposeError, match="unknown keypoint spec"):
        generate_dataset(tmp_path, "mpii", train_images=1, val_images=0)
    with pytest.raises(AeposeError, match="seed"):
        generate_dataset(tmp_path, "coco", train_images=1, val_images=0, seed=-1)
    with pytest.raises(AeposeError):
        SceneParams(people=(0, 5))
    generate_dataset(tmp_path, "aic", train_images=1, val_images=0, size=SMALL)
    with pytest.raises(AeposeError, match="already exists"):
        generate_dataset(tmp_path, "aic", train_images=1, val_images=0, size=SMALL)
    generate_dataset(tmp_path, "aic", train_images=1, val_images=0, size=SMALL, overwrite=True)
