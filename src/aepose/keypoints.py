"""Keypoint definitions of the supported datasets: the one place these facts live.

A :class:`KeypointSpec` carries everything that depends on *which* skeleton is used: joint
names, the left/right flip permutation (flip augmentation and flip test), the OKS sigmas
(evaluation), the skeleton and colours (drawing) and the joint visiting order of the grouping
step. The codec, transforms, evaluator and drawing all receive a spec instead of looking facts
up themselves.

Facts: reference.md §5.1 (AIC-14, CrowdPose-14) and mmpose 0.x
``configs/_base_/datasets/coco.py`` (COCO-17).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from aepose.config import CUSTOM_DATASET, Config, did_you_mean
from aepose.errors import AeposeError

RGB = tuple[int, int, int]

OksArea = Literal["annotated", "box"]
"""Where the OKS scale of a ground-truth person comes from (see :class:`KeypointSpec`)."""

OKS_AREAS: tuple[OksArea, ...] = ("annotated", "box")

# mmpose's dataset palettes: every left-side part green, right-side orange, centre/head blue.
LEFT_COLOR: RGB = (0, 255, 0)
RIGHT_COLOR: RGB = (255, 128, 0)
CENTER_COLOR: RGB = (51, 153, 255)


def keypoint_side(name: str) -> str:
    """``"left"``, ``"right"`` or ``"center"`` from a joint name's ``left_``/``l_`` prefix."""
    if name.startswith(("left_", "l_")):
        return "left"
    if name.startswith(("right_", "r_")):
        return "right"
    return "center"


def mirror_name(name: str) -> str:
    """The name of the joint on the other side (``left_knee`` <-> ``right_knee``); centre
    joints are their own mirror."""
    for a, b in (("left_", "right_"), ("right_", "left_"), ("l_", "r_"), ("r_", "l_")):
        if name.startswith(a):
            return b + name[len(a) :]
    return name


_SIDE_COLOR: dict[str, RGB] = {"left": LEFT_COLOR, "right": RIGHT_COLOR, "center": CENTER_COLOR}


@dataclass(frozen=True)
class KeypointSpec:
    """One dataset's keypoint definition (K keypoints).

    Attributes:
        name: dataset name (``"coco"``, ``"aic"``, ``"crowdpose"``).
        keypoint_names: K names; position = keypoint id = heatmap channel.
        flip_index: K ids; after a horizontal flip, slot ``k`` holds the joint that was
            ``flip_index[k]`` (an involution swapping left and right).
        sigmas: K OKS sigmas, as the evaluation library takes them.
        skeleton: links as (a, b) keypoint-id pairs (0-based), for drawing.
        grouping_order: order in which the grouping step visits joints (reference §4.5.3).
        keypoint_colors: K RGB colours; link_colors: one RGB colour per skeleton link.
        oks_area: the area that scales a ground-truth person's OKS and puts it in the
            medium / large bucket: ``"annotated"``, the annotation's own ``area`` field
            (xtcocotools' ``use_area=True``, mmpose 0.x's rule for COCO); ``"box"``,
            0.53 x its bbox width x height (``use_area=False``, mmpose's rule for AI
            Challenger and CrowdPose, whose files have no ``area``).
    """

    name: str
    keypoint_names: tuple[str, ...]
    flip_index: tuple[int, ...]
    sigmas: tuple[float, ...]
    skeleton: tuple[tuple[int, int], ...]
    grouping_order: tuple[int, ...]
    keypoint_colors: tuple[RGB, ...]
    link_colors: tuple[RGB, ...]
    oks_area: OksArea = "annotated"

    def __post_init__(self) -> None:
        # A wrong table here would silently corrupt flips, evaluation and drawing, so the
        # invariants are checked once at import time.
        k = len(self.keypoint_names)
        for field_name in ("flip_index", "sigmas", "grouping_order", "keypoint_colors"):
            if len(getattr(self, field_name)) != k:
                raise ValueError(f"{self.name}: {field_name} must have {k} entries")
        if sorted(self.flip_index) != list(range(k)):
            raise ValueError(f"{self.name}: flip_index is not a permutation of 0..{k - 1}")
        if any(self.flip_index[self.flip_index[i]] != i for i in range(k)):
            raise ValueError(f"{self.name}: flip_index is not an involution")
        if sorted(self.grouping_order) != list(range(k)):
            raise ValueError(f"{self.name}: grouping_order is not a permutation of 0..{k - 1}")
        if len(self.link_colors) != len(self.skeleton):
            raise ValueError(f"{self.name}: link_colors must have one entry per skeleton link")
        if any(not (0 <= a < k and 0 <= b < k) for a, b in self.skeleton):
            raise ValueError(f"{self.name}: skeleton refers to a keypoint id outside 0..{k - 1}")
        if self.oks_area not in OKS_AREAS:
            raise ValueError(f"{self.name}: oks_area must be one of {', '.join(OKS_AREAS)}")

    @property
    def num_keypoints(self) -> int:
        """K, the number of keypoints (= heatmap channels = tag channels)."""
        return len(self.keypoint_names)

    @property
    def flip_pairs(self) -> tuple[tuple[int, int], ...]:
        """Each left/right pair once, (lower id, higher id), in the order first met."""
        return tuple((i, j) for i, j in enumerate(self.flip_index) if i < j)

    @property
    def is_builtin(self) -> bool:
        """Whether this is one of :data:`KEYPOINT_SPECS`, fact for fact."""
        return KEYPOINT_SPECS.get(self.name) == self

    def to_dict(self) -> dict[str, Any]:
        """Every fact as JSON types (lists, numbers, strings): what a checkpoint and an ONNX
        file store; :func:`aepose.skeleton_file.spec_from_dict` reads it back."""
        return {
            "name": self.name,
            "keypoint_names": list(self.keypoint_names),
            "flip_index": list(self.flip_index),
            "sigmas": list(self.sigmas),
            "skeleton": [list(link) for link in self.skeleton],
            "grouping_order": list(self.grouping_order),
            "keypoint_colors": [list(c) for c in self.keypoint_colors],
            "link_colors": [list(c) for c in self.link_colors],
            "oks_area": self.oks_area,
        }


def build_spec(
    name: str,
    keypoint_names: tuple[str, ...],
    skeleton: tuple[tuple[int, int], ...],
    sigmas: tuple[float, ...],
    *,
    flip_index: tuple[int, ...] | None = None,
    grouping_order: tuple[int, ...] | None = None,
    keypoint_colors: tuple[RGB, ...] | None = None,
    link_colors: tuple[RGB, ...] | None = None,
    oks_area: OksArea = "annotated",
) -> KeypointSpec:
    """A spec whose unset facts are inferred from the joint names: the one mechanism behind
    the built-in specs and a dataset's own (:mod:`aepose.skeleton_file`).

    Inferred: the flip index from ``left_``/``right_`` and ``l_``/``r_`` name pairs (a joint
    whose mirror is not listed maps to itself); colours by side (:func:`keypoint_side`; a link
    takes its side's colour when both ends are on it, else the centre's); the grouping
    order as listed. Deriving them rather than typing them keeps names, flip and colours
    consistent; the tests compare the derived flip index with the reference's literal lists.
    """
    index = {n: i for i, n in enumerate(keypoint_names)}
    if flip_index is None:
        flip_index = tuple(index.get(mirror_name(n), i) for i, n in enumerate(keypoint_names))
    sides = [keypoint_side(n) for n in keypoint_names]
    if keypoint_colors is None:
        keypoint_colors = tuple(_SIDE_COLOR[s] for s in sides)
    if link_colors is None:
        # Links that cross the body (shoulder-shoulder, shoulder-neck, nose-eye) are
        # centre-coloured.
        link_colors = tuple(
            _SIDE_COLOR[sides[a]] if sides[a] == sides[b] else CENTER_COLOR for a, b in skeleton
        )
    order = grouping_order if grouping_order is not None else tuple(range(len(keypoint_names)))
    return KeypointSpec(
        name=name,
        keypoint_names=keypoint_names,
        flip_index=flip_index,
        sigmas=sigmas,
        skeleton=skeleton,
        grouping_order=order,
        keypoint_colors=keypoint_colors,
        link_colors=link_colors,
        oks_area=oks_area,
    )


# The numeric tables are kept one row per line of the source they were read from.
# fmt: off
_COCO_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip",
    "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)
_COCO_SIGMAS = (
    0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072,
    0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089,
)
_COCO_SKELETON = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7),
    (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)
# mmpose groups COCO torso-first: head, shoulders, hips, then the limbs.
_COCO_GROUPING_ORDER = (0, 1, 2, 3, 4, 5, 6, 11, 12, 7, 8, 9, 10, 13, 14, 15, 16)

_AIC_NAMES = (
    "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
    "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee",
    "left_ankle", "head_top", "neck",
)
_AIC_SIGMAS = (
    0.01388152, 0.01515228, 0.01057665, 0.01417709, 0.01497891, 0.01402144, 0.03909642,
    0.03686941, 0.01981803, 0.03843971, 0.03412318, 0.02415081, 0.01291456, 0.01236173,
)
_AIC_SKELETON = (
    (2, 1), (1, 0), (0, 13), (13, 3), (3, 4), (4, 5), (8, 7), (7, 6), (6, 9), (9, 10),
    (10, 11), (12, 13), (0, 6), (3, 9),
)

_CROWDPOSE_NAMES = (
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist",
    "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
    "right_ankle", "top_head", "neck",
)
_CROWDPOSE_SIGMAS = (
    0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089,
    0.079, 0.079,
)
_CROWDPOSE_SKELETON = (
    (10, 8), (8, 6), (11, 9), (9, 7), (6, 7), (0, 6), (1, 7), (0, 1), (0, 2), (1, 3),
    (2, 4), (3, 5), (12, 13), (1, 13), (0, 13),
)
# fmt: on

# OKS area per dataset as mmpose 0.x scores it (datasets/bottom_up/bottom_up_coco.py calls
# COCOeval with xtcocotools' default use_area=True; bottom_up_aic.py and
# bottom_up_crowdpose.py pass use_area=False).
COCO = build_spec("coco", _COCO_NAMES, _COCO_SKELETON, _COCO_SIGMAS,
                  grouping_order=_COCO_GROUPING_ORDER, oks_area="annotated")
AIC = build_spec("aic", _AIC_NAMES, _AIC_SKELETON, _AIC_SIGMAS, oks_area="box")
CROWDPOSE = build_spec("crowdpose", _CROWDPOSE_NAMES, _CROWDPOSE_SKELETON, _CROWDPOSE_SIGMAS,
                       oks_area="box")

KEYPOINT_SPECS: dict[str, KeypointSpec] = {"coco": COCO, "aic": AIC, "crowdpose": CROWDPOSE}

CUSTOM = CUSTOM_DATASET
"""``data.dataset`` of a recipe whose keypoints came from its data: the spec travels with
the network (checkpoint, ONNX metadata), not in a table here."""

# OKS sigmas known by joint name, for a dataset's own skeleton: COCO's 17 and CrowdPose's
# two extra joints, which share one scale (CrowdPose took COCO's values). AIC's sigmas are
# measured on another scale (ten times smaller) and would not mix with them.
KNOWN_SIGMAS: dict[str, float] = {
    **dict(zip(_CROWDPOSE_NAMES, _CROWDPOSE_SIGMAS, strict=True)),
    **dict(zip(_COCO_NAMES, _COCO_SIGMAS, strict=True)),
}
DEFAULT_SIGMA = 0.079
"""The OKS sigma of a joint no built-in dataset names: CrowdPose's value for the joints it
added to COCO's (top_head, neck). A spec file's ``sigmas`` overrides it."""


def get_spec(name: str) -> KeypointSpec:
    """The :class:`KeypointSpec` called ``name``; an unknown name raises
    :class:`~aepose.errors.AeposeError` with the closest valid names."""
    if name == CUSTOM:
        raise AeposeError(
            "the keypoints of a custom skeleton travel with its network (an aepose checkpoint "
            "or ONNX file) or come from an annotation file's categories; none was given")
    try:
        return KEYPOINT_SPECS[name]
    except KeyError:
        choices = ", ".join(KEYPOINT_SPECS)
        raise AeposeError(
            f"unknown keypoint spec {name!r}{did_you_mean(name, KEYPOINT_SPECS)} "
            f"(choices: {choices})"
        ) from None


def spec_of(network: object, dataset: str) -> KeypointSpec:
    """The keypoints a network's channels mean: its own ``keypoint_spec`` (a network trained
    on or loaded with a skeleton: :class:`~aepose.models.AssociativeEmbeddingNet`, an ONNX
    file's, or the one a wrapper runs), else the built-in spec ``dataset`` names."""
    own = getattr(network, "keypoint_spec", None)
    if isinstance(own, KeypointSpec):
        return own
    return get_spec(dataset)


def recipe_for(config: Config, spec: KeypointSpec) -> Config:
    """``config``'s recipe (architecture, schedule) for the keypoints of ``spec``: K heatmap
    and K tag channels, ``data.dataset`` the built-in name or :data:`CUSTOM`, and no
    test-time flip for a skeleton without left/right pairs (there is no mirror to map back)."""
    model = dataclasses.replace(config.model, num_keypoints=spec.num_keypoints)
    data = dataclasses.replace(config.data, dataset=spec.name if spec.is_builtin else CUSTOM)
    test = config.test if spec.flip_pairs else dataclasses.replace(config.test, flip=False)
    return dataclasses.replace(config, model=model, data=data, test=test)
