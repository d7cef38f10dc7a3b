"""Keypoint definitions against the reference's literal tables (reference.md §5.1, mmpose
configs/_base_/datasets/coco.py) and the real annotation files in ../shared/fixtures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from aepose.errors import AeposeError
from aepose.keypoints import (
    AIC,
    CENTER_COLOR,
    COCO,
    CROWDPOSE,
    KEYPOINT_SPECS,
    LEFT_COLOR,
    RIGHT_COLOR,
    KeypointSpec,
    get_spec,
    mirror_name,
)

FIXTURES = Path(__file__).resolve().parents[1] / ".." / "shared" / "fixtures"

# Literal lists as printed in the reference (not derived from names like the module does).
REFERENCE_FLIP_INDEX = {
    "coco": [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15],
    "aic": [3, 4, 5, 0, 1, 2, 9, 10, 11, 6, 7, 8, 12, 13],
    "crowdpose": [1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 12, 13],
}
REFERENCE_FLIP_PAIRS = {
    "aic": [(0, 3), (1, 4), (2, 5), (6, 9), (7, 10), (8, 11)],
    "crowdpose": [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (10, 11)],
}
ALL = [COCO, AIC, CROWDPOSE]


def test_registry_names_and_sizes() -> None:
    assert list(KEYPOINT_SPECS) == ["coco", "aic", "crowdpose"]
    assert {name: spec.num_keypoints for name, spec in KEYPOINT_SPECS.items()} == {
        "coco": 17,
        "aic": 14,
        "crowdpose": 14,
    }
    for name, spec in KEYPOINT_SPECS.items():
        assert spec.name == name
        assert get_spec(name) is spec


@pytest.mark.parametrize("spec", ALL, ids=lambda s: s.name)
def test_flip_index_equals_reference_and_is_an_involution(spec: KeypointSpec) -> None:
    fi = list(spec.flip_index)
    assert fi == REFERENCE_FLIP_INDEX[spec.name]
    assert [fi[fi[i]] for i in range(len(fi))] == list(range(len(fi)))


@pytest.mark.parametrize("spec", ALL, ids=lambda s: s.name)
def test_flip_index_maps_each_name_to_its_mirror(spec: KeypointSpec) -> None:
    names = spec.keypoint_names
    for k, j in enumerate(spec.flip_index):
        a, b = names[k], names[j]
        if a.startswith("left_"):
            assert b == "right_" + a[len("left_") :]
        elif a.startswith("right_"):
            assert b == "left_" + a[len("right_") :]
        else:
            assert j == k, f"centre joint {a} must map to itself"


def test_flip_pairs_match_reference() -> None:
    assert list(AIC.flip_pairs) == REFERENCE_FLIP_PAIRS["aic"]
    assert list(CROWDPOSE.flip_pairs) == REFERENCE_FLIP_PAIRS["crowdpose"]
    assert len(COCO.flip_pairs) == 8


def test_mirror_name_handles_short_prefixes() -> None:
    assert mirror_name("l_knee") == "r_knee"
    assert mirror_name("r_hip") == "l_hip"
    assert mirror_name("left_eye") == "right_eye"
    assert mirror_name("neck") == "neck"


def test_table_values_from_reference() -> None:
    assert AIC.keypoint_names[:3] == ("right_shoulder", "right_elbow", "right_wrist")
    assert AIC.keypoint_names[12:] == ("head_top", "neck")
    assert CROWDPOSE.keypoint_names[12:] == ("top_head", "neck")
    assert AIC.sigmas[6] == 0.03909642 and AIC.sigmas[13] == 0.01236173
    assert CROWDPOSE.sigmas == (0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107,
                                0.087, 0.087, 0.089, 0.089, 0.079, 0.079)  # fmt: skip
    assert COCO.sigmas[0] == 0.026 and COCO.sigmas[11] == 0.107
    assert AIC.skeleton[0] == (2, 1) and AIC.skeleton[-1] == (3, 9) and len(AIC.skeleton) == 14
    assert len(CROWDPOSE.skeleton) == 15 and CROWDPOSE.skeleton[-1] == (0, 13)
    assert len(COCO.skeleton) == 19


def test_grouping_orders() -> None:
    assert COCO.grouping_order == (0, 1, 2, 3, 4, 5, 6, 11, 12, 7, 8, 9, 10, 13, 14, 15, 16)
    assert AIC.grouping_order == tuple(range(14))
    assert CROWDPOSE.grouping_order == tuple(range(14))


@pytest.mark.parametrize("spec", ALL, ids=lambda s: s.name)
def test_colours_follow_sides(spec: KeypointSpec) -> None:
    for name, color in zip(spec.keypoint_names, spec.keypoint_colors, strict=True):
        expected = (
            LEFT_COLOR
            if name.startswith("left_")
            else RIGHT_COLOR
            if name.startswith("right_")
            else CENTER_COLOR
        )
        assert color == expected, name
    assert len(spec.link_colors) == len(spec.skeleton)
    for (a, b), color in zip(spec.skeleton, spec.link_colors, strict=True):
        ca, cb = spec.keypoint_colors[a], spec.keypoint_colors[b]
        assert color == (ca if ca == cb else CENTER_COLOR)


def test_specific_colours() -> None:
    assert LEFT_COLOR == (0, 255, 0)
    assert RIGHT_COLOR == (255, 128, 0)
    assert CENTER_COLOR == (51, 153, 255)
    # COCO: ankle-knee on the left is green, shoulder-shoulder and nose-eye are blue.
    link = dict(zip(COCO.skeleton, COCO.link_colors, strict=True))
    assert link[(15, 13)] == LEFT_COLOR
    assert link[(16, 14)] == RIGHT_COLOR
    assert link[(5, 6)] == CENTER_COLOR
    assert link[(0, 1)] == CENTER_COLOR
    assert COCO.keypoint_colors[0] == CENTER_COLOR  # nose


def test_unknown_name_suggests_closest() -> None:
    with pytest.raises(AeposeError, match=r"spec 'crowdpos'; did you mean 'crowdpose'"):
        get_spec("crowdpos")
    with pytest.raises(AeposeError, match="choices: coco, aic, crowdpose"):
        get_spec("mpii")


def test_spec_is_frozen_and_validated() -> None:
    with pytest.raises(AttributeError):
        COCO.name = "x"  # type: ignore[misc]
    with pytest.raises(ValueError, match="involution"):
        KeypointSpec(
            name="bad",
            keypoint_names=("a", "b", "c"),
            flip_index=(1, 2, 0),
            sigmas=(0.1, 0.1, 0.1),
            skeleton=(),
            grouping_order=(0, 1, 2),
            keypoint_colors=(CENTER_COLOR,) * 3,
            link_colors=(),
        )


def _load(rel: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(person category, annotations) of a fixture file; skips when fixtures are absent."""
    path = FIXTURES / rel
    if not path.exists():
        pytest.skip(f"fixture {path} not available")
    data = json.loads(path.read_text())
    return data["categories"][0], data["annotations"]


def _normalise(name: str) -> str:
    return name.lower().replace(" ", "_")


def test_aic_fixture_agrees_with_spec() -> None:
    cat, anns = _load("aic/test_aic.json")
    assert [_normalise(n) for n in cat["keypoints"]] == list(AIC.keypoint_names)
    # The file's skeleton is 1-based and lists the same links in the same order.
    skeleton = [tuple(a - 1 for a in link) for link in cat["skeleton"]]
    assert skeleton == list(AIC.skeleton)
    for ann in anns:
        assert len(ann["keypoints"]) == 3 * AIC.num_keypoints


def test_crowdpose_fixture_agrees_with_spec() -> None:
    cat, anns = _load("crowdpose/test_crowdpose.json")
    names = list(cat["keypoints"])
    # The released file calls joint 12 'head'; mmpose's meta calls it 'top_head'.
    assert names[:12] == list(CROWDPOSE.keypoint_names[:12])
    assert names[13] == "neck"
    for ann in anns:
        assert len(ann["keypoints"]) == 3 * CROWDPOSE.num_keypoints


def test_coco_fixture_agrees_with_spec() -> None:
    cat, anns = _load("coco/test_coco.json")
    assert list(cat["keypoints"]) == list(COCO.keypoint_names)
    skeleton = [tuple(a - 1 for a in link) for link in cat["skeleton"]]
    assert skeleton == list(COCO.skeleton)
    for ann in anns:
        assert len(ann["keypoints"]) == 3 * COCO.num_keypoints
