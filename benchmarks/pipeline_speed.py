"""Streamed ``aepose predict`` versus a plain Python loop of ``Predictor`` calls.

The setting of issue 12: a tiny HigherHRNet at input 512 whose output layers are adjusted
(``mimic_trained_maps``) so that its maps load the decoder like a crowd's, no flip test,
generated 640 x 480 crowd images saved as PNG files in a folder. Both sides read the files:

* loop: ``for path in files: predictor(read_image(path))`` in a child process that imports
  aepose first (so it gets aepose's OpenMP setting too), timed from the first read to the
  last result after one warm-up image;
* streamed: ``aepose predict FOLDER --no-draw --no-flip`` in a child process; its own
  closing summary gives the run time without start-up (imports, loading the weights).

The poses of both are compared (identical keypoints and scores, image by image), then the
ratio of their rates is printed as a Markdown row for BENCHMARKS.md.

    .venv/bin/python benchmarks/pipeline_speed.py [--images 200] [--repeat 3]
        [--decode-workers N] [--batch-size B]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from aepose.apps.bench import crowd_images, mimic_trained_maps, realistic_weights
from aepose.config import apply_overrides, get_preset
from aepose.data.dataset import normalize_image
from aepose.data.transforms import resize_align, test_sizes
from aepose.models import build_model
from aepose.pipeline.draw import save_image

PRESET = "higherhrnet_tiny_crowdpose_128"
SIZE = (640, 480)


def crowd_checkpoint(path: Path, candidates: int) -> None:
    """A tiny HigherHRNet at input 512 with crowd-like maps, saved with its config."""
    cfg = apply_overrides(get_preset(PRESET), ["data.input_size=512",
                                               "data.heatmap_sizes=128,256", "test.flip=false"])
    model = realistic_weights(build_model(cfg), 256, seed=1)
    sizes = test_sizes(*SIZE, 512)
    sample = torch.stack([normalize_image(resize_align(im, sizes))
                          for im in crowd_images(2, SIZE, seed=99)])
    mimic_trained_maps(model, cfg, sample, candidates=candidates, flip=False)
    torch.save({"model": model.state_dict(), "config": dataclasses.asdict(cfg),
                "version": "benchmark"}, path)


LOOP = """
import json, sys, time
from pathlib import Path
from aepose.data.coco import read_image
from aepose.pipeline.predictor import Predictor

folder, weights, out = (Path(a) for a in sys.argv[1:])
files = sorted(folder.glob("*.png"))
predictor = Predictor.from_checkpoint(weights, device="cpu", channel_order="rgb")
predictor(read_image(files[0]))  # warm-up, as predict's start-up is excluded too
start = time.perf_counter()
poses = [predictor(read_image(f)) for f in files]
seconds = time.perf_counter() - start
out.write_text(json.dumps({"seconds": seconds, "poses": {
    f.name: [p.keypoints.tolist() for p in people] for f, people in zip(files, poses)}}))
"""


def loop(weights: Path, folder: Path, out: Path) -> tuple[float, dict[str, list]]:
    subprocess.run([sys.executable, "-c", LOOP, str(folder), str(weights), str(out)],
                   check=True)
    result = json.loads(out.read_text())
    return result["seconds"], result["poses"]


def streamed(weights: Path, folder: Path, out: Path, extra: list[str]) -> float:
    command = [sys.executable, "-m", "aepose", "predict", str(folder), "--weights", str(weights),
               "--out", str(out), "--no-draw", "--no-flip", "--device", "cpu", *extra]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    found = re.search(r"people in ([\d.]+) s", done.stdout)
    assert found, done.stdout
    return float(found.group(1))


def same_poses(loop_poses: dict[str, list], out: Path) -> bool:
    images = json.loads((out / "predictions.json").read_text())["images"]
    by_name = {Path(image["file_name"]).name: image["people"] for image in images}
    if by_name.keys() != loop_poses.keys():
        return False
    for name, poses in loop_poses.items():
        people = by_name[name]
        if len(people) != len(poses):
            return False
        for person, pose in zip(people, poses, strict=True):
            if not np.array_equal(np.asarray(person["keypoints"], np.float32),
                                  np.asarray(pose, np.float32)):
                return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--candidates", type=int, default=30,
                        help="NMS peaks per joint above the threshold (crowd load)")
    parser.add_argument("--decode-workers", type=int, help="default: predict's own")
    parser.add_argument("--batch-size", type=int, help="default: predict's own")
    parser.add_argument("--repeat", type=int, default=3,
                        help="alternate loop and streamed runs this often; medians reported")
    args = parser.parse_args()
    extra = [f"--{name.replace('_', '-')}={value}" for name, value in
             (("decode_workers", args.decode_workers), ("batch_size", args.batch_size))
             if value is not None]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        weights = root / "crowd.pth"
        crowd_checkpoint(weights, args.candidates)
        files = []
        for i, image in enumerate(crowd_images(args.images, SIZE, seed=7)):
            files.append(root / "images" / f"{i:05d}.png")
            save_image(files[-1], image)
        loop_runs, stream_runs = [], []
        for n in range(args.repeat):  # alternated: a busy spell of the machine hits both
            loop_s, loop_poses = loop(weights, root / "images", root / "loop.json")
            loop_runs.append(loop_s)
            stream_runs.append(streamed(weights, root / "images", root / f"out{n}", extra))
        loop_s, stream_s = statistics.median(loop_runs), statistics.median(stream_runs)
        people = sum(len(p) for p in loop_poses.values()) / len(files)
        identical = same_poses(loop_poses, root / "out0")
    print("| images | people/image | predict options | loop images/s | streamed images/s | "
          "ratio | identical |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {len(files)} | {people:.1f} | {' '.join(extra) or 'defaults'} | "
          f"{len(files) / loop_s:.2f} | {len(files) / stream_s:.2f} | "
          f"{loop_s / stream_s:.2f}x | {identical} |")


if __name__ == "__main__":
    main()
