"""Annotation and result files (or their content) read into the evaluation's arrays.

Two readers give the same arrays:

- the fast one parses a file with simdjson, visits each record once for its scalar fields,
  takes each number list as one binary buffer (simdjson refuses strings, booleans and null
  in it), and checks counts, finiteness, types and ids as whole arrays;
- the checking one (:mod:`aepose.engine.eval_checked`: the standard ``json`` module, every
  value checked in Python) runs when the fast one meets anything it does not expect. It
  names the file, the record and the problem in one :class:`~aepose.errors.AeposeError`
  line, or reads input that is unusual but valid (``iscrowd`` as a float, say).

The JSON content given as Python objects (a dict, a list of records) goes through the same
checks: the scalar types of a whole column at once, then the arrays. What is checked
(missing fields, types, counts, finite numbers, known image ids) is listed on the two
public functions. Legend: P people, N records, K keypoints, I images.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt
import simdjson

from aepose.engine.eval_checked import checked_detections, checked_ground_truth
from aepose.engine.keypoint_eval import Detections, GroundTruth
from aepose.errors import AeposeError
from aepose.io import read_json
from aepose.keypoints import KeypointSpec

__all__ = ["annotation_keypoint_names", "detections_from_poses", "read_detections",
           "read_ground_truth", "results_keypoint_count"]

_Json = dict[str, Any]
_NUMBER_TYPES = frozenset({int, float})


class _NotFastError(Exception):
    """The fast reader met something it does not handle: the checking reader takes over."""


def read_ground_truth(source: str | Path | _Json, spec: KeypointSpec) -> GroundTruth:
    """The evaluated content of a COCO-format annotation file (or its dict, not modified).

    Checked: ``images``, ``annotations`` and ``categories`` lists; integer, unique image
    ids; integer category ids; per annotation K x 3 finite ``keypoints``, a 4-number
    ``bbox`` without negative width or height, an integer ``image_id`` listed in
    ``images`` and an integer ``category_id``; for CrowdPose a numeric ``crowdIndex`` on
    every image and an integer ``num_keypoints`` on every annotation; with
    ``spec.oks_area == "annotated"`` a finite, non-negative ``area`` on every annotation.

    ``labelled`` (whose zero makes a person ignored) is CrowdPose's own ``num_keypoints``
    (it counts only v = 2 there), for other datasets the count of v > 0 entries, as
    xtcocotools decides for 'keypoints_crowd' and 'keypoints'. A missing ``iscrowd`` is 0.

    Raises:
        AeposeError: one line naming the file (or "ground truth"), the record and the
            problem.
    """
    fast = _fast_ground_truth(source, spec)
    if fast is not None:
        return fast
    return checked_ground_truth(source, spec)


def read_detections(source: str | Path | Sequence[_Json] | Detections, gt: GroundTruth,
                    k: int) -> Detections:
    """Result records (a JSON file of them, the list, or :class:`Detections`) as arrays.

    Checked: a list of objects, each with K x 3 finite ``keypoints``, a finite numeric
    ``score``, integer ``image_id`` (an image of ``gt``) and ``category_id``. A record's
    area is its ``bbox`` w x h, or, without a 4-number ``bbox``, that of its keypoints'
    extent (xtcocotools' loadRes). Nothing is dropped here.

    Raises:
        AeposeError: one line naming the file (or "predictions"), the record and the
            problem.
    """
    if isinstance(source, Detections):
        _check_detections(source, gt, k)
        return source
    fast = _fast_detections(source, gt, k)
    if fast is not None:
        return fast
    return checked_detections(source, gt, k)


def detections_from_poses(image_ids: Sequence[int], keypoints: Sequence[npt.ArrayLike],
                          scores: Sequence[npt.ArrayLike], k: int) -> Detections:
    """Detections of whole images: ``keypoints[i]`` [P_i, K, 3] and ``scores[i]`` [P_i] of
    image ``image_ids[i]``, category 1, area from the extent of all K keypoints (the bbox
    that :func:`aepose.pipeline.pose.coco_record` writes)."""
    kpts = [np.asarray(p, dtype=np.float64).reshape(-1, k, 3) for p in keypoints]
    counts = [len(p) for p in kpts]
    points = np.concatenate(kpts) if kpts else np.zeros((0, k, 3))
    return Detections(
        image_id=np.repeat(np.asarray(image_ids, dtype=np.int64), counts),
        category_id=np.ones(len(points), dtype=np.int64),
        keypoints=points,
        score=np.concatenate([np.asarray(s, dtype=np.float64).reshape(-1) for s in scores])
        if scores else np.zeros(0),
        area=_extent_area(points),
    )


def results_keypoint_count(path: Path) -> int | None:
    """K of a results file: its first record's ``keypoints`` length / 3, read from the head
    of the file (None: no records, or a first record without a list of 3K entries).

    Raises:
        AeposeError: a file that cannot be read or is not JSON, in one line.
    """
    try:
        first = _first_record(path)
    except _FAST_ERRORS:  # unusual but perhaps valid: the whole file, with the json module
        records = read_json(path, "predictions")
        first = records[0] if isinstance(records, list) and records else None
    points = first.get("keypoints") if isinstance(first, dict) else None
    if not isinstance(points, list) or not points or len(points) % 3:
        return None
    return len(points) // 3


def annotation_keypoint_names(path: Path) -> list[tuple[str, ...]]:
    """The keypoint names (``categories[i].keypoints``) of every category that lists them.

    Raises:
        AeposeError: a file that cannot be read or is not JSON, in one line.
    """
    try:
        categories = [c.keypoints for c in _CATEGORY_NAMES.decode(path.read_bytes()).categories]
    except _FAST_ERRORS:  # the checking reader, run later, names what is wrong
        data = read_json(path, "annotation")
        found = data.get("categories") if isinstance(data, dict) else None
        categories = [c.get("keypoints") for c in found if isinstance(c, dict)] \
            if isinstance(found, list) else []
    return [tuple(names) for names in categories
            if isinstance(names, list) and all(isinstance(n, str) for n in names)]


# --------------------------------------------------------------------------------------------
# Fast reader: msgspec checks the structure and scalar types of every record in C and keeps
# each number list as its raw text; simdjson then parses the lists of many records at once
# into one flat buffer of doubles. Anything unexpected raises _NotFastError (or a msgspec,
# simdjson or NumPy error) and the checking reader takes over.


class _Image(msgspec.Struct):
    id: int
    crowdIndex: float | None = None  # noqa: N815  (the file's key)


class _Category(msgspec.Struct):
    id: int


class _Annotation(msgspec.Struct):
    image_id: int
    category_id: int
    keypoints: msgspec.Raw
    bbox: msgspec.Raw
    area: float | None = None
    iscrowd: int | bool = 0
    num_keypoints: int | None = None


class _AnnotationFile(msgspec.Struct):
    images: list[_Image]
    annotations: list[_Annotation]
    categories: list[_Category]


class _Record(msgspec.Struct):
    image_id: int
    category_id: int
    keypoints: msgspec.Raw
    score: float
    bbox: msgspec.Raw = msgspec.Raw(b"null")


class _NamedCategory(msgspec.Struct):
    keypoints: list[str] | None = None


class _CategoryNames(msgspec.Struct):
    categories: list[_NamedCategory]


class _FirstRecord(msgspec.Struct):
    keypoints: list[Any]


_ANNOTATION_FILE = msgspec.json.Decoder(_AnnotationFile)
_CATEGORY_NAMES = msgspec.json.Decoder(_CategoryNames)
_RECORDS = msgspec.json.Decoder(list[_Record])
_FAST_ERRORS = (_NotFastError, msgspec.MsgspecError, ValueError, TypeError, RuntimeError,
                OverflowError, OSError)
_PIECE_BYTES = 1 << 25  # a results file is decoded 32 MB at a time
_NUMBER_ROWS = 1 << 14  # number lists parsed by simdjson at a time
_BOUNDARY = re.compile(rb"\}\s*,\s*\{")  # between two records of a results file


def _fast_ground_truth(source: Any, spec: KeypointSpec) -> GroundTruth | None:
    try:
        text = Path(source).read_bytes() if isinstance(source, (str, Path)) else \
            msgspec.json.encode(source)
        return _decoded_ground_truth(_ANNOTATION_FILE.decode(text), spec)
    except _FAST_ERRORS:
        return None


def _decoded_ground_truth(data: _AnnotationFile, spec: KeypointSpec) -> GroundTruth:
    crowd = spec.name == "crowdpose"
    annotated = spec.oks_area == "annotated"
    image_ids = np.array([image.id for image in data.images], dtype=np.int64)
    if len(np.unique(image_ids)) != len(image_ids):
        raise _NotFastError
    crowd_index = None
    if crowd:
        crowd_index = np.array([image.crowdIndex for image in data.images], dtype=np.float64)
        _check(np.isfinite(crowd_index).all())  # a missing one is NaN here
    anns = data.annotations
    people = len(anns)
    k = spec.num_keypoints
    person_images = np.array([ann.image_id for ann in anns], dtype=np.int64)
    _check(np.isin(person_images, image_ids).all())
    parser = simdjson.Parser()
    points = np.empty((people, k, 3))
    _number_lists([ann.keypoints for ann in anns], 3 * k, points.reshape(people, 3 * k), parser)
    boxes = np.empty((people, 4))
    _number_lists([ann.bbox for ann in anns], 4, boxes, parser)
    _check((boxes[:, 2:] >= 0).all())
    area = np.full(people, np.nan)
    if annotated:
        area = np.array([ann.area for ann in anns], dtype=np.float64)
        _check(np.isfinite(area).all() and (area >= 0).all())
    labelled = (points[:, :, 2] > 0).sum(axis=1)
    if crowd:
        counts = [ann.num_keypoints for ann in anns]
        _check(None not in counts)
        labelled = np.array(counts, dtype=np.int64)
    return GroundTruth(
        image_ids=image_ids,
        crowd_index=crowd_index,
        category_ids=np.array([c.id for c in data.categories], dtype=np.int64),
        image_id=person_images,
        category_id=np.array([ann.category_id for ann in anns], dtype=np.int64),
        keypoints=points,
        bbox=boxes,
        area=area,
        iscrowd=np.array([ann.iscrowd for ann in anns], dtype=np.int64).reshape(people) != 0,
        labelled=labelled.reshape(people),
    )


def _fast_detections(source: Any, gt: GroundTruth, k: int) -> Detections | None:
    try:
        if isinstance(source, (str, Path)):
            table = _Table(k, Path(source).stat().st_size)
            pieces: Iterator[Any] = _json_array_pieces(Path(source))
        else:
            text = msgspec.json.encode(source)
            table = _Table(k, len(text))
            pieces = iter([text])
        for piece in pieces:
            table.add(_RECORDS.decode(piece), len(piece))
        detections = table.detections()
        known = np.sort(gt.image_ids)
        at = np.searchsorted(known, detections.image_id)
        _check(bool((at < len(known)).all()))
        _check(bool((known[at.clip(max=max(len(known) - 1, 0))]
                     == detections.image_id).all()))
    except _FAST_ERRORS:
        return None
    return detections


class _Table:
    """Detections' columns filled piece by piece from a text of ``total_bytes``. The arrays
    are sized at the first piece: its records per byte over the whole text, and a quarter
    more (pages never written cost no memory); they grow by doubling past that."""

    def __init__(self, k: int, total_bytes: int) -> None:
        self.k = k
        self.n = 0
        self.total_bytes = total_bytes
        self.parser = simdjson.Parser()
        self.columns = self._empty(1)

    def _empty(self, capacity: int) -> dict[str, np.ndarray]:
        return {"image_id": np.empty(capacity, np.int64),
                "category_id": np.empty(capacity, np.int64),
                "keypoints": np.empty((capacity, self.k, 3)),
                "score": np.empty(capacity), "area": np.empty(capacity)}

    def add(self, records: list[_Record], piece_bytes: int) -> None:
        lo, hi = self.n, self.n + len(records)
        capacity = len(self.columns["score"])
        if lo == 0:
            expected = len(records) * self.total_bytes // max(piece_bytes, 1)
            self.columns = self._empty(max(hi, expected * 5 // 4, 1))
        elif hi > capacity:
            grown = self._empty(max(hi, 2 * capacity))
            for name, column in self.columns.items():
                grown[name][:lo] = column[:lo]
            self.columns = grown
        c = self.columns
        points = c["keypoints"][lo:hi]
        _number_lists([r.keypoints for r in records], 3 * self.k,
                      points.reshape(len(records), 3 * self.k), self.parser)
        c["score"][lo:hi] = [r.score for r in records]
        c["image_id"][lo:hi] = [r.image_id for r in records]
        c["category_id"][lo:hi] = [r.category_id for r in records]
        boxed = np.array([r.bbox != _NULL for r in records], dtype=bool).reshape(hi - lo)
        area = c["area"][lo:hi]
        if boxed.any():
            boxes = np.empty((int(boxed.sum()), 4))
            _number_lists([r.bbox for r in records if r.bbox != _NULL], 4, boxes, self.parser)
            area[boxed] = boxes[:, 2] * boxes[:, 3]
        if not boxed.all():
            # Records without a bbox take their keypoints' extent (xtcocotools' loadRes).
            area[~boxed] = _extent_area(points[~boxed])
        self.n = hi

    def detections(self) -> Detections:
        c = {name: column[: self.n] for name, column in self.columns.items()}
        _check(np.isfinite(c["score"]).all())
        return Detections(image_id=c["image_id"], category_id=c["category_id"],
                          keypoints=c["keypoints"], score=c["score"], area=c["area"])


_NULL = msgspec.Raw(b"null")


def _number_lists(raws: list[msgspec.Raw], count: int, out: npt.NDArray[np.float64],
                  parser: simdjson.Parser) -> None:
    """Fill ``out`` [len(raws), count] with the finite numbers of JSON arrays given as raw
    text, each exactly ``count`` numbers (no nested arrays, strings, booleans or nulls).
    One ``parser`` serves a whole file: its buffers are allocated once."""
    for lo in range(0, len(raws), _NUMBER_ROWS):
        batch = raws[lo : lo + _NUMBER_ROWS]
        text = b"[" + b",".join(batch) + b"]"
        # One '[' per list: none nested (simdjson's buffer would flatten them). NumPy
        # compares all bytes at once, faster than bytes.count's byte-by-byte loop.
        _check(np.count_nonzero(np.frombuffer(text, np.uint8) == ord("[")) == len(batch) + 1)
        out[lo : lo + len(batch)] = _parsed_rows(parser, text, len(batch), count)
    _check(np.isfinite(out).all())


def _parsed_rows(parser: simdjson.Parser, text: bytes, rows: int,
                 count: int) -> npt.NDArray[np.float64]:
    """[rows, count] numbers of ``text``, a JSON array of ``rows`` arrays of ``count``
    numbers. The parser is reused, so no view of its document outlives this call."""
    doc = parser.parse(text)
    if not isinstance(doc, simdjson.Array):
        raise _NotFastError
    items: Any = doc  # arrays, by the caller's '[' count
    _check(set(map(len, items)) == {count})
    # simdjson refuses anything but numbers in the buffer.
    return np.frombuffer(doc.as_buffer(of_type="d"), dtype=np.float64).reshape(rows, count)


def _json_array_pieces(path: Path) -> Iterator[memoryview]:
    """A results file (one JSON array of objects) as consecutive JSON arrays of its records,
    about :data:`_PIECE_BYTES` each, cut where one record's ``}`` and the next one's ``{``
    meet. Each piece is a view into one reused buffer, valid until the next is yielded.

    A cut inside a string or a nested value leaves a piece that does not decode, so a
    wrongly placed cut is never silent. A file not shaped so raises _NotFastError.
    """
    buf = bytearray(_PIECE_BYTES)
    view = memoryview(buf)
    with path.open("rb") as f:
        filled = f.readinto(view)
        head = bytes(buf[: min(filled, 64)])
        start = len(head) - len(head.lstrip())
        _check(start < filled and buf[start] == ord("["))
        while True:
            if filled < len(buf):
                got = f.readinto(view[filled:])
                filled += got
                if got == 0:
                    end = filled - 1
                    while end > start and buf[end] in b" \t\r\n":
                        end -= 1
                    _check(buf[end] == ord("]"))
                    yield view[start : end + 1]
                    return
            cuts = list(_BOUNDARY.finditer(buf, max(start, filled - (1 << 20)), filled))
            if not cuts:  # a record of more than 1 MB, or no records: the slow way
                raise _NotFastError
            last = cuts[-1]
            close, open_ = last.start(), last.end() - 1
            # Between '}' and '{' there is at least the comma: it becomes this piece's ']'
            # and the next piece's '[' (set after this piece is used).
            buf[close + 1] = ord("]")
            yield view[start : close + 2]
            buf[open_ - 1] = ord("[")
            rest = filled - (open_ - 1)
            buf[:rest] = buf[open_ - 1 : filled]
            start, filled = 0, rest


def _first_record(path: Path) -> dict[str, Any] | None:
    """The first record of a results file from its first MB (None: an empty list); a first
    record longer than that, or anything unexpected, raises _NotFastError."""
    with path.open("rb") as f:
        head = f.read(1 << 20)
        whole = not f.read(1)
    text = head.lstrip()
    _check(text.startswith(b"["))
    if whole:
        records = msgspec.json.decode(head, type=list[_FirstRecord])
        return {"keypoints": records[0].keypoints} if records else None
    cut = _BOUNDARY.search(text)
    if cut is None:
        raise _NotFastError
    first = msgspec.json.decode(text[1 : cut.start() + 1], type=_FirstRecord)
    return {"keypoints": first.keypoints}


def _check(condition: bool | np.bool_) -> None:
    if not condition:
        raise _NotFastError


def _extent_area(points: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """[N] (max x - min x) x (max y - min y) over all K keypoints of each of [N, K, 3]."""
    if not len(points):
        return np.zeros(0)
    low, high = points[:, :, :2].min(axis=1), points[:, :, :2].max(axis=1)
    size = high - low
    return size[:, 0] * size[:, 1]


def _check_detections(dt: Detections, gt: GroundTruth, k: int) -> None:
    n = len(dt.image_id)
    shapes = (dt.category_id.shape, dt.keypoints.shape, dt.score.shape, dt.area.shape)
    if shapes != ((n,), (n, k, 3), (n,), (n,)):
        raise AeposeError(f"detections of {n} people: expected keypoints [{n}, {k}, 3], got "
                          f"{list(dt.keypoints.shape)}")
    if not (np.isfinite(dt.keypoints).all() and np.isfinite(dt.score).all()):
        raise AeposeError("detections hold a non-finite keypoint or score")
    unknown = dt.image_id[~np.isin(dt.image_id, gt.image_ids)]
    if len(unknown):
        raise AeposeError(f"detections on image id {int(unknown[0])}, which is not in the "
                          "ground truth")
