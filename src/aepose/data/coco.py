"""COCO-format keypoint annotations (AIC, CrowdPose, COCO) read as mmpose 0.x reads them.

Rules (reference.md §3.1-3.2): training keeps only images with at least one annotation, test
mode keeps every image; a missing ``iscrowd`` counts as 0 (AIC has none); the people that
become targets are those with ``iscrowd == 0`` or ``num_keypoints > 0``; the ignore mask is
painted from crowd segmentations and from ``num_keypoints == 0`` people that have one.

Everything a user can get wrong in a file (not JSON, not COCO, wrong keypoint count, NaN or
negative coordinates, missing image size, unreadable or truncated image) raises
:class:`~aepose.errors.AeposeError` in one line naming the file and the record.

Legend: P people kept for targets, K keypoints, H x W image (pixels). Coordinates are image
pixel indices, x = column, y = row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import numpy.typing as npt
from faster_coco_eval.core import mask as mask_api

from aepose.config import DataConfig
from aepose.errors import AeposeError
from aepose.io import read_json
from aepose.keypoints import KeypointSpec, get_spec

__all__ = [
    "CocoKeypoints",
    "ImageRecord",
    "Split",
    "decode_image",
    "load_annotations",
    "load_split",
    "read_image",
]

Split = Literal["train", "val"]

# Input limits (README, "Failure behaviour"), checked at load time so that a value that
# passes here cannot blow up memory or overflow float32 in the middle of an epoch.
MAX_IMAGE_SIDE = 2**15  # pixels per side: a valid mask of a larger image needs > 1 GB
MAX_COORDINATE = 2.0 * MAX_IMAGE_SIDE  # labelled keypoint x, y (float32 holds it exactly)

# Library exceptions raised by malformed segmentations (pybind11 casts, bad RLE sizes, ...).
_DECODE_ERRORS = (RuntimeError, ValueError, TypeError, KeyError, IndexError)


@dataclass(frozen=True, eq=False)
class ImageRecord:
    """One image of an annotation file and what training needs from its annotations.

    joints: float32 [P, K, 3] (x, y, visibility) of the people kept for targets, in file order.
    ignore_regions: (annotation name, segmentation) of every annotation whose region is
        excluded from the heatmap loss (crowd regions, unlabelled people); decoded lazily by
        :meth:`CocoKeypoints.valid_mask`.
    crowd_index: CrowdPose's per-image ``crowdIndex`` (``None`` for other datasets).
    """

    image_id: int
    file_name: str
    width: int
    height: int
    crowd_index: float | None
    joints: npt.NDArray[np.float32]
    ignore_regions: tuple[tuple[str, Any], ...]


@dataclass(frozen=True, eq=False)
class CocoKeypoints:
    """The images of one annotation file, in file order, with where their pixels live."""

    ann_file: Path
    image_dir: Path
    spec: KeypointSpec
    images: tuple[ImageRecord, ...]

    def image_path(self, record: ImageRecord) -> Path:
        """Path of ``record``'s image file."""
        return self.image_dir / record.file_name

    def valid_mask(self, record: ImageRecord) -> npt.NDArray[np.bool_]:
        """bool [H, W] (the record's height and width): True where a pixel counts in the loss.

        False inside crowd regions and unlabelled people's segmentations (reference §3.2:
        valid = sum of decoded masks < 0.5). All True for AIC and CrowdPose, which carry no
        segmentation.
        """
        covered = np.zeros((record.height, record.width), dtype=bool)
        for name, segmentation in record.ignore_regions:
            covered |= self._decode(segmentation, name, record)
        return ~covered

    def _decode(self, segmentation: Any, name: str, record: ImageRecord) -> npt.NDArray[np.bool_]:
        """Union of the parts of one segmentation (polygons, RLE or compressed RLE): [H, W]."""
        h, w = record.height, record.width
        if isinstance(segmentation, list) and not segmentation:
            return np.zeros((h, w), dtype=bool)  # the reference crashes on []; nothing to ignore
        try:
            if isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), str):
                rles = [segmentation]  # compressed RLE is already the library's format
            else:
                converted = mask_api.frPyObjects(segmentation, h, w)
                rles = converted if isinstance(converted, list) else [converted]
            if not rles:  # polygons with fewer than 3 points encode to nothing
                return np.zeros((h, w), dtype=bool)
            parts = np.asarray(mask_api.decode(rles))
        except _DECODE_ERRORS as err:
            reason = " ".join(str(err).split())  # library messages may span lines
            raise AeposeError(
                f"{name} in {self.ann_file} has a segmentation that cannot be decoded: {reason}"
            ) from None
        if parts.shape[:2] != (h, w):
            raise AeposeError(
                f"{name} in {self.ann_file} has a {parts.shape[1]}x{parts.shape[0]} segmentation "
                f"but image id {record.image_id} is {w}x{h}"
            )
        return np.asarray(parts.any(axis=2))


# --------------------------------------------------------------------------------------------
# Loading and validating an annotation file


def load_annotations(
    ann_file: str | Path,
    spec: KeypointSpec,
    *,
    image_dir: str | Path | None = None,
    test_mode: bool = False,
) -> CocoKeypoints:
    """Read and validate a COCO-format keypoint file.

    Args:
        ann_file: the JSON file.
        spec: keypoint definition; every annotation must carry 3 * K keypoint values.
        image_dir: folder the ``file_name`` entries are relative to (default: the JSON's folder).
        test_mode: keep every image (evaluation); otherwise only images with at least one
            annotation, crowd regions included (training, reference §3.1).

    Annotations whose ``image_id`` names no image are ignored, as the reference never reads them.
    """
    path = Path(ann_file)
    coco = _read_coco_json(path)
    headers = _image_headers(coco["images"], path)
    anns = _annotations(coco["annotations"], headers, path)
    keypoints = _keypoint_array(anns, path, spec)
    by_image: dict[int, list[int]] = {image_id: [] for image_id in headers}
    for i, ann in enumerate(anns):
        by_image[ann["image_id"]].append(i)
    records = tuple(
        _record(headers[image_id], [anns[i] for i in idx], keypoints[idx], path)
        for image_id, idx in by_image.items()
        if test_mode or idx
    )
    folder = path.parent if image_dir is None else Path(image_dir)
    return CocoKeypoints(ann_file=path, image_dir=folder, spec=spec, images=records)


def _read_coco_json(path: Path) -> dict[str, Any]:
    """The parsed file, checked to be an object with ``images`` and ``annotations`` lists."""
    coco = read_json(path, "annotation")
    if not isinstance(coco, dict):
        raise AeposeError(
            f"{path} is not a COCO-format annotation file: top level is a "
            f"{type(coco).__name__}, expected an object with 'images' and 'annotations'"
        )
    for key in ("images", "annotations"):
        if not isinstance(coco.get(key), list):
            raise AeposeError(f"{path} is not a COCO-format annotation file: no '{key}' list")
    return coco


def _image_headers(images: list[Any], path: Path) -> dict[int, dict[str, Any]]:
    """Validated image records by id, in file order."""
    headers: dict[int, dict[str, Any]] = {}
    for i, image in enumerate(images):
        if not isinstance(image, dict) or not isinstance(image.get("id"), int):
            raise AeposeError(f"image record #{i} in {path} has no integer 'id'")
        name = f"image id {image['id']}"
        if image["id"] in headers:
            raise AeposeError(f"{name} appears twice in {path}")
        for key in ("width", "height"):
            value = image.get(key)
            if value is None:
                raise AeposeError(f"{name} in {path} has no '{key}'")
            if not _positive_int(value) or value > MAX_IMAGE_SIDE:
                raise AeposeError(
                    f"{name} in {path} has {key} {value!r}; expected a positive integer "
                    f"up to {MAX_IMAGE_SIDE}"
                )
        if not isinstance(image.get("file_name"), str):
            raise AeposeError(f"{name} in {path} has no 'file_name'")
        headers[image["id"]] = image
    return headers


def _positive_int(value: Any) -> bool:
    """An integral number above 0 (COCO writes sizes as ints; 640.0 is accepted too)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value) and value == int(value) and value > 0


def _ann_name(ann: dict[str, Any], index: int) -> str:
    """How an annotation is named in messages: by id, or by position when it has none."""
    return f"annotation id {ann['id']}" if "id" in ann else f"annotation #{index} (no id)"


def _annotations(anns: list[Any], headers: dict[int, Any], path: Path) -> list[dict[str, Any]]:
    """The annotations of known images, each given a ``_name`` for later messages."""
    kept = []
    for i, ann in enumerate(anns):
        if not isinstance(ann, dict):
            raise AeposeError(f"annotation #{i} in {path} is not an object")
        if "image_id" not in ann:
            raise AeposeError(f"{_ann_name(ann, i)} in {path} has no 'image_id'")
        if ann["image_id"] in headers:
            kept.append({**ann, "_name": _ann_name(ann, i)})
    return kept


def _keypoint_array(
    anns: list[dict[str, Any]], path: Path, spec: KeypointSpec
) -> npt.NDArray[np.float32]:
    """float32 [N, K, 3] of all annotations, validated in one vectorised pass."""
    k = spec.num_keypoints
    for ann in anns:
        values = ann.get("keypoints")
        if not isinstance(values, list):
            raise AeposeError(f"{ann['_name']} in {path} has no 'keypoints' list")
        if len(values) != 3 * k:
            raise AeposeError(
                f"{ann['_name']} in {path} has {len(values)} keypoint values; "
                f"{spec.name} expects {3 * k} ({k} keypoints)"
            )
    if not anns:
        return np.zeros((0, k, 3), dtype=np.float32)
    flat = _number_array([ann["keypoints"] for ann in anns])
    if flat is None or flat.shape != (len(anns), 3 * k):  # strings, nulls or nested lists
        bad = next(a for a in anns if _number_array(a["keypoints"]) is None)
        raise AeposeError(f"{bad['_name']} in {path} has non-numeric keypoint values")
    kps = flat.astype(np.float64).reshape(-1, k, 3)
    _check_coordinates(kps, anns, path, spec)
    return kps.astype(np.float32)


def _number_array(values: list[Any]) -> npt.NDArray[np.number] | None:
    """``values`` as an int or float array, or None when anything else is inside.

    NumPy infers a string or object dtype from any string, null or ragged entry; converting
    with ``dtype=float`` instead would silently accept "12".
    """
    try:
        array = np.array(values)
    except ValueError:  # ragged nesting
        return None
    return array if array.dtype.kind in "iuf" else None


def _check_coordinates(
    kps: npt.NDArray[np.float64], anns: list[dict[str, Any]], path: Path, spec: KeypointSpec
) -> None:
    """Labelled joints (v > 0) need finite x and y in [0, MAX_COORDINATE]; every v must be
    finite (a float64 1e39 would pass ``isfinite`` but is inf in float32)."""
    x, y, v = kps[..., 0], kps[..., 1], kps[..., 2]
    with np.errstate(invalid="ignore", over="ignore"):
        inside = (x >= 0) & (y >= 0) & (x <= MAX_COORDINATE) & (y <= MAX_COORDINATE)
        bad = ~np.isfinite(v.astype(np.float32)) | ((v > 0) & ~inside)
    if not bad.any():
        return
    n, j = (int(i) for i in np.argwhere(bad)[0])
    raise AeposeError(
        f"{anns[n]['_name']} in {path}: keypoint {j} ({spec.keypoint_names[j]}) is "
        f"({x[n, j]}, {y[n, j]}, v={v[n, j]}); labelled keypoints need finite, "
        f"non-negative coordinates up to {MAX_COORDINATE:g}"
    )


def _record(
    header: dict[str, Any],
    anns: list[dict[str, Any]],
    keypoints: npt.NDArray[np.float32],
    path: Path,
) -> ImageRecord:
    """Apply the reference's per-image rules to the validated annotations of one image."""
    crowd = [bool(ann.get("iscrowd", 0)) for ann in anns]  # AIC has no iscrowd: 0
    labelled = [_num_keypoints(ann, kp, path) for ann, kp in zip(anns, keypoints, strict=True)]
    keep = [i for i in range(len(anns)) if not crowd[i] or labelled[i] > 0]
    ignore = tuple(
        (ann["_name"], _segmentation(ann, path, header))
        for ann, is_crowd, n in zip(anns, crowd, labelled, strict=True)
        if "segmentation" in ann and (is_crowd or n == 0)
    )
    joints = keypoints[keep] if keep else np.zeros((0, *keypoints.shape[1:]), np.float32)
    crowd_index = header.get("crowdIndex")
    return ImageRecord(
        image_id=header["id"],
        file_name=header["file_name"],
        width=int(header["width"]),
        height=int(header["height"]),
        crowd_index=None if crowd_index is None else float(crowd_index),
        joints=np.ascontiguousarray(joints, dtype=np.float32),
        ignore_regions=ignore,
    )


def _num_keypoints(ann: dict[str, Any], keypoints: npt.NDArray[np.float32], path: Path) -> int:
    """``num_keypoints``, or the number of labelled joints when a file omits it."""
    value = ann.get("num_keypoints")
    if value is None:
        return int((keypoints[:, 2] > 0).sum())
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise AeposeError(f"{ann['_name']} in {path} has num_keypoints {value!r}; expected a count")
    return int(value)


def _segmentation(ann: dict[str, Any], path: Path, header: dict[str, Any]) -> Any:
    """The segmentation after cheap checks (type; an RLE's size within MAX_IMAGE_SIDE, since
    decoding allocates height x width); other decoding errors surface in valid_mask."""
    segmentation = ann["segmentation"]
    if not isinstance(segmentation, list | dict):
        raise AeposeError(
            f"{ann['_name']} in {path} has a segmentation of type {type(segmentation).__name__}; "
            "expected polygons (list) or RLE (object)"
        )
    if isinstance(segmentation, dict):
        size = segmentation.get("size")
        if not (isinstance(size, list) and len(size) == 2
                and all(_positive_int(v) and v <= MAX_IMAGE_SIDE for v in size)):
            raise AeposeError(
                f"{ann['_name']} in {path} (image id {header['id']}) has an RLE segmentation "
                f"of size {size!r}; expected [height, width], each a positive integer up to "
                f"{MAX_IMAGE_SIDE}")
    return segmentation


# --------------------------------------------------------------------------------------------
# Dataset folders


def load_split(data_root: str | Path, data: DataConfig, split: Split,
               spec: KeypointSpec | None = None) -> CocoKeypoints:
    """The ``train`` or ``val`` split under ``data_root`` at the preset's relative paths (an
    absolute path stays itself), read with ``spec`` (default: the one ``data.dataset`` names).

    ``data.train_ann`` / ``data.train_images`` (or ``val_*``) are relative to ``data_root``
    (reference §1.9); ``val`` loads in test mode (every image kept). A missing folder or file
    raises naming the path and what belongs there.
    """
    ann_rel, images_rel = _split_paths(data, split)
    root = Path(data_root)
    expected = f"{ann_rel} ({split} annotations) and {images_rel}/ ({split} images)"
    if not root.is_dir():
        raise AeposeError(f"data root {root} is not a folder; expected it to hold {expected}")
    ann_file, image_dir = root / ann_rel, root / images_rel
    if not ann_file.is_file():
        raise AeposeError(
            f"annotation file {ann_file} not found; a {data.dataset} data root holds {expected}"
        )
    if not image_dir.is_dir():
        raise AeposeError(
            f"image folder {image_dir} not found; a {data.dataset} data root holds {expected}"
        )
    return load_annotations(
        ann_file, spec or get_spec(data.dataset), image_dir=image_dir, test_mode=split == "val"
    )


def _split_paths(data: DataConfig, split: Split) -> tuple[str, str]:
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    ann, images = (
        (data.train_ann, data.train_images) if split == "train" else (data.val_ann, data.val_images)
    )
    if not ann or not images:
        raise AeposeError(
            f"the data config names no {split} annotation file or image folder "
            f"(data.{split}_ann, data.{split}_images)"
        )
    return ann, images


# --------------------------------------------------------------------------------------------
# Images

# JPEG markers that carry no length field: stuffed 0x00 after a data 0xFF, TEM, restart
# markers RST0-7, SOI, and 0xFF fill bytes.
_NO_LENGTH = frozenset({0x00, 0x01, *range(0xD0, 0xD9), 0xFF})
_EOI = 0xD9


def _jpeg_complete(data: bytes) -> bool:
    """Whether a JPEG's marker stream reaches its end-of-image marker.

    Older OpenCV builds decode a truncated JPEG into a partly grey image with only a warning,
    so truncation is detected here, independently of the decoder. Segments are skipped by their
    length (an EXIF thumbnail's own end marker is not mistaken for the image's), and a 0xFF in
    entropy-coded data is always followed by 0x00 or a restart marker, so the first real
    end-of-image marker is found exactly; data after it (camera trailers) is allowed.
    """
    pos = 2  # after the start-of-image marker
    while (pos := data.find(b"\xff", pos)) >= 0 and pos + 1 < len(data):
        marker = data[pos + 1]
        if marker == _EOI:
            return True
        if marker in _NO_LENGTH:
            pos += 1
            continue
        # A segment: its 2-byte big-endian length counts itself but not the marker.
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return False


def read_image(path: str | Path) -> npt.NDArray[np.uint8]:
    """Decode an image file as RGB uint8 [H, W, 3], as mmpose's LoadImageFromFile does.

    Colour decoding applies the EXIF orientation (OpenCV's IMREAD_COLOR, like mmcv's 'color').
    A missing, empty, truncated (JPEG) or undecodable file raises a one-line AeposeError
    naming it.
    """
    file = Path(path)
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        raise AeposeError(f"image file {file} not found") from None
    except OSError as err:
        raise AeposeError(f"cannot read image file {file}: {err.strerror or err}") from None
    return decode_image(data, f"image file {file}")


def decode_image(data: bytes, name: str) -> npt.NDArray[np.uint8]:
    """RGB uint8 [H, W, 3] of an encoded image's bytes (:func:`read_image`'s decoding: the
    EXIF orientation applied). Empty, truncated (JPEG) or undecodable bytes raise a one-line
    AeposeError beginning with ``name``."""
    if not data:
        raise AeposeError(f"{name} is empty")
    if data[:2] == b"\xff\xd8" and not _jpeg_complete(data):
        raise AeposeError(f"{name} is a truncated JPEG (no end-of-image marker)")
    try:
        bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:
        bgr = None
    if bgr is None:
        raise AeposeError(f"{name} cannot be decoded (not an image, or corrupt)")
    return np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8)
