"""Generated dataset folders (aepose.synth.write; issue 3, "Generated crowd dataset").

Every file is loaded with faster-coco-eval and pycocotools, crowd segmentations are decoded
with pycocotools. Images are kept small so the whole file runs in a few seconds.
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
from aepose.errors import AeposeError
from aepose.keypoints import get_spec
from aepose.synth.scene import SceneParams
from aepose.synth.write import generate_dataset, parse_size, split_counts

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
