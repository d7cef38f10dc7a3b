"""``aepose info``: what a weights file is, whether its hash checks out and which preset
fits it; for an ONNX file, what its graph takes and gives and what its metadata says."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from aepose.errors import AeposeError
from aepose.hub import hash_report, resolve_weights
from aepose.keypoints import KeypointSpec
from aepose.models.checkpoint import (
    detect_architecture,
    matching_presets,
    read_checkpoint,
    resolve_config,
)
from aepose.pipeline.onnx_network import (
    CONFIG_KEY,
    KEYPOINTS_KEY,
    is_onnx_file,
    optional_module,
    stored_config,
)
from aepose.skeleton_file import spec_from_dict

__all__ = ["describe_onnx", "describe_weights"]

# Metadata keys of mmpose and aepose files worth showing, in this order.
_META_KEYS = ("epoch", "iter", "iteration", "mmcv_version", "time", "version")


def describe_weights(weights: str) -> None:
    """Print the file, its hash verdict, layout, architecture, outputs, preset and metadata.

    ``weights``: a checkpoint file (mmpose or aepose), preset name, release name or URL; a
    name ending in ``.onnx`` is described by :func:`describe_onnx`.
    """
    if is_onnx_file(weights):
        describe_onnx(weights)
        return
    # A damaged file is still described (info is a diagnostic): its hash line says MISMATCH,
    # and loading it anywhere else is refused.
    ckpt = read_checkpoint(weights, verify=False)
    print(f"file:          {ckpt.path}")
    print(f"hash:          {hash_report(ckpt.path)}")
    arch = detect_architecture(ckpt.state_dict, ckpt.path)
    params = sum(v.numel() for k, v in ckpt.state_dict.items()
                 if v.is_floating_point() and not k.endswith(("running_mean", "running_var")))
    print(f"layout:        {ckpt.kind} ({len(ckpt.state_dict)} state_dict entries, "
          f"{params:,} parameters)")
    print(f"architecture:  {arch.describe()}")
    print(f"outputs:       {len(arch.with_ae)} (tags on output(s) "
          f"{', '.join(str(i) for i, ae in enumerate(arch.with_ae) if ae)})")
    name, _, how = resolve_config(ckpt)
    print(f"preset:        {name} ({how})")
    others = [n for n in matching_presets(arch) if n != name]
    if others:
        print(f"also fits:     {', '.join(others)}")
    if ckpt.spec is not None:
        print(f"keypoints:     {_keypoints(ckpt.spec)}")
    for key in _META_KEYS:
        if key in ckpt.meta:
            print(f"{key + ':':15}{ckpt.meta[key]}")


def describe_onnx(weights: str | Path) -> None:
    """Print an ONNX file's opset, producer, input and outputs (names, shapes with their
    symbolic dims) and the Config stored in its metadata: preset, keypoints, input size and
    test settings. Needs the ``onnx`` package (the ``export`` extra), not ONNX Runtime."""
    onnx = optional_module("onnx")
    path = resolve_weights(weights, verify=False)
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "no such file"
        raise AeposeError(f"{path}: {what}; expected an ONNX model file")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # DecodeError and friends: any unreadable protobuf
        reason = (str(error).splitlines() or [type(error).__name__])[0][:200]
        raise AeposeError(f"{path}: not a loadable ONNX model ({reason})") from None
    opsets = ", ".join(f"{o.domain or 'ai.onnx'} {o.version}" for o in model.opset_import)
    print(f"file:          {path}")
    print(f"hash:          {hash_report(path)}")
    print(f"format:        ONNX (IR version {model.ir_version}; opset {opsets}; produced by "
          f"{model.producer_name or '?'} {model.producer_version})".rstrip())
    for label, values in (("input", model.graph.input), ("outputs", model.graph.output)):
        print(f"{label + ':':15}{', '.join(_value(v) for v in values)}")
    metadata = {p.key: p.value for p in model.metadata_props}
    cfg = stored_config(metadata.get(CONFIG_KEY), path)
    if cfg is None:
        print(f"preset:        none stored (no {CONFIG_KEY} metadata): predicting needs "
              "--preset NAME")
        return
    print(f"preset:        {cfg.name} (stored in the file's metadata)")
    stored = metadata.get(KEYPOINTS_KEY)
    if stored is not None:
        spec = spec_from_dict(_json(stored, path), f"{path}: {KEYPOINTS_KEY} metadata")
        print(f"keypoints:     {_keypoints(spec)}")
    else:
        print(f"keypoints:     {cfg.data.dataset} ({cfg.model.num_keypoints})")
    print(f"input size:    {cfg.data.input_size}")
    print(f"test:          {_settings(dataclasses.asdict(cfg.test))}")


def _value(info: Any) -> str:
    """``name [dims] type`` of a graph input or output (``onnx.ValueInfoProto``)."""
    tensor = info.type.tensor_type
    dims = [d.dim_param or str(d.dim_value) for d in tensor.shape.dim]
    kind = {1: "float32", 10: "float16", 16: "bfloat16"}.get(tensor.elem_type,
                                                              f"type {tensor.elem_type}")
    return f"{info.name} [{', '.join(dims)}] {kind}"


def _settings(values: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value}" for key, value in values.items())


def _keypoints(spec: KeypointSpec) -> str:
    """``name (K)`` of a built-in spec, else ``name (K: joint, ...; N links, P left/right
    pairs)``."""
    if spec.is_builtin:
        return f"{spec.name} ({spec.num_keypoints})"
    return (f"{spec.name} ({spec.num_keypoints}: {', '.join(spec.keypoint_names)}; "
            f"{len(spec.skeleton)} links, {len(spec.flip_pairs)} left/right pairs)")


def _json(text: str, path: Path) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise AeposeError(f"{path}: unreadable {KEYPOINTS_KEY} metadata ({error})") from None
