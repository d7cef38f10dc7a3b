"""A dataset's own skeleton (aepose.skeleton_file): inference from COCO categories, the spec
file's overrides, one-line errors naming file and field, and the stored form."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from custom_skeleton import BODY21, BODY21_LINKS, COCO17, POINTS9, POINTS9_LINKS, coco_file

from aepose.data.coco import load_annotations
from aepose.errors import AeposeError
from aepose.keypoints import (
    AIC,
    CENTER_COLOR,
    COCO,
    CROWDPOSE,
    DEFAULT_SIGMA,
    LEFT_COLOR,
    RIGHT_COLOR,
    KeypointSpec,
)
from aepose.skeleton_file import spec_from_annotations, spec_from_dict

COCO_LINKS = [[a + 1, b + 1] for a, b in COCO.skeleton]
COCO_SIGMA = dict(zip(COCO17, (0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072,
                               0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089),
                      strict=True))


def write(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data))
    return path


def one_line(call: Any, *parts: str) -> str:
    with pytest.raises(AeposeError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    for part in parts:
        assert part in message, message
    return message


def test_21_points_inferred(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ann = write(tmp_path / "a.json", coco_file(BODY21, BODY21_LINKS))
    with caplog.at_level(logging.WARNING, logger="aepose"):
        spec = spec_from_annotations(ann)
    assert spec.name == "person" and spec.num_keypoints == 21
    # Flip: each left_X <-> right_X by name, checked against a loop over the names.
    for k, name in enumerate(BODY21):
        other = BODY21[spec.flip_index[k]]
        assert other == (name.replace("left_", "right_") if name.startswith("left_")
                         else name.replace("right_", "left_") if name.startswith("right_")
                         else name)
    assert spec.flip_index[17:] == (18, 17, 20, 19)
    # Sigmas: COCO's for its names, the documented default for the others, said once.
    assert spec.sigmas[:17] == tuple(COCO_SIGMA[n] for n in COCO17)
    assert spec.sigmas[17:] == (DEFAULT_SIGMA,) * 4
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "left_hand, right_hand, left_toe, right_toe" in lines[0]
    assert str(ann) in lines[0] and "0.079" in lines[0]
    assert spec.skeleton[-4:] == ((9, 17), (10, 18), (15, 19), (16, 20))
    assert spec.keypoint_colors[17:] == (LEFT_COLOR, RIGHT_COLOR, LEFT_COLOR, RIGHT_COLOR)
    assert spec.link_colors[-1] == RIGHT_COLOR and spec.link_colors[7] == CENTER_COLOR
    assert spec.grouping_order == tuple(range(21))
    assert spec.oks_area == "annotated"


def test_short_side_prefixes_and_box_area(tmp_path: Path) -> None:
    ann = write(tmp_path / "a.json", coco_file(POINTS9, POINTS9_LINKS, area=False))
    spec = spec_from_annotations(ann)
    assert spec.flip_index == (0, 1, 3, 2, 5, 4, 6, 8, 7)
    assert spec.flip_pairs == ((2, 3), (4, 5), (7, 8))
    assert spec.oks_area == "box"  # not every annotation has an area
    assert spec.sigmas[1] == 0.079  # "neck": CrowdPose's


@pytest.mark.parametrize("builtin", [COCO, AIC, CROWDPOSE], ids=lambda s: s.name)
def test_a_builtin_datasets_names_give_the_builtin_spec(tmp_path: Path,
                                                        builtin: KeypointSpec) -> None:
    links = [[a + 1, b + 1] for a, b in builtin.skeleton]
    ann = write(tmp_path / "a.json", coco_file(list(builtin.keypoint_names), links))
    assert spec_from_annotations(ann) is builtin


def test_spec_file_overrides_everything(tmp_path: Path) -> None:
    ann = write(tmp_path / "a.json", coco_file(POINTS9, POINTS9_LINKS))
    order = list(reversed(POINTS9))
    spec_file = write(tmp_path / "s.json", {
        "name": "nine", "flip_pairs": [["l_hand", "r_hand"]],
        "sigmas": {"head": 0.05, "l_foot": 0.1}, "keypoint_colors": {"head": [1, 2, 3]},
        "link_colors": [[9, 9, 9]] * 8, "grouping_order": order, "oks_area": "box"})
    spec = spec_from_annotations(ann, spec_file)
    assert spec.name == "nine"
    assert spec.flip_index == (0, 1, 2, 3, 5, 4, 6, 7, 8)
    assert spec.sigmas[0] == 0.05 and spec.sigmas[7] == 0.1 and spec.sigmas[2] == DEFAULT_SIGMA
    assert spec.keypoint_colors[0] == (1, 2, 3) and spec.keypoint_colors[2] == LEFT_COLOR
    assert spec.link_colors == ((9, 9, 9),) * 8
    assert spec.grouping_order == tuple(range(8, -1, -1))
    assert spec.oks_area == "box"


def test_no_flip_pairs(tmp_path: Path) -> None:
    ann = write(tmp_path / "a.json", coco_file(POINTS9, POINTS9_LINKS))
    spec = spec_from_annotations(ann, write(tmp_path / "s.json", {"flip_pairs": []}))
    assert spec.flip_pairs == ()


def test_spec_file_names_a_file_without_categories(tmp_path: Path) -> None:
    data = coco_file(POINTS9, POINTS9_LINKS)
    del data["categories"]
    ann = write(tmp_path / "a.json", data)
    one_line(lambda: spec_from_annotations(ann), str(ann), "categories", "keypoints")
    spec_file = write(tmp_path / "s.json", {"keypoints": POINTS9, "skeleton": POINTS9_LINKS})
    assert spec_from_annotations(ann, spec_file).keypoint_names == tuple(POINTS9)


def _edit(field: str, value: Any) -> Any:
    def edit(data: dict[str, Any]) -> None:
        data["categories"][0][field] = value
    return edit


@pytest.mark.parametrize(("edit", "parts"), [
    (_edit("skeleton", [[1, 2], [2, 10]]), ("categories[0].skeleton[1]", "[2, 10]", "1..9")),
    (_edit("skeleton", [[0, 2]]), ("categories[0].skeleton[0]", "outside 1..9")),
    (_edit("skeleton", [[1, "b"]]), ("categories[0].skeleton[0]", "not a pair")),
    (_edit("keypoints", [*POINTS9[:8], "head"]),
     ("categories[0].keypoints", "duplicate name 'head'", "positions 1 and 9")),
    (_edit("keypoints", []), ("categories[0].keypoints", "non-empty list")),
])
def test_category_errors(tmp_path: Path, edit: Any, parts: tuple[str, ...]) -> None:
    data = coco_file(POINTS9, POINTS9_LINKS)
    edit(data)
    ann = write(tmp_path / "a.json", data)
    one_line(lambda: spec_from_annotations(ann), str(ann), *parts)


@pytest.mark.parametrize(("spec", "parts"), [
    ({"flip_pairs": [["l_hand", "r_hand"], ["r_hand", "l_foot"]]},
     ("flip_pairs[1]", "'r_hand' is paired twice", "involution")),
    ({"flip_pairs": [["l_hand", "l_hand"]]}, ("flip_pairs[0]", "paired twice")),
    ({"flip_pairs": [["l_hnd", "r_hand"]]}, ("flip_pairs[0]", "'l_hnd'", "did you mean")),
    ({"sigmas": {"head": 0}}, ("sigmas.head", "not a positive number")),
    ({"sigmas": {"head": -0.1}}, ("sigmas.head", "-0.1")),
    ({"sigmas": {"head": "big"}}, ("sigmas.head", "'big'")),
    ({"sigmas": {"hed": 0.1}}, ("sigmas", "'hed' is not a keypoint name")),
    ({"grouping_order": POINTS9[:8]}, ("grouping_order", "exactly once")),
    ({"keypoint_colors": {"head": [0, 0, 300]}}, ("keypoint_colors.head", "0..255")),
    ({"link_colors": [[0, 0, 0]]}, ("link_colors", "expected 8")),
    ({"oks_area": "bbox"}, ("oks_area", "'bbox'")),
    ({"flip": []}, ("unknown field 'flip'",)),
    ({"keypoints": POINTS9[:8]}, ("keypoints", "differ")),
    ({"skeleton": [[1, 12]]}, ("skeleton[0]", "outside 1..9")),
])
def test_spec_file_errors(tmp_path: Path, spec: dict[str, Any], parts: tuple[str, ...]) -> None:
    ann = write(tmp_path / "a.json", coco_file(POINTS9, POINTS9_LINKS))
    spec_file = write(tmp_path / "s.json", spec)
    one_line(lambda: spec_from_annotations(ann, spec_file), str(spec_file), *parts)


def test_annotation_keypoint_count_differs_from_names(tmp_path: Path) -> None:
    data = coco_file(POINTS9, POINTS9_LINKS)
    data["annotations"][1]["keypoints"] = data["annotations"][1]["keypoints"][:24]
    ann = write(tmp_path / "a.json", data)
    spec = spec_from_annotations(ann)
    one_line(lambda: load_annotations(ann, spec), str(ann), "24", "27 (9 keypoints)")


@pytest.mark.parametrize("make", ["coco", "custom"])
def test_stored_form_round_trips(tmp_path: Path, make: str) -> None:
    spec = COCO if make == "coco" else spec_from_annotations(
        write(tmp_path / "a.json", coco_file(BODY21, BODY21_LINKS)))
    assert spec_from_dict(json.loads(json.dumps(spec.to_dict())), "x") == spec


def test_stored_form_errors() -> None:
    stored = COCO.to_dict()
    one_line(lambda: spec_from_dict({**stored, "extra": 1}, "f.pth"), "f.pth", "unreadable")
    one_line(lambda: spec_from_dict({**stored, "flip_index": [0] * 17}, "f.pth"), "f.pth",
             "flip_index")
    one_line(lambda: spec_from_dict({**stored, "sigmas": [0.0] * 17}, "f.pth"), "f.pth",
             "sigma")
