"""The network and test settings the command line asks for, shared by ``test`` and
``predict``: the weights' config with the ``test.x=y`` settings applied, and the network with
the requested GPU fast paths."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from aepose.config import Config, apply_overrides
from aepose.errors import AeposeError
from aepose.pipeline.network import FastNetwork

__all__ = ["command_line_config", "fast_network"]


def command_line_config(cfg: Config, overrides: Sequence[str]) -> Config:
    """``cfg`` with the command line's test settings, ``test.x=y`` items applied in order
    (``--set`` first, then what ``--scales``, ``--no-flip`` and ``--stage-average`` became:
    :func:`aepose.apps.cli` writes them so); the weights fix the rest. TestConfig checks
    the result."""
    foreign = [o for o in overrides if not o.startswith("test.")]
    if foreign:
        raise AeposeError(f"--set here takes test settings only (test.x=y), got {foreign[0]!r}")
    return apply_overrides(cfg, overrides)


def fast_network(model: nn.Module, *, dtype: str = "fp32", channels_last: bool = False,
                 compile_mode: str | None = None) -> nn.Module:
    """``model`` with the requested GPU fast paths (precision, NHWC, torch.compile mode);
    ``model`` itself for the fp32 defaults."""
    if dtype == "fp32" and not channels_last and compile_mode is None:
        return model
    return FastNetwork(model, dtype=dtype, channels_last=channels_last,
                       compile=compile_mode).eval()
