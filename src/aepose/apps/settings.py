"""The network and test settings the command line asks for, shared by ``test`` and
``predict``: the weights' config with ``--set test.x=y``, ``--scales``, ``--no-flip`` and
``--stage-average`` applied, and the network with the requested GPU fast paths."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from aepose.config import Config, apply_overrides, with_test_settings
from aepose.errors import AeposeError
from aepose.pipeline.network import FastNetwork

__all__ = ["command_line_config", "fast_network"]


def command_line_config(cfg: Config, overrides: Sequence[str], *,
                        scales: Sequence[float] | None = None, flip: bool | None = None,
                        stage_average: str | None = None) -> Config:
    """``cfg`` with the command line's test settings: ``overrides`` (``test.x=y`` items)
    first, then ``scales``, ``flip`` and ``stage_average`` (None: as they are); the weights
    fix the rest."""
    foreign = [o for o in overrides if not o.startswith("test.")]
    if foreign:
        raise AeposeError(f"--set here takes test settings only (test.x=y), got {foreign[0]!r}")
    cfg = apply_overrides(cfg, overrides)
    return with_test_settings(cfg, scales=scales, flip=flip, stage_average=stage_average)


def fast_network(model: nn.Module, *, dtype: str = "fp32", channels_last: bool = False,
                 compile_mode: str | None = None) -> nn.Module:
    """``model`` with the requested GPU fast paths (precision, NHWC, torch.compile mode);
    ``model`` itself for the fp32 defaults."""
    if dtype == "fp32" and not channels_last and compile_mode is None:
        return model
    return FastNetwork(model, dtype=dtype, channels_last=channels_last,
                       compile=compile_mode).eval()
