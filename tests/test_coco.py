"""COCO-format keypoint files (reference.md §3.1-3.2, §6) and every bad-input message.

The real samples in ../shared/fixtures are the main inputs; crowd RLE regions (absent from the
COCO sample, which has polygons only) and broken files are written to tmp_path. pycocotools'
``annToMask`` is the independent oracle for decoded regions.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import pytest
from pycocotools import coco as oracle_coco
from pycocotools import mask as oracle_mask

from aepose.config import get_preset
from aepose.data.coco import CocoKeypoints, load_annotations, load_split, read_image
from aepose.errors import AeposeError
from aepose.keypoints import AIC, COCO, CROWDPOSE

AIC_JSON = "aic/test_aic.json"
CROWDPOSE_JSON = "crowdpose/test_crowdpose.json"
COCO_JSON = "coco/test_coco.json"

# pycocotools (the oracle) trips a NumPy 2 deprecation inside its own decode.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def one_line_error(call: Callable[[], object], *expected: object) -> str:
    """Run ``call``, which must raise a one-line AeposeError containing each of ``expected``."""
    with pytest.raises(AeposeError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    for part in expected:
        assert str(part) in message, message
    return message


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data))
    return path


def read_fixture(fixtures: Path, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((fixtures / name).read_text())
    return data


def uncompressed_rle(mask: npt.NDArray[np.uint8]) -> dict[str, Any]:
    """COCO's crowd format: run lengths of the column-major mask, starting with zeros."""
    flat = mask.flatten(order="F").astype(np.int8)
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]])
    counts = np.diff(bounds).tolist()
    return {"counts": ([0] if flat[0] else []) + counts, "size": list(mask.shape)}


# ------------------------------------------------------------------------- the real samples


def test_aic_sample(fixtures: Path) -> None:
    """§6: 3 images with id 1; no iscrowd/segmentation: every person kept, nothing ignored."""
    for test_mode in (False, True):
        ann = load_annotations(fixtures / AIC_JSON, AIC, test_mode=test_mode)
        assert [r.image_id for r in ann.images] == [1, 2, 3]
    assert [r.joints.shape for r in ann.images] == [(3, 14, 3)] * 3
    first = ann.images[0]
    assert first.joints.dtype == np.float32
    assert first.joints[0, 0].tolist() == [313, 201, 2]  # annotation id 4, right shoulder
    assert (first.width, first.height, first.crowd_index) == (900, 600, None)
    assert ann.image_path(first) == fixtures / "aic" / first.file_name
    for record in ann.images:
        mask = ann.valid_mask(record)
        assert mask.shape == (record.height, record.width) and mask.all()


def test_crowdpose_sample(fixtures: Path) -> None:
    """§6: 2 images with id 103319, crowdIndex kept; the num_keypoints == 0 person (iscrowd 0)
    is still a target person and, having no segmentation, masks nothing."""
    ann = load_annotations(fixtures / CROWDPOSE_JSON, CROWDPOSE)
    assert [r.image_id for r in ann.images] == [106848, 103319]
    assert [r.crowd_index for r in ann.images] == [0.33, 0.39]
    assert [len(r.joints) for r in ann.images] == [3, 2]
    assert not ann.images[0].joints[1, :, 2].any()  # annotation 131039: no labelled joint
    assert all(ann.valid_mask(r).all() for r in ann.images)


def test_coco_sample_masks_unlabelled_people(fixtures: Path) -> None:
    """All 14 people are targets (iscrowd 0); the polygons of the two num_keypoints == 0 people
    are ignored, decoded exactly as pycocotools decodes them."""
    path = fixtures / COCO_JSON
    ann = load_annotations(path, COCO)
    oracle = oracle_coco.COCO(str(path))
    assert [len(r.joints) for r in ann.images] == [1, 3, 5, 5]
    ignored = {r.image_id: [name for name, _ in r.ignore_regions] for r in ann.images}
    assert ignored == {
        785: [],
        40083: ["annotation id 1202706"],
        196141: ["annotation id 508900"],
        197388: [],
    }
    for record in ann.images:
        expected = np.zeros((record.height, record.width), dtype=bool)
        for a in oracle.loadAnns(oracle.getAnnIds(imgIds=record.image_id)):
            if a["num_keypoints"] == 0:
                expected |= oracle.annToMask(a).astype(bool)
        np.testing.assert_array_equal(ann.valid_mask(record), ~expected)
    # The rasterised regions cover about the polygon areas the file states (491.27, 285.79).
    for record, area in ((ann.images[1], 491.2669), (ann.images[2], 285.7906)):
        assert (~ann.valid_mask(record)).sum() == pytest.approx(area, rel=0.05)


def with_crowd_regions(fixtures: Path, tmp_path: Path) -> Path:
    """The COCO sample plus crowd regions on image 785 (425 x 640): uncompressed RLE (the COCO
    crowd format), compressed RLE, and a crowd with labelled keypoints."""
    data = read_fixture(fixtures, COCO_JSON)
    h, w = 425, 640
    yy, xx = np.mgrid[:h, :w]
    ellipse = (((xx - 100) / 60.0) ** 2 + ((yy - 300) / 40.0) ** 2 <= 1).astype(np.uint8)
    box = np.zeros((h, w), np.uint8)
    box[10:50, 500:620] = 1
    compressed = oracle_mask.encode(np.asfortranarray(box))
    compressed["counts"] = compressed["counts"].decode()  # as JSON stores it
    zeros = [0] * 51
    labelled = [0] * 51
    labelled[:6] = [600, 30, 2, 610, 32, 1]
    extra = [
        {"id": 1, "image_id": 785, "iscrowd": 1, "num_keypoints": 0, "keypoints": zeros,
         "segmentation": uncompressed_rle(ellipse), "category_id": 1},
        {"id": 2, "image_id": 785, "iscrowd": 1, "num_keypoints": 2, "keypoints": labelled,
         "segmentation": compressed, "category_id": 1},
    ]  # fmt: skip
    data["annotations"] += extra
    return write_json(tmp_path / "crowd.json", data)


def test_crowd_rle_regions_match_pycocotools(fixtures: Path, tmp_path: Path) -> None:
    path = with_crowd_regions(fixtures, tmp_path)
    ann = load_annotations(path, COCO, image_dir=fixtures / "coco")
    oracle = oracle_coco.COCO(str(path))
    record = ann.images[0]
    # Crowd regions are ignored; only the crowd with labelled keypoints becomes a target.
    assert [name for name, _ in record.ignore_regions] == ["annotation id 1", "annotation id 2"]
    assert len(record.joints) == 2 and record.joints[1, :2].tolist() == [[600, 30, 2], [610, 32, 1]]
    expected = oracle.annToMask(oracle.anns[1]) | oracle.annToMask(oracle.anns[2])
    invalid = ~ann.valid_mask(record)
    np.testing.assert_array_equal(invalid, expected.astype(bool))
    assert invalid.sum() == 40 * 120 + oracle_mask.area(oracle.annToRLE(oracle.anns[1]))
    assert invalid[10:50, 500:620].all() and invalid[300, 100] and not invalid[200, 300]


def test_missing_iscrowd_and_num_keypoints_default(tmp_path: Path) -> None:
    """Missing iscrowd = 0 (so the person is a target); missing num_keypoints = the number of
    labelled joints (so an unlabelled person with a segmentation is masked)."""
    poly = [[10, 10, 40, 10, 40, 30, 10, 30]]
    labelled = [5, 6, 2] + [0] * 39
    data = {
        "images": [{"id": 7, "file_name": "a.jpg", "width": 64, "height": 48}],
        "annotations": [
            {"id": 1, "image_id": 7, "keypoints": [0] * 42, "segmentation": poly},
            {"id": 2, "image_id": 7, "keypoints": labelled, "segmentation": poly},
        ],
    }
    ann = load_annotations(write_json(tmp_path / "a.json", data), AIC)
    record = ann.images[0]
    assert len(record.joints) == 2
    assert [name for name, _ in record.ignore_regions] == ["annotation id 1"]
    invalid = ~ann.valid_mask(record)
    assert invalid[10:30, 10:40].all() and invalid.sum() == 30 * 20


def test_training_keeps_only_annotated_images(tmp_path: Path) -> None:
    """§3.1: an image with no annotation is dropped for training and kept for testing; one
    with only a crowd region is kept for training with no target person."""
    crowd = {"counts": [0, 12], "size": [3, 4]}
    data = {
        "images": [
            {"id": 1, "file_name": "a.jpg", "width": 4, "height": 3},
            {"id": 2, "file_name": "b.jpg", "width": 4, "height": 3},
        ],
        "annotations": [
            {"id": 5, "image_id": 2, "iscrowd": 1, "num_keypoints": 0, "keypoints": [0] * 42,
             "segmentation": crowd},
            {"id": 6, "image_id": 99, "keypoints": [1]},  # no such image: never read
        ],
    }  # fmt: skip
    path = write_json(tmp_path / "a.json", data)
    train = load_annotations(path, CROWDPOSE)
    assert [r.image_id for r in train.images] == [2]
    assert train.images[0].joints.shape == (0, 14, 3)
    assert not train.valid_mask(train.images[0]).any()
    test = load_annotations(path, CROWDPOSE, test_mode=True)
    assert [r.image_id for r in test.images] == [1, 2]


# ------------------------------------------------------------------------- bad annotation files


def test_not_json(tmp_path: Path) -> None:
    text = tmp_path / "notes.json"
    text.write_text("images: none\n")
    one_line_error(lambda: load_annotations(text, AIC), text, "is not valid JSON")
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF")
    one_line_error(lambda: load_annotations(binary, AIC), binary, "is not valid JSON")
    missing = tmp_path / "missing.json"
    one_line_error(lambda: load_annotations(missing, AIC), missing, "not found")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ([1, 2], "top level is a list"),
        ({"images": []}, "no 'annotations' list"),
        ({"images": {}, "annotations": []}, "no 'images' list"),
    ],
)
def test_not_coco_format(tmp_path: Path, data: Any, expected: str) -> None:
    path = write_json(tmp_path / "x.json", data)
    one_line_error(lambda: load_annotations(path, AIC), path, "not a COCO-format", expected)


def test_wrong_keypoint_count(fixtures: Path) -> None:
    path = fixtures / COCO_JSON
    message = one_line_error(lambda: load_annotations(path, AIC))
    assert message == (
        f"annotation id 442619 in {path} has 51 keypoint values; aic expects 42 (14 keypoints)"
    )


def crowdpose_with(fixtures: Path, tmp_path: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    data = read_fixture(fixtures, CROWDPOSE_JSON)
    edit(data)
    return write_json(tmp_path / "edited.json", data)


@pytest.mark.parametrize(
    ("value", "shown"), [(math.nan, "(nan, 108.0"), (-3, "(-3.0, 108.0"), (math.inf, "(inf,")]
)
def test_bad_coordinates(fixtures: Path, tmp_path: Path, value: float, shown: str) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["annotations"][0]["keypoints"][3] = value  # right_shoulder x, visibility 2

    path = crowdpose_with(fixtures, tmp_path, edit)
    one_line_error(
        lambda: load_annotations(path, CROWDPOSE),
        f"annotation id 123803 in {path}",
        "keypoint 1 (right_shoulder)",
        shown,
    )


def test_unlabelled_joints_may_hold_any_coordinates(fixtures: Path, tmp_path: Path) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["annotations"][0]["keypoints"][0:3] = [-5, math.nan, 0]  # v = 0: not labelled

    ann = load_annotations(crowdpose_with(fixtures, tmp_path, edit), CROWDPOSE)
    assert len(ann.images) == 2


def test_non_numeric_keypoints(fixtures: Path, tmp_path: Path) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["annotations"][2]["keypoints"][4] = "12"

    path = crowdpose_with(fixtures, tmp_path, edit)
    one_line_error(lambda: load_annotations(path, CROWDPOSE), "annotation id 147481", path)


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("width", None, "has no 'width'"),
        ("height", None, "has no 'height'"),
        ("width", 0, "has width 0; expected a positive integer"),
        ("height", "480", "has height '480'"),
        ("file_name", None, "has no 'file_name'"),
    ],
)
def test_bad_image_record(
    fixtures: Path, tmp_path: Path, field: str, value: Any, expected: str
) -> None:
    def edit(data: dict[str, Any]) -> None:
        image = data["images"][1]
        if value is None:
            del image[field]
        else:
            image[field] = value

    path = crowdpose_with(fixtures, tmp_path, edit)
    one_line_error(
        lambda: load_annotations(path, CROWDPOSE), f"image id 103319 in {path}", expected
    )


def test_duplicate_image_id(fixtures: Path, tmp_path: Path) -> None:
    path = crowdpose_with(fixtures, tmp_path, lambda d: d["images"].append(d["images"][0]))
    one_line_error(lambda: load_annotations(path, CROWDPOSE), "image id 106848 appears twice", path)


def test_undecodable_segmentation(fixtures: Path, tmp_path: Path) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["annotations"][1]["segmentation"] = {"counts": [10**6], "size": [425, 640]}

    path = crowdpose_with(fixtures, tmp_path, edit)
    ann = load_annotations(path, CROWDPOSE)
    one_line_error(
        lambda: ann.valid_mask(ann.images[0]),
        f"annotation id 131039 in {path}",
        "cannot be decoded",
    )


def test_segmentation_of_another_size(fixtures: Path, tmp_path: Path) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["annotations"][1]["segmentation"] = {"counts": [6], "size": [2, 3]}

    ann = load_annotations(crowdpose_with(fixtures, tmp_path, edit), CROWDPOSE)
    one_line_error(lambda: ann.valid_mask(ann.images[0]), "annotation id 131039", "3x2", "640x425")


# ------------------------------------------------------------------------- dataset folders


def crowdpose_root(fixtures: Path, root: Path) -> Path:
    """A --data-root laid out as the crowdpose presets expect, holding the fixture sample."""
    (root / "annotations").mkdir(parents=True)
    for name in ("mmpose_crowdpose_trainval.json", "mmpose_crowdpose_test.json"):
        shutil.copy(fixtures / CROWDPOSE_JSON, root / "annotations" / name)
    (root / "images").symlink_to(fixtures / "crowdpose", target_is_directory=True)
    return root


def test_load_split(fixtures: Path, tmp_path: Path) -> None:
    root = crowdpose_root(fixtures, tmp_path / "crowdpose")
    data = get_preset("higherhrnet_w32_crowdpose_512").data
    train = load_split(root, data, "train")
    assert isinstance(train, CocoKeypoints) and train.spec is CROWDPOSE
    assert train.image_path(train.images[1]) == root / "images" / "103319.jpg"
    assert [r.image_id for r in load_split(str(root), data, "val").images] == [106848, 103319]


def test_folder_layout_errors(fixtures: Path, tmp_path: Path) -> None:
    data = get_preset("hrnet_w32_aic_512").data
    missing = tmp_path / "nowhere"
    one_line_error(
        lambda: load_split(missing, data, "train"), missing, "annotations/aic_train.json"
    )
    root = tmp_path / "aic"
    root.mkdir()
    one_line_error(
        lambda: load_split(root, data, "val"),
        root / "annotations" / "aic_val.json",
        "not found",
        "keypoint_validation_images_20170911/ (val images)",
    )
    (root / "annotations").mkdir()
    shutil.copy(fixtures / AIC_JSON, root / "annotations" / "aic_train.json")
    one_line_error(
        lambda: load_split(root, data, "train"),
        "image folder",
        root / data.train_images,
        "not found",
    )


# ------------------------------------------------------------------------- images


def test_read_image_is_rgb(fixtures: Path) -> None:
    path = fixtures / "crowdpose" / "103319.jpg"
    image = read_image(path)
    assert image.dtype == np.uint8 and image.shape == (480, 640, 3)
    bgr = cv2.imread(str(path))
    assert bgr is not None
    np.testing.assert_array_equal(image, bgr[:, :, ::-1])


@pytest.mark.parametrize(
    "cut",
    [100, 0.5, -2, -1],  # header only, half the scan data, just before / inside the end marker
)
def test_truncated_jpeg(fixtures: Path, tmp_path: Path, cut: float) -> None:
    for source in (fixtures / "coco" / "000000000785.jpg", fixtures / "crowdpose" / "103319.jpg"):
        data = source.read_bytes()  # baseline and progressive JPEGs
        end = int(len(data) * cut) if 0 < cut < 1 else int(cut) % len(data)
        path = tmp_path / source.name
        path.write_bytes(data[:end])
        one_line_error(partial(read_image, path), path, "truncated JPEG")


def test_jpeg_with_trailer_is_complete(fixtures: Path, tmp_path: Path) -> None:
    """Data after the end marker (camera trailers) is not truncation."""
    source = fixtures / "aic" / "054d9ce9201beffc76e5ff2169d2af2f027002ca.jpg"
    path = tmp_path / "trailer.jpg"
    path.write_bytes(source.read_bytes() + b"\xff\xda\x00\x08trailer")
    np.testing.assert_array_equal(read_image(path), read_image(source))


def test_unreadable_images(fixtures: Path, tmp_path: Path) -> None:
    text = tmp_path / "text.jpg"
    text.write_text("not an image")
    one_line_error(lambda: read_image(text), text, "cannot be decoded")
    png = tmp_path / "cut.png"
    _, encoded = cv2.imencode(".png", np.zeros((20, 30, 3), np.uint8))
    png.write_bytes(encoded.tobytes()[:-20])
    one_line_error(lambda: read_image(png), png, "cannot be decoded")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    one_line_error(lambda: read_image(empty), empty, "is empty")
    missing = tmp_path / "missing.jpg"
    one_line_error(lambda: read_image(missing), missing, "not found")
    one_line_error(lambda: read_image(tmp_path), tmp_path, "cannot read image file")


# ------------------------------------------------------------------------- load-time limits


@pytest.mark.parametrize(("index", "value", "shown"), [
    (3, 1e39, "(1e+39, 108.0"),  # finite in float64, inf in float32
    (4, 70000.0, "108.0, 70000.0"),  # y beyond twice the largest image side
    (5, 1e39, "v=1e+39"),  # a visibility that overflows float32
])
def test_values_float32_cannot_train_on_are_refused_at_load(
    fixtures: Path, tmp_path: Path, index: int, value: float, shown: str
) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["annotations"][0]["keypoints"][3:6] = [108.0, 108.0, 2]
        data["annotations"][0]["keypoints"][index] = value

    path = crowdpose_with(fixtures, tmp_path, edit)
    one_line_error(lambda: load_annotations(path, CROWDPOSE), "annotation id 123803",
                   "keypoint 1 (right_shoulder)", shown, "up to 65536")


@pytest.mark.parametrize("value", [10**5, 10**12, 1e12])
def test_absurd_image_sizes_are_refused_at_load(
    fixtures: Path, tmp_path: Path, value: float
) -> None:
    path = crowdpose_with(fixtures, tmp_path, lambda d: d["images"][1].update(height=value))
    one_line_error(lambda: load_annotations(path, CROWDPOSE), "image id 103319",
                   f"has height {value!r}; expected a positive integer up to 32768")


@pytest.mark.parametrize("size", [[10**5, 10**5], [425], "425x640", [425, -640]])
def test_absurd_rle_sizes_are_refused_before_decoding(
    fixtures: Path, tmp_path: Path, size: Any
) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["annotations"][1]["segmentation"] = {"counts": [6], "size": size}

    path = crowdpose_with(fixtures, tmp_path, edit)
    one_line_error(lambda: load_annotations(path, CROWDPOSE), "annotation id 131039",
                   "image id 106848", f"RLE segmentation of size {size!r}")
