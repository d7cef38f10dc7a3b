"""``aepose models`` and ``aepose download``: the presets with their stored costs, and their
released weights in the local cache. Neither builds a network nor imports torch."""

from __future__ import annotations

from collections.abc import Sequence

from aepose.apps.profile import preset_cost
from aepose.config import PRESETS
from aepose.hub import cached_file, download

__all__ = ["download_weights", "print_models"]


def print_models(flops: bool = True) -> None:
    """One row per preset: dataset, keypoints, input and output sizes, parameters, GFLOPs
    (``flops``), whether its released weights are cached, and their file."""
    header = f"{'preset':32} {'data':10} {'K':>3} {'input':>5} {'outputs':>9} {'params':>8}"
    header += f" {'GFLOPs':>7} {'cached':>6}  released weights"
    print(header)
    print("-" * len(header))
    for name, cfg in PRESETS.items():
        params, gflops = preset_cost(cfg)
        shown = f"{gflops:>7.2f}" if flops else f"{'-':>7}"
        cached = cached_file(name)
        in_cache = "-" if cached is None else "yes" if cached.is_file() else "no"
        outputs = "/".join(str(s) for s in cfg.data.heatmap_sizes)
        print(f"{name:32} {cfg.data.dataset:10} {cfg.model.num_keypoints:>3} "
              f"{cfg.data.input_size:>5} {outputs:>9} {params / 1e6:>7.2f}M {shown} "
              f"{in_cache:>6}  {cfg.checkpoint or '-'}")
    print("\nGFLOPs: one image at the preset's input size, multiply-add = 2 FLOPs. "
          "cached: released weights in the cache (aepose download NAME).")


def download_weights(names: Sequence[str]) -> None:
    """Fetch each of ``names`` (preset, release file name or URL; ``["all"]``: every preset
    with released weights) into the cache and print where it is."""
    wanted = [n for n in PRESETS if cached_file(n)] if list(names) == ["all"] else names
    for name in wanted:
        print(f"{name}: {download(name)}", flush=True)
