"""Fine-tuning a custom skeleton (issue 24; BENCHMARKS.md "Fine-tuning a custom skeleton").

A generated dataset whose 21 keypoints no preset has (COCO-17 plus both hands and both toes:
``aepose synth --keypoints coco+hands+toes``, in the demo's scenes and image sizes) trains
the demo's network (``higherhrnet_small_crowdpose_128`` with the demo's recipe; 21 heatmap
and 21 tag channels) twice, SIDE BY SIDE, so that both runs see the same machine load:

- ``init``: fine-tuned from the demo's trained model (``--init runs/demo/train/last.pth``;
  ``aepose demo`` trains one first when the file is missing, and says how long it took);
- ``scratch``: from random weights;

same data, seed and thread count, and the same wall-clock budget, into which the demo's
:class:`~aepose.apps.demo_budget.BudgetControl` compresses the recipe's schedule. Each run
keeps a copy of its weights at the first epoch end after every ``budget / points`` seconds
of training (the seconds and the process's CPU seconds are recorded with it). After both,
every copy is evaluated on the val set (single scale, flip test, OKS with the skeleton's
sigmas), and the AP of both runs at equal training time is printed as a Markdown table and
written to OUT/finetune.json.

    PYTHONPATH=src python benchmarks/finetune.py --out runs/finetune --minutes 10
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

POINTS = "coco+hands+toes"
RUNS = ("init", "scratch")


@dataclass(frozen=True)
class Paths:
    out: Path

    @property
    def data(self) -> Path:
        return self.out / "data"

    def run(self, name: str) -> Path:
        return self.out / name


def _dataset(paths: Paths, train_images: int, val_images: int, seed: int) -> float:
    """Generate the 21-point dataset (reused when its stamp matches); returns seconds."""
    from aepose.apps.demo import DEMO_SCENES, DemoSettings
    from aepose.synth import generate_dataset, parse_points

    stamp = paths.data / "finetune-dataset.json"
    wanted = {"points": POINTS, "train": train_images, "val": val_images, "seed": seed}
    if stamp.is_file() and json.loads(stamp.read_text()) == wanted:
        return 0.0
    start = time.perf_counter()
    generate_dataset(paths.data, parse_points(POINTS), train_images=train_images,
                     val_images=val_images, seed=seed, size=DemoSettings.image_size,
                     params=DEMO_SCENES, overwrite=True)
    stamp.write_text(json.dumps(wanted))
    return time.perf_counter() - start


def _demo_checkpoint(init: Path) -> float:
    """Train the demo's model when ``init`` is missing (``aepose demo``); returns seconds."""
    if init.is_file():
        return 0.0
    out = init.parent.parent  # runs/demo/train/last.pth -> runs/demo
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "aepose", "demo", "--out", str(out)], check=True)
    return time.perf_counter() - start


def _config(paths: Paths, name: str) -> Any:
    """The demo's recipe (an epoch schedule the budget compresses) on the 21-point files."""
    import dataclasses

    from aepose.apps.demo import DEMO_PRESET, DEMO_RECIPE, DemoSettings
    from aepose.config import apply_overrides, get_preset
    from aepose.keypoints import recipe_for
    from aepose.skeleton_file import spec_from_annotations

    epochs = DemoSettings.epochs
    cfg = apply_overrides(get_preset(DEMO_PRESET), [
        f"train.epochs={epochs}", f"train.lr_steps={round(epochs * 0.75)},{round(epochs * 0.9)}",
        *DEMO_RECIPE])
    data = paths.data.resolve()
    spec = spec_from_annotations(data / "train.json")
    files = dataclasses.replace(cfg.data, train_ann=str(data / "train.json"),
                                train_images=str(data / "train"), val_ann=str(data / "val.json"),
                                val_images=str(data / "val"))
    return recipe_for(dataclasses.replace(cfg, name=f"finetune-{name}", data=files), spec), spec


def _child(paths: Paths, name: str, init: Path, seconds: float, points: int,
           seed: int) -> None:
    """One training run of ``seconds`` from now, keeping snapshots of its weights at the
    first epoch end after every ``seconds / points``; then every snapshot is evaluated and
    the curve written to OUT/NAME/curve.json."""
    import torch

    from aepose.apps.demo_budget import BudgetControl, Reserve
    from aepose.config import apply_overrides, with_test_settings
    from aepose.engine.distributed import init_distributed
    from aepose.engine.eval_loop import evaluate_model
    from aepose.engine.train import TrainOptions, train
    from aepose.models.checkpoint import load_model

    cfg, spec = _config(paths, name)
    # The callback below runs at every epoch end; the only checkpoint is the last.
    cfg = apply_overrides(cfg, ["train.val_interval=1",
                                f"train.checkpoint_interval={cfg.train.epochs}"])
    run_dir = paths.run(name)
    start, start_cpu = time.perf_counter(), time.process_time()
    per_epoch = math.ceil(len(json.loads((paths.data / "train.json").read_text())["images"])
                          / cfg.train.batch_size)
    control = BudgetControl(deadline=start + seconds, reserve=Reserve(fixed=0.0, steps=0.0),
                            full_total=cfg.train.epochs * per_epoch, train=cfg.train,
                            iters_per_epoch=per_epoch,
                            say=lambda line: print(name, line, flush=True))
    shots: list[dict[str, Any]] = []

    def point(step: int) -> dict[str, Any]:
        return {"step": step, "seconds": round(time.perf_counter() - start, 1),
                "cpu_seconds": round(time.process_time() - start_cpu, 1)}

    def snapshot(model: torch.nn.Module, epoch: int) -> dict[str, float]:
        if time.perf_counter() - start >= seconds / points * (len(shots) + 1):
            shots.append(point(control.done) | {"weights": copy.deepcopy(model.state_dict())})
        return {}

    options = TrainOptions(data_root=Path("."), out=run_dir, device="cpu", seed=seed,
                           deterministic=True, validate=False, progress=False,
                           channels_last=True, control=control, keypoints=spec,
                           init=str(init) if name == "init" else None)
    result = train(cfg, options, snapshot)
    last = point(result.iteration)
    info = init_distributed("cpu")
    model = load_model(result.checkpoint, device=info.device)
    shots.append(last | {"weights": copy.deepcopy(model.state_dict())})
    test_cfg = with_test_settings(cfg, scales=(1,), flip=True)
    curve = []
    for shot in shots:
        model.load_state_dict(shot.pop("weights"))
        metrics = evaluate_model(model, test_cfg, paths.data / "val.json", paths.data / "val",
                                 info, workers=0, progress=False).metrics
        curve.append(shot | {"AP": round(metrics["AP"], 3), "AP50": round(metrics["AP50"], 3)})
        print(name, json.dumps(curve[-1]), flush=True)
    (run_dir / "curve.json").write_text(json.dumps(curve, indent=1) + "\n")


def _table(curves: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Markdown rows: each init snapshot beside the scratch snapshot closest in time (both
    are taken at the first epoch end after the same marks; a slow epoch can skip one)."""
    rows = ["| init: time, step | init AP (AP50) | scratch: time, step | scratch AP (AP50) |",
            "|---|---|---|---|"]
    for init in curves["init"]:
        scratch = min(curves["scratch"], key=lambda p: abs(p["seconds"] - init["seconds"]))
        cells = [f"{p['seconds']:.0f} s, {p['step']} | {p['AP']:.3f} ({p['AP50']:.3f})"
                 for p in (init, scratch)]
        rows.append(f"| {cells[0]} | {cells[1]} |")
    return rows


def _verdict(curves: dict[str, list[dict[str, Any]]]) -> list[str]:
    """The issue's goal: init reaches scratch's final AP in at most half the time and ends
    at least 0.05 AP higher."""
    init, scratch = curves["init"], curves["scratch"]
    final = scratch[-1]
    index = next((i for i, p in enumerate(init) if p["AP"] >= final["AP"]), None)
    lines = [f"scratch: final AP {final['AP']:.3f} after {final['seconds']:.0f} s "
             f"({final['step']} steps)",
             f"init:    final AP {init[-1]['AP']:.3f} after {init[-1]['seconds']:.0f} s "
             f"({init[-1]['step']} steps); difference {init[-1]['AP'] - final['AP']:+.3f} "
             "(goal >= +0.05)"]
    if index is None:
        lines.append("init never reached scratch's final AP (goal: within half the time)")
        return lines
    # Between the snapshot before (still below) and this one: the crossing is not sharper.
    before = init[index - 1]["seconds"] if index > 0 else 0.0
    after = init[index]["seconds"]
    lines.append(f"init reached scratch's final AP between {before:.0f} s and {after:.0f} s = "
                 f"{before / final['seconds']:.0%}-{after / final['seconds']:.0%} of scratch's "
                 "time (goal <= 50 %)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/finetune"))
    parser.add_argument("--init", type=Path, default=Path("runs/demo/train/last.pth"),
                        help="the demo's trained model (aepose demo writes it when missing)")
    parser.add_argument("--minutes", type=float, default=10.0, help="each run's training time")
    parser.add_argument("--points", type=int, default=8, help="snapshots per run")
    parser.add_argument("--train-images", type=int, default=400)
    parser.add_argument("--val-images", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each run")
    parser.add_argument("--child", choices=RUNS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    paths = Paths(args.out)
    if args.child is not None:
        import torch

        # The init report ("N tensors loaded, M re-initialised, ...") and training lines.
        logging.basicConfig(level=logging.INFO, format=f"{args.child} %(message)s")
        torch.set_num_threads(args.threads)
        _child(paths, args.child, args.init, args.minutes * 60, args.points, args.seed)
        return
    made = _dataset(paths, args.train_images, args.val_images, args.seed)
    print(f"dataset {paths.data}: {args.train_images} + {args.val_images} images of {POINTS} "
          f"({made:.0f} s; 0: reused)", flush=True)
    demo = _demo_checkpoint(args.init)
    print(f"start: {args.init} ({demo:.0f} s to train it; 0: it existed)", flush=True)
    load = os.getloadavg()[0]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    jobs = {name: subprocess.Popen(
        [sys.executable, __file__, "--child", name, *sys.argv[1:]], env=env)
        for name in RUNS}
    codes = {name: job.wait() for name, job in jobs.items()}
    if any(codes.values()):
        raise SystemExit(f"a run failed: {codes}")
    curves = {name: json.loads((paths.run(name) / "curve.json").read_text()) for name in RUNS}
    lines = [*_table(curves), "", *_verdict(curves),
             f"load average at the start {load:.1f}, at the end {os.getloadavg()[0]:.1f} "
             f"on {os.cpu_count()} cores; {args.threads} torch thread(s) per run"]
    print("\n".join(lines))
    (paths.out / "finetune.json").write_text(json.dumps(
        {"curves": curves, "summary": lines, "args": {k: str(v) for k, v in vars(args).items()}},
        indent=1) + "\n")


if __name__ == "__main__":
    main()
