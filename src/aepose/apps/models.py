"""``aepose models`` and ``aepose download``: the presets with their stored costs, and their
released weights in the local cache. Neither builds a network nor imports torch."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from aepose.apps.profile import preset_cost
from aepose.config import PRESETS, WEIGHTS_URLS
from aepose.errors import AeposeError
from aepose.hub import cache_dir, cached_file, download

__all__ = ["download_weights", "print_models"]


def print_models(flops: bool = True) -> None:
    """One row per preset: dataset, keypoints, input and output sizes, parameters, GFLOPs
    (``flops``), whether its released weights are cached, and their file.

    Without a cache folder (no home folder, a ``~user`` that does not exist) the table is
    still printed: the cached column says ``?`` and a last line says why.
    """
    try:
        cache_dir()
        no_cache = None
    except AeposeError as error:
        no_cache = str(error)
    header = f"{'preset':32} {'data':10} {'K':>3} {'input':>5} {'outputs':>9} {'params':>8}"
    header += f" {'GFLOPs':>7} {'cached':>6}  released weights"
    print(header)
    print("-" * len(header))
    for name, cfg in PRESETS.items():
        params, gflops = preset_cost(cfg)
        shown = f"{gflops:>7.2f}" if flops else f"{'-':>7}"
        cached = None if no_cache else cached_file(name)
        in_cache = ("-" if name not in WEIGHTS_URLS else "?" if cached is None
                    else "yes" if cached.is_file() else "no")
        outputs = "/".join(str(s) for s in cfg.data.heatmap_sizes)
        print(f"{name:32} {cfg.data.dataset:10} {cfg.model.num_keypoints:>3} "
              f"{cfg.data.input_size:>5} {outputs:>9} {params / 1e6:>7.2f}M {shown} "
              f"{in_cache:>6}  {cfg.checkpoint or '-'}")
    print("\nGFLOPs: one image at the preset's input size, multiply-add = 2 FLOPs. "
          "cached: released weights in the cache (aepose download NAME).")
    if no_cache:
        print(f"cached ?: {no_cache}")


def download_weights(names: Sequence[str]) -> None:
    """Fetch each of ``names`` (preset, release file name or URL; ``["all"]``: every preset
    with released weights) into the cache and print where it is.

    Every file is tried: a failure is one stderr line naming the file (``NAME: reason``),
    and after the last file one :class:`AeposeError` counts the failures. A single name
    that fails raises its own line.
    """
    wanted = [n for n in PRESETS if n in WEIGHTS_URLS] if list(names) == ["all"] else list(names)
    if len(wanted) == 1:
        print(f"{wanted[0]}: {download(wanted[0])}", flush=True)
        return
    failed = []
    for name in wanted:
        try:
            print(f"{name}: {download(name)}", flush=True)
        except AeposeError as error:
            print(f"{name}: not downloaded: {error}", file=sys.stderr, flush=True)
            failed.append(name)
    if failed:
        raise AeposeError(f"{len(failed)} of {len(wanted)} downloads failed ({', '.join(failed)}); "
                          "the lines above say why")
