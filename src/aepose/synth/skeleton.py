"""Keypoint sets the generator can annotate: the three datasets' and any custom choice.

A :class:`PointSet` is what the generator needs of a skeleton: the K point names (position =
keypoint id) and the links between them. The built-in datasets' sets come from their
:class:`~aepose.keypoints.KeypointSpec`; a custom set is any choice of distinct points the
figures are built from (:data:`~aepose.synth.figure.POINT_NAMES`), written as named sets and
point names joined by ``+`` or ``,`` (:func:`parse_points`), e.g. ``coco+hands+toes`` (21
points) or ``body9``.

Links of a custom set follow the figure's anatomy (:data:`ANATOMY`, a tree from the neck
out to the hands, toes and face) restricted to the chosen points: two chosen points are
linked when the anatomy's path between them passes through no other chosen point. A toe
links to its ankle, or to its knee when the ankle is not chosen; the hips are also linked
to each other. The anatomy being a tree that reaches every point, every custom skeleton is
connected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import pairwise

from aepose.config import did_you_mean
from aepose.errors import AeposeError
from aepose.keypoints import CUSTOM, KeypointSpec, get_spec
from aepose.synth.figure import ALIASES, POINT_NAMES

__all__ = ["ANATOMY", "NAMED_SETS", "PointSet", "custom_points", "parse_points",
           "point_set"]

def _sides(*names: str) -> tuple[str, ...]:
    return tuple(f"{side}_{n}" for n in names for side in ("left", "right"))


def _spec_names(spec: str) -> tuple[str, ...]:
    return tuple(ALIASES.get(n, n) for n in get_spec(spec).keypoint_names)


# Named sets, in their own keypoint order; the datasets' under the generator's point names.
NAMED_SETS: dict[str, tuple[str, ...]] = {
    "coco": _spec_names("coco"),
    "aic": _spec_names("aic"),
    "crowdpose": _spec_names("crowdpose"),
    "face": ("nose", *_sides("eye", "ear")),
    "hands": _sides("hand"),
    "toes": _sides("toe"),
    # A stick figure: the head, where each limb starts and where it ends.
    "body9": ("head_centre", *_sides("shoulder", "wrist", "hip", "ankle")),
    "all": POINT_NAMES,
}


def _limbs(side: str) -> tuple[tuple[str, str], ...]:
    arm = ("shoulder", "elbow", "wrist", "hand")
    # The torso's side joins hip to shoulder, as COCO's skeleton does.
    leg = ("shoulder", "hip", "knee", "ankle", "toe")
    return (
        (f"{side}_shoulder", "neck"),
        *((f"{side}_{b}", f"{side}_{a}") for chain in (arm, leg) for a, b in pairwise(chain)),
    )


ANATOMY: tuple[tuple[str, str], ...] = (
    ("head_centre", "neck"), ("head_top", "head_centre"), ("nose", "head_centre"),
    ("left_eye", "nose"), ("right_eye", "nose"), ("left_ear", "left_eye"),
    ("right_ear", "right_eye"), *_limbs("left"), *_limbs("right"),
)  # fmt: skip
"""The figure's anatomy as a tree: (point, its neighbour towards the neck)."""
_CROSS = (("left_hip", "right_hip"),)  # closes the pelvis when both ends are chosen


@dataclass(frozen=True)
class PointSet:
    """The keypoints a generated dataset is annotated with.

    Attributes:
        name: ``"coco"``, ``"aic"``, ``"crowdpose"`` (the datasets' own sets, formats and
            folder layouts) or :data:`~aepose.keypoints.CUSTOM` (COCO's format).
        keypoint_names: K distinct names of :data:`~aepose.synth.figure.POINT_NAMES` (the
            built-in sets keep their dataset's own spelling, e.g. CrowdPose's ``top_head``).
        skeleton: links as (a, b) keypoint-id pairs, 0-based.
    """

    name: str
    keypoint_names: tuple[str, ...]
    skeleton: tuple[tuple[int, int], ...]

    @property
    def num_keypoints(self) -> int:
        """K."""
        return len(self.keypoint_names)


def point_set(spec: PointSet | KeypointSpec | str) -> PointSet:
    """The :class:`PointSet` of a built-in dataset (a name or its spec), or ``spec`` itself."""
    if isinstance(spec, PointSet):
        return spec
    spec = get_spec(spec) if isinstance(spec, str) else spec
    return PointSet(spec.name, spec.keypoint_names, spec.skeleton)


def _links(names: tuple[str, ...]) -> tuple[tuple[int, int], ...]:
    """The anatomy (and the cross links) restricted to ``names``: (i, j) with i < j, sorted."""
    neighbours: dict[str, list[str]] = {n: [] for n in POINT_NAMES}
    for a, b in ANATOMY:
        neighbours[a].append(b)
        neighbours[b].append(a)
    index = {n: i for i, n in enumerate(names)}
    links: set[tuple[int, int]] = set()
    for start in names:
        # Walk the tree from ``start`` through points not chosen; each chosen point met ends
        # a path whose inside is unchosen, so it is linked to ``start``.
        seen, todo = {start}, [start]
        while todo:
            for nxt in neighbours[todo.pop()]:
                if nxt in seen:
                    continue
                seen.add(nxt)
                if nxt in index:
                    i, j = index[start], index[nxt]
                    links.add((min(i, j), max(i, j)))
                else:
                    todo.append(nxt)
    for a, b in _CROSS:
        if a in index and b in index:
            links.add((min(index[a], index[b]), max(index[a], index[b])))
    return tuple(sorted(links))


def custom_points(names: tuple[str, ...] | list[str], what: str = "keypoints") -> PointSet:
    """A custom :class:`PointSet` of ``names`` (in this order) linked by the anatomy.

    Raises :class:`~aepose.errors.AeposeError`, its line starting with ``what``, for a name
    the figures do not have, a name given twice, or fewer than 2 names.
    """
    names = tuple(names)
    unknown = [n for n in names if n not in POINT_NAMES]
    if unknown:
        hint = did_you_mean(unknown[0], (*NAMED_SETS, *POINT_NAMES))
        raise AeposeError(
            f"{what}: the generator draws no point called {unknown[0]!r}{hint} (named sets: "
            f"{', '.join(NAMED_SETS)}; points: {', '.join(POINT_NAMES)})"
        )
    twice = sorted({n for n in names if names.count(n) > 1}, key=names.index)
    if twice:
        raise AeposeError(f"{what}: {', '.join(twice)} chosen twice (each point once)")
    if len(names) < 2:
        raise AeposeError(f"{what}: choose at least 2 points, got {len(names)}")
    return PointSet(CUSTOM, names, _links(names))


def parse_points(text: str) -> PointSet:
    """A custom set from ``--keypoints``: named sets (:data:`NAMED_SETS`) and point names
    joined by ``+`` or ``,``, in the order given; ``"coco+hands+toes"`` -> 21 points."""
    what = f"--keypoints {text!r}"
    terms = [t.strip() for t in re.split(r"[+,]", text)]
    if not all(terms):
        raise AeposeError(f"{what}: an empty name (join names with + or ,)")
    names: list[str] = []
    for term in terms:
        names += NAMED_SETS.get(term, (term,))
    return custom_points(names, what)
