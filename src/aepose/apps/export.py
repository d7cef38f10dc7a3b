"""ONNX export of the network (``aepose export``).

Only the network goes into the ONNX file; ONNX Runtime runs it as
:class:`~aepose.pipeline.onnx_network.OnnxNetwork` under the unchanged pipeline
(``Predictor.from_checkpoint("model.onnx")``, ``aepose predict --weights model.onnx``). The
file carries the full :class:`~aepose.config.Config` as JSON in its ``metadata_props`` under
:data:`~aepose.pipeline.onnx_network.CONFIG_KEY`, so a predictor can be built from it alone.

Graph interface (see :mod:`aepose.pipeline.onnx_network`): input ``images`` float32
[B, 3, H, W] (normalised RGB, H and W multiples of 32; the pipeline's test-time sizes are
multiples of 64); outputs ``output0``, ``output1``, ... in the network's order, stride 4
first. Legend: B batch.

Exporter: ``torch.onnx.export(dynamo=True)`` (torch.export + onnxscript). With torch 2.13
the TorchScript exporter is deprecated (warns that it will be removed) and labels
HigherHRNet's stride-2 output with the stride-4 output's height and width symbols, which is
wrong; the dynamo exporter gives named symbolic dims with the right formulas
(``2*(((height - 1)//4)) + 2``). It costs 6-9 s on 2 CPU cores for a tiny network
against 0.4 s, which is acceptable for a one-off step.

``onnx`` is needed to export, ``onnxruntime`` to run; both come with the ``export`` extra
(``pip install 'aepose[export]'``) and are imported only when used.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from aepose.config import Config, ModelConfig
from aepose.errors import AeposeError
from aepose.io import atomic_write
from aepose.keypoints import spec_of
from aepose.models.checkpoint import load_with_config
from aepose.pipeline.engine import stream
from aepose.pipeline.onnx_network import (
    CONFIG_KEY,
    INPUT_NAME,
    KEYPOINTS_KEY,
    is_onnx_file,
    optional_module,
)
from aepose.pipeline.stages import Stages

if TYPE_CHECKING:
    import onnx

__all__ = ["export_onnx", "export_weights"]

# torch.export specialises a dim whose example value is 0 or 1; the example batch avoids it.
_EXAMPLE_BATCH = 2
_STRIDE = 32  # coarsest HRNet branch: input sides must divide by it


def export_onnx(
    model: nn.Module,
    path: str | Path,
    *,
    config: Config | None = None,
    input_size: int = 512,
    dynamic: bool = True,
    opset: int | None = None,
) -> Path:
    """Write ``model`` as an ONNX file at ``path`` (atomically) and return the path.

    Args:
        model: ``model(images [B, 3, H, W]) -> list[Tensor]``; it is copied, so the caller's
            module keeps its mode, dtype and device. The copy is exported in eval mode, fp32,
            on the CPU.
        path: destination ``.onnx`` file; missing parent folders are created.
        config: stored as JSON under :data:`CONFIG_KEY`, and the model's keypoint spec
            (:func:`aepose.keypoints.spec_of`) under :data:`KEYPOINTS_KEY`, so
            ``OnnxNetwork.load`` and ``Predictor.from_checkpoint`` recover both; its
            ``model`` must equal ``model.config`` where the model has one.
        input_size: side of the square example input [B, 3, S, S], a multiple of 32; with
            ``dynamic=False`` it is the only size (and 1 the only batch) the file accepts.
        dynamic: batch, height and width as symbolic dims ``batch``, ``height``, ``width``.
        opset: ONNX opset; ``None`` takes the exporter's default (20 with torch 2.13).
            Below 18 the exporter writes 18 and onnx's version converter steps it down.

    The written file passes ``onnx.checker.check_model(full_check=True)``.
    """
    onnx = optional_module("onnx")
    optional_module("onnxscript")  # the dynamo exporter's translator; fail early with the hint
    _check_input_size(input_size)
    net = _export_copy(model, config)
    path = _destination(path)
    example = torch.zeros(_EXAMPLE_BATCH if dynamic else 1, 3, input_size, input_size)
    names = [f"output{i}" for i in range(_count_outputs(net, example))]
    proto = _to_onnx(net, example, names, dynamic, opset)
    if config is not None:
        for key, value in _metadata(model, config).items():
            _set_metadata(proto, key, value)
    return _save_checked(onnx, proto, path)


def _metadata(model: nn.Module, config: Config) -> dict[str, str]:
    """The file's ``metadata_props``: the Config and what the network's channels mean."""
    spec = spec_of(model, config.data.dataset)
    return {CONFIG_KEY: json.dumps(dataclasses.asdict(config), sort_keys=True),
            KEYPOINTS_KEY: json.dumps(spec.to_dict(), sort_keys=True)}


def export_weights(weights: str, output: str | Path, *, preset: str | None = None,
                   input_size: int | None = None, dynamic: bool = True,
                   opset: int | None = None) -> Path:
    """``aepose export``: the network of ``weights`` (a checkpoint, preset or release name;
    its recipe is ``preset``, else the file's own or the one recognised) written as ONNX at
    ``output`` by :func:`export_onnx` (``input_size`` default: the recipe's), with one line
    saying what was written. Returns the file's path."""
    if is_onnx_file(weights):
        raise AeposeError(f"{weights}: is an ONNX file already; export takes PyTorch weights")
    model, cfg = load_with_config(weights, preset=preset)
    _refuse_overflowing_outputs(model, cfg, weights)
    path = export_onnx(model, output, config=cfg, input_size=input_size or cfg.data.input_size,
                       dynamic=dynamic, opset=opset)
    print(f"wrote {path} (input 'images' [B, 3, H, W]"
          f"{', dynamic batch/height/width' if dynamic else ''}; config {cfg.name})")
    return path


def _refuse_overflowing_outputs(model: nn.Module, cfg: Config, weights: str) -> None:
    """Run the network once through the pipeline's own stages on a probe image (mid-grey,
    the recipe's input size, its test scales and flip) and refuse ``weights`` in one line
    naming them when the maps fail the decoder's checks after aggregation.

    Finite but huge outputs (a head bias of 1e30) pass the check of the raw outputs and
    export fine, then overflow when flip and scale averaging add them up, or exceed the
    decoder's :data:`~aepose.codec.decode.MAX_MAGNITUDE`: every image predicted with the
    exported file would fail.
    """
    side = cfg.data.input_size
    probe = np.full((side, side, 3), 128, np.uint8)
    # load_with_config gives the network as it is exported: fp32, on the CPU, in eval mode.
    results = stream(Stages(model, cfg), [probe], lambda image: image, read_workers=0,
                     decode_workers=0)
    with contextlib.closing(results):
        error = next(results).error
    if error is not None:
        raise AeposeError(f"{weights}: {error}, on a probe image; nothing was exported")


def _destination(path: str | Path) -> Path:
    path = Path(path)
    if path.is_dir():
        raise AeposeError(f"{path}: is a directory; give the .onnx file to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _check_input_size(input_size: int) -> None:
    if input_size < _STRIDE or input_size % _STRIDE:
        raise AeposeError(f"input_size must be a positive multiple of {_STRIDE}, "
                          f"got {input_size}")


def _export_copy(model: nn.Module, config: Config | None) -> nn.Module:
    """An fp32 CPU copy in eval mode: eval folds BatchNorm's running statistics into the
    graph, and copying leaves the caller's module (maybe training, on a GPU) untouched."""
    own = getattr(model, "config", None)
    if config is not None and isinstance(own, ModelConfig) and own != config.model:
        raise AeposeError(f"config {config.name!r} describes a different network than the "
                          "model to export (their ModelConfig differ)")
    return copy.deepcopy(model).float().cpu().eval()


def _count_outputs(net: nn.Module, example: Tensor) -> int:
    """Number of tensors ``net`` returns (one forward pass on a single example image);
    weights that give NaN or infinite outputs are refused rather than exported."""
    with torch.no_grad():
        outputs = net(example[:1])
    if not isinstance(outputs, list | tuple) or not all(isinstance(o, Tensor) for o in outputs):
        raise AeposeError(f"the network must return a list of tensors to be exported, got "
                          f"{type(outputs).__name__}")
    for o, out in enumerate(outputs):
        if not bool(torch.isfinite(out).all()):
            raise AeposeError(f"the network's output {o} holds NaN or infinite values on a "
                              "test input (broken weights); nothing was exported")
    return len(outputs)


def _dynamic_shapes() -> dict[str, dict[int, Any]]:
    """Named symbolic dims: ONNX shapes then read ``[batch, 28, ((height - 1)//4) + 1, ...]``."""
    dim = torch.export.Dim
    return {INPUT_NAME: {0: dim("batch", min=1), 2: dim("height", min=_STRIDE),
                         3: dim("width", min=_STRIDE)}}


def _to_onnx(
    net: nn.Module, example: Tensor, names: list[str], dynamic: bool, opset: int | None
) -> onnx.ModelProto:
    """The in-memory ONNX model of ``net`` traced on ``example`` [B, 3, S, S]."""
    with _quiet_exporter():
        program = torch.onnx.export(
            net, (example,), dynamo=True, input_names=[INPUT_NAME], output_names=names,
            dynamic_shapes=_dynamic_shapes() if dynamic else None, opset_version=opset,
            external_data=False, optimize=True, verbose=False,
        )
    if program is None:  # only the TorchScript exporter returns nothing
        raise AeposeError("torch.onnx.export returned no program")
    proto: onnx.ModelProto = program.model_proto
    return proto


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence what users cannot act on: torch's own deprecation warnings from inside the
    exporter and its log lines about torchvision operators a pose network never uses."""
    registry = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registry.level
    registry.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        registry.setLevel(level)


def _set_metadata(proto: onnx.ModelProto, key: str, value: str) -> None:
    """Set ``metadata_props[key]`` (replacing an earlier entry of that key)."""
    kept = [(p.key, p.value) for p in proto.metadata_props if p.key != key]
    del proto.metadata_props[:]
    for k, v in [*kept, (key, value)]:
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v


def _save_checked(onnx: ModuleType, proto: onnx.ModelProto, path: Path) -> Path:
    """Write through :func:`aepose.io.atomic_write`, checking the temporary file before the
    rename: a crash or a failed check never leaves a truncated or invalid model under the name."""

    def save_and_check(tmp: Path) -> None:
        onnx.save_model(proto, tmp)
        onnx.checker.check_model(str(tmp), full_check=True)

    return atomic_write(path, save_and_check, what="ONNX model")
