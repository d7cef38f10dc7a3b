"""The network and test settings the command line asks for, shared by ``test`` and
``predict``: the network of ``--weights`` (PyTorch with the requested GPU fast paths, or an
ONNX file in ONNX Runtime) and its config with the ``test.x=y`` settings applied."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from aepose.config import Config, apply_overrides
from aepose.errors import AeposeError
from aepose.hub import resolve_weights
from aepose.models.checkpoint import load_with_config
from aepose.pipeline.network import FastNetwork
from aepose.pipeline.onnx_network import OnnxNetwork, is_onnx_file, providers_for

__all__ = ["command_line_config", "command_line_network"]


def command_line_config(cfg: Config, overrides: Sequence[str]) -> Config:
    """``cfg`` with the command line's test settings, ``test.x=y`` items applied in order
    (``--set`` first, then what ``--scales``, ``--no-flip`` and ``--stage-average`` became:
    :func:`aepose.apps.cli` writes them so); the weights fix the rest. TestConfig checks
    the result."""
    foreign = [o for o in overrides if not o.startswith("test.")]
    if foreign:
        raise AeposeError(f"--set here takes test settings only (test.x=y), got {foreign[0]!r}")
    return apply_overrides(cfg, overrides)


def command_line_network(
    weights: str,
    device: torch.device,
    *,
    preset: str | None = None,
    onnx: bool = False,
    dtype: str = "fp32",
    channels_last: bool = False,
    compile_mode: str | None = None,
) -> tuple[nn.Module, Config]:
    """The network of ``weights`` on ``device`` and the Config it runs with: ``preset``'s
    when given, else the file's own (a checkpoint's embedded config, an ONNX file's
    metadata), else the preset recognised from the weights.

    Weights named ``*.onnx``, or any weights when ``onnx`` (``predict --backend
    onnxruntime``), run in ONNX Runtime (:class:`OnnxNetwork`: its keypoint spec comes from
    the file's metadata), on ``device``'s execution provider; the PyTorch fast paths
    (``dtype``, ``channels_last``, ``compile_mode``) would be ignored there, so they are
    refused in one line. PyTorch weights get the fast paths asked for (the network itself
    for the fp32 defaults).
    """
    if onnx or is_onnx_file(weights):
        _refuse_torch_fast_paths(weights, dtype, channels_last, compile_mode)
        network = OnnxNetwork.load(resolve_weights(weights), providers_for(device))
        return network, network.resolve_config(preset)
    model, cfg = load_with_config(weights, preset=preset, device=device)
    if dtype == "fp32" and not channels_last and compile_mode is None:
        return model, cfg
    return FastNetwork(model, dtype=dtype, channels_last=channels_last,
                       compile=compile_mode).eval(), cfg


def _refuse_torch_fast_paths(weights: str, dtype: str, channels_last: bool,
                             compile_mode: str | None) -> None:
    """--dtype, --channels-last and --compile act on a PyTorch network only: given with an
    ONNX one they would be ignored, so they are refused in one line."""
    given = [option for option, on in (("--dtype " + dtype, dtype != "fp32"),
                                       ("--channels-last", channels_last),
                                       ("--compile", compile_mode is not None)) if on]
    if given:
        raise AeposeError(f"{', '.join(given)}: not for an ONNX network ({weights} runs in "
                          "ONNX Runtime, in float32)")
