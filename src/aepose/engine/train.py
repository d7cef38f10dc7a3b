"""Training: mmpose 0.x's recipe in a loop that reads top to bottom.

``train(cfg, options)`` is the whole job: build the data, the network and the optimiser
(Adam; linear warm-up from ``warmup_ratio`` over ``warmup_iters`` iterations; ×``lr_gamma``
at each epoch of ``lr_steps``: reference.md §1.8), then for every epoch and batch: forward,
:func:`aepose.engine.losses.compute_loss`, backward, step. One process trains on one device; under
``torchrun`` every rank trains its shard of each epoch and DDP averages the gradients.

Files in the run folder: ``config.yaml`` (the resolved recipe), ``metrics.jsonl`` (one JSON
object per log interval, epoch and validation), ``last.pth`` (newest checkpoint),
``epoch_NNN.pth`` (every ``checkpoint_interval`` epochs and the last) and TensorBoard events
when the ``tensorboard`` package is installed. Checkpoints carry everything needed to resume
exactly (same world size and batch size): weights, optimiser, schedule, grad scaler, epoch,
position inside the epoch, RNG state, the config and the keypoint spec (``keypoints``: what
the network's channels mean, read back by every command that loads the file).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

import aepose
from aepose.config import Config, TrainConfig
from aepose.data.dataset import Batch, BottomUpDataset
from aepose.engine.distributed import (
    DistInfo,
    broadcast_object,
    claim_run_folder_on_all_ranks,
    init_distributed,
)
from aepose.engine.eval_loop import evaluate_model
from aepose.engine.finetune import init_from, load_pretrained_backbone, optimizer_and_factors
from aepose.engine.loader import build_loader
from aepose.engine.losses import compute_loss
from aepose.engine.train_log import TrainLog
from aepose.errors import AeposeError
from aepose.io import note_terminated, write_text
from aepose.keypoints import KeypointSpec, get_spec
from aepose.models import AssociativeEmbeddingNet, build_from_config
from aepose.models.checkpoint import read_training_state, write_checkpoint
from aepose.precision import autocast, check_precision
from aepose.threads import use_threads

__all__ = ["StepControl", "TrainOptions", "TrainResult", "lr_factor", "train", "train_step"]

logger = logging.getLogger("aepose")


# Called after each validation epoch with (model, epoch); returns metrics to log.
Validator = Callable[[nn.Module, int], dict[str, float]]


class StepControl(Protocol):
    """Steers a single-process run from outside the loop, step by step (the demo's time
    budget): it replaces the config's epoch schedule and decides when to stop."""

    def lr_factor(self, iteration: int) -> float:
        """Learning-rate multiplier before optimiser step ``iteration`` (0-based)."""
        ...

    def after_step(self, iteration: int, losses: dict[str, float]) -> bool:
        """Called after every optimiser step (``iteration`` steps done; ``losses``: the last
        logged means, empty before the first log line); True stops the run there, with
        ``last.pth`` written, as ``stop_after`` does."""
        ...


@dataclass(frozen=True)
class TrainOptions:
    """How to run (not what to learn: that is the :class:`Config`)."""

    data_root: Path
    out: Path | None = None  # default: runs/<preset>-<timestamp>, or the resumed run's folder
    resume: Path | None = None  # an aepose training checkpoint to continue exactly
    dtype: str = "fp32"  # aepose.precision.PRECISIONS; fp16 adds gradient scaling
    channels_last: bool = False
    pretrained: Path | None = None  # backbone-only weights (e.g. ImageNet HRNet)
    init: str | None = None  # weights to fine-tune from (engine.finetune.init_from)
    keypoints: KeypointSpec | None = None  # the data's skeleton (default: cfg.data.dataset's)
    device: str | None = None  # "cpu", "cuda" or None for CUDA when available
    seed: int = 0
    deterministic: bool = False
    log_interval: int = 20  # iterations between loss checks, log lines and bar updates
    stop_after: int | None = None  # stop (with a checkpoint) once this many iterations are done
    progress: bool = True
    validate: bool = True  # AP on the preset's val split, when it exists under data_root
    control: StepControl | None = None  # the schedule and the stop, from outside (one process)


@dataclass(frozen=True)
class TrainResult:
    """Where a run ended: its folder, newest checkpoint and last logged values."""

    run_dir: Path
    checkpoint: Path
    epoch: int  # completed epochs
    iteration: int  # optimiser steps done
    interrupted: bool
    metrics: dict[str, float]


def lr_factor(train: TrainConfig, iteration: int, iters_per_epoch: int) -> float:
    """Learning-rate multiplier before optimiser step ``iteration`` (0-based), mmcv 1.x rules.

    Step decay by the epoch the iteration falls in, times the linear warm-up
    ``1 - (1 - i / warmup_iters) * (1 - warmup_ratio)`` during the first ``warmup_iters``.
    """
    epoch = iteration // iters_per_epoch
    factor = train.lr_gamma ** sum(epoch >= step for step in train.lr_steps)
    if iteration < train.warmup_iters:
        factor *= 1 - (1 - iteration / train.warmup_iters) * (1 - train.warmup_ratio)
    return float(factor)


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate(),
                             "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class _Run:
    """The mutable state of a run: what a checkpoint saves and a resume restores."""

    cfg: Config
    spec: KeypointSpec
    info: DistInfo
    model: AssociativeEmbeddingNet
    net: nn.Module  # the model itself or its DDP wrapper
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    run_dir: Path
    epoch: int = 0  # completed epochs
    epoch_batches: int = 0  # batches done in the current epoch
    iteration: int = 0  # optimiser steps done

    def payload(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "epoch_batches": self.epoch_batches,
            "iteration": self.iteration,
            "world_size": self.info.world_size,
            "config": dataclasses.asdict(self.cfg),
            "keypoints": self.spec.to_dict(),
            "rng_state": _rng_state(),
            "version": aepose.__version__,
        }

    def restore(self, raw: dict[str, Any]) -> None:
        self.model.load_state_dict(raw["model"])
        self.optimizer.load_state_dict(raw["optimizer"])
        self.scheduler.load_state_dict(raw["scheduler"])
        self.scaler.load_state_dict(raw["scaler"])
        self.epoch, self.iteration = int(raw["epoch"]), int(raw["iteration"])
        self.epoch_batches = int(raw.get("epoch_batches", 0))
        if int(raw.get("world_size", 1)) != self.info.world_size and self.info.is_main:
            logger.warning("resuming a %s-rank run on %d ranks: the data order differs",
                           raw.get("world_size"), self.info.world_size)
        if self.info.is_main:
            _set_rng_state(raw["rng_state"])

    def save(self, name: str) -> Path:
        """Write checkpoint ``name``; when the system refuses (a full disk), one line that
        also names the newest checkpoint on disk, which atomic writing left intact."""
        try:
            return write_checkpoint(self.run_dir / name, self.payload())
        except AeposeError as error:
            saved = sorted(self.run_dir.glob("*.pth"), key=lambda p: p.stat().st_mtime)
            kept = (f"; the newest checkpoint, {saved[-1]}, is intact (--resume it)"
                    if saved else "; no checkpoint of this run was written")
            raise AeposeError(f"{error}{kept}") from None


def _resolve_run(
    cfg: Config, spec: KeypointSpec | None, options: TrainOptions, info: DistInfo
) -> tuple[Config, KeypointSpec, Path, dict[str, Any] | None]:
    """The config and keypoints to train, the run folder and, when resuming, the
    checkpoint's content."""
    raw = None
    if options.resume is not None:
        ckpt, raw = read_training_state(options.resume)
        if ckpt.config is None:
            raise AeposeError(f"{options.resume}: has no embedded config")
        cfg = _merge_resumed(ckpt.config, cfg)
        spec = ckpt.spec or spec
    if options.out is not None:
        run_dir = options.out
    elif options.resume is not None:
        run_dir = options.resume.parent
    else:
        run_dir = Path("runs") / f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    spec = spec or get_spec(cfg.data.dataset)
    if spec.num_keypoints != cfg.model.num_keypoints:
        raise AeposeError(f"the {spec.name} keypoints are {spec.num_keypoints}; {cfg.name}'s "
                          f"network has {cfg.model.num_keypoints} (set model.num_keypoints)")
    return cfg, spec, Path(broadcast_object(str(run_dir), info)), raw


def _merge_resumed(saved: Config, requested: Config) -> Config:
    # The network and data must be the checkpoint's; the schedule may be extended.
    if saved.model != requested.model:
        raise AeposeError(
            f"the checkpoint's network ({saved.name}) differs from the requested {requested.name}")
    return dataclasses.replace(saved, train=requested.train, test=requested.test)


def _make_run(cfg: Config, spec: KeypointSpec, options: TrainOptions, info: DistInfo,
              run_dir: Path, iters_per_epoch: int) -> _Run:
    torch.manual_seed(options.seed)  # identical initial weights on every rank
    model = build_from_config(cfg.model, spec)
    # Every rank loads the same starting weights; rank 0 alone reports them, as it logs the
    # rest of the run.
    if options.pretrained is not None:
        load_pretrained_backbone(model, options.pretrained, log=info.is_main)
    if options.init is not None:
        init_from(model, options.init, log=info.is_main)
    model.to(info.device)
    if options.channels_last:
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    net: nn.Module = model
    if info.distributed:
        ids = [info.device.index] if info.device.type == "cuda" else None
        net = DistributedDataParallel(model, device_ids=ids)
    control = options.control
    optimizer, factors = optimizer_and_factors(
        model, cfg.train, control.lr_factor if control is not None
        else lambda i: lr_factor(cfg.train, i, iters_per_epoch), iters_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factors)
    scaler = torch.amp.GradScaler(info.device.type, enabled=options.dtype == "fp16")
    torch.manual_seed(options.seed + info.rank)
    return _Run(cfg, spec, info, model, net, optimizer, scheduler, scaler, run_dir)


def train_step(
    cfg: Config,
    net: nn.Module,
    batch: Batch,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    dtype: str,
) -> dict[str, Tensor]:
    """One optimiser step on ``batch``: forward under autocast to ``dtype``, the loss in
    float32, ``zero_grad``, backward of the (scaled) total, optimiser and scaler step.

    ``batch`` is already on ``net``'s device, images [B, 3, I, I] in the memory format the
    network runs in; ``scaler`` is enabled for fp16 only. The learning-rate schedule is the
    caller's. Returns :func:`~aepose.engine.losses.compute_loss`'s three terms and their
    sum ``"loss"`` (the value backpropagated): scalar tensors still on the device, so the
    caller decides when to wait for the GPU.
    """
    with autocast(batch.images.device.type, dtype):
        outputs = net(batch.images)
    # The loss is computed in float32 whatever the network's precision.
    terms = compute_loss(cfg, [o.float() for o in outputs], list(batch.heatmaps),
                         list(batch.masks), list(batch.joints))
    total = terms["heatmap_loss"] + terms["push_loss"] + terms["pull_loss"]
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(total).backward()
    scaler.step(optimizer)
    scaler.update()
    return {**terms, "loss": total}


def _train_batch(run: _Run, batch: Batch, options: TrainOptions) -> dict[str, Tensor]:
    """:func:`train_step` on a loader's batch, then the schedule's step."""
    batch = batch.to(run.info.device, non_blocking=True)
    if options.channels_last:
        batch = dataclasses.replace(
            batch, images=batch.images.contiguous(memory_format=torch.channels_last))
    terms = train_step(run.cfg, run.net, batch, run.optimizer, run.scaler, options.dtype)
    run.scheduler.step()
    run.iteration += 1
    return terms


class _StopFlag:
    """Ctrl-C or SIGTERM asks the loop to stop after the current step and save (a second
    Ctrl-C kills); schedulers and containers stop jobs with SIGTERM."""

    def __init__(self) -> None:
        self.raised = False
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> _StopFlag:
        try:
            self.previous = {s: signal.signal(s, self._handle)
                             for s in (signal.SIGINT, signal.SIGTERM)}
        except ValueError:  # not the main thread: no signal handling
            self.previous = {}
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.raised = True
        signal.signal(signal.SIGINT, signal.default_int_handler)
        name = "interrupted"
        if signum == signal.SIGTERM:
            note_terminated()
            name = "terminated"
        logger.warning("%s: stopping after this step and saving a checkpoint", name)

    def __exit__(self, *exc: object) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)


def train(cfg: Config, options: TrainOptions, validate: Validator | None = None) -> TrainResult:
    """Train ``cfg``'s network on ``options.data_root``; see the module docstring.

    The data's skeleton is ``options.keypoints`` (default: a resumed checkpoint's, else the
    one ``cfg.data.dataset`` names); it shapes the flip augmentation and the validation's OKS
    and goes into every checkpoint (``keypoints``).

    ``validate(model, epoch)`` is called on every rank every ``train.val_interval`` epochs and
    after the last one; its metrics are logged by rank 0. By default (``options.validate``)
    it is the AP of the preset's val split with the preset's test settings.
    """
    check_precision(options.dtype)
    use_threads()  # aepose.threads: one torch thread unless AEPOSE_THREADS says otherwise
    info = init_distributed(options.device)
    if options.control is not None and info.distributed:
        # Its stop would be one rank's decision; the ranks must leave at the same step.
        raise AeposeError("a step control steers single-process runs only")
    cfg, spec, run_dir, raw = _resolve_run(cfg, options.keypoints, options, info)
    # Refused in one line, on every rank, before any work: a folder that cannot be written,
    # one another live run holds, and one that holds an earlier run (_refuse_reuse).
    refuse = functools.partial(_refuse_reuse, options=options)
    with claim_run_folder_on_all_ranks(run_dir, info, refuse):
        return _run_training(cfg, spec, options, validate, info, run_dir, raw)


# What a run folder holds once training has started in it (module docstring).
_RUN_FILES = ("metrics.jsonl", "config.yaml", "last.pth")


def _refuse_reuse(run_dir: Path, options: TrainOptions) -> None:
    """An earlier run in ``run_dir`` is refused unless this run resumes from a checkpoint
    inside it: a new run would mix its log and checkpoints with the old ones."""
    if options.resume is not None and options.resume.resolve().parent == run_dir.resolve():
        return  # continuing this folder's own run
    found = [name for name in _RUN_FILES if (run_dir / name).exists()]
    found += sorted(p.name for p in run_dir.glob("epoch_*.pth"))[:1]
    if found:
        hint = (f"continue it with --resume {run_dir / 'last.pth'}"
                if (run_dir / "last.pth").is_file() else "remove it")
        raise AeposeError(f"{run_dir} already holds a training run ({', '.join(found)}); "
                          f"{hint}, or choose a new --out")


def _run_training(cfg: Config, spec: KeypointSpec, options: TrainOptions,
                  validate: Validator | None, info: DistInfo, run_dir: Path,
                  raw: dict[str, Any] | None) -> TrainResult:
    """:func:`train` once the run folder is this run's: data, network, the loop, last.pth."""
    if options.deterministic:
        torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = not options.deterministic
    loader, dataset, sampler = build_loader(cfg, options, info, spec)
    run = _make_run(cfg, spec, options, info, run_dir, max(1, len(loader)))
    if raw is not None:
        run.restore(raw)
    if info.is_main:
        write_text(run_dir / "config.yaml", yaml.safe_dump(dataclasses.asdict(cfg),
                                                           sort_keys=False))
        logger.info("training %s on %s (%d images, %d rank(s), %s) -> %s", cfg.name,
                    options.data_root, len(dataset), info.world_size, info.device, run_dir)
    if validate is None and options.validate:
        validate = _default_validator(cfg, options, info)
    log = TrainLog(run, options)
    interrupted = False
    skipped = 0
    with _StopFlag() as stop:
        while run.epoch < cfg.train.epochs and not interrupted:
            dataset.set_epoch(run.epoch)
            sampler.set_epoch(run.epoch, skip=run.epoch_batches * cfg.train.batch_size)
            run.net.train()
            log.open_bar(run.epoch_batches + len(loader), run.epoch_batches)
            read = [0, 0]  # images trained on, images skipped in this epoch
            for batch in loader:
                skipped += batch.skipped
                read[0] += batch.size
                read[1] += batch.skipped
                stepped = batch.size > 0
                if stepped:
                    log.step(_train_batch(run, batch, options), batch.size)
                run.epoch_batches += 1
                if run.iteration % options.log_interval == 0:
                    log.flush()
                if stepped and options.control is not None and options.control.after_step(
                        run.iteration, log.last):
                    interrupted = True
                    break
                if _should_stop(run, stop, options):
                    interrupted = True
                    break
            log.flush()
            log.close_bar()
            if interrupted:
                break
            _check_images_read(run, read, dataset)
            run.epoch, run.epoch_batches = run.epoch + 1, 0
            _end_epoch(run, log, validate, skipped)
    checkpoint = run.save("last.pth") if info.is_main else run_dir / "last.pth"
    return TrainResult(run_dir, checkpoint, run.epoch, run.iteration, interrupted, log.last)


def _default_validator(cfg: Config, options: TrainOptions, info: DistInfo) -> Validator | None:
    ann = options.data_root / cfg.data.val_ann if cfg.data.val_ann else None
    if ann is None or not ann.is_file():
        if info.is_main:  # every rank decides alike; one says why
            logger.warning("no validation: %s", "no validation annotation file (--val-ann)"
                           if ann is None else f"{ann} does not exist")
        return None
    images = options.data_root / cfg.data.val_images

    def validate(model: nn.Module, epoch: int) -> dict[str, float]:
        result = evaluate_model(model, cfg, ann, images, info, workers=cfg.train.workers,
                                progress=False)
        if info.is_main:
            logger.info("epoch %d: %s", epoch, ", ".join(
                f"{k} {v:.3f}" for k, v in result.metrics.items()))
        return result.metrics

    return validate


def _should_stop(run: _Run, stop: _StopFlag, options: TrainOptions) -> bool:
    if run.iteration == options.stop_after:
        return True
    if not run.info.distributed:
        return stop.raised
    # Every rank must leave at the same step, so Ctrl-C is agreed on at log intervals only.
    if run.iteration % options.log_interval:
        return False
    flag = torch.tensor([int(stop.raised)], device=run.info.device)
    dist.all_reduce(flag)
    return bool(flag.item())


def _check_images_read(run: _Run, read: list[int], dataset: BottomUpDataset) -> None:
    """Stop when no rank could read a single image of an epoch (``read``: images trained on,
    images skipped): the run would otherwise "finish" with checkpoints of an untrained network.
    """
    total = torch.tensor(read, device=run.info.device)
    if run.info.distributed:
        dist.all_reduce(total)
    if int(total[0]) == 0 and int(total[1]) > 0:
        raise AeposeError(
            f"no training image could be read in epoch {run.epoch + 1} (see the warnings "
            f"above); check the image folder {dataset.annotations.image_dir}")


def _end_epoch(run: _Run, log: TrainLog, validate: Validator | None, skipped: int) -> None:
    train_cfg = run.cfg.train
    if run.info.distributed:
        # DDP copies rank 0's BatchNorm statistics into every rank before each forward, so
        # after the last one they differ by one local update: give every rank rank 0's,
        # which is what gets saved, before validating.
        for buffer in run.model.buffers():
            dist.broadcast(buffer, 0)
    last = run.epoch == train_cfg.epochs
    if validate is not None and (run.epoch % train_cfg.val_interval == 0 or last):
        metrics = validate(run.model, run.epoch)
        log.write("val", metrics)
        log.last = {**log.last, **{f"val_{k}": v for k, v in metrics.items()}}
    if run.info.is_main:
        log.write("epoch", {"skipped_images": float(skipped), **log.last})
        if run.epoch % train_cfg.checkpoint_interval == 0 or last:
            run.save(f"epoch_{run.epoch:03d}.pth")
        if not last:
            run.save("last.pth")

