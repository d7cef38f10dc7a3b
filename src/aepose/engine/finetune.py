"""Starting weights and fine-tuning: other weights by matching name and shape
(:func:`init_from`), a backbone-only file (:func:`load_pretrained_backbone`), and the
backbone frozen for the first epochs (:func:`optimizer_and_factors`)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from aepose.config import TrainConfig, get_preset
from aepose.errors import AeposeError
from aepose.keypoints import CUSTOM, get_spec
from aepose.models import AssociativeEmbeddingNet, build_from_config
from aepose.models.checkpoint import Checkpoint, read_checkpoint, resolve_config

__all__ = ["InitReport", "init_from", "load_pretrained_backbone", "optimizer_and_factors"]

logger = logging.getLogger("aepose")

LrFactor = Callable[[int], float]


@dataclass(frozen=True)
class InitReport:
    """What :func:`init_from` did: tensor names loaded, left at their fresh initialisation
    (absent from the weights or of another shape: the layers whose shape depends on K),
    and the weights' tensors not used."""

    loaded: tuple[str, ...]
    reinitialised: tuple[str, ...]
    unused: tuple[str, ...]

    def line(self, weights: str | Path) -> str:
        """One line: the three counts and a few re-initialised names."""
        shown = ", ".join(self.reinitialised[:3]) + (", ..." if len(self.reinitialised) > 3
                                                      else "")
        return (f"init from {weights}: {len(self.loaded)} tensors loaded, "
                f"{len(self.reinitialised)} re-initialised{f' ({shown})' if shown else ''}, "
                f"{len(self.unused)} unused")


def init_from(model: AssociativeEmbeddingNet, weights: str | Path, *,
              log: bool = True) -> InitReport:
    """Copy into ``model`` every tensor of ``weights`` (a file, a preset name, a release file
    name or a URL: :func:`aepose.models.checkpoint.read_checkpoint`) whose name and shape
    match its own; the others keep ``model``'s initialisation. When both skeletons are known
    and differ (other joints, or the same count in another order), the layers whose shape
    depends on K start fresh too: their channels would mean other joints. Logs
    :meth:`InitReport.line` when ``log`` (under torchrun, rank 0 only: every rank loads).

    Raises:
        AeposeError: the weights share no tensor with the model (another network entirely).
    """
    ckpt = read_checkpoint(weights)
    source = ckpt.state_dict
    own = model.state_dict()
    fresh = set()
    names = _keypoint_names(ckpt)
    if model.keypoint_spec is not None and names not in (None, model.keypoint_spec.keypoint_names):
        fresh = _k_dependent(model)
    loaded = {k: v for k, v in source.items()
              if k in own and k not in fresh and tuple(v.shape) == tuple(own[k].shape)}
    if not loaded:
        raise AeposeError(f"{weights}: no tensor matches the {model.config.backbone} network by "
                          "name and shape; nothing to start from")
    model.load_state_dict(loaded, strict=False)
    report = InitReport(loaded=tuple(loaded),
                        reinitialised=tuple(k for k in own if k not in loaded),
                        unused=tuple(k for k in source if k not in loaded))
    if log:
        logger.info("%s", report.line(weights))
    return report


def optimizer_and_factors(model: AssociativeEmbeddingNet, train: TrainConfig, factor: LrFactor,
                          iters_per_epoch: int) -> tuple[torch.optim.Optimizer, list[LrFactor]]:
    """Adam over the model's parameters and the learning-rate multiplier of each parameter
    group (for ``LambdaLR``): one group and ``factor``; with ``train.freeze_backbone_epochs``
    = N > 0 the backbone in a second group whose multiplier is 0 for the iterations of the
    first N epochs, so its weights stay exactly as loaded, then ``factor``."""
    frozen_epochs = train.freeze_backbone_epochs
    if frozen_epochs == 0:
        return torch.optim.Adam(model.parameters(), lr=train.lr), [factor]
    backbone = list(model.backbone.parameters())
    in_backbone = {id(p) for p in backbone}
    rest: list[nn.Parameter] = [p for p in model.parameters() if id(p) not in in_backbone]
    optimizer = torch.optim.Adam([{"params": rest}, {"params": backbone}], lr=train.lr)

    def backbone_factor(iteration: int) -> float:
        return 0.0 if iteration // iters_per_epoch < frozen_epochs else factor(iteration)

    return optimizer, [factor, backbone_factor]


def load_pretrained_backbone(model: AssociativeEmbeddingNet, path: Path, *,
                             log: bool = True) -> None:
    """Copy a backbone-only checkpoint (keys with or without ``backbone.``) into the model,
    reporting what did not fit when ``log`` (as :func:`init_from`); a shape mismatch or no
    usable key is an error."""
    weights = read_checkpoint(path).state_dict
    weights = {k.removeprefix("backbone."): v for k, v in weights.items()}
    own = model.backbone.state_dict()
    matched = {k: v for k, v in weights.items() if k in own}
    for key, value in matched.items():
        if value.shape != own[key].shape:
            raise AeposeError(
                f"{path}: {key} has shape {list(value.shape)}, the backbone expects "
                f"{list(own[key].shape)}")
    if not matched:
        raise AeposeError(f"{path}: no key matches the {model.config.backbone} backbone")
    model.backbone.load_state_dict(matched, strict=False)
    missing = sorted(set(own) - set(matched))
    unexpected = sorted(set(weights) - set(own))
    if log:
        logger.info("pretrained backbone %s: %d tensors loaded, %d missing%s, %d unexpected%s",
                    path, len(matched), len(missing), _examples(missing), len(unexpected),
                    _examples(unexpected))


def _examples(keys: list[str]) -> str:
    return f" (e.g. {', '.join(keys[:3])})" if keys else ""


def _keypoint_names(ckpt: Checkpoint) -> tuple[str, ...] | None:
    """The joints of a file's channels: its stored spec, its config's dataset, or the preset
    its keys are recognised as; None when unknown."""
    if ckpt.spec is not None:
        return ckpt.spec.keypoint_names
    if ckpt.config is not None:
        dataset = ckpt.config.data.dataset
    else:
        try:
            dataset = get_preset(resolve_config(ckpt)[0]).data.dataset
        except AeposeError:  # no preset has this network: nothing to compare with
            return None
    return None if dataset == CUSTOM else get_spec(dataset).keypoint_names


def _k_dependent(model: AssociativeEmbeddingNet) -> set[str]:
    """Names of the tensors whose shape changes with the keypoint count (the head's final
    layers, HigherHRNet's deconvolution reading the first output): found by building the
    network with one keypoint more on the meta device (no memory, no random draws)."""
    bigger = dataclasses.replace(model.config, num_keypoints=model.config.num_keypoints + 1)
    with torch.device("meta"):
        other = build_from_config(bigger).state_dict()
    return {k for k, v in model.state_dict().items() if other[k].shape != v.shape}
