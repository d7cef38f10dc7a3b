"""``aepose test``: evaluate weights on a COCO-format set.

Output folder: ``metrics.json`` (the settings, counts, skipped images and metrics) and
``results.json`` (the COCO result records, which ``--results`` re-scores: that path is
:mod:`aepose.apps.rescore`, which needs no torch). The AP table is printed before
``metrics.json`` is written, so a failed write costs no result. Under torchrun every rank
evaluates its share and rank 0 writes and prints.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from aepose.apps.rescore import finish_test, refuse_existing
from aepose.apps.settings import command_line_config, command_line_network
from aepose.config import Config
from aepose.engine.distributed import (
    broadcast_object,
    claim_run_folder_on_all_ranks,
    init_distributed,
    shutdown,
)
from aepose.engine.eval_loop import evaluate_model
from aepose.errors import AeposeError
from aepose.keypoints import spec_of

__all__ = ["TestOptions", "run_test"]

# What an evaluation writes into its folder; an earlier run's are replaced only when asked.
_OUTPUTS = ("metrics.json", "results.json")


@dataclass(frozen=True)
class TestOptions:
    """What ``aepose test`` evaluates, where, and how.

    weights: checkpoint file, preset or release name; preset: the recipe (default: the
    file's own, or recognised). The data: ``data_root`` (the preset's val split) or ``ann``
    with ``images`` (default: where the dataset layout puts them). out: folder for
    metrics.json and results.json (default runs/PRESET-test-TIMESTAMP); overwrite: replace
    an earlier run's files there. Test settings: ``overrides``, ``test.x=y`` items applied
    in order over the weights' own. Speed: ``dtype``, ``channels_last``, ``compile_mode``
    (None: eager), ``batch_size``, ``workers`` (reading threads), ``decode_workers`` (None:
    one per spare CPU core, at most 4); ``device`` (None: CUDA when available);
    ``progress``: a bar.
    """

    weights: str | None = None
    preset: str | None = None
    data_root: Path | None = None
    ann: Path | None = None
    images: Path | None = None
    out: Path | None = None
    overwrite: bool = False
    overrides: tuple[str, ...] = ()
    dtype: str = "fp32"
    channels_last: bool = False
    compile_mode: str | None = None
    device: str | None = None
    batch_size: int = 8
    workers: int = 2
    decode_workers: int | None = None
    progress: bool = True


def run_test(options: TestOptions) -> None:
    """Evaluate ``options.weights``: print the AP table, write metrics.json and results.json;
    see the module docstring."""
    if options.weights is None:
        raise AeposeError("test needs --weights (or --results FILE to re-score saved results)")
    info = init_distributed(options.device)
    try:
        # An ONNX file runs in ONNX Runtime with its metadata's config and keypoints.
        model, cfg = command_line_network(
            options.weights, info.device, preset=options.preset, dtype=options.dtype,
            channels_last=options.channels_last, compile_mode=options.compile_mode)
        cfg = command_line_config(cfg, options.overrides)
        ann, images = _test_files(cfg, options)
        out = options.out or Path(f"runs/{cfg.name}-test-{time.strftime('%Y%m%d-%H%M%S')}")
        out = Path(broadcast_object(str(out), info))
        # Everything that can refuse the outputs does so now, not after the evaluation.
        with claim_run_folder_on_all_ranks(out, info, _refuse_outputs(options.overwrite)):
            result = evaluate_model(
                model, cfg, ann, images, info, batch_size=options.batch_size,
                workers=options.workers, decode_workers=options.decode_workers,
                results_file=out / "results.json", progress=options.progress)
            _check_images_found(result.images, result.skipped, ann, images)
            if info.is_main:
                report = {"preset": cfg.name, "weights": str(options.weights), "ann": str(ann),
                          "scales": list(cfg.test.scales), "flip": cfg.test.flip,
                          "test": dataclasses.asdict(cfg.test), "images": result.images,
                          "people": result.people, "seconds": result.seconds,
                          "skipped": list(result.skipped), "metrics": result.metrics}
                finish_test(report, spec_of(model, cfg.data.dataset), out / "metrics.json")
    finally:
        shutdown()


def _refuse_outputs(overwrite: bool) -> Callable[[Path], None]:
    """The claim's check: an earlier run's files in the folder, unless told to replace them."""
    def refuse(folder: Path) -> None:
        for name in _OUTPUTS:
            refuse_existing(folder / name, overwrite)

    return refuse


def _test_files(cfg: Config, options: TestOptions) -> tuple[Path, Path]:
    """The annotation file and image folder: given, or where the dataset layout puts them.

    ``ann`` alone: the images are the preset's val folder under the dataset root that holds
    the annotation file (ROOT/annotations/x.json -> ROOT/<val_images>). A missing folder is
    refused here, before the network runs.
    """
    if options.ann is not None:
        ann = options.ann
    elif options.data_root is not None:
        ann = options.data_root / cfg.data.val_ann
    else:
        raise AeposeError("test needs --data-root (or --ann FILE [--images DIR])")
    if options.images is not None:
        images = options.images
    elif options.data_root is not None:
        images = options.data_root / cfg.data.val_images
    else:
        images = _dataset_root(ann, cfg.data.val_ann) / cfg.data.val_images
    if not images.is_dir():
        raise AeposeError(f"no images: {images} is not a folder (the images of {ann}); pass "
                          "--images DIR")
    return ann, images


def _dataset_root(ann: Path, layout_ann: str) -> Path:
    """The dataset root that holds ``ann`` when it sits where the layout's annotation file
    does (``annotations/`` under the root), else the annotation file's folder."""
    layout = Path(layout_ann).parent.parts
    folders = ann.absolute().parent.parts
    if layout and folders[len(folders) - len(layout):] == layout:
        root = ann.parent
        for _ in layout:
            root = root.parent
        return root
    return ann.parent


def _check_images_found(decoded: int, skipped: Sequence[str], ann: Path, images: Path) -> None:
    """An evaluation in which no image could be read is an error, not an all-zero table."""
    if decoded > 0:
        return
    if not skipped:
        raise AeposeError(f"{ann} lists no images to evaluate")
    raise AeposeError(f"none of the {len(skipped)} images of {ann} could be read in {images} "
                      f"(first: {skipped[0]}); pass --images DIR")
