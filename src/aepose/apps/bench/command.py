"""``aepose benchmark``: time one or more stages of a preset (:func:`aepose.apps.bench.run.
run_benchmark`), print the table and write the rows as JSON when asked."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from aepose.apps.bench.run import run_benchmark
from aepose.apps.bench.table import format_rows
from aepose.device import resolve_device
from aepose.errors import AeposeError
from aepose.io import check_writable, write_text

__all__ = ["BenchmarkOptions", "run_benchmarks"]


@dataclass(frozen=True)
class BenchmarkOptions:
    """What ``aepose benchmark`` times: ``stages`` of ``preset``'s network, each as
    :func:`~aepose.apps.bench.run_benchmark` takes them (``compile_mode`` is its
    ``compile``; ``flip``: the e2e flip test; ``repeats`` None: timed iterations for about
    10 s; ``warmup`` None: 1, or 3 when compiled), and ``json``: a file for the rows
    (checked before timing, written whole or not at all)."""

    preset: str
    stages: tuple[str, ...] = ("forward",)
    device: str = "cpu"
    batch_size: int = 1
    dtype: str = "fp32"
    compile_mode: str | None = None
    channels_last: bool = False
    repeats: int | None = None
    warmup: int | None = None
    input_size: int | None = None
    flip: bool = True
    images: int | None = None
    decode_workers: int | None = None
    json: Path | None = None


def run_benchmarks(options: BenchmarkOptions) -> None:
    """Time every stage (progress lines on stderr, through the ``aepose`` logger), print the
    table, then write the JSON rows (if asked)."""
    resolve_device(options.device)  # a device this machine lacks: one line, before timing
    target = options.json
    if target is not None:  # an unwritable --json costs one line, not the timings
        if target.is_dir():
            raise AeposeError(f"--json {target} is a folder; give a file name")
        check_writable(target.parent)
    rows = [
        run_benchmark(options.preset, stage=stage, device=options.device,
                      batch_size=options.batch_size, dtype=options.dtype,
                      compile=options.compile_mode, channels_last=options.channels_last,
                      repeats=options.repeats, warmup=options.warmup,
                      input_size=options.input_size, flip=options.flip, images=options.images,
                      decode_workers=options.decode_workers)
        for stage in options.stages
    ]
    print(format_rows(rows), flush=True)
    if target is not None:
        write_text(target, json.dumps([r.to_dict() for r in rows], indent=2) + "\n",
                   what="benchmark rows")
