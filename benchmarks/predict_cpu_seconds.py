"""CPU seconds of ``aepose predict FOLDER`` (the process and its decode workers), for this
tree and optionally another checkout, runs alternating.

CPU time, not wall time, so that a comparison holds on a shared machine: other jobs slow
every run's wall clock, but the work a run does stays its own. The inputs are
``benchmarks/pipeline_speed.py``'s: generated 640 x 480 crowds and the tiny HigherHRNet at
input 512 whose maps load the decoder like a crowd's (``mimic_trained_maps``).

    .venv/bin/python benchmarks/predict_cpu_seconds.py [--images 40] [--repeat 3]
        [--other-src /path/to/other/checkout/src]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from aepose.apps.bench import crowd_images, mimic_trained_maps, realistic_weights
from aepose.config import apply_overrides, get_preset
from aepose.data.dataset import normalize_image
from aepose.models import build_model
from aepose.pipeline.draw import save_image

THIS_SRC = Path(__file__).resolve().parents[1] / "src"


def make_inputs(root: Path, images: int) -> tuple[Path, Path]:
    """A folder of generated crowds and the checkpoint that predicts on them."""
    cfg = apply_overrides(get_preset("higherhrnet_tiny_crowdpose_128"),
                          ["data.input_size=512"])
    folder = root / "images"
    folder.mkdir()
    for n, image in enumerate(crowd_images(images, (640, 480), seed=0)):
        save_image(folder / f"{n:04d}.png", image)
    torch.manual_seed(0)
    model = realistic_weights(build_model(cfg)).eval()
    probe = torch.stack([normalize_image(crowd_images(1, (640, 480), seed=9)[0])])
    mimic_trained_maps(model, cfg, probe)
    weights = root / "w.pth"
    torch.save({"model": model.state_dict(), "config": dataclasses.asdict(cfg)}, weights)
    return folder, weights


def cpu_seconds(src: Path, folder: Path, weights: Path, out: Path) -> tuple[float, float, int]:
    """CPU seconds, wall seconds and people found of one ``aepose predict`` run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "aepose", "predict", str(folder), "--weights", str(weights),
         "--no-draw", "--no-flip", "--device", "cpu", "--out", str(out), "--overwrite"],
        env={**os.environ, "PYTHONPATH": str(src)}, capture_output=True, text=True,
        check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"predict failed with {src}:\n{done.stderr[-2000:]}")
    images = json.loads((out / "predictions.json").read_text())["images"]
    used = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return used, wall, sum(len(entry["people"]) for entry in images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--other-src", type=Path, help="another checkout's src/ to compare")
    args = parser.parse_args()
    sides = [("this", THIS_SRC)] + ([("other", args.other_src)] if args.other_src else [])
    with tempfile.TemporaryDirectory() as tmp:
        folder, weights = make_inputs(Path(tmp), args.images)
        for run in range(args.repeat):
            for name, src in sides:
                used, wall, people = cpu_seconds(src, folder, weights, Path(tmp) / name)
                print(f"{name} run {run}: {used:.1f} CPU s, {wall:.1f} s wall, {people} "
                      f"people, load {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
