"""Decode speed: aepose.decode_poses versus a straightforward port of the reference.

The port (``reference_port.reference_decode``: torch NMS and top-k, then one Python loop
per joint with ``munkres.Munkres``, per-joint adjust and per-person refine over the whole
map, as mmpose 0.x does) and ``decode_poses`` decode the same generated 30-person image
of 14 joints with flip tags (L = 2): heatmaps [14, S, S], tags [14, S, S, 2]. At S = 512
the maps are the 128 x 128 network-resolution maps resized bilinearly to the 512 x 512
input, as the reference decodes at input resolution. Every timed result is checked to be
identical to the port's.

    .venv/bin/python benchmarks/decode_speed.py [--sizes 512 128] [--threads 1]

Prints the median time per image and the speed-up, as a Markdown table, then how often
``mode="fast"`` (SciPy's assignment solver) groups a keypoint differently on generated
crowds. ``--threads`` defaults to 1: on a shared machine, torch's second thread waiting for
a busy core distorts timings of many small operations; 0 keeps torch's default.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from reference_port import reference_decode, synthetic_maps

from aepose.codec.decode import decode_poses

NETWORK_SIZE = 128


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    """Median wall time of ``repeat`` calls after one warm-up call, in milliseconds."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def crowd(size: int, people: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Heatmaps [14, size, size] and tags [14, size, size, 2] of a generated crowd."""
    rng = np.random.default_rng(seed)
    return synthetic_maps(rng, people, size=NETWORK_SIZE, upsample=size // NETWORK_SIZE)


def time_size(size: int, people: int, repeat: int) -> dict[str, float]:
    heatmaps, tags = crowd(size, people, seed=0)
    want = reference_decode(heatmaps, tags)
    got = decode_poses(heatmaps, tags)
    if not (np.array_equal(want[0], got[0]) and np.array_equal(want[1], got[1])):
        raise SystemExit(f"decode_poses differs from the port at {size}x{size}")
    port = median_ms(lambda: reference_decode(heatmaps, tags), max(3, repeat // 4))
    exact = median_ms(lambda: decode_poses(heatmaps, tags), repeat)
    fast = median_ms(lambda: decode_poses(heatmaps, tags, mode="fast"), repeat)
    return {"people": len(got[0]), "port": port, "exact": exact, "fast": fast}


def fast_mismatch(images: int, people: int) -> tuple[int, int, int]:
    """(keypoints that differ, keypoints in all, images that differ) between the exact and
    fast modes on generated 128 x 128 crowds; a keypoint is a (person, joint) row."""
    differ = total = images_differ = 0
    for seed in range(images):
        heatmaps, tags = crowd(NETWORK_SIZE, people, seed=1000 + seed)
        exact, _ = decode_poses(heatmaps, tags)
        fast, _ = decode_poses(heatmaps, tags, mode="fast")
        rows = max(len(exact), len(fast))
        pad_e = np.zeros((rows, *exact.shape[1:]), np.float32)
        pad_f = np.zeros_like(pad_e)
        pad_e[: len(exact)], pad_f[: len(fast)] = exact, fast
        wrong = int((pad_e != pad_f).any(axis=2).sum())
        differ += wrong
        total += rows * exact.shape[1]
        images_differ += wrong > 0
    return differ, total, images_differ


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 128])
    parser.add_argument("--people", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=20, help="timed calls of decode_poses")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: default)")
    parser.add_argument("--mismatch-images", type=int, default=50)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), CPU\n")
    print("| maps | people found | port (ms) | decode_poses (ms) | speed-up | fast mode (ms) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for size in args.sizes:
        r = time_size(size, args.people, args.repeat)
        print(
            f"| {size}x{size} | {r['people']:.0f} | {r['port']:.1f} | {r['exact']:.2f} "
            f"| {r['port'] / r['exact']:.0f}x | {r['fast']:.2f} |"
        )
    differ, total, images = fast_mismatch(args.mismatch_images, args.people)
    print(
        f"\nmode='fast' vs 'exact' on {args.mismatch_images} generated {args.people}-person "
        f"images: {differ} of {total} keypoints ({100 * differ / total:.2f}%) differ, "
        f"in {images} images"
    )


if __name__ == "__main__":
    main()
