"""Rank 0's training outputs: the progress bar, ``metrics.jsonl`` and TensorBoard
(:class:`TrainLog`)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import Tensor
from tqdm import tqdm

from aepose.errors import AeposeError

if TYPE_CHECKING:
    from aepose.engine.train import TrainOptions, _Run

__all__ = ["LOSS_TERMS", "TrainLog"]

LOSS_TERMS = ("heatmap_loss", "push_loss", "pull_loss")


class TrainLog:
    """Rank 0's outputs: bar, JSONL, TensorBoard. Loss values stay on the device until a
    log interval ends, so the loop does not wait for the GPU after every step."""

    def __init__(self, run: _Run, options: TrainOptions) -> None:
        self.run, self.options = run, options
        self.pending: list[Tensor] = []
        self.images = 0
        self.clock = time.perf_counter()
        self.last: dict[str, float] = {}
        self.bar: tqdm[Any] | None = None
        self.writer = _tensorboard(run.run_dir) if run.info.is_main else None

    def step(self, terms: dict[str, Tensor], images: int) -> None:
        self.pending.append(torch.stack([terms[k].detach().float() for k in LOSS_TERMS]))
        self.images += images
        if self.bar is not None:
            self.bar.update(1)

    def flush(self) -> None:
        """Check the pending losses on every rank and log their means; stop on NaN/inf."""
        if not self.pending:
            return
        values = torch.stack(self.pending)
        bad = (~torch.isfinite(values)).any().to(torch.int32).reshape(1)
        if self.run.info.distributed:
            dist.all_reduce(bad)
        if bad.item():
            self._stop_non_finite(values.cpu())
        means = values.mean(0).tolist()
        seconds = time.perf_counter() - self.clock
        record = dict(zip(LOSS_TERMS, means, strict=True))
        record["loss"] = sum(means)
        record["lr"] = self.run.optimizer.param_groups[0]["lr"]
        record["images_per_s"] = self.images * self.run.info.world_size / max(seconds, 1e-9)
        self.last = record
        self.pending, self.images, self.clock = [], 0, time.perf_counter()
        self.write("train", record)
        if self.bar is not None:
            self.bar.set_postfix(hm=f"{record['heatmap_loss']:.2e}",
                                 push=f"{record['push_loss']:.2e}",
                                 pull=f"{record['pull_loss']:.2e}",
                                 img_s=f"{record['images_per_s']:.1f}")

    def _stop_non_finite(self, values: Tensor) -> None:
        rows = (~torch.isfinite(values)).any(dim=1).nonzero()
        first = int(rows[0]) if len(rows) else len(values) - 1
        iteration = self.run.iteration - len(values) + first
        terms = ", ".join(f"{k}={v:.4g}" for k, v in zip(LOSS_TERMS, values[first].tolist(),
                                                          strict=True))
        raise AeposeError(
            f"non-finite loss at iteration {iteration} (epoch {self.run.epoch}): {terms}; "
            f"stopped without saving; the newest good checkpoint is in {self.run.run_dir}")

    def write(self, kind: str, values: dict[str, float]) -> None:
        if not self.run.info.is_main:
            return
        record = {"kind": kind, "epoch": self.run.epoch, "iteration": self.run.iteration,
                  **values}
        path = self.run.run_dir / "metrics.jsonl"
        try:
            with open(path, "a") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as err:
            raise AeposeError(f"cannot write {path}: {err.strerror or err}; the newest "
                              f"checkpoint is in {self.run.run_dir}") from None
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(f"{kind}/{key}", value, self.run.iteration)

    def open_bar(self, total: int, initial: int) -> None:
        show = self.run.info.is_main and self.options.progress
        self.bar = tqdm(total=total, initial=initial, desc=f"epoch {self.run.epoch + 1}/"
                        f"{self.run.cfg.train.epochs}", disable=not show, dynamic_ncols=True,
                        leave=False)

    def close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _tensorboard(run_dir: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # optional: the JSONL log has everything
        return None
    return SummaryWriter(str(run_dir))
