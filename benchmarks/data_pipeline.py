"""Training-pipeline throughput: images/s of one worker producing HigherHRNet samples.

Each sample is the full reference pipeline (decode JPEG, ignore mask, random affine and
flip, normalisation, heatmap + joint-index targets at 128 and 256) at 512x512 input.

    .venv/bin/python benchmarks/data_pipeline.py [--images 200] [--data-root DIR]

Without --data-root a generated CrowdPose-layout set (640-px images) is written to a
temporary folder first. Runs on one core (torch and OpenCV single-threaded), as a
DataLoader worker does.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import torch

from aepose.config import get_preset
from aepose.data import BottomUpDataset
from aepose.synth import generate_dataset


def _throughput(dataset: BottomUpDataset, count: int) -> float:
    start = time.perf_counter()
    for index in range(count):
        dataset[index % len(dataset)]
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200, help="samples per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data-root", type=Path, help="a CrowdPose-layout dataset")
    parser.add_argument("--preset", default="higherhrnet_w32_crowdpose_512")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(0)
    cfg = get_preset(args.preset)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data_root
        if root is None:
            root = Path(tmp)
            generate_dataset(root, cfg.data.dataset, train_images=100, val_images=1, seed=0,
                             size=640)
        dataset = BottomUpDataset.from_data_root(root, cfg.data, seed=0)
        _throughput(dataset, 10)  # warm-up: imports, allocator, page cache
        rates = [_throughput(dataset, args.images) for _ in range(args.repeats)]
    print(f"preset {args.preset}: input {cfg.data.input_size}, targets "
          f"{'/'.join(map(str, cfg.data.heatmap_sizes))}, {len(dataset)} source images")
    print(f"one worker: {statistics.median(rates):.1f} images/s "
          f"(median of {args.repeats} x {args.images}; all: "
          f"{', '.join(f'{r:.1f}' for r in rates)})")


if __name__ == "__main__":
    main()
