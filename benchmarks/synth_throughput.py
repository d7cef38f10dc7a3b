"""Throughput of the crowd-scene generator on one CPU core.

Times the whole of :func:`aepose.synth.generate_dataset` - sampling, drawing,
labelling, JPEG encoding, writing the images and the annotation file - into a temporary
folder, once per image size, and prints images per second.

    .venv/bin/python benchmarks/synth_throughput.py [--images N] [--spec crowdpose]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import cv2

from aepose.synth import generate_dataset


def pin_one_core() -> str:
    """Restrict this process (and OpenCV) to one core, so the figure is per core."""
    cv2.setNumThreads(1)
    if hasattr(os, "sched_setaffinity"):
        core = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {core})
        return f"core {core}"
    return "OpenCV single-threaded (no CPU affinity on this OS)"


def images_per_second(spec: str, images: int, side: int, seed: int) -> float:
    """Generate ``images`` training images of ``side`` x ``side`` and return images/s."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        generate_dataset(tmp, spec, train_images=images, val_images=0, seed=seed, size=side)
        return images / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300, help="images per size (default 300)")
    parser.add_argument("--spec", default="crowdpose", choices=("crowdpose", "aic", "coco"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    where = pin_one_core()
    print(f"aepose synthetic generator, spec {args.spec}, {args.images} images per size, {where}")
    images_per_second(args.spec, min(args.images, 10), args.sizes[0], args.seed)  # warm-up
    for side in args.sizes:
        rate = images_per_second(args.spec, args.images, side, args.seed)
        print(f"{side:4d} px: {rate:7.1f} images/s")


if __name__ == "__main__":
    main()
