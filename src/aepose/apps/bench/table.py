"""Rows as a fixed-width table (``aepose benchmark``, ``benchmarks/gpu_suite.py``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from aepose.apps.bench.crowd_pipeline import PARTS
from aepose.apps.bench.rows import BenchRow

__all__ = ["format_rows"]


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def _part(name: str) -> Callable[[BenchRow], float | None]:
    return lambda row: row.parts.get(name)


_COLUMNS: dict[str, Callable[[BenchRow], Any]] = {
    "stage": lambda r: r.stage,
    "preset": lambda r: r.preset,
    "device": lambda r: r.device,
    "dtype": lambda r: r.dtype,
    "batch": lambda r: r.batch,
    "compile": lambda r: r.compile or "no",
    "ch_last": lambda r: r.channels_last,
    "input": lambda r: r.input,
    "img/s": lambda r: r.images_per_s,
    "ms/img": lambda r: r.ms_per_image,
    **{f"{part} ms": _part(part) for part in PARTS},
    "peak MiB": lambda r: r.peak_mem_mb,
    "TFLOP/s": lambda r: r.tflops,
    "reps": lambda r: r.repeats,
}


def format_rows(rows: Sequence[BenchRow]) -> str:
    """A fixed-width table: one header line, one line per row; text left-aligned, numbers
    right-aligned; ``-`` where a value does not apply."""
    cells = [[_cell(get(row)) for get in _COLUMNS.values()] for row in rows]
    headers = list(_COLUMNS)
    widths = [max([len(h), *(len(line[i]) for line in cells)]) for i, h in enumerate(headers)]
    numeric = [i >= headers.index("batch") and headers[i] != "input" for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w)
                         for v, w, num in zip(values, widths, numeric, strict=True))

    return "\n".join([line(headers), *(line(c) for c in cells)])
