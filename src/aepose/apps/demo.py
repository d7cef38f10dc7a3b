"""``aepose demo``: the whole product on generated data, offline, in minutes on a CPU.

1. generate a CrowdPose-layout crowd dataset (reused by later runs with the same seed),
2. train a small HigherHRNet on it for as many steps as the time budget leaves
   (:mod:`aepose.apps.demo_budget` plans and paces them),
3. evaluate it single-scale with flip, with the real CrowdPose metrics,
4. draw predictions on a few val images and plot the loss / AP curves,

then say where everything is and how the AP compares with README's
(:mod:`aepose.apps.demo_report`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from aepose.apps.demo_budget import BudgetControl, Reserve, ThreadChooser, format_seconds
from aepose.apps.demo_report import DemoLog, Timing, summary, verdict
from aepose.choices import DEMO_EPOCHS, DEMO_MINUTES
from aepose.config import Config, apply_overrides, get_preset, with_test_settings
from aepose.data.coco import load_annotations, read_image
from aepose.device import resolve_device
from aepose.engine.distributed import DistInfo, init_distributed
from aepose.engine.eval_loop import evaluate_model
from aepose.engine.evaluation import format_table
from aepose.engine.train import TrainOptions, TrainResult, train
from aepose.errors import AeposeError
from aepose.io import check_writable, write_json
from aepose.keypoints import get_spec
from aepose.models import build_from_config
from aepose.models.checkpoint import load_model
from aepose.pipeline.draw import overlay, save_image
from aepose.pipeline.predictor import Predictor
from aepose.synth import SceneParams, generate_dataset
from aepose.threads import cpu_cores, pinned_threads, use_threads

__all__ = ["DemoSettings", "run_demo"]

logger = logging.getLogger("aepose")

# The demo recipe and scenes; BENCHMARKS.md ("Demo") records what they reach.
# The small preset (0.7 M parameters) localises twice as precisely as tiny in these minutes.
DEMO_PRESET = "higherhrnet_small_crowdpose_128"
# 1-4 whole people (none cut by the border) of similar, fairly large size: crowdIndex still
# spans easy to hard because they overlap, and OKS does not punish the stride-2 heatmaps of a
# 128-px input as hard as on small people.
DEMO_SCENES = SceneParams(people=(1, 4), height=(0.75, 0.95), depth_jitter=(0.9, 1.15),
                          crowd_shrink=0.15, crowd_region_prob=0.0, in_view=True)
# The preset's 'exp' push has no gradient while all tags start alike (d/dx e^-x^2 = 0 at 0)
# and weighs 1e-3: it needs hours to separate people. 'max' at 1e-2 moves from the start
# (tests/test_train.py shows 'exp' flat and 'max' falling within seconds).
# Milder augmentation than the reference's (±30°, 0.75-1.5, shift ±20 %) fits a few minutes
# of a small network better: AP 0.137 -> 0.202 on the same scenes (BENCHMARKS.md, "Demo"),
# and a ±10 % shift keeps the whole figures mostly in the crop. Batch 16 runs 15 % faster
# than 8 on the CPU and learned better here (AP 0.49 -> 0.60 with the extra epochs it buys).
DEMO_RECIPE = ("train.ae_loss_type=max", "train.push_loss_factor=0.01,0.01",
               "train.pull_loss_factor=0.01,0.01", "train.lr=3e-3", "train.batch_size=16",
               "data.rotation_deg=10", "data.scale_range=0.9,1.2", "data.translation=20")

DRAW_MIN_SCORE = 0.2  # person score below which the overlays leave a pose out


# What evaluation, drawing and plotting cost after training (BENCHMARKS.md, "Demo").
RESERVE = Reserve(fixed=8.0, steps=20.0)
RUN_MARKER = "demo-run.json"  # marks a training folder as the demo's own: a rerun replaces it


@dataclass(frozen=True)
class DemoSettings:
    """What the demo does; the defaults are the ``make demo`` run."""

    out: Path = Path("runs/demo")
    minutes: float = DEMO_MINUTES  # the whole demo's budget; training gets what is left
    device: str = "cpu"
    seed: int = 0
    train_images: int = 1000  # more images for fewer epochs learns better than 400 x 100
    val_images: int = 100
    image_size: tuple[int, int] = (128, 192)
    epochs: int = DEMO_EPOCHS  # the recipe's length; fewer steps when the budget is shorter
    overrides: tuple[str, ...] = ()  # extra --set items
    overlays: int = 6
    threads: int | None = None  # torch threads on the CPU; None: the fastest, re-measured
    spent: float = 0.0  # seconds already gone before run_demo (the CLI: Python's start-up)


def run_demo(settings: DemoSettings) -> dict[str, float]:
    """Run the four steps and return the val metrics; every artefact lands in ``settings.out``.

    The whole run aims to end within ``settings.minutes``. Its own lines go to stdout,
    training progress to the ``aepose`` logger, and all of them to ``demo.log`` in
    ``settings.out``.
    """
    start = time.perf_counter() - settings.spent
    resolve_device(settings.device)  # a device this machine lacks: one line, before any work
    check_writable(settings.out)
    cfg = _recipe(settings)  # bad --set values: refused before the data is generated
    use_threads()  # first, so that training's own call leaves the demo's choice alone
    threads = torch.get_num_threads()
    with DemoLog(settings.out / "demo.log") as log:
        try:
            return _run(cfg, settings, start, log)
        finally:
            torch.set_num_threads(threads)  # the thread choice ends with the demo


def _run(cfg: Config, settings: DemoSettings, start: float, log: DemoLog) -> dict[str, float]:
    budget = settings.minutes * 60
    gone = time.perf_counter() - start
    log.say(f"aepose demo: {format_seconds(budget)} for all four steps ({format_seconds(gone)} "
            f"gone to start-up); log {log.path}")
    _clear_training_folder(settings, log)
    data = _dataset(settings, log)
    result, control = _train(cfg, settings, data, start + budget, log)
    if result.interrupted and result.iteration < control.schedule.total:  # Ctrl-C
        log.say(f"interrupted at step {result.iteration}: checkpoint {result.checkpoint} "
                f"(aepose train --resume {result.checkpoint} --data-root {data} continues it "
                "with the recipe's epoch schedule; a new aepose demo starts over)")
        return {}
    trained = time.perf_counter()
    info = init_distributed(settings.device)
    model = load_model(result.checkpoint, device=info.device)
    metrics = _evaluate(model, cfg, settings, data, info, log)
    _draw(model, cfg, settings, data, log)
    curve = _plot(settings.out)
    end = time.perf_counter()
    timing = Timing(budget=budget, wall=end - start, training_ended=trained - start,
                    after=end - trained, reserved=RESERVE.seconds(control.seconds_per_step()))
    summary(settings.out, data, result, curve, log)
    verdict(settings, metrics, control, timing, log)
    return metrics


def _clear_training_folder(settings: DemoSettings, log: DemoLog) -> None:
    """An earlier demo's training folder goes; one the demo did not write is refused,
    before any work."""
    run_dir = settings.out / "train"
    if (run_dir / RUN_MARKER).is_file():
        log.say(f"replacing the previous demo training in {run_dir}")
        shutil.rmtree(run_dir)
    elif run_dir.is_dir() and any(run_dir.iterdir()):
        # Never marked (a later demo would delete it), never mixed with.
        raise AeposeError(f"{run_dir} holds files that aepose demo did not write; move them "
                          "or choose another --out")


def _dataset(settings: DemoSettings, log: DemoLog) -> Path:
    """The generated dataset, reused when a previous run made it with the same settings."""
    root = settings.out / "data"
    stamp = root / "demo-dataset.json"
    wanted = {"seed": settings.seed, "train": settings.train_images, "val": settings.val_images,
              "size": list(settings.image_size), "scenes": dataclasses.asdict(DEMO_SCENES)}
    wanted = json.loads(json.dumps(wanted))  # as the stamp reads back: tuples become lists
    if stamp.is_file() and json.loads(stamp.read_text()) == wanted:
        log.say(f"[1/4] reusing the generated dataset in {root}")
        return root
    log.say(f"[1/4] generating {settings.train_images} + {settings.val_images} crowd images "
            f"in {root}")
    generate_dataset(root, "crowdpose", train_images=settings.train_images,
                     val_images=settings.val_images, seed=settings.seed,
                     size=settings.image_size, params=DEMO_SCENES, overwrite=True)
    write_json(stamp, wanted)
    return root


def _recipe(settings: DemoSettings) -> Config:
    # The epoch schedule is the recipe's full length; the demo itself trains the
    # iterations that fit (BudgetControl), and 'aepose train --resume' follows this one.
    epochs = settings.epochs
    return apply_overrides(get_preset(DEMO_PRESET), [
        f"train.epochs={epochs}", f"train.lr_steps={round(epochs * 0.75)},{round(epochs * 0.9)}",
        f"train.val_interval={epochs}", f"train.checkpoint_interval={epochs}",
        *DEMO_RECIPE, *settings.overrides])


def _train(cfg: Config, settings: DemoSettings, data: Path, deadline: float,
           log: DemoLog) -> tuple[TrainResult, BudgetControl]:
    """Train for as many steps as fit before ``deadline`` less the reserve (re-planned after
    every step), the recipe's schedule compressed to them; stop there with ``last.pth``."""
    run_dir = settings.out / "train"
    per_epoch = math.ceil(settings.train_images / cfg.train.batch_size)
    full = cfg.train.epochs * per_epoch
    pinned = _pinned_threads(settings)
    if pinned is not None:
        torch.set_num_threads(pinned)
    control = BudgetControl(deadline=deadline, reserve=RESERVE, full_total=full,
                            train=cfg.train, iters_per_epoch=per_epoch, say=logger.info,
                            retune=_thread_chooser(cfg, settings))
    left = deadline - time.perf_counter()
    log.say(f"[2/4] training {cfg.name} for up to the recipe's {full} steps "
            f"({cfg.train.epochs} epochs): as many as fit into the {format_seconds(left)} left, "
            f"less {format_seconds(RESERVE.fixed)} + {RESERVE.steps:g} steps' time for steps "
            f"3-4 -> {run_dir}")
    write_json(run_dir / RUN_MARKER, {"full_steps": full, "budget_s": settings.minutes * 60})
    # Bit-exact reruns on the CPU; CUDA's deterministic kernels would need extra settings.
    # channels_last: 28 % faster training on the CPU too (oneDNN's NHWC convolutions).
    options = TrainOptions(data_root=data, out=run_dir, device=settings.device,
                           seed=settings.seed, deterministic=settings.device == "cpu",
                           validate=False, progress=False, channels_last=True, control=control)
    return train(cfg, options), control


def _pinned_threads(settings: DemoSettings) -> int | None:
    """The thread count asked for: ``--threads``, else ``AEPOSE_THREADS``; None: measure."""
    return settings.threads if settings.threads is not None else pinned_threads()


def _thread_chooser(cfg: Config, settings: DemoSettings) -> ThreadChooser | None:
    """On the CPU with no thread count asked for: a chooser probing the demo's network at
    batch 8 on every core, half of them and one (the demo measures what aepose's other
    entry points fix at one thread: aepose.threads)."""
    cpus = cpu_cores()
    if _pinned_threads(settings) is not None or settings.device != "cpu" or cpus == 1:
        return None
    with torch.random.fork_rng(devices=[]):  # the training's random numbers stay as they are
        net = build_from_config(cfg.model).eval()
    net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    size = cfg.data.input_size
    images = torch.zeros(8, 3, size, size).contiguous(memory_format=torch.channels_last)

    def probe() -> None:
        with torch.no_grad():
            net(images)

    return ThreadChooser(tuple(sorted({cpus, max(1, cpus // 2), 1}, reverse=True)), probe,
                         torch.set_num_threads)


def _evaluate(model: nn.Module, cfg: Config, settings: DemoSettings, data: Path, info: DistInfo,
              log: DemoLog) -> dict[str, float]:
    log.say("[3/4] evaluating on the val set (single scale, flip test)")
    out = settings.out
    result = evaluate_model(model, with_test_settings(cfg, scales=(1,), flip=True),
                            data / cfg.data.val_ann, data / cfg.data.val_images, info,
                            workers=0, progress=False, results_file=out / "results.json")
    write_json(out / "metrics.json", result.metrics, indent=2)
    log.say(format_table(result.metrics, "crowdpose"))
    return result.metrics


def _draw(model: nn.Module, cfg: Config, settings: DemoSettings, data: Path,
          log: DemoLog) -> None:
    log.say(f"[4/4] drawing predictions on {settings.overlays} val images")
    spec = get_spec(cfg.data.dataset)
    predictor = Predictor(model, cfg, channel_order="rgb")  # read_image gives RGB
    val = load_annotations(data / cfg.data.val_ann, spec, image_dir=data / cfg.data.val_images,
                           test_mode=True)
    for record in val.images[: settings.overlays]:
        image = read_image(val.image_path(record))
        # Only the picture drops the weak extra groups (people found score about 0.6, split-off
        # fragments under 0.1); results.json keeps every pose, as the evaluation needs.
        poses = [pose for pose in predictor(image) if pose.score >= DRAW_MIN_SCORE]
        save_image(settings.out / "overlays" / f"{Path(record.file_name).stem}.png",
                   overlay(image, poses, spec))


def _plot(out: Path) -> Path | None:
    """Loss and AP curves as a PNG, when matplotlib is installed (the ``plot`` extra)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    records = [json.loads(line) for line in (out / "train" / "metrics.jsonl").open()]
    steps = [r for r in records if r["kind"] == "train"]
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.2))
    its = [r["iteration"] for r in steps]
    ax[0].semilogy(its, [r["heatmap_loss"] for r in steps], label="heatmap")
    ax[0].semilogy(its, [r["push_loss"] + r["pull_loss"] for r in steps], label="push + pull")
    ax[0].set_xlabel("iteration")
    ax[0].legend()
    ax[0].set_title("training loss")
    metrics = json.loads((out / "metrics.json").read_text())
    names = ["AP", "AP50", "AP75", "AR", "AP_easy", "AP_medium", "AP_hard"]
    ax[1].bar(names, [metrics.get(n, 0.0) for n in names])
    ax[1].set_ylim(0, 1)
    ax[1].set_title("val metrics (flip test)")
    ax[1].tick_params(axis="x", rotation=45)
    fig.tight_layout()
    path = out / "curves.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
