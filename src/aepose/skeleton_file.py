"""A dataset's own skeleton: a :class:`~aepose.keypoints.KeypointSpec` from a COCO-format
annotation file's ``categories`` entry, a spec file's overrides, or a stored spec.

COCO's category carries the joint names (``keypoints``) and the links (``skeleton``,
1-based). What it does not carry is inferred by :func:`~aepose.keypoints.build_spec` (flip
pairs from ``left_``/``right_`` and ``l_``/``r_`` names, colours by side, grouping order as
listed) or, for the OKS sigmas, looked up by name (:data:`~aepose.keypoints.KNOWN_SIGMAS`,
else :data:`~aepose.keypoints.DEFAULT_SIGMA`, said once on the ``aepose`` logger). A spec
file (JSON, README "Your own keypoints") overrides any of them:

.. code-block:: json

    {"name": "body21",
     "flip_pairs": [["left_hand", "right_hand"]],
     "sigmas": {"left_hand": 0.035, "right_hand": 0.035},
     "keypoint_colors": {"head_top": [255, 0, 0]},
     "link_colors": [[0, 0, 255], ...one per link],
     "grouping_order": ["neck", "head_top", ...every name once],
     "oks_area": "box",
     "keypoints": [...], "skeleton": [[1, 2], ...]}

``keypoints`` and ``skeleton`` (COCO's form) serve a file whose annotations carry no
category. Names that are exactly a built-in dataset's take that dataset's facts as defaults,
so a COCO, AIC or CrowdPose file gives the built-in spec itself. Every inconsistency is one
:class:`~aepose.errors.AeposeError` line naming the file and the field.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aepose.config import did_you_mean
from aepose.errors import AeposeError
from aepose.io import read_json
from aepose.keypoints import (
    CUSTOM,
    DEFAULT_SIGMA,
    KEYPOINT_SPECS,
    KNOWN_SIGMAS,
    OKS_AREAS,
    RGB,
    KeypointSpec,
    OksArea,
    build_spec,
)

__all__ = ["SPEC_FILE_KEYS", "category_names", "spec_from_annotations", "spec_from_dict"]

logger = logging.getLogger("aepose")

SPEC_FILE_KEYS = ("name", "keypoints", "skeleton", "flip_pairs", "sigmas", "keypoint_colors",
                  "link_colors", "grouping_order", "oks_area")


def spec_from_annotations(ann_file: str | Path, spec_file: str | Path | None = None
                          ) -> KeypointSpec:
    """The skeleton of a COCO-format annotation file (its category with ``keypoints``),
    with ``spec_file``'s overrides applied; see the module docstring.

    Raises:
        AeposeError: one line naming the file and field: no names anywhere, duplicate
            names, a link naming a keypoint out of range, a flip pair that is not an
            involution, a sigma that is not positive, a malformed override.
    """
    ann_path = Path(ann_file)
    data = read_json(ann_path, "annotation")
    if not isinstance(data, dict):
        raise AeposeError(f"{ann_path}: not a COCO-format annotation file (a JSON object)")
    overrides: dict[str, Any] = {}
    if spec_file is not None:
        overrides = _read_spec_file(Path(spec_file))
    category, where = _keypoint_category(data.get("categories"), ann_path)
    if category is None:
        if "keypoints" not in overrides:
            raise AeposeError(f"{ann_path}: categories: no category lists 'keypoints' names; "
                              "add them (COCO's format) or give a spec file with 'keypoints'")
        category, where = overrides, f"{spec_file}: "
    names = _names(category.get("keypoints"), f"{where}keypoints")
    if "keypoints" in overrides and category is not overrides:
        given = _names(overrides["keypoints"], f"{spec_file}: keypoints")
        if given != names:
            raise AeposeError(f"{spec_file}: keypoints: {len(given)} names differ from the "
                              f"{len(names)} of {ann_path} categories")
    links = overrides.get("skeleton", category.get("skeleton", []))
    link_where = f"{spec_file}: skeleton" if "skeleton" in overrides else f"{where}skeleton"
    skeleton = _skeleton(links, len(names), link_where)
    name = overrides.get("name", category.get("name") or CUSTOM)
    if not isinstance(name, str) or not name:
        raise AeposeError(f"{spec_file or ann_path}: name: {name!r} is not a non-empty string")
    return _spec(name, names, skeleton, overrides, Path(spec_file) if spec_file else None,
                 data.get("annotations"), ann_path)


def category_names(ann_file: str | Path) -> tuple[str, ...] | None:
    """The joint names of a COCO-format file's keypoint category (None: it has none)."""
    path = Path(ann_file)
    data = read_json(path, "annotation")
    categories = data.get("categories") if isinstance(data, dict) else None
    category, where = _keypoint_category(categories, path)
    return None if category is None else _names(category.get("keypoints"), f"{where}keypoints")


def _spec(name: str, names: tuple[str, ...], skeleton: tuple[tuple[int, int], ...],
          overrides: dict[str, Any], spec_file: Path | None, annotations: Any,
          ann_path: Path) -> KeypointSpec:
    """The spec of ``names``: a built-in dataset's facts when the names are its, else the
    inferred ones, then ``overrides``."""
    builtin = next((s for s in KEYPOINT_SPECS.values() if s.keypoint_names == names), None)
    where = str(spec_file)
    index = {n: i for i, n in enumerate(names)}
    flip = None
    if "flip_pairs" in overrides:
        flip = _flip_index(overrides["flip_pairs"], index, f"{where}: flip_pairs")
    elif builtin is not None:
        flip = builtin.flip_index
    sigmas = _sigmas(names, builtin, overrides.get("sigmas", {}), where, ann_path)
    order = builtin.grouping_order if builtin is not None else None
    if "grouping_order" in overrides:
        order = _grouping_order(overrides["grouping_order"], index, f"{where}: grouping_order")
    keypoint_colors = None
    if builtin is not None:
        keypoint_colors = builtin.keypoint_colors
    if "keypoint_colors" in overrides:
        default = build_spec(name, names, skeleton, sigmas).keypoint_colors
        keypoint_colors = _keypoint_colors(overrides["keypoint_colors"], index, default,
                                           f"{where}: keypoint_colors")
    link_colors = None
    if "link_colors" in overrides:
        link_colors = _colors(overrides["link_colors"], len(skeleton), f"{where}: link_colors")
    oks_area = _oks_area(overrides, builtin, annotations, where)
    spec = build_spec(name, names, skeleton, sigmas, flip_index=flip, grouping_order=order,
                      keypoint_colors=keypoint_colors, link_colors=link_colors,
                      oks_area=oks_area)
    if builtin is not None and spec == _renamed(builtin, spec.name):
        return builtin
    return spec


def _renamed(spec: KeypointSpec, name: str) -> KeypointSpec:
    return KeypointSpec(name, spec.keypoint_names, spec.flip_index, spec.sigmas, spec.skeleton,
                        spec.grouping_order, spec.keypoint_colors, spec.link_colors,
                        spec.oks_area)


def _read_spec_file(path: Path) -> dict[str, Any]:
    data = read_json(path, "keypoint spec")
    if not isinstance(data, dict):
        raise AeposeError(f"{path}: a keypoint spec file holds a JSON object, not "
                          f"{type(data).__name__}")
    unknown = sorted(set(data) - set(SPEC_FILE_KEYS))
    if unknown:
        raise AeposeError(f"{path}: unknown field {unknown[0]!r}"
                          f"{did_you_mean(unknown[0], SPEC_FILE_KEYS)} (fields: "
                          f"{', '.join(SPEC_FILE_KEYS)})")
    return data


def _keypoint_category(categories: Any, path: Path) -> tuple[dict[str, Any] | None, str]:
    """The one category with ``keypoints`` (None when there is none) and its field name."""
    if categories is None:
        return None, ""
    if not isinstance(categories, list):
        raise AeposeError(f"{path}: categories: expected a list, got {type(categories).__name__}")
    found = [(i, c) for i, c in enumerate(categories)
             if isinstance(c, dict) and c.get("keypoints") is not None]
    if not found:
        return None, ""
    first_names = found[0][1]["keypoints"]
    for i, c in found[1:]:
        if c["keypoints"] != first_names:
            raise AeposeError(f"{path}: categories[{i}].keypoints: differ from categories"
                              f"[{found[0][0]}].keypoints; aepose trains one skeleton per file")
    return found[0][1], f"{path}: categories[{found[0][0]}]."


def _names(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise AeposeError(f"{where}: expected a non-empty list of joint names, got {value!r}"[:200])
    seen: dict[str, int] = {}
    for i, name in enumerate(value):
        if not isinstance(name, str) or not name:
            raise AeposeError(f"{where}[{i}]: {name!r} is not a non-empty string")
        if name in seen:
            raise AeposeError(f"{where}: duplicate name {name!r} (positions {seen[name] + 1} "
                              f"and {i + 1})")
        seen[name] = i
    return tuple(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _skeleton(links: Any, k: int, where: str) -> tuple[tuple[int, int], ...]:
    """COCO's 1-based links -> 0-based pairs."""
    if not isinstance(links, list):
        raise AeposeError(f"{where}: expected a list of [a, b] links, got {type(links).__name__}")
    out = []
    for i, link in enumerate(links):
        if not (isinstance(link, list) and len(link) == 2 and all(map(_is_int, link))):
            raise AeposeError(f"{where}[{i}]: {link!r} is not a pair of keypoint numbers")
        if not all(1 <= v <= k for v in link):
            raise AeposeError(f"{where}[{i}]: {link} names a keypoint outside 1..{k} (there "
                              f"are {k} names; COCO's links count from 1)")
        out.append((link[0] - 1, link[1] - 1))
    return tuple(out)


def _flip_index(pairs: Any, index: dict[str, int], where: str) -> tuple[int, ...]:
    """The flip index of a list of [name, name] pairs; every other joint maps to itself."""
    if not isinstance(pairs, list):
        raise AeposeError(f"{where}: expected a list of [left, right] name pairs")
    flip = list(range(len(index)))
    paired: set[str] = set()
    for i, pair in enumerate(pairs):
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(n, str)
                                                                   for n in pair)):
            raise AeposeError(f"{where}[{i}]: {pair!r} is not a pair of joint names")
        for name in pair:
            _known(name, index, f"{where}[{i}]")
        a, b = pair
        if a == b or a in paired or b in paired:
            twice = a if a == b or a in paired else b
            raise AeposeError(f"{where}[{i}]: {twice!r} is paired twice; the flip must swap each "
                              "joint with exactly one other (an involution)")
        paired.update(pair)
        flip[index[a]], flip[index[b]] = index[b], index[a]
    return tuple(flip)


def _known(name: str, index: dict[str, int], where: str) -> None:
    if name not in index:
        raise AeposeError(f"{where}: {name!r} is not a keypoint name"
                          f"{did_you_mean(name, index)}")


def _sigma(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
            math.isfinite(value) and value > 0):
        raise AeposeError(f"{where}: {value!r} is not a positive number (an OKS sigma)")
    return float(value)


def _sigmas(names: tuple[str, ...], builtin: KeypointSpec | None, given: Any, where: str,
            ann_path: Path) -> tuple[float, ...]:
    if not isinstance(given, dict):
        raise AeposeError(f"{where}: sigmas: expected an object of name: sigma")
    index = {n: i for i, n in enumerate(names)}
    chosen = {}
    for name, value in given.items():
        _known(name, index, f"{where}: sigmas")
        chosen[name] = _sigma(value, f"{where}: sigmas.{name}")
    if builtin is not None:
        return tuple(chosen.get(n, s) for n, s in zip(names, builtin.sigmas, strict=True))
    unknown = [n for n in names if n not in chosen and n not in KNOWN_SIGMAS]
    if unknown:
        listed = ", ".join(unknown[:6]) + (f" and {len(unknown) - 6} more" if len(unknown) > 6
                                           else "")
        logger.warning("%s: no known OKS sigma for %s; using %s (set \"sigmas\" in a spec file "
                       "to change)", ann_path, listed, DEFAULT_SIGMA)
    return tuple(chosen.get(n, KNOWN_SIGMAS.get(n, DEFAULT_SIGMA)) for n in names)


def _grouping_order(order: Any, index: dict[str, int], where: str) -> tuple[int, ...]:
    if not isinstance(order, list) or sorted(map(str, order)) != sorted(index):
        raise AeposeError(f"{where}: expected every one of the {len(index)} keypoint names "
                          "exactly once")
    return tuple(index[n] for n in order)


def _color(value: Any, where: str) -> RGB:
    if not (isinstance(value, list) and len(value) == 3
            and all(_is_int(v) and 0 <= v <= 255 for v in value)):
        raise AeposeError(f"{where}: {value!r} is not an [r, g, b] colour (integers 0..255)")
    return (value[0], value[1], value[2])


def _colors(values: Any, count: int, where: str) -> tuple[RGB, ...]:
    if not isinstance(values, list) or len(values) != count:
        raise AeposeError(f"{where}: expected {count} [r, g, b] colours, one per entry")
    return tuple(_color(v, f"{where}[{i}]") for i, v in enumerate(values))


def _keypoint_colors(given: Any, index: dict[str, int], default: tuple[RGB, ...],
                     where: str) -> tuple[RGB, ...]:
    if not isinstance(given, dict):
        raise AeposeError(f"{where}: expected an object of name: [r, g, b]")
    colors = list(default)
    for name, value in given.items():
        _known(name, index, where)
        colors[index[name]] = _color(value, f"{where}.{name}")
    return tuple(colors)


def _oks_area(overrides: dict[str, Any], builtin: KeypointSpec | None, annotations: Any,
              where: str) -> OksArea:
    """The override; else the built-in dataset's rule; else each person's annotated area
    when every annotation has one, else the box's (xtcocotools' use_area)."""
    if "oks_area" in overrides:
        value = overrides["oks_area"]
        if value not in OKS_AREAS:
            raise AeposeError(f"{where}: oks_area: {value!r} is not one of "
                              f"{', '.join(OKS_AREAS)}")
        return "annotated" if value == "annotated" else "box"
    if builtin is not None:
        return builtin.oks_area
    anns = annotations if isinstance(annotations, list) else []
    has_area = all(isinstance(a, dict) and isinstance(a.get("area"), int | float)
                   and not isinstance(a.get("area"), bool) for a in anns)
    return "annotated" if anns and has_area else "box"


def spec_from_dict(data: Any, where: str) -> KeypointSpec:
    """The spec :meth:`KeypointSpec.to_dict` stored (a checkpoint, ONNX metadata); anything
    else is one line naming ``where``."""
    fields = ("name", "keypoint_names", "flip_index", "sigmas", "skeleton", "grouping_order",
              "keypoint_colors", "link_colors", "oks_area")
    if not isinstance(data, dict) or sorted(data) != sorted(fields):
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise AeposeError(f"{where}: unreadable keypoint spec (fields {keys}; expected "
                          f"{', '.join(fields)})")
    try:
        k = len(data["keypoint_names"])
        return KeypointSpec(
            name=str(data["name"]),
            keypoint_names=_names(data["keypoint_names"], f"{where}: keypoint_names"),
            flip_index=_ints(data["flip_index"]),
            sigmas=tuple(_sigma(s, f"{where}: sigmas") for s in data["sigmas"]),
            skeleton=tuple((a, b) for a, b in (_ints(link) for link in data["skeleton"])),
            grouping_order=_ints(data["grouping_order"]),
            keypoint_colors=_colors(data["keypoint_colors"], k, f"{where}: keypoint_colors"),
            link_colors=_colors(data["link_colors"], len(data["skeleton"]),
                                f"{where}: link_colors"),
            oks_area=data["oks_area"],
        )
    except (ValueError, TypeError) as error:
        raise AeposeError(f"{where}: unreadable keypoint spec ({error})") from None


def _ints(values: Sequence[Any]) -> tuple[int, ...]:
    if not all(map(_is_int, values)):
        raise ValueError(f"{list(values)[:8]} are not all integers")
    return tuple(values)
