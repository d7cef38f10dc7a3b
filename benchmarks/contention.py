"""Rates idle and under contention: aepose's thread settings against one pinned thread and
against torch's own default (every core, as before ``aepose.threads``).

Four paths, each measured in a fresh interpreter (thread settings and OpenMP's wait policy
are fixed when torch loads), each for about ``--seconds`` after a warm-up:

* decode: ``aepose.decode_poses`` on generated maps of a 94-person crowd at 512x512 (the
  issue's case), calls/s;
* Predictor loop: ``Predictor.from_checkpoint`` then one call per PNG file, images/s;
* ``aepose predict FOLDER --no-draw --no-flip`` (a subprocess), images/s from its closing
  summary (start-up excluded);
* training step: ``aepose.apps.bench.run_benchmark(stage="train")``, the training loop's own
  step, of the small HigherHRNet at 128 px, batch 8, images/s (median of 3 steps after one).

The predictor paths use ``benchmarks/pipeline_speed.py``'s network: a tiny HigherHRNet at
input 512 whose maps load the decoder like a crowd's (about 50 people per image).

Settings (the child's environment): ``aepose`` = nothing set, what a user gets;
``1 thread`` = ``AEPOSE_THREADS=1 OMP_NUM_THREADS=1``; ``torch default`` =
``AEPOSE_THREADS`` = the core count (torch's own default), the wait policy as the entry
point leaves it (commands: passive; Python: OpenMP's default spinning), i.e. the behaviour
before aepose chose its threads. Contention: one busy-looping process on one core
(:func:`aepose.apps.bench.contention.busy_core`), started before the child and stopped
after it. Runs alternate idle and contention, setting after setting, ``--repeat`` times;
the table gives medians and the load average seen.

    .venv/bin/python benchmarks/contention.py [--seconds 6] [--repeat 2] [--images 24]
        [--paths decode predictor predict train]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from pipeline_speed import SIZE, crowd_checkpoint

from aepose.apps.bench import crowd_images
from aepose.apps.bench.contention import busy_core
from aepose.pipeline.draw import save_image
from aepose.threads import cpu_cores

SRC = Path(__file__).resolve().parents[1] / "src"

_TIMED = """
import json, sys, time
def timed(step, seconds, warmup=1):
    for _ in range(warmup):
        step()
    done, start = 0, time.perf_counter()
    while done < 2 or time.perf_counter() - start < seconds:
        done += step()
    print(json.dumps({"rate": done / (time.perf_counter() - start)}))
seconds = float(sys.argv[1])
"""

CHILDREN = {
    "decode": _TIMED + """
import aepose
from aepose.apps.bench import crowd_maps
heatmaps, tags = crowd_maps(94, 512, 14, seed=0)
timed(lambda: (aepose.decode_poses(heatmaps, tags, max_people=30), 1)[1], seconds)
""",
    "predictor": _TIMED + """
from itertools import cycle
from pathlib import Path
from aepose import Predictor
from aepose.data.coco import read_image
folder, weights = Path(sys.argv[2]), sys.argv[3]
images = cycle([read_image(f) for f in sorted(folder.glob("*.png"))])
predictor = Predictor.from_checkpoint(weights, device="cpu", channel_order="rgb")
timed(lambda: (predictor(next(images)), 1)[1], seconds)
""",
    "train": _TIMED + """
from aepose.apps.bench import run_benchmark
row = run_benchmark("higherhrnet_small_crowdpose_128", stage="train", batch_size=8,
                    warmup=1, repeats=3)
print(json.dumps({"rate": row.images_per_s}))
""",
}

LABELS = {"decode": "decode, 94 people at 512x512 (calls/s)",
          "predictor": "`Predictor` loop (images/s)",
          "predict": "`aepose predict FOLDER` (images/s)",
          "train": "training step, small HigherHRNet 128 px, batch 8 (images/s)"}


def environment(setting: str) -> dict[str, str]:
    """The child's environment for a setting (see the module docstring)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("AEPOSE_THREADS", "OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    env["PYTHONPATH"] = str(SRC)
    if setting == "1 thread":
        env.update(AEPOSE_THREADS="1", OMP_NUM_THREADS="1")
    elif setting == "torch default":
        env["AEPOSE_THREADS"] = str(cpu_cores())
    return env


def rate(path: str, setting: str, seconds: float, folder: Path, weights: Path,
         out: Path) -> float:
    """One measurement of ``path`` in a fresh interpreter."""
    env = environment(setting)
    if path == "predict":
        command = [sys.executable, "-m", "aepose", "predict", str(folder), "--weights",
                   str(weights), "--out", str(out), "--overwrite", "--no-draw", "--no-flip",
                   "--device", "cpu"]
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
        found = re.search(r"(\d+) images?.* in ([\d.]+) s", done.stdout)
        if done.returncode or not found:
            raise SystemExit(f"aepose predict failed: {done.stdout}{done.stderr}")
        return int(found.group(1)) / float(found.group(2))
    done = subprocess.run([sys.executable, "-c", CHILDREN[path], str(seconds), str(folder),
                           str(weights)], capture_output=True, text=True, env=env,
                          timeout=900)
    if done.returncode:
        raise SystemExit(f"{path} failed: {done.stderr[-2000:]}")
    return float(json.loads(done.stdout.splitlines()[-1])["rate"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="timed seconds per run")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--paths", nargs="+", default=list(LABELS), choices=list(LABELS))
    args = parser.parse_args()
    settings = ("aepose", "1 thread", "torch default")
    rates: dict[tuple[str, str, bool], list[float]] = {}
    loads: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        weights = root / "crowd.pth"
        crowd_checkpoint(weights, 30)
        for i, image in enumerate(crowd_images(args.images, SIZE, seed=7)):
            save_image(root / "images" / f"{i:03d}.png", image)
        for _ in range(args.repeat):
            for path in args.paths:
                for setting in settings:
                    for busy in (False, True):
                        loads.append(os.getloadavg()[0])
                        measure = (path, setting, args.seconds, root / "images", weights,
                                   root / "out")
                        if busy:
                            with busy_core(600):
                                value = rate(*measure)
                        else:
                            value = rate(*measure)
                        rates.setdefault((path, setting, busy), []).append(value)
                        print(f"{path:9s} {setting:13s} {'busy' if busy else 'idle'}: "
                              f"{value:.3g} (load {loads[-1]:.1f})", file=sys.stderr,
                              flush=True)
    print(f"\nload average (1 min) seen before each run: {min(loads):.1f}-{max(loads):.1f}; "
          f"{cpu_cores()} cores; medians of {args.repeat}\n")
    print("| path | setting | idle | one core busy | ratio | vs 1 thread, busy |")
    print("|---|---|---|---|---|---|")
    for path in args.paths:
        pinned = statistics.median(rates[(path, "1 thread", True)])
        for setting in settings:
            idle = statistics.median(rates[(path, setting, False)])
            busy = statistics.median(rates[(path, setting, True)])
            print(f"| {LABELS[path]} | {setting} | {idle:.3g} | {busy:.3g} | "
                  f"{busy / idle:.2f}x | {busy / pinned:.2f}x |")


if __name__ == "__main__":
    main()
