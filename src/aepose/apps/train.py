"""``aepose train``: the recipe from a preset or a checkpoint, ``--set`` on top, then
:func:`aepose.engine.train.train`, and one closing line (rank 0)."""

from __future__ import annotations

import os
from collections.abc import Sequence

from aepose.config import Config, apply_overrides, get_preset
from aepose.engine.distributed import shutdown
from aepose.engine.train import TrainOptions, train
from aepose.errors import AeposeError, Interrupted
from aepose.models.checkpoint import read_checkpoint

__all__ = ["run_train"]


def run_train(preset: str | None, overrides: Sequence[str], options: TrainOptions) -> None:
    """Train ``preset``'s recipe (default: the one ``options.resume`` embeds) with
    ``overrides`` (``section.field=value``) applied; see :class:`TrainOptions`.

    Raises:
        Interrupted: Ctrl-C stopped the run; the message names the checkpoint it saved (a
            stop at ``options.stop_after`` is planned, not an interruption).
    """
    cfg = apply_overrides(_recipe(preset, options), overrides)
    try:
        result = train(cfg, options)
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
    """``preset``'s config, else the config embedded in the checkpoint to resume."""
    if preset is not None:
        return get_preset(preset)
    if options.resume is None:
        raise AeposeError("train needs --preset (or --resume CHECKPOINT)")
    saved = read_checkpoint(options.resume).config
    if saved is None:
        raise AeposeError(f"{options.resume}: has no embedded config; pass --preset")
    return saved
