"""What the demo tells: ``demo.log`` (:class:`DemoLog`), where everything is
(:func:`summary`) and how the result compares with README's, with the reason and the
command for the full result when it falls short (:func:`verdict`)."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, TextIO

import torch

from aepose.apps.demo_budget import BudgetControl, format_seconds, load_average
from aepose.engine.train import TrainResult

if TYPE_CHECKING:
    from aepose.apps.demo import DemoSettings

__all__ = ["EXPECTED_AP", "IDLE_SECONDS_PER_STEP", "DemoLog", "Timing", "summary", "verdict"]

logger = logging.getLogger("aepose")

# The AP range README ("Quick start") documents for the demo on 2 CPU cores.
EXPECTED_AP = (0.58, 0.65)
# Seconds per training step of the demo on 2 idle cores (BENCHMARKS.md, "Demo").
IDLE_SECONDS_PER_STEP = 0.15


class DemoLog(logging.Handler):
    """``demo.log``: every line of the demo, time-stamped and appended (a rerun adds to it).

    :meth:`say` prints a line on stdout and logs it; as a handler of the ``aepose`` logger
    (while the ``with`` block lasts, at INFO at least) it also takes the progress lines and
    warnings that the logger sends to stderr.
    """

    def __init__(self, path: Path) -> None:
        super().__init__(logging.INFO)
        self.path = path
        self.file: TextIO | None = None
        self.level_before = logging.NOTSET

    def __enter__(self) -> DemoLog:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.path, "a", encoding="utf-8")  # closed in __exit__
        self._write(f"--- aepose demo, {time.strftime('%Y-%m-%d')}")
        self.level_before = logger.level
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)
        logger.addHandler(self)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        logger.removeHandler(self)
        logger.setLevel(self.level_before)
        if error is not None:
            self._write(f"stopped: {type(error).__name__}: {error}")
        if self.file is not None:
            self.file.close()
            self.file = None

    def emit(self, record: logging.LogRecord) -> None:
        self._write(record.getMessage())

    def say(self, text: str) -> None:
        print(text, flush=True)
        self._write(text)

    def _write(self, text: str) -> None:
        if self.file is None:
            return
        stamp = time.strftime("%H:%M:%S")
        for line in text.splitlines() or [""]:
            self.file.write(f"{stamp} {line}\n")
        self.file.flush()  # a reader (tail -f) sees each line as it comes


@dataclass(frozen=True)
class Timing:
    """Seconds since the demo started: its budget, its whole run, when training ended; and
    what the work after training took against what was reserved for it."""

    budget: float
    wall: float
    training_ended: float
    after: float
    reserved: float


def summary(out: Path, data: Path, result: TrainResult, curve: Path | None, log: DemoLog) -> None:
    log.say("\nwhere everything is:")
    log.say(f"  dataset      {data}  (CrowdPose layout; use as --data-root)")
    log.say(f"  checkpoint   {result.checkpoint}  (step {result.iteration})")
    log.say(f"  training log {out / 'train' / 'metrics.jsonl'}")
    log.say(f"  metrics      {out / 'metrics.json'}  results {out / 'results.json'}")
    log.say(f"  overlays     {out / 'overlays'}/")
    log.say(f"  curves       {curve or 'not drawn (pip install matplotlib)'}")
    log.say(f"  demo log     {out / 'demo.log'}")
    log.say(f"next: aepose predict {data / 'images'} --weights {result.checkpoint}")


def verdict(settings: DemoSettings, metrics: dict[str, float], control: BudgetControl,
            timing: Timing, log: DemoLog) -> None:
    """The final lines: the AP against README's range; below it, why and the command that
    gets the full result; then the time taken against the budget."""
    ap = metrics.get("AP", 0.0)
    low, high = EXPECTED_AP
    done, full, per_epoch = control.done, control.full_total, control.iters_per_epoch
    steps = (f"{done} of the recipe's {full} steps ({done / per_epoch:.1f} of "
             f"{full / per_epoch:.0f} epochs)")
    step_time = control.times.mean()
    changed = _changed(settings)
    # README's range is for the default recipe and data; name what this run changed.
    note = f" (this run changed {', '.join(changed)})" if changed else ""
    log.say("")
    if ap >= low:
        where = "within" if ap <= high else "above"
        log.say(f"result: AP {ap:.3f}, {where} the {low:.2f}-{high:.2f} that README documents"
                f"{note}; {steps}")
    elif done < full:
        log.say(f"result: AP {ap:.3f}, below the {low:.2f}-{high:.2f} that README documents "
                f"for the whole recipe{note}")
        log.say(f"why: only {steps} fitted into the {settings.minutes:g}-minute budget at "
                f"{step_time:.2f} s per step measured here ({torch.get_num_threads()} torch "
                f"thread(s), load average {load_average():.1f}); 2 idle cores take about "
                f"{IDLE_SECONDS_PER_STEP:.2f} s")
        minutes = math.ceil((full * step_time + timing.after) * 1.1 / 60)
        log.say(f"full result: {_command(settings, minutes)}   (all {full} steps at "
                f"{step_time:.2f} s per step, about {minutes} min)")
    else:
        log.say(f"result: AP {ap:.3f}, below the {low:.2f}-{high:.2f} that README documents, "
                f"although all {full} steps ran: "
                + (f"this run changed {', '.join(changed)}" if changed else
                   "unexpected; please report it with demo.log"))
    over = timing.wall - timing.budget
    log.say(f"time: {format_seconds(timing.wall)} of the {format_seconds(timing.budget)} budget"
            + (f" (over by {format_seconds(over)}, {over / timing.budget:.0%})" if over > 0
               else "")
            + f"; training ended at {format_seconds(timing.training_ended)} (thread checks "
            f"{format_seconds(control.overhead)} of it), evaluation and drawing took "
            f"{format_seconds(timing.after)} ({format_seconds(timing.reserved)} reserved)")


def _changed(settings: DemoSettings) -> list[str]:
    """The settings of this run that differ from the default recipe and data."""
    default = type(settings)()
    names = ("seed", "epochs", "overrides", "train_images", "val_images", "image_size")
    return [name for name in names if getattr(settings, name) != getattr(default, name)]


def _command(settings: DemoSettings, minutes: int) -> str:
    """``aepose demo --minutes N`` with this run's other non-default options."""
    default = type(settings)()
    parts = ["aepose demo", f"--minutes {minutes}"]
    for flag, value, usual in (("--out", settings.out, default.out),
                               ("--device", settings.device, default.device),
                               ("--seed", settings.seed, default.seed),
                               ("--epochs", settings.epochs, default.epochs),
                               ("--threads", settings.threads, default.threads)):
        if value != usual:
            parts.append(f"{flag} {value}")
    if settings.overrides:
        parts.append("--set " + " ".join(settings.overrides))
    return " ".join(parts)

