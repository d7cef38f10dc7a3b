"""The demo's time budget: how many training steps fit, the recipe's schedule compressed to
them, and plain progress lines (:class:`BudgetControl`, an
:class:`~aepose.engine.train.StepControl`).

The demo has a wall-clock budget for everything it does. Training gets what is left once
the work before it is done and the work after it (evaluation, drawing) is reserved; the
number of steps that fit is re-planned after every step from the step time measured over
the last seconds, so a machine that slows down mid-run shortens the schedule instead of
overrunning it. The learning-rate steps sit at fixed fractions of the planned total and a
decay, once applied, is never undone when the plan grows again.
"""

from __future__ import annotations

import math
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aepose.config import TrainConfig

__all__ = ["LR_STEP_FRACTIONS", "BudgetControl", "Reserve", "Schedule", "StepTimes",
           "ThreadChooser", "fit_total", "format_seconds", "load_average", "process_age"]

# The recipe's learning-rate steps, as fractions of the training length (75 % and 90 %).
LR_STEP_FRACTIONS = (0.75, 0.9)


@dataclass(frozen=True)
class Schedule:
    """A run of ``total`` optimiser steps: linear warm-up over ``warmup`` steps, then
    ×gamma at each of ``lr_steps`` (iteration numbers, 0-based)."""

    total: int
    warmup: int
    lr_steps: tuple[int, ...]

    @classmethod
    def compressed(cls, total: int, train: TrainConfig, full_total: int) -> Schedule:
        """The recipe's schedule squeezed into ``total`` steps: the steps at
        :data:`LR_STEP_FRACTIONS` of ``total``, the warm-up shortened in proportion to
        ``total / full_total`` (the recipe's warm-up is meant for its full length)."""
        warmup = min(train.warmup_iters, math.ceil(train.warmup_iters * total / full_total))
        return cls(total, warmup, tuple(round(f * total) for f in LR_STEP_FRACTIONS))


def fit_total(done: int, seconds_left: float, seconds_per_step: float, full_total: int) -> int:
    """Steps the run should end at: ``done`` plus the whole steps that fit into
    ``seconds_left`` at ``seconds_per_step``, never beyond the recipe's ``full_total`` and
    never below ``done`` (no time left: stop now)."""
    more = max(0, math.floor(seconds_left / max(seconds_per_step, 1e-9)))
    return max(done, min(full_total, done + more))


@dataclass(frozen=True)
class Reserve:
    """What the work after training costs: ``fixed`` seconds plus ``steps`` training steps'
    worth (evaluation and drawing run the same network on the same cores, so a machine that
    trains slowly evaluates slowly too). Calibrated in BENCHMARKS.md ("Demo")."""

    fixed: float
    steps: float

    def seconds(self, seconds_per_step: float) -> float:
        return self.fixed + self.steps * seconds_per_step


class StepTimes:
    """Durations of the recent training steps; their mean over the last ``window`` seconds
    (at least ``min_steps`` steps) is the step time the plan uses. The first step is left
    out of it: it also holds the set-up (data, network, the first thread check)."""

    def __init__(self, window: float = 30.0, min_steps: int = 5) -> None:
        self.window, self.min_steps = window, min_steps
        self.recent: deque[float] = deque()
        self.first: float | None = None
        self.total_seconds = 0.0
        self.count = 0

    def add(self, seconds: float) -> None:
        self.total_seconds += seconds
        self.count += 1
        if self.first is None:
            self.first = seconds
            return
        self.recent.append(seconds)
        while len(self.recent) > self.min_steps and sum(self.recent) - self.recent[0] >= (
                self.window):
            self.recent.popleft()

    def estimate(self) -> float | None:
        """Seconds per step now; None until a step after the first has been timed."""
        return sum(self.recent) / len(self.recent) if self.recent else None

    def mean(self) -> float:
        """Seconds per step over the whole run so far (the first step left out, when there
        are others)."""
        if self.first is None or self.count == 1:
            return self.first or 0.0
        return (self.total_seconds - self.first) / (self.count - 1)


def format_seconds(seconds: float) -> str:
    """``"7 min 05 s"``, ``"42 s"``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    return f"{seconds // 60} min {seconds % 60:02d} s"


def process_age() -> float:
    """Seconds since this process started (Linux's /proc); 0 where that is unknown. The
    command line counts Python's start and its imports, 2-20 s on a busy machine, against
    the demo's budget with it."""
    try:
        stat = Path("/proc/self/stat").read_text()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        ticks = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        return 0.0
    started = int(stat.rsplit(")", 1)[1].split()[19])  # field 22, counted from field 3
    return max(0.0, uptime - started / ticks)


def load_average() -> float:
    """The 1-minute load average; NaN where the system does not report it."""
    try:
        return os.getloadavg()[0]
    except OSError:  # not every system reports it
        return float("nan")


class BudgetControl:
    """Plans, paces and reports a demo training run against a wall-clock ``deadline``
    (a ``clock()`` reading by which the whole demo must have ended).

    ``reserve`` is kept free after training; ``full_total`` is the recipe's length in steps.
    ``say`` gets a progress line every ``progress_every`` seconds of training; ``retune()``,
    when given, runs at the same moments (the thread choice) and returns a short note for
    the line. ``clock`` is injectable so that the plan can be tested without timing.
    """

    def __init__(self, *, deadline: float, reserve: Reserve, full_total: int,
                 train: TrainConfig, iters_per_epoch: int, say: Callable[[str], None],
                 clock: Callable[[], float] = time.perf_counter, progress_every: float = 20.0,
                 retune: Callable[[], str] | None = None, window: float = 30.0) -> None:
        self.deadline, self.reserve, self.full_total = deadline, reserve, full_total
        self.train, self.iters_per_epoch = train, iters_per_epoch
        self.say, self.clock, self.progress_every, self.retune = say, clock, progress_every, retune
        self.times = StepTimes(window)
        self.schedule = Schedule.compressed(full_total, train, full_total)
        self.decays = 0  # learning-rate steps applied so far (never undone)
        self.started = self.last_step = self.last_line = clock()
        self.done = 0
        self.overhead = 0.0  # seconds spent in retune() while training
        self.note = retune() if retune is not None else ""
        self.replans = 0

    # StepControl ---------------------------------------------------------------------------

    def lr_factor(self, iteration: int) -> float:
        """Warm-up, then gamma to the number of learning-rate steps passed so far (under
        this plan or an earlier one: a decay is never undone)."""
        schedule = self.schedule
        self.decays = max(self.decays, sum(iteration >= s for s in schedule.lr_steps))
        factor = self.train.lr_gamma ** self.decays
        if iteration < schedule.warmup:
            ratio = self.train.warmup_ratio
            factor *= 1 - (1 - iteration / schedule.warmup) * (1 - ratio)
        return float(factor)

    def after_step(self, iteration: int, losses: dict[str, float]) -> bool:
        now = self.clock()
        self.times.add(now - self.last_step)
        self.done = iteration
        self._replan(iteration, now)
        stop = iteration >= self.schedule.total
        if stop or now - self.last_line >= self.progress_every:
            if self.retune is not None and not stop:
                self.note = self.retune()
                # Kept out of the step times (it comes once a minute or less often) and
                # spread over the steps as a rate instead: seconds_per_step().
                self.overhead += self.clock() - now
            self.say(self.progress_line(iteration, losses, now))
            self.last_line = self.clock()
        self.last_step = self.clock()
        return stop

    # Planning ------------------------------------------------------------------------------

    def seconds_per_step(self) -> float:
        """The step time the plan uses, the thread checks' share included; 0 until one is
        measured."""
        estimate = self.times.estimate()
        if estimate is None:
            return 0.0
        return estimate * (1 + self.overhead / max(self.times.total_seconds, 1e-9))

    def training_deadline(self) -> float:
        """The clock reading at which training must stop to leave the reserve."""
        return self.deadline - self.reserve.seconds(self.seconds_per_step())

    def planned_total(self, now: float) -> int:
        """The steps that fit; before a step time is measured, all of them unless the
        training deadline has already passed."""
        left = self.training_deadline() - now
        if self.times.estimate() is None:
            return self.full_total if left > 0 else self.done
        return fit_total(self.done, left, self.seconds_per_step(), self.full_total)

    def _replan(self, iteration: int, now: float) -> None:
        total = self.planned_total(now)
        if total != self.schedule.total:
            self.schedule = Schedule.compressed(total, self.train, self.full_total)
            self.replans += 1

    # Reporting -----------------------------------------------------------------------------

    def progress_line(self, iteration: int, losses: dict[str, float], now: float) -> str:
        total = self.schedule.total
        parts = [f"training: step {iteration}/{total} ({iteration / max(1, total):.0%}; "
                 f"epoch {iteration / self.iters_per_epoch:.1f})",
                 f"{self.seconds_per_step():.2f} s/step"]
        if self.note:
            parts.append(self.note)
        if "loss" in losses:
            parts.append(f"loss {losses['loss']:.3g}")
        parts.append(f"lr ×{self.lr_factor(iteration):.3g}")
        left = max(0.0, (total - iteration) * self.seconds_per_step())
        parts.append(f"{format_seconds(now - self.started)} done, {format_seconds(left)} left"
                     if iteration < total else f"done in {format_seconds(now - self.started)}")
        parts.append(f"load {load_average():.1f}")
        return ", ".join(parts)


class ThreadChooser:
    """Keeps torch on the thread count that runs the network fastest now.

    OpenMP's threads spin at every barrier, so on a busy machine a thread that waits for a
    core stalls the others: under a load of 11 on 2 cores a demo training step took 5-30 s
    on 2 threads and 0.7-1.2 s on 1 (BENCHMARKS.md, "Demo"). Each check times ``probe()``
    (a forward pass) once to warm up and ``repeats`` times on every candidate, the current
    one first; a count is given up after one run more than twice as slow as the best so
    far, and another replaces the current one only when at least 10 % faster. A check
    costs time, so the next one waits ``interval`` seconds or 25 times what this one cost,
    whichever is longer.
    """

    def __init__(self, candidates: tuple[int, ...], probe: Callable[[], None],
                 set_threads: Callable[[int], None], *,
                 clock: Callable[[], float] = time.perf_counter, interval: float = 60.0,
                 repeats: int = 2) -> None:
        self.candidates, self.probe, self.set_threads = candidates, probe, set_threads
        self.clock, self.interval, self.repeats = clock, interval, repeats
        self.current: int | None = None
        self.next_check = -math.inf
        self.checks = 0

    def __call__(self) -> str:
        """Check when due; returns the note for progress lines (``"1 thread"``)."""
        start = self.clock()
        if self.current is None or start >= self.next_check:
            self._check()
            self.next_check = self.clock() + max(self.interval, 25 * (self.clock() - start))
        return f"{self.current} thread{'s' if self.current != 1 else ''}"

    def _check(self) -> None:
        # The current count first, then from the fewest threads up: one thread cannot
        # stall on a barrier, so it sets a safe bar before the counts that can.
        order = sorted(self.candidates, key=lambda n: (n != self.current, n))
        seconds: dict[int, float] = {}
        for n in order:
            best = min(seconds.values(), default=math.inf)
            self.set_threads(n)
            runs = []
            for _ in range(1 + self.repeats):  # the first run warms up this count
                start = self.clock()
                self.probe()
                runs.append(self.clock() - start)
                if runs[-1] > 2 * best:
                    break
            seconds[n] = sum(runs[1:]) / len(runs[1:]) if len(runs) > 1 else runs[0]
        fastest = min(seconds, key=seconds.__getitem__)
        if self.current not in seconds or seconds[fastest] < 0.9 * seconds[self.current]:
            self.current = fastest
        self.set_threads(self.current)
        self.checks += 1
