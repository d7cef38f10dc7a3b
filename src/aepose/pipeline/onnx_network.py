"""The network of an ONNX file run by ONNX Runtime: :class:`OnnxNetwork`.

Only the network is in the file (written by :func:`aepose.apps.export.export_onnx`): flip and
scale aggregation, grouping and back-projection stay in the pipeline, which runs unchanged
on top of :class:`OnnxNetwork` (any module with ``model(x) -> list[Tensor]`` and no
parameters works there). The file carries the full :class:`~aepose.config.Config` (preset,
keypoints, input size, test settings) as JSON in its ``metadata_props`` under
:data:`CONFIG_KEY`, so a :class:`~aepose.pipeline.predictor.Predictor` can be built from the
file alone (:meth:`Predictor.from_checkpoint <aepose.pipeline.predictor.Predictor.
from_checkpoint>` takes ``.onnx`` files); what the keypoint channels mean (the
:class:`~aepose.keypoints.KeypointSpec`, a custom skeleton's included) is under
:data:`KEYPOINTS_KEY`.

Graph interface: input ``images`` float32 [B, 3, H, W] (normalised RGB, H and W multiples of
32); outputs ``output0``, ``output1``, ... in the network's order, stride 4 first:
[B, K + K_tag, H/4, W/4] (and [B, K, H/2, W/2] for HigherHRNet). Legend: B batch,
K keypoints, K_tag = K or 0.

``onnxruntime`` comes with the ``export`` extra (``pip install 'aepose[export]'``) and is
imported only when a file is opened.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from aepose.config import Config, config_from_dict, get_preset
from aepose.errors import AeposeError
from aepose.keypoints import KeypointSpec
from aepose.skeleton_file import spec_from_dict

if TYPE_CHECKING:
    import onnxruntime

__all__ = ["CONFIG_KEY", "CPU_PROVIDERS", "INPUT_NAME", "KEYPOINTS_KEY", "OnnxNetwork",
           "is_onnx_file", "optional_module", "providers_for"]

INPUT_NAME = "images"
CONFIG_KEY = "aepose_config"
KEYPOINTS_KEY = "aepose_keypoints"
CPU_PROVIDERS = ("CPUExecutionProvider",)
CUDA_PROVIDERS = ("CUDAExecutionProvider",)


def optional_module(module: str) -> ModuleType:
    """Import a package of the ``export`` extra, or say in one line how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise AeposeError(
            f"{module} is not installed; ONNX export and inference need "
            "pip install 'aepose[export]' (onnx, onnxscript, onnxruntime)"
        ) from None


def is_onnx_file(weights: str | Path) -> bool:
    """Whether ``weights`` (a path or URL) names an ONNX file: its name ends in ``.onnx``."""
    name = str(weights).split("?", 1)[0].split("#", 1)[0]
    return name.lower().endswith(".onnx")


def providers_for(device: str | torch.device | None) -> list[str] | None:
    """ONNX Runtime's execution providers for a torch device name: CUDA's for a CUDA
    device, ``None`` (the CPU) otherwise."""
    if device is not None and torch.device(device).type == "cuda":
        return list(CUDA_PROVIDERS)
    return None


class OnnxNetwork(nn.Module):
    """An ONNX Runtime session behind the network interface: ``forward(images) -> list``.

    It has no parameters, so the pipeline decodes its maps on the CPU whatever the execution
    provider; it is always in eval mode (``train(True)`` raises).

    Attributes:
        session: the ``onnxruntime.InferenceSession``.
        path: the file it was loaded from (``None`` when built from a session).
        config: the Config stored at export under :data:`CONFIG_KEY`, or ``None``.
        keypoint_spec: the keypoints stored under :data:`KEYPOINTS_KEY`, or ``None`` (a file
            written before they were: its config's dataset names them).
        input_name, output_names: the graph's input and outputs, in order.
    """

    def __init__(
        self,
        session: onnxruntime.InferenceSession,
        *,
        path: Path | None = None,
        config: Config | None = None,
        keypoint_spec: KeypointSpec | None = None,
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
        self.keypoint_spec = keypoint_spec
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
        ort = optional_module("onnxruntime")
        path = Path(path)
        if not path.is_file():
            what = "is a directory" if path.is_dir() else "no such file"
            raise AeposeError(f"{path}: {what}; expected an ONNX model file")
        session = _session(ort, path, _checked_providers(ort, providers), threads)
        stored = session.get_modelmeta().custom_metadata_map
        spec = None
        if KEYPOINTS_KEY in stored:
            spec = spec_from_dict(_json(stored[KEYPOINTS_KEY], path, KEYPOINTS_KEY),
                                  f"{path}: {KEYPOINTS_KEY} metadata")
        return cls(session, path=path, config=_stored_config(session, path), keypoint_spec=spec)

    def resolve_config(self, config: Config | str | None = None) -> Config:
        """The Config to run this network with: ``config`` (a Config or a preset name), else
        the one stored in the file. A given config must describe the stored network."""
        stored = self.config
        chosen = get_preset(config) if isinstance(config, str) else config or stored
        if chosen is None:
            raise AeposeError(f"{self.where}: has no {CONFIG_KEY} metadata; pass a preset "
                              "name or a Config")
        if stored is not None and chosen.model != stored.model:
            raise AeposeError(f"{self.where}: holds the network of {stored.name!r}; "
                              f"config {chosen.name!r} describes a different one")
        return chosen

    def forward(self, images: Tensor) -> list[Tensor]:
        """[B, 3, H, W] normalised RGB on any device -> the graph's outputs as float32 CPU
        tensors, e.g. [[B, 2K, H/4, W/4], [B, K, H/2, W/2]] for HigherHRNet."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise AeposeError(f"{self.where}: expects images [B, 3, H, W], got "
                              f"{tuple(images.shape)}")
        array = images.detach().to("cpu", torch.float32).contiguous().numpy()
        try:
            outputs = self.session.run(self.output_names, {self.input_name: array})
        except Exception as error:  # ORT's error classes derive from Exception directly
            reason = str(error).splitlines()[0][:200]
            raise AeposeError(f"{self.where}: ONNX Runtime failed on input "
                              f"{tuple(images.shape)} ({reason})") from None
        return [torch.from_numpy(out) for out in outputs]

    def train(self, mode: bool = True) -> OnnxNetwork:
        """Stay in eval mode: the graph's BatchNorm statistics are frozen constants."""
        if mode:
            raise AeposeError(f"{self.where}: an ONNX network cannot be trained")
        return super().train(False)

    def extra_repr(self) -> str:
        """File and execution providers, shown by ``repr``."""
        return f"path={self.path}, providers={self.session.get_providers()}"

    @property
    def where(self) -> str:
        """The file, for messages."""
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
    """The Config written by :func:`~aepose.apps.export.export_onnx`, or ``None`` for a
    file without one."""
    return stored_config(session.get_modelmeta().custom_metadata_map.get(CONFIG_KEY), path)


def stored_config(text: str | None, path: str | Path) -> Config | None:
    """The Config of a file's :data:`CONFIG_KEY` metadata ``text`` (``None``: no entry), or
    a one-line error naming ``path`` when it cannot be read."""
    if text is None:
        return None
    try:
        return config_from_dict(_json(text, path, CONFIG_KEY))
    except (AeposeError, TypeError, ValueError) as error:
        raise AeposeError(f"{path}: unreadable {CONFIG_KEY} metadata ({error})") from None


def _json(text: str, path: str | Path, key: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise AeposeError(f"{path}: unreadable {key} metadata ({error})") from None
