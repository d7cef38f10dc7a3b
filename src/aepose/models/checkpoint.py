"""Reading weights: mmpose 0.x files as they are, bare state_dicts, and aepose checkpoints.

Everything is read with ``torch.load(weights_only=True)``: no arbitrary code is unpickled.
The only extra types allowed are NumPy arrays, scalars and dtypes, which mmcv stored in
checkpoint ``meta`` (e.g. evaluation scores); their reconstructors build data, not code.
Every problem raises :class:`AeposeError` with one line naming the file.
"""

from __future__ import annotations

import logging
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy._core import multiarray
from torch import Tensor

from aepose.config import PRESETS, Config, ModelConfig, config_from_dict, get_preset
from aepose.device import resolve_device
from aepose.errors import AeposeError
from aepose.hub import resolve_weights
from aepose.io import atomic_write
from aepose.keypoints import KeypointSpec
from aepose.models import AssociativeEmbeddingNet, build_from_config
from aepose.models.hrnet import HRNET_VARIANTS
from aepose.skeleton_file import spec_from_dict

_NUMPY_TYPES = [type(np.dtype(code)) for code in "?bBhHiIlLqQefdgFDGUSVO"]
_SAFE_NUMPY: list[Any] = [
    np.ndarray,
    np.dtype,
    *_NUMPY_TYPES,
    multiarray._reconstruct,
    multiarray.scalar,
    # Files pickled by NumPy 1.x name these under numpy.core.
    (multiarray._reconstruct, "numpy.core.multiarray._reconstruct"),
    (multiarray.scalar, "numpy.core.multiarray.scalar"),
]

logger = logging.getLogger("aepose")

_DATASET_OF = {17: "COCO", 14: "AIC or CrowdPose"}
_HEAD_NAME = {"simple": "HRNet (AESimpleHead)", "higher": "HigherHRNet"}


@dataclass(frozen=True)
class Checkpoint:
    """The parts of a weights file aepose uses.

    ``kind`` is ``"mmpose"`` (``{"state_dict", "meta"}``), ``"aepose"`` (``{"model",
    "config", "keypoints", ...}``) or ``"state_dict"`` (a bare mapping of tensors). ``spec``
    is the keypoint spec an aepose file stores (``None`` in older files and other kinds:
    their config's dataset names it).
    """

    path: Path
    kind: str
    state_dict: dict[str, Tensor]
    config: Config | None
    meta: dict[str, Any]
    spec: KeypointSpec | None = None


@dataclass(frozen=True)
class Architecture:
    """What the keys and shapes of a state_dict say about the network."""

    backbone: str  # key of HRNET_VARIANTS
    head: str  # "simple" or "higher"
    num_keypoints: int
    with_ae: tuple[bool, ...]

    def describe(self) -> str:
        """E.g. ``HigherHRNet, HRNet-w32 backbone, 14 keypoints (AIC or CrowdPose)``."""
        dataset = _DATASET_OF.get(self.num_keypoints, "unknown dataset")
        return (f"{_HEAD_NAME[self.head]}, HRNet-{self.backbone} backbone, "
                f"{self.num_keypoints} keypoints ({dataset})")


def read_checkpoint(path: str | Path, *, verify: bool = True) -> Checkpoint:
    """Load a weights file safely and normalise its layout (``module.`` prefixes stripped).

    ``path`` may also be a preset name, an mmpose release file name or a URL: see
    :func:`aepose.hub.resolve_weights`, which also checks the SHA-256 prefix a file name
    carries (``verify=False`` skips that for a local file, to describe a damaged one).
    Weights that are not real numbers (complex tensors) are refused.
    """
    path = resolve_weights(path, verify=verify)
    return _parse(path, _torch_load(path))


def _parse(path: Path, raw: Any) -> Checkpoint:
    if not isinstance(raw, dict):
        raise AeposeError(f"{path}: not a checkpoint (holds a {type(raw).__name__}, not a dict)")
    config, spec = None, None
    if "state_dict" in raw:
        kind, weights = "mmpose", raw["state_dict"]
        meta = raw.get("meta") or {}
    elif "model" in raw:
        kind, weights = "aepose", raw["model"]
        meta = {k: v for k, v in raw.items() if k in ("epoch", "iteration", "version")}
        if "config" in raw:
            try:
                config = config_from_dict(raw["config"])
            except (AeposeError, TypeError) as error:
                raise AeposeError(f"{path}: unreadable embedded config ({error})") from None
        if "keypoints" in raw:
            spec = spec_from_dict(raw["keypoints"], f"{path}: keypoints")
    else:
        kind, weights, meta = "state_dict", raw, {}
    if not isinstance(weights, dict) or not all(isinstance(v, Tensor) for v in weights.values()):
        raise AeposeError(f"{path}: not a checkpoint (its weights are not a mapping of tensors)")
    # Loading copies a complex tensor into a real parameter by dropping its imaginary part
    # with nothing but a warning: silently wrong weights.
    unreal = [f"{k} ({str(v.dtype).removeprefix('torch.')})" for k, v in weights.items()
              if v.is_complex()]
    if unreal:
        raise AeposeError(f"{path}: holds complex-valued weights ({', '.join(unreal[:2])}"
                          f"{', ...' if len(unreal) > 2 else ''}); network weights are real")
    state = {k.removeprefix("module."): v for k, v in weights.items()}
    if spec is not None and config is not None and spec.num_keypoints != \
            config.model.num_keypoints:
        raise AeposeError(f"{path}: keypoints: {spec.num_keypoints} names for a network of "
                          f"{config.model.num_keypoints} keypoint channels")
    return Checkpoint(path, kind, state, config, meta if isinstance(meta, dict) else {}, spec)


def _torch_load(path: Path) -> Any:
    if not path.exists():
        raise AeposeError(f"{path}: no such checkpoint file")
    if path.is_dir():
        raise AeposeError(f"{path}: is a directory, not a checkpoint file")
    try:
        with torch.serialization.safe_globals(_SAFE_NUMPY):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        unsafe = _unsafe_globals(path)
        if "Weights only load failed" not in str(error) or not unsafe:
            reason = str(error).splitlines()[-1][:120]
            raise AeposeError(f"{path}: not a PyTorch checkpoint or truncated ({reason})") from None
        raise AeposeError(
            f"{path}: holds pickled Python objects ({', '.join(unsafe[:3])}); refusing to "
            "unpickle them (aepose loads weights with weights_only=True)"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise AeposeError(f"{path}: not a PyTorch checkpoint or truncated ({reason})") from None


def _unsafe_globals(path: Path) -> list[str]:
    """Names of the non-tensor objects a file would unpickle; [] if it is not a pickle."""
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # garbage or a truncated archive: nothing to name
        return []


def detect_architecture(state: dict[str, Tensor], path: str | Path) -> Architecture:
    """Recognise head type, backbone variant and keypoint count from keys and shapes."""
    if "backbone.transition1.0.0.weight" not in state:
        first = ", ".join(list(state)[:3]) or "no keys"
        raise AeposeError(
            f"{path}: not an HRNet associative-embedding checkpoint "
            f"(no 'backbone.*' HRNet keys; first keys: {first})"
        )
    width = int(state["backbone.transition1.0.0.weight"].shape[0])
    backbones = [n for n, spec in HRNET_VARIANTS.items() if spec.widths[0] == width]
    if not backbones:
        raise AeposeError(f"{path}: HRNet branch width {width} matches no known variant")
    if "keypoint_head.final_layer.weight" in state:
        channels = [int(state["keypoint_head.final_layer.weight"].shape[0])]
        head = "simple"
    elif "keypoint_head.final_layers.1.weight" in state:
        channels = [int(state[f"keypoint_head.final_layers.{i}.weight"].shape[0]) for i in (0, 1)]
        head = "higher"
    else:
        raise AeposeError(f"{path}: has an HRNet backbone but no associative-embedding head "
                          "('keypoint_head.final_layer(s).*' keys)")
    # The last output always carries heatmaps; the first always carries tags too.
    num_keypoints = channels[0] // 2
    with_ae = tuple(c == 2 * num_keypoints for c in channels)
    return Architecture(backbones[0], head, num_keypoints, with_ae)


def matching_presets(arch: Architecture) -> list[str]:
    """Presets whose network has this architecture, in table order."""
    return [
        name for name, cfg in PRESETS.items()
        if (cfg.model.backbone, cfg.model.head, cfg.model.num_keypoints, cfg.model.with_ae)
        == (arch.backbone, arch.head, arch.num_keypoints, arch.with_ae)
    ]


def choose_preset(ckpt: Checkpoint, arch: Architecture) -> tuple[str, str]:
    """Pick the preset for a file without one: ``(name, reason)``.

    Several presets share a network (AIC and CrowdPose both have 14 keypoints); the
    dataset named in the file name breaks the tie, else the first in table order wins.
    """
    names = matching_presets(arch)
    if not names:
        raise AeposeError(f"{ckpt.path}: {arch.describe()} matches no preset; pass one explicitly")
    stem = ckpt.path.name.lower()
    hinted = [n for n in names if PRESETS[n].data.dataset in stem]
    chosen = (hinted or names)[0]
    others = [n for n in names if n != chosen]
    reason = f"recognised {arch.describe()}"
    if others:
        reason += f"; also matches {', '.join(others)} (pass --preset to choose)"
    return chosen, reason


def check_compatible(ckpt: Checkpoint, arch: Architecture, cfg: ModelConfig, name: str) -> None:
    """Raise a one-line error when a file's network differs from ``cfg``'s."""
    if arch.num_keypoints != cfg.num_keypoints:
        raise AeposeError(
            f"{ckpt.path}: has {arch.num_keypoints} keypoints "
            f"({_DATASET_OF.get(arch.num_keypoints, 'unknown dataset')}); preset {name} "
            f"expects {cfg.num_keypoints}"
        )
    if arch.head != cfg.head:
        raise AeposeError(f"{ckpt.path}: is a {_HEAD_NAME[arch.head]} checkpoint; "
                          f"preset {name} is {_HEAD_NAME[cfg.head]}")
    if arch.backbone != cfg.backbone:
        raise AeposeError(f"{ckpt.path}: has an HRNet-{arch.backbone} backbone; "
                          f"preset {name} expects HRNet-{cfg.backbone}")


def _key_report(ckpt: Checkpoint, model: torch.nn.Module, name: str) -> None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in ckpt.state_dict]
    unexpected = [k for k in ckpt.state_dict if k not in expected]
    shapes = [
        f"{k} {list(ckpt.state_dict[k].shape)} vs {list(v.shape)}"
        for k, v in expected.items()
        if k in ckpt.state_dict and ckpt.state_dict[k].shape != v.shape
    ]
    problems = [
        f"{len(items)} {label} ({', '.join(items[:3])}{', ...' if len(items) > 3 else ''})"
        for label, items in (("missing keys", missing), ("unexpected keys", unexpected),
                             ("shape mismatches", shapes))
        if items
    ]
    if problems:
        raise AeposeError(f"{ckpt.path}: does not fit {name}: {'; '.join(problems)}")


def resolve_config(ckpt: Checkpoint, preset: str | None = None) -> tuple[str, ModelConfig, str]:
    """Which network to build for ``ckpt``: ``(name, model config, how it was chosen)``.

    An explicit ``preset`` wins, then an aepose file's embedded config, then recognition
    from the keys; in every case the file must fit (else a one-line error).
    """
    arch = detect_architecture(ckpt.state_dict, ckpt.path)
    if preset is not None:
        name, cfg, how = preset, get_preset(preset).model, "as requested"
    elif ckpt.config is not None:
        name, cfg, how = ckpt.config.name, ckpt.config.model, "from the file's own config"
    else:
        name, how = choose_preset(ckpt, arch)
        cfg = PRESETS[name].model
    check_compatible(ckpt, arch, cfg, name)
    return name, cfg, how


def load_model(
    path: str | Path, preset: str | None = None, device: str | torch.device = "cpu"
) -> AssociativeEmbeddingNet:
    """Network with the weights of ``path``, in eval mode on ``device`` (checked first: a
    device this machine lacks is one line, before any download or read).

    ``path`` is a file, or a preset name (``"hrnet_w32_aic_512"``), an mmpose release file name
    or an http(s) URL, downloaded once into the cache and verified (:mod:`aepose.hub`).

    Accepts mmpose checkpoints (``{"state_dict", "meta"}``), bare state_dicts, keys with a
    ``module.`` prefix and aepose checkpoints (``{"model", "config"}``). Without ``preset``
    the architecture is recognised from the keys (or taken from an aepose file's config)
    and the choice is logged on the ``aepose`` logger.
    """
    return load_with_config(path, preset, device)[0]


def load_with_config(
    path: str | Path, preset: str | None = None, device: str | torch.device = "cpu"
) -> tuple[AssociativeEmbeddingNet, Config]:
    """:func:`load_model` and the recipe to run it with, from one read of the file: the
    ``preset``'s when given, else an aepose file's own config, else the recognised preset's.

    ``path`` may be a file, a preset name, a release file name or a URL (see :mod:`aepose.hub`).
    ``device`` is checked by :func:`aepose.device.resolve_device` before anything is read.
    """
    target = resolve_device(device)
    ckpt = read_checkpoint(path)
    name, cfg, how = resolve_config(ckpt, preset)
    if preset is None:
        logger.info("%s: using preset %s (%s)", ckpt.path.name, name, how)
    own = preset is None and ckpt.config is not None
    # The file's keypoints come with its own config (a custom skeleton has no preset).
    model = build_from_config(cfg, ckpt.spec if own else None)
    _key_report(ckpt, model, name)
    model.load_state_dict(ckpt.state_dict, strict=True)
    config = ckpt.config if own and ckpt.config is not None else get_preset(name)
    return model.to(target).eval(), config


# Keys every training checkpoint written by aepose carries (see aepose.engine.train).
TRAINING_KEYS = ("model", "optimizer", "scheduler", "scaler", "epoch", "iteration", "config",
                 "rng_state", "version")


def write_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Save ``payload`` with ``torch.save`` atomically (:func:`aepose.io.atomic_write`): a
    crash or a full disk mid-write never leaves a truncated checkpoint under ``path``, and
    a write the system refuses is one line naming ``path`` and the system's reason."""
    return atomic_write(path, lambda tmp: _save(payload, tmp), what="checkpoint")


def _save(payload: dict[str, Any], file: Path) -> None:
    # Through a Python file, so that a failed write is an OSError with the system's words
    # ("No space left on device"): torch's own file writer reports only a RuntimeError
    # about a position in its archive. Torch then still finishes the archive and raises
    # that RuntimeError on top; the OSError under it is the failure.
    with open(file, "wb") as stream:
        try:
            torch.save(payload, stream)
        except RuntimeError as error:
            cause = error.__context__
            if isinstance(cause, OSError):
                raise cause from None
            raise


def read_training_state(path: str | Path) -> tuple[Checkpoint, dict[str, Any]]:
    """The checkpoint at ``path`` and its whole raw content (optimizer, schedule, RNG state).

    Raises a one-line error when the file is not an aepose training checkpoint (an mmpose
    file or a bare state_dict can initialise weights but cannot resume a run).
    """
    path = Path(path)
    raw = _torch_load(path)
    missing = [key for key in TRAINING_KEYS if not isinstance(raw, dict) or key not in raw]
    if missing:
        raise AeposeError(
            f"{path}: not an aepose training checkpoint (no {', '.join(missing[:3])}); "
            "only files written by 'aepose train' can be resumed"
        )
    return _parse(path, raw), raw
