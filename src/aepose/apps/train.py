"""``aepose train``: the recipe from a preset or a checkpoint, the keypoints of the data
(``--ann``), ``--set`` on top, then :func:`aepose.engine.train.train`, and one closing line
(rank 0)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from aepose.config import Config, apply_overrides, get_preset
from aepose.engine.distributed import shutdown
from aepose.engine.train import TrainOptions, train
from aepose.errors import AeposeError, Interrupted
from aepose.keypoints import KEYPOINT_SPECS, KeypointSpec, get_spec, recipe_for
from aepose.models.checkpoint import read_checkpoint, resolve_config
from aepose.skeleton_file import category_names, spec_from_annotations

__all__ = ["TrainFiles", "run_train"]


@dataclass(frozen=True)
class TrainFiles:
    """A dataset given as files instead of a preset's data root (``--ann``, ``--images``,
    ``--val-ann``, ``--val-images``) and its keypoints (``--spec``: a built-in name or a
    spec file; default: the annotation file's own categories)."""

    ann: str | None = None
    images: str | None = None
    val_ann: str | None = None
    val_images: str | None = None
    spec: str | None = None
    data_root: bool = False  # whether --data-root was given


def run_train(preset: str | None, overrides: Sequence[str], options: TrainOptions,
              files: TrainFiles | None = None) -> None:
    """Train ``preset``'s recipe (default: the one ``options.resume`` embeds, else the one
    of the ``options.init`` weights) with ``overrides`` (``section.field=value``) applied;
    with ``files.ann``, on that file's keypoints; see :class:`TrainOptions`.

    Raises:
        Interrupted: Ctrl-C stopped the run; the message names the checkpoint it saved (a
            stop at ``options.stop_after`` is planned, not an interruption).
    """
    files = files or TrainFiles()
    cfg, spec = _recipe(preset, options), None
    if files.ann is not None:
        cfg, spec = _on_files(cfg, files, options)
    elif not files.data_root and options.resume is None:
        raise AeposeError("train needs --data-root DIR (a preset dataset's layout) or "
                          "--ann FILE --images DIR")
    # After the keypoints' recipe, so that what --set says is what runs.
    cfg = apply_overrides(cfg, overrides)
    if spec is not None and cfg.test.flip and not spec.flip_pairs:
        raise AeposeError(f"test.flip: the {spec.name} keypoints have no left/right pairs, so "
                          "validation cannot flip; drop test.flip=true")
    try:
        result = train(cfg, dataclasses.replace(options, keypoints=spec))
    finally:
        shutdown()
    if int(os.environ.get("RANK", "0")) != 0:
        return
    # train() reports a stop_after stop and a Ctrl-C alike; only the latter is interrupted.
    if result.interrupted and result.iteration != options.stop_after:
        raise Interrupted(f"checkpoint {result.checkpoint} (epoch {result.epoch}, iteration "
                          f"{result.iteration}); continue with --resume {result.checkpoint}")
    state = "stopped early" if result.interrupted else "finished"
    print(f"{state} after epoch {result.epoch}, iteration {result.iteration}; "
          f"checkpoint {result.checkpoint}")


def _recipe(preset: str | None, options: TrainOptions) -> Config:
    """``preset``'s config, else the config embedded in the checkpoint to resume, else the
    recipe of the weights to start from."""
    if preset is not None:
        return get_preset(preset)
    if options.resume is None and options.init is not None:
        start = read_checkpoint(options.init)
        name, _, _ = resolve_config(start)
        return start.config or get_preset(name)
    if options.resume is None:
        raise AeposeError("train needs --preset (or --resume CHECKPOINT, or --init WEIGHTS)")
    saved = read_checkpoint(options.resume).config
    if saved is None:
        raise AeposeError(f"{options.resume}: has no embedded config; pass --preset")
    return saved


def _on_files(cfg: Config, files: TrainFiles, options: TrainOptions
              ) -> tuple[Config, KeypointSpec]:
    """``cfg`` reading ``files`` (absolute paths, so the run folder's config finds them from
    anywhere) with the network sized for their keypoints, and those keypoints."""
    if files.data_root:
        raise AeposeError("--ann names the training data itself; drop --data-root")
    if options.resume is not None:
        raise AeposeError("--resume continues on its own run's data; drop --ann")
    if files.images is None:
        raise AeposeError(f"--ann {files.ann} needs --images DIR, the folder of its images")
    ann = Path(files.ann or "").resolve()
    spec = _spec(ann, files.spec)
    val_ann = Path(files.val_ann).resolve() if files.val_ann else None
    val_images = files.val_images or files.images
    data = dataclasses.replace(
        cfg.data, train_ann=str(ann), train_images=str(Path(files.images).resolve()),
        val_ann=str(val_ann) if val_ann else "",
        val_images=str(Path(val_images).resolve()) if val_ann else "")
    # A validation file without a category is read with the training file's keypoints.
    if val_ann is not None and category_names(val_ann) not in (None, spec.keypoint_names):
        raise AeposeError(f"{val_ann}: categories: its keypoints differ from those of {ann}")
    return recipe_for(dataclasses.replace(cfg, data=data), spec), spec


def _spec(ann: Path, spec: str | None) -> KeypointSpec:
    """``--spec``'s keypoints: a built-in name, or ``ann``'s own with a spec file's
    overrides; without it, ``ann``'s own."""
    if spec is None or Path(spec).is_file():
        return spec_from_annotations(ann, spec)
    if spec in KEYPOINT_SPECS:
        return get_spec(spec)
    raise AeposeError(f"--spec {spec}: neither a file nor a built-in name "
                      f"({', '.join(KEYPOINT_SPECS)})")
