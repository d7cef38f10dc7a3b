"""``aepose info``: what a weights file is, whether its hash checks out and which preset
fits it."""

from __future__ import annotations

from aepose.hub import hash_report
from aepose.models.checkpoint import (
    detect_architecture,
    matching_presets,
    read_checkpoint,
    resolve_config,
)

__all__ = ["describe_weights"]

# Metadata keys of mmpose and aepose files worth showing, in this order.
_META_KEYS = ("epoch", "iter", "iteration", "mmcv_version", "time", "version")


def describe_weights(weights: str) -> None:
    """Print the file, its hash verdict, layout, architecture, outputs, preset and metadata.

    ``weights``: a checkpoint file (mmpose or aepose), preset name, release name or URL.
    """
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
    for key in _META_KEYS:
        if key in ckpt.meta:
            print(f"{key + ':':15}{ckpt.meta[key]}")
