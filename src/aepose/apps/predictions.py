"""The files of ``aepose predict``: written as images finish, merged at the end.

While a run goes on, every finished image or video frame is appended to
``predictions.jsonl`` (``predictions.rankN.jsonl`` for rank N under torchrun), one JSON
object a line, flushed: after a crash those files hold every finished image. At the end
rank 0 merges them in input order into ``predictions.json`` (header + ``images``, each with
its ``people``) and ``results.json`` (the same people as flat COCO result records, whose
``image_id`` is the number a file is named by when every image is named by a number, as
COCO's and CrowdPose's are, so that ``aepose test --results`` scores them), both written
atomically, and removes the partial files. The images are streamed from the
partial files, never all held in memory. Every line and file is strict JSON: a NaN or
infinite number is refused naming the file (:func:`aepose.io.json_text`).

Each overlay is listed in ``overlays.txt`` as it is created (a line per file, relative to
the folder), so that ``--overwrite`` can delete an earlier run's overlays, also of a run
that crashed, and of inputs the new run does not have, which would otherwise sit among the
new ones looking like its own.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from aepose.io import atomic_write, json_text
from aepose.pipeline.pose import Pose

__all__ = ["OVERLAYS_NAME", "PARTIAL_NAME", "PredictionWriter", "list_overlay",
           "merge_predictions", "partial_file", "remove_listed_overlays"]

PARTIAL_NAME = "predictions.jsonl"
OVERLAYS_NAME = "overlays.txt"


def partial_file(out: Path, rank: int) -> Path:
    """Rank ``rank``'s partial file in ``out``."""
    return out / (PARTIAL_NAME if rank == 0 else f"predictions.rank{rank}.jsonl")


class PredictionWriter:
    """Appends one line per finished image to this rank's partial file.

    ``positions`` gives each input file's place in the whole input (all ranks), so that
    the merge can restore input order; a video frame sorts by its file, then its frame.
    """

    def __init__(self, out: Path, positions: dict[str, int], rank: int = 0) -> None:
        self.path = partial_file(out, rank)
        self.positions = positions
        self.file: IO[str] | None = None

    def __enter__(self) -> PredictionWriter:
        self.file = self.path.open("w", encoding="utf-8")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.file is not None:
            self.file.close()

    def add(self, entry: dict[str, Any], people: list[Pose]) -> None:
        """Append one image's ``entry`` (file_name, size, frame ...) with its people."""
        assert self.file is not None, "use the writer in a with block"
        order = [self.positions[entry["file_name"]], entry.get("frame", 0)]
        record = {"order": order, **entry, "people": [p.to_dict() for p in people]}
        self.file.write(json_text(record, self.path) + "\n")
        self.file.flush()


def merge_predictions(out: Path, header: dict[str, Any], world_size: int = 1) -> Path:
    """Merge the partial files of ``world_size`` ranks into predictions.json (image ids 1,
    2, ... in input order) and results.json, then remove them; returns predictions.json."""
    parts = [partial_file(out, rank) for rank in range(world_size)]
    path = atomic_write(out / "predictions.json",
                        lambda tmp: _write_predictions(tmp, out / "predictions.json", header,
                                                       parts), what="predictions")
    atomic_write(out / "results.json",
                 lambda tmp: _write_results(tmp, out / "results.json", parts),
                 what="COCO results")
    for part in parts:
        part.unlink(missing_ok=True)
    return path


def _entries(parts: list[Path]) -> Iterator[dict[str, Any]]:
    """Every image of the partial files, in input order, with ids from 1."""
    merged = heapq.merge(*(_lines(p) for p in parts), key=lambda e: e["order"])
    for image_id, entry in enumerate(merged, start=1):
        del entry["order"]
        yield {"id": image_id, **entry}


def _lines(path: Path) -> Iterator[dict[str, Any]]:
    if not path.exists():
        return
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if line.endswith("\n"):  # a line cut off by a crash is not a finished image
                yield json.loads(line)


def _write_predictions(tmp: Path, name: Path, header: dict[str, Any],
                       parts: list[Path]) -> None:
    head = json_text({**header, "images": []}, name, indent=1)
    opening, closing = head.rsplit("[]", 1)
    with tmp.open("w", encoding="utf-8") as f:
        f.write(opening + "[")
        for n, entry in enumerate(_entries(parts)):
            f.write(("," if n else "") + "\n  " + json_text(entry, name))
        f.write("\n ]" + closing + "\n")


def _write_results(tmp: Path, name: Path, parts: list[Path]) -> None:
    ids = _dataset_ids(parts)
    with tmp.open("w", encoding="utf-8") as f:
        f.write("[")
        first = True
        for entry in _entries(parts):
            image_id = ids[entry["id"]] if ids is not None else entry["id"]
            for person in entry["people"]:
                record = Pose.from_dict(person).to_coco(image_id)
                f.write(("" if first else ",") + "\n" + json_text(record, name))
                first = False
        f.write("\n]\n")


def _dataset_ids(parts: list[Path]) -> dict[int, int] | None:
    """Image id -> the number its file is named by, when every entry is an image file named
    by a distinct number (COCO's 000000397133.jpg, CrowdPose's 100000.jpg are their ids in
    the annotation files), so that ``aepose test --results`` can score the records; else
    None (the records keep predictions.json's ids)."""
    ids: dict[int, int] = {}
    for entry in _entries(parts):
        stem = Path(entry["file_name"]).stem
        if "frame" in entry or not stem.isdigit():
            return None
        ids[entry["id"]] = int(stem)
    return ids if len(set(ids.values())) == len(ids) else None


def list_overlay(out: Path, overlay: Path) -> None:
    """Add ``overlay`` (relative to ``out``) to ``out``'s overlays.txt.

    One line in one appending write: torchrun's ranks share the file, and an append of a
    short line is never interleaved with another's.
    """
    with (out / OVERLAYS_NAME).open("a", encoding="utf-8") as listing:
        listing.write(overlay.as_posix() + "\n")


def remove_listed_overlays(out: Path) -> None:
    """Delete the files overlays.txt lists, the folders they leave empty, then the list.

    Only files below ``out`` are touched: a line naming anything else (edited by hand) is
    passed over. The list is read a line at a time, so its size costs no memory.
    """
    listing = out / OVERLAYS_NAME
    if not listing.is_file():
        return
    root = out.resolve()
    with listing.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            path = (root / line.rstrip("\n")).resolve()
            if path.parent.is_relative_to(root) and path.is_file():
                path.unlink()
                _remove_empty_folders(path.parent, root)
    listing.unlink()


def _remove_empty_folders(folder: Path, root: Path) -> None:
    """``folder`` and its parents up to ``root`` (excluded) while each is empty."""
    while folder != root and folder.is_relative_to(root) and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent
