"""Calibrate the demo recipe: run several `aepose demo` variants side by side (GPU or CPU)
and print AP and wall time of each. Each variant's overrides apply on top of the demo's
own recipe (aepose.apps.demo.DEMO_RECIPE); "current" is the default demo.

    PYTHONPATH=src python3 benchmarks/demo_calibration.py --out OUT --device cuda --parallel 6
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from aepose.apps.demo import DemoSettings

VARIANTS: dict[str, list[str]] = {
    "current": [],
    "preset_exp_1e-3": ["train.ae_loss_type=exp", "train.push_loss_factor=0.001,0.001",
                        "train.pull_loss_factor=0.001,0.001"],
    "max_0.01": ["train.ae_loss_type=max", "train.push_loss_factor=0.01,0.01",
                 "train.pull_loss_factor=0.01,0.01"],
    "max_0.1": ["train.ae_loss_type=max", "train.push_loss_factor=0.1,0.1",
                "train.pull_loss_factor=0.1,0.1"],
    "exp_0.1": ["train.push_loss_factor=0.1,0.1", "train.pull_loss_factor=0.1,0.1"],
    "max_0.01_lr3e-3": ["train.ae_loss_type=max", "train.push_loss_factor=0.01,0.01",
                        "train.pull_loss_factor=0.01,0.01", "train.lr=3e-3"],
    "max_0.1_lr3e-3": ["train.ae_loss_type=max", "train.push_loss_factor=0.1,0.1",
                       "train.pull_loss_factor=0.1,0.1", "train.lr=3e-3"],
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--epochs", type=int, default=DemoSettings.epochs)
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--only", nargs="*")
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args()
    out = Path(args.out)
    names = args.only or list(VARIANTS)
    # Each variant generates the same seeded dataset in its own folder (a few seconds).
    jobs: list[tuple[str, subprocess.Popen[bytes], float]] = []
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, 2 // args.parallel))}
    for name in names:
        run = out / name
        run.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "aepose", "demo", "--out", str(run), "--device",
               args.device, "--epochs", str(args.epochs), "--minutes", "1000",
               "--set", f"train.workers={args.workers}", *VARIANTS[name]]
        log = open(run / "log.txt", "w")  # noqa: SIM115
        jobs.append((name, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env),
                     time.perf_counter()))
        while sum(p.poll() is None for _, p, _ in jobs) >= args.parallel:
            time.sleep(1)
    for name, proc, start in jobs:
        proc.wait()
        metrics_file = out / name / "metrics.json"
        metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
        print(f"{name:20} rc={proc.returncode} AP={metrics.get('AP', float('nan')):.3f} "
              f"AP50={metrics.get('AP50', float('nan')):.3f} "
              f"E/M/H={metrics.get('AP_easy', 0):.3f}/{metrics.get('AP_medium', 0):.3f}/"
              f"{metrics.get('AP_hard', 0):.3f}  {time.perf_counter() - start:.0f}s", flush=True)


if __name__ == "__main__":
    main()
