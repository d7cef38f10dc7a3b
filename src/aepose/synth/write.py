"""Dataset folders: generated images and annotation files in a real dataset's layout.

Every file is written atomically (:mod:`aepose.io`): a full disk leaves no truncated image
or annotation file under its final name, and stops the run with one line naming the file.

Determinism. Image ``i`` of split ``s`` is drawn from
``np.random.default_rng(SeedSequence(seed, spawn_key=(s, i)))`` only, so it does not depend on
the other images or on how many are generated; JPEGs use a fixed quality and JSON is written
with sorted keys and floats rounded to 2 decimals. The same seed gives the same bytes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from aepose.config import DATASET_FILES
from aepose.errors import AeposeError
from aepose.io import write_bytes, write_text
from aepose.keypoints import CUSTOM
from aepose.synth.annotate import FORMATS, DatasetFormat, ImageSample, generate_image
from aepose.synth.render import ImageArray
from aepose.synth.scene import SceneParams
from aepose.synth.skeleton import PointSet, point_set

__all__ = [
    "CUSTOM_FILES",
    "SIZE_LIMITS",
    "SplitSummary",
    "SynthSummary",
    "generate_dataset",
    "parse_size",
    "split_counts",
]

JPEG_QUALITY = 90
SIZE_LIMITS = (64, 4096)  # accepted image sides; the CLI documents 256..640
# A custom keypoint set's files (train annotations, images, val annotations, images), as
# DATASET_FILES gives the real datasets': read with --ann / --images, not --data-root.
CUSTOM_FILES = ("train.json", "train", "val.json", "val")


@dataclass(frozen=True)
class SplitSummary:
    """What one split received: files, counts and every image's crowdIndex (2 decimals)."""

    name: str  # "train" or "val"
    annotation_file: Path
    image_dir: Path
    images: int
    people: int
    crowd_regions: int
    crowd_index: tuple[float, ...]

    def crowd_buckets(self) -> tuple[int, int, int]:
        """Images per CrowdPose difficulty: easy (< 0.2), medium, hard (>= 0.8)."""
        ci = np.asarray(self.crowd_index)
        easy, hard = int(np.sum(ci < 0.2)), int(np.sum(ci >= 0.8))
        return easy, len(ci) - easy - hard, hard


@dataclass(frozen=True)
class SynthSummary:
    """Result of :func:`generate_dataset`: the dataset root (a ``--data-root`` for the
    datasets' own keypoint sets) and its splits; ``spec`` is the keypoint set's name."""

    spec: str
    root: Path
    splits: tuple[SplitSummary, ...]


@dataclass(frozen=True)
class _Job:
    """Settings shared by every image of one :func:`generate_dataset` call."""

    root: Path
    spec: PointSet
    fmt: DatasetFormat
    seed: int
    sides: tuple[int, int]
    params: SceneParams


def split_counts(total: int, val_fraction: float = 0.2) -> tuple[int, int]:
    """(train, val) image counts for ``--images total``: ``round(total * val_fraction)``
    validation images, at least 1 (and at most ``total - 1``) when ``total >= 2``."""
    if total < 1:
        raise AeposeError(f"--images must be at least 1, got {total}")
    if total == 1:
        return 1, 0
    val = min(total - 1, max(1, round(total * val_fraction)))
    return total - val, val


def parse_size(text: str) -> tuple[int, int]:
    """``"256..640"`` -> (256, 640); ``"320"`` -> (320, 320) (the CLI's ``--size``)."""
    low, sep, high = text.partition("..")
    try:
        sides = (int(low), int(high)) if sep else (int(low), int(low))
    except ValueError:
        raise AeposeError(f"--size must be N or MIN..MAX, got {text!r}") from None
    return _check_sides(sides)


def _check_sides(size: int | tuple[int, int]) -> tuple[int, int]:
    lo, hi = (size, size) if isinstance(size, int) else size
    if not SIZE_LIMITS[0] <= lo <= hi <= SIZE_LIMITS[1]:
        raise AeposeError(
            f"image size must satisfy {SIZE_LIMITS[0]} <= min <= max <= {SIZE_LIMITS[1]}, "
            f"got {lo}..{hi}"
        )
    return lo, hi


def _file_name(job: _Job, image_id: int, split_index: int, index: int) -> str:
    """The dataset's own naming: COCO 12-digit ids, CrowdPose plain ids, AIC 40-hex digests."""
    if job.fmt.naming == "coco":
        return f"{image_id:012d}.jpg"
    if job.fmt.naming == "number":
        return f"{image_id}.jpg"
    key = f"aepose-synth:{job.seed}:{split_index}:{index}".encode()
    return hashlib.sha1(key).hexdigest() + ".jpg"


def _encode_jpeg(image: ImageArray) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise AeposeError("OpenCV could not encode a generated image as JPEG")
    return bytes(buf.tobytes())


def _document(
    job: _Job, split: str, images: list[dict[str, Any]], annotations: list[dict[str, Any]]
) -> dict[str, Any]:
    """The whole annotation file of one split."""
    spec = job.spec
    category = {
        "id": 1,
        "name": "person",
        "supercategory": "person",
        "keypoints": list(spec.keypoint_names),
        "skeleton": [[a + 1, b + 1] for a, b in spec.skeleton],  # COCO counts joints from 1
    }
    doc: dict[str, Any] = {"categories": [category], "images": images, "annotations": annotations}
    if job.fmt.header:
        what = spec.name if spec.name != CUSTOM else f"{spec.num_keypoints} custom keypoints"
        doc["info"] = {
            "description": f"aepose generated crowd scenes ({what}, {split}, seed {job.seed})",
            "version": "1.0",
        }
        doc["licenses"] = [{"id": 1, "name": "", "url": ""}]
    return doc


def _write_image(
    job: _Job, split_index: int, index: int, image_id: int, image_dir: Path
) -> tuple[dict[str, Any], ImageSample]:
    """Generate, encode and write image ``index`` of a split; returns its image record."""
    # Image i owns its stream: it is the same however many images are generated.
    rng = np.random.default_rng(np.random.SeedSequence(job.seed, spawn_key=(split_index, index)))
    width, height = (int(s) for s in rng.integers(job.sides[0], job.sides[1] + 1, 2))
    sample = generate_image(rng, job.spec, width, height, job.params)
    file_name = _file_name(job, image_id, split_index, index)
    write_bytes(image_dir / file_name, _encode_jpeg(sample.rendered.image), what="image")
    record: dict[str, Any] = {
        "id": image_id,
        "file_name": file_name,
        "width": width,
        "height": height,
    }
    if job.fmt.crowd_index:
        record["crowdIndex"] = round(sample.crowd_index, 2)
    return record, sample


def _write_split(
    job: _Job, split_index: int, name: str, count: int, first_ids: tuple[int, int]
) -> tuple[SplitSummary, tuple[int, int]]:
    """Write ``count`` images and the annotation file of one split; ids continue from
    ``first_ids`` (image id, annotation id) and the next free ones are returned."""
    layout = _layout(job.spec)
    ann_file = job.root / layout[2 * split_index]
    image_dir = job.root / layout[2 * split_index + 1]
    image_dir.mkdir(parents=True, exist_ok=True)
    image_id, ann_id = first_ids
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    indices: list[float] = []
    for index in range(count):
        record, sample = _write_image(job, split_index, index, image_id + index, image_dir)
        images.append(record)
        indices.append(round(sample.crowd_index, 2))
        for ann in sample.annotations:
            annotations.append(ann | {"id": ann_id, "image_id": record["id"]})
            ann_id += 1
    doc = _document(job, name, images, annotations)
    write_text(ann_file, json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n",
               what="annotation")
    crowd = sum(1 for a in annotations if a.get("iscrowd", 0))
    people = len(annotations) - crowd
    summary = SplitSummary(name, ann_file, image_dir, count, people, crowd, tuple(indices))
    return summary, (image_id + count, ann_id)


def _layout(spec: PointSet) -> tuple[str, str, str, str]:
    return CUSTOM_FILES if spec.name == CUSTOM else DATASET_FILES[spec.name]


def generate_dataset(
    out_dir: str | Path,
    spec_name: str | PointSet,
    *,
    train_images: int,
    val_images: int,
    seed: int = 0,
    size: int | tuple[int, int] = (256, 640),
    params: SceneParams = SceneParams(),
    overwrite: bool = False,
) -> SynthSummary:
    """Write a generated dataset under ``out_dir`` in the layout of the real ``spec_name``
    dataset (``DATASET_FILES``), so ``out_dir`` works as ``--data-root`` of train and test;
    a custom keypoint set is written in COCO's format as :data:`CUSTOM_FILES`.

    Args:
        out_dir: dataset root; created if missing.
        spec_name: ``"crowdpose"``, ``"aic"``, ``"coco"`` or a custom
            :class:`~aepose.synth.skeleton.PointSet` (:func:`~aepose.synth.parse_points`).
        train_images, val_images: images per split (:func:`split_counts` turns the CLI's
            ``--images N`` into these). Image ids run on from train into val.
        seed: non-negative; the same seed (and arguments) gives byte-identical files.
        size: image side, or (min, max) range from which width and height are drawn
            independently per image.
        params: scene sampling parameters.
        overwrite: replace existing annotation files (images are always rewritten; stray
            files already in the folders are left alone).
    """
    spec = point_set(spec_name)
    if train_images < 0 or val_images < 0:
        raise AeposeError(f"image counts must be >= 0, got train {train_images}, val {val_images}")
    if seed < 0:
        raise AeposeError(f"seed must be >= 0, got {seed}")
    job = _Job(Path(out_dir), spec, FORMATS[spec.name], seed, _check_sides(size), params)
    if job.root.exists() and not job.root.is_dir():
        raise AeposeError(f"{job.root} exists and is not a folder")
    layout = _layout(spec)
    for ann in (job.root / layout[0], job.root / layout[2]):
        if ann.exists() and not overwrite:
            raise AeposeError(f"{ann} already exists; choose another folder or overwrite it "
                               "(--overwrite)")
    ids = (1, 1)
    splits = []
    for split_index, (name, count) in enumerate((("train", train_images), ("val", val_images))):
        summary, ids = _write_split(job, split_index, name, count, ids)
        splits.append(summary)
    return SynthSummary(spec.name, job.root, tuple(splits))
