"""ONNX export of the network, and an ONNX Runtime backend that stands in for it.

Only the network goes into the ONNX file: flip and scale aggregation, grouping and
back-projection stay in :mod:`aepose.pipeline.engine`, which runs unchanged on top of
:class:`OnnxNetwork` (any module with ``model(x) -> list[Tensor]`` and no parameters works
there). The file carries the full :class:`~aepose.config.Config` as JSON in its
``metadata_props`` under :data:`CONFIG_KEY`, so a predictor can be built from it alone.

Graph interface: input ``images`` float32 [B, 3, H, W] (normalised RGB, H and W multiples of
32; the test-time sizes of :mod:`aepose.pipeline.engine` are multiples of 64); outputs
``output0``, ``output1``, ... in the network's order, stride 4 first: [B, K + K_tag, H/4, W/4]
(and [B, K, H/2, W/2] for HigherHRNet). Legend: B batch, K keypoints, K_tag = K or 0.

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
import importlib
import json
import logging
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from aepose.config import Config, ModelConfig, TestConfig, config_from_dict, get_preset
from aepose.errors import AeposeError
from aepose.io import atomic_write
from aepose.models.checkpoint import load_with_config
from aepose.pipeline.predictor import Predictor

if TYPE_CHECKING:
    import onnx
    import onnxruntime

__all__ = ["CONFIG_KEY", "INPUT_NAME", "OnnxNetwork", "export_onnx", "export_weights",
           "onnx_predictor"]

INPUT_NAME = "images"
CONFIG_KEY = "aepose_config"
CPU_PROVIDERS = ("CPUExecutionProvider",)

# torch.export specialises a dim whose example value is 0 or 1; the example batch avoids it.
_EXAMPLE_BATCH = 2
_STRIDE = 32  # coarsest HRNet branch: input sides must divide by it


def _optional(module: str) -> ModuleType:
    """Import an optional dependency of the ``export`` extra, or say how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise AeposeError(
            f"{module} is not installed; ONNX export and inference need "
            "pip install 'aepose[export]' (onnx, onnxscript, onnxruntime)"
        ) from None


# ---------------------------------------------------------------------------------------
# Export


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
        config: stored as JSON under :data:`CONFIG_KEY` so :meth:`OnnxNetwork.load` and
            :func:`onnx_predictor` recover it; its ``model`` must equal ``model.config``
            where the model has one.
        input_size: side of the square example input [B, 3, S, S], a multiple of 32; with
            ``dynamic=False`` it is the only size (and 1 the only batch) the file accepts.
        dynamic: batch, height and width as symbolic dims ``batch``, ``height``, ``width``.
        opset: ONNX opset; ``None`` takes the exporter's default (20 with torch 2.13).
            Below 18 the exporter writes 18 and onnx's version converter steps it down.

    The written file passes ``onnx.checker.check_model(full_check=True)``.
    """
    onnx = _optional("onnx")
    _optional("onnxscript")  # the dynamo exporter's translator; fail early with the hint
    _check_input_size(input_size)
    net = _export_copy(model, config)
    path = _destination(path)
    example = torch.zeros(_EXAMPLE_BATCH if dynamic else 1, 3, input_size, input_size)
    names = [f"output{i}" for i in range(_count_outputs(net, example))]
    proto = _to_onnx(net, example, names, dynamic, opset)
    if config is not None:
        _set_metadata(proto, CONFIG_KEY, json.dumps(dataclasses.asdict(config), sort_keys=True))
    return _save_checked(onnx, proto, path)


def export_weights(weights: str, output: str | Path, *, preset: str | None = None,
                   input_size: int | None = None, dynamic: bool = True,
                   opset: int | None = None) -> Path:
    """``aepose export``: the network of ``weights`` (a checkpoint, preset or release name;
    its recipe is ``preset``, else the file's own or the one recognised) written as ONNX at
    ``output`` by :func:`export_onnx` (``input_size`` default: the recipe's), with one line
    saying what was written. Returns the file's path."""
    model, cfg = load_with_config(weights, preset=preset)
    path = export_onnx(model, output, config=cfg, input_size=input_size or cfg.data.input_size,
                       dynamic=dynamic, opset=opset)
    print(f"wrote {path} (input 'images' [B, 3, H, W]"
          f"{', dynamic batch/height/width' if dynamic else ''}; config {cfg.name})")
    return path


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


# ---------------------------------------------------------------------------------------
# ONNX Runtime backend


class OnnxNetwork(nn.Module):
    """An ONNX Runtime session behind the network interface: ``forward(images) -> list``.

    It has no parameters, so :mod:`aepose.pipeline.engine` decodes its maps on the CPU whatever
    the execution provider; it is always in eval mode (``train(True)`` raises).

    Attributes:
        session: the ``onnxruntime.InferenceSession``.
        path: the file it was loaded from (``None`` when built from a session).
        config: the Config stored at export under :data:`CONFIG_KEY`, or ``None``.
        input_name, output_names: the graph's input and outputs, in order.
    """

    def __init__(
        self,
        session: onnxruntime.InferenceSession,
        *,
        path: Path | None = None,
        config: Config | None = None,
    ):
        super().__init__()
        where = path or "ONNX model"
        inputs = session.get_inputs()
        if len(inputs) != 1:
            raise AeposeError(f"{where}: has {len(inputs)} inputs; a pose network has one "
                              "(images [B, 3, H, W])")
        self.session = session
        self.path = path
        self.config = config
        self.input_name: str = inputs[0].name
        self.output_names: list[str] = [o.name for o in session.get_outputs()]
        self.training = False

    @classmethod
    def load(
        cls,
        path: str | Path,
        providers: Sequence[str] | None = None,
        *,
        threads: int | None = None,
    ) -> OnnxNetwork:
        """Open an ONNX file; ``providers`` defaults to CPU (e.g. ``["CUDAExecutionProvider",
        "CPUExecutionProvider"]`` for a GPU), ``threads`` sets ONNX Runtime's intra-op
        threads (``None``: its default, one per core)."""
        ort = _optional("onnxruntime")
        path = Path(path)
        if not path.is_file():
            what = "is a directory" if path.is_dir() else "no such file"
            raise AeposeError(f"{path}: {what}; expected an ONNX model file")
        session = _session(ort, path, _checked_providers(ort, providers), threads)
        return cls(session, path=path, config=_stored_config(session, path))

    def forward(self, images: Tensor) -> list[Tensor]:
        """[B, 3, H, W] normalised RGB on any device -> the graph's outputs as float32 CPU
        tensors, e.g. [[B, 2K, H/4, W/4], [B, K, H/2, W/2]] for HigherHRNet."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise AeposeError(f"{self._where()}: expects images [B, 3, H, W], got "
                              f"{tuple(images.shape)}")
        array = images.detach().to("cpu", torch.float32).contiguous().numpy()
        try:
            outputs = self.session.run(self.output_names, {self.input_name: array})
        except Exception as error:  # ORT's error classes derive from Exception directly
            reason = str(error).splitlines()[0][:200]
            raise AeposeError(f"{self._where()}: ONNX Runtime failed on input "
                              f"{tuple(images.shape)} ({reason})") from None
        return [torch.from_numpy(out) for out in outputs]

    def train(self, mode: bool = True) -> OnnxNetwork:
        """Stay in eval mode: the graph's BatchNorm statistics are frozen constants."""
        if mode:
            raise AeposeError(f"{self._where()}: an ONNX network cannot be trained")
        return super().train(False)

    def extra_repr(self) -> str:
        """File and execution providers, shown by ``repr``."""
        return f"path={self.path}, providers={self.session.get_providers()}"

    def _where(self) -> str:
        return str(self.path) if self.path is not None else "ONNX model"


def _checked_providers(ort: ModuleType, providers: Sequence[str] | None) -> list[str]:
    """The requested providers, all available in this onnxruntime build (ORT itself only
    warns and falls back to the CPU, which would hide a missing CUDA install)."""
    chosen = list(CPU_PROVIDERS if providers is None else providers)
    available = ort.get_available_providers()
    missing = [p for p in chosen if p not in available]
    if missing or not chosen:
        raise AeposeError(f"execution providers {missing or chosen} are not available in "
                          f"this onnxruntime; available: {', '.join(available)}")
    return chosen


def _session(
    ort: ModuleType, path: Path, providers: list[str], threads: int | None
) -> onnxruntime.InferenceSession:
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    try:
        session: onnxruntime.InferenceSession = ort.InferenceSession(
            str(path), sess_options=options, providers=providers
        )
    except Exception as error:  # InvalidProtobuf, InvalidArgument, Fail: plain Exceptions
        reason = str(error).splitlines()[0][:200]
        raise AeposeError(f"{path}: not a loadable ONNX model ({reason})") from None
    return session


def _stored_config(session: onnxruntime.InferenceSession, path: Path) -> Config | None:
    """The Config written by :func:`export_onnx`, or ``None`` for a file without one."""
    text = session.get_modelmeta().custom_metadata_map.get(CONFIG_KEY)
    if text is None:
        return None
    try:
        return config_from_dict(json.loads(text))
    except (json.JSONDecodeError, AeposeError, TypeError, ValueError) as error:
        raise AeposeError(f"{path}: unreadable {CONFIG_KEY} metadata ({error})") from None


def onnx_predictor(
    path: str | Path,
    config: Config | str | None = None,
    *,
    providers: Sequence[str] | None = None,
    threads: int | None = None,
    test: TestConfig | None = None,
    pose_nms: float | None = None,
    channel_order: str = "bgr",
    **overrides: Any,
) -> Predictor:
    """A :class:`~aepose.pipeline.predictor.Predictor` whose network is the ONNX file at ``path``.

    ``config`` is a Config or a preset name; ``None`` takes the one stored in the file (an
    error if there is none). A given config must describe the stored network, if any.
    ``test``, ``pose_nms``, ``channel_order`` (of the arrays it is given: BGR by default)
    and test-setting ``overrides`` (``scales=``, ``flip=`` ...) are the Predictor's, as for
    the torch backend; ``providers`` and ``threads`` are :meth:`OnnxNetwork.load`'s.
    """
    network = OnnxNetwork.load(path, providers, threads=threads)
    chosen = _predictor_config(network, config)
    return Predictor(network, chosen, test=test, pose_nms=pose_nms,
                     channel_order=channel_order, **overrides)


def _predictor_config(network: OnnxNetwork, config: Config | str | None) -> Config:
    stored = network.config
    chosen = get_preset(config) if isinstance(config, str) else config or stored
    if chosen is None:
        raise AeposeError(f"{network._where()}: has no {CONFIG_KEY} metadata; pass a preset "
                          "name or a Config")
    if stored is not None and chosen.model != stored.model:
        raise AeposeError(f"{network._where()}: holds the network of {stored.name!r}; "
                          f"config {chosen.name!r} describes a different one")
    return chosen
