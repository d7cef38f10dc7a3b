"""The demo's time budget without timing anything: a fake clock stands for the machine.

The plan fits its budget, re-plans when steps slow down, never undoes a learning-rate
decay; the thread chooser keeps the fastest count; the trainer obeys a step control; the
demo's lines reach demo.log and its final lines say why the AP falls short."""

from __future__ import annotations

import logging
import math
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from aepose.apps.demo import DemoSettings
from aepose.apps.demo_budget import (
    BudgetControl,
    Reserve,
    Schedule,
    ThreadChooser,
    fit_total,
)
from aepose.apps.demo_report import EXPECTED_AP, DemoLog, Timing, verdict
from aepose.config import TrainConfig, apply_overrides, get_preset
from aepose.engine.train import TrainOptions, train
from aepose.models.checkpoint import read_training_state
from aepose.synth import generate_dataset

RECIPE = TrainConfig(lr=3e-3, warmup_iters=50, warmup_ratio=1e-3, lr_gamma=0.1)
RESERVE = Reserve(fixed=10.0, steps=60.0)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def control(clock: FakeClock, budget: float, full: int = 3024,
            lines: list[str] | None = None) -> BudgetControl:
    return BudgetControl(deadline=clock.now + budget, reserve=RESERVE, full_total=full,
                         train=RECIPE, iters_per_epoch=63,
                         say=(lines if lines is not None else []).append, clock=clock)


def run(ctl: BudgetControl, clock: FakeClock, seconds: object) -> int:
    """Step until the control stops; ``seconds(i)`` is step i's duration. Returns the steps
    done. Each step first asks for its learning rate, as the trainer's scheduler does."""
    i = 0
    while True:
        ctl.lr_factor(i)
        clock.now += seconds(i)  # type: ignore[operator]
        i += 1
        if ctl.after_step(i, {"loss": 1.0}) or i > 100_000:
            return i


def test_fit_total_counts_whole_steps_within_the_recipe() -> None:
    assert fit_total(10, 30.0, 0.5, 3024) == 70
    assert fit_total(10, 29.9, 0.5, 3024) == 69
    assert fit_total(10, 1e9, 0.5, 3024) == 3024  # never beyond the recipe
    assert fit_total(10, -5.0, 0.5, 3024) == 10  # out of time: stop now


def test_a_steady_machine_fills_the_budget_and_leaves_the_reserve() -> None:
    clock = FakeClock()
    start = clock.now
    ctl = control(clock, budget=480.0)
    steps = run(ctl, clock, lambda i: 2.0 if i == 0 else 0.25)
    reserve = RESERVE.seconds(0.25)
    # 1 set-up step of 2 s, then 0.25 s steps until the reserve (25 s) is all that is left.
    assert abs(steps - (1 + (480 - reserve - 2.0) / 0.25)) <= 1  # floats: give or take 1
    assert clock.now + reserve <= start + 480
    assert clock.now + reserve > start + 480 - 0.25
    assert ctl.schedule.total == steps
    assert ctl.schedule.lr_steps == (round(0.75 * steps), round(0.9 * steps))
    assert ctl.schedule.warmup == math.ceil(50 * steps / 3024)  # the warm-up in proportion


def test_a_fast_machine_runs_the_whole_recipe() -> None:
    clock = FakeClock()
    ctl = control(clock, budget=480.0, full=600)
    assert run(ctl, clock, lambda i: 0.1) == 600
    assert ctl.schedule == Schedule(600, 50, (450, 540))  # the recipe itself
    assert clock.now - 1000.0 == pytest.approx(60.0)  # done early: nothing waits for the budget


def test_steps_that_slow_down_mid_run_shorten_the_plan_in_time() -> None:
    clock = FakeClock()
    start = clock.now
    ctl = control(clock, budget=480.0)
    totals: list[int] = []

    def seconds(i: int) -> float:
        totals.append(ctl.schedule.total)
        return 0.2 if i < 600 else 0.8  # a second job starts on the machine at step 600

    steps = run(ctl, clock, seconds)
    first_plan = totals[599]
    assert abs(first_plan - (480 - RESERVE.seconds(0.2)) / 0.2) <= 1  # floats: give or take 1
    assert 600 < steps < first_plan and ctl.replans >= 2
    # It still ends in time: once the 30-s window holds only slow steps the plan is exact,
    # so the slow steps' reserve (58 s) is left, give or take one step.
    assert clock.now + RESERVE.seconds(0.8) <= start + 480 + 0.8
    assert clock.now + RESERVE.seconds(0.8) > start + 480 - 2 * 0.8


def test_a_learning_rate_decay_is_never_undone_when_the_plan_grows() -> None:
    clock = FakeClock()
    ctl = control(clock, budget=480.0)
    ctl.schedule = Schedule(100, 5, (75, 90))
    assert ctl.lr_factor(80) == pytest.approx(0.1)
    ctl.schedule = Schedule(400, 5, (300, 360))  # the machine got faster
    assert ctl.lr_factor(81) == pytest.approx(0.1)
    assert ctl.lr_factor(360) == pytest.approx(0.01)
    assert ctl.lr_factor(0) == pytest.approx(0.01 * RECIPE.warmup_ratio)


def test_progress_lines_come_at_the_interval_and_at_the_end() -> None:
    clock = FakeClock()
    lines: list[str] = []
    ctl = control(clock, budget=120.0, lines=lines)
    steps = run(ctl, clock, lambda i: 0.5)
    # 0.5-s steps: about one line per 20 s of training, and the last one.
    trained = steps * 0.5
    assert abs(len(lines) - (math.floor(trained / 20) + 1)) <= 1
    assert lines[-1].startswith(f"training: step {steps}/{steps} (100%")
    assert "0.50 s/step" in lines[-1] and "loss 1" in lines[-1]


def test_out_of_time_before_a_step_time_is_known_stops_after_the_first_step() -> None:
    clock = FakeClock()
    ctl = control(clock, budget=20.0)  # the reserve alone is 10 s + 60 steps
    assert run(ctl, clock, lambda i: 15.0) == 1


class FakeCores:
    """A probe whose duration depends on the thread count set: a busy machine on which
    one thread is the fastest."""

    def __init__(self, clock: FakeClock, seconds: dict[int, float]) -> None:
        self.clock, self.seconds, self.threads, self.runs = clock, seconds, 0, []

    def set(self, n: int) -> None:
        self.threads = n

    def probe(self) -> None:
        self.runs.append(self.threads)
        self.clock.now += self.seconds[self.threads]


def test_thread_chooser_picks_the_fastest_and_gives_up_a_slow_count_after_one_run() -> None:
    clock = FakeClock()
    cores = FakeCores(clock, {1: 0.1, 2: 3.0})
    chooser = ThreadChooser((2, 1), cores.probe, cores.set, clock=clock, interval=60.0)
    assert chooser() == "1 thread" and cores.threads == 1
    assert cores.runs == [1, 1, 1, 2]  # one warm-up + 2 timed runs, then one 30x slower run
    assert chooser() == "1 thread" and len(cores.runs) == 4  # not due yet
    clock.now += 120
    cores.seconds = {1: 0.1, 2: 0.05}  # the other jobs have ended
    assert chooser() == "2 threads" and cores.threads == 2


def test_thread_chooser_keeps_the_current_count_unless_clearly_faster() -> None:
    clock = FakeClock()
    cores = FakeCores(clock, {1: 0.1, 2: 0.2})
    chooser = ThreadChooser((2, 1), cores.probe, cores.set, clock=clock, interval=10.0)
    assert chooser() == "1 thread"
    clock.now += 100
    cores.seconds = {1: 0.1, 2: 0.095}  # 5 % faster: not worth a switch
    assert chooser() == "1 thread" and cores.threads == 1
    clock.now += 100
    cores.seconds = {1: 1.0, 2: 2.0}  # a check of 9 s: the next one waits 25 x 9 s
    chooser()
    runs = len(cores.runs)
    clock.now += 200
    chooser()
    assert len(cores.runs) == runs
    clock.now += 30
    chooser()
    assert len(cores.runs) > runs


class StopAt:
    """A step control: a constant learning-rate factor, stop after ``last`` steps."""

    def __init__(self, last: int, factor: float) -> None:
        self.last, self.factor, self.seen = last, factor, []

    def lr_factor(self, iteration: int) -> float:
        return self.factor

    def after_step(self, iteration: int, losses: dict[str, float]) -> bool:
        self.seen.append(iteration)
        return iteration >= self.last


def test_train_follows_a_step_control(tmp_path: Path) -> None:
    root = tmp_path / "data"
    generate_dataset(root, "crowdpose", train_images=12, val_images=2, seed=4, size=(128, 160))
    cfg = apply_overrides(get_preset("higherhrnet_tiny_crowdpose_128"),
                          ["train.batch_size=4", "train.epochs=5"])
    stop = StopAt(last=4, factor=0.25)
    result = train(cfg, TrainOptions(data_root=root, out=tmp_path / "run", device="cpu",
                                     deterministic=True, progress=False, validate=False,
                                     control=stop))
    assert result.iteration == 4 and result.interrupted  # 4 steps: mid-epoch 2 of 5
    assert stop.seen == [1, 2, 3, 4]
    raw = read_training_state(result.checkpoint)[1]
    assert raw["iteration"] == 4
    assert raw["optimizer"]["param_groups"][0]["lr"] == pytest.approx(cfg.train.lr * 0.25)


def test_demo_log_takes_said_and_logged_lines_then_lets_go(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    logger = logging.getLogger("aepose")
    level = logger.level
    with DemoLog(tmp_path / "demo.log") as log:
        log.say("[1/4] a step")
        logger.info("training: step 3/9")
    logger.info("after the demo")
    lines = (tmp_path / "demo.log").read_text().splitlines()
    assert [line[9:] for line in lines[1:]] == ["[1/4] a step", "training: step 3/9"]
    assert all(re.match(r"\d\d:\d\d:\d\d ", line) for line in lines)
    assert capsys.readouterr().out == "[1/4] a step\n"
    assert logger.level == level and not any(isinstance(h, DemoLog) for h in logger.handlers)


def test_verdict_below_the_range_says_why_and_the_command_for_the_full_result(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    clock = FakeClock()
    ctl = control(clock, budget=480.0)
    steps = run(ctl, clock, lambda i: 0.5)
    settings = DemoSettings(out=tmp_path / "demo")
    with DemoLog(tmp_path / "demo.log") as log:
        verdict(settings, {"AP": 0.412}, ctl, Timing(480.0, 470.0, 430.0, 40.0, 40.0), log)
    out = capsys.readouterr().out
    low, high = EXPECTED_AP
    assert f"result: AP 0.412, below the {low:.2f}-{high:.2f}" in out
    assert f"why: only {steps} of the recipe's 3024 steps ({steps / 63:.1f} of 48 epochs)" in out
    assert "at 0.50 s per step measured here" in out
    minutes = math.ceil((3024 * 0.5 + 40.0) * 1.1 / 60)
    assert f"full result: aepose demo --minutes {minutes} --out {tmp_path / 'demo'}   " in out
    assert ("time: 7 min 50 s of the 8 min 00 s budget; training ended at 7 min 10 s (thread "
            "checks 0 s of it), evaluation and drawing took 40 s (40 s reserved)") in out
    logged = [line[9:] for line in (tmp_path / "demo.log").read_text().splitlines()[1:]]
    assert logged == out.splitlines()  # the same lines in demo.log


def test_verdict_within_the_range_and_over_budget(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    clock = FakeClock()
    ctl = control(clock, budget=480.0, full=100)
    run(ctl, clock, lambda i: 0.5)
    with DemoLog(tmp_path / "demo.log") as log:
        verdict(DemoSettings(), {"AP": 0.61}, ctl, Timing(480.0, 500.0, 450.0, 50.0, 40.0), log)
    out = capsys.readouterr().out
    assert "result: AP 0.610, within the 0.58-0.65 that README documents; 100 of the " in out
    assert "full result" not in out
    assert "time: 8 min 20 s of the 8 min 00 s budget (over by 20 s, 4%)" in out


def test_threads_are_given_back_after_the_demo(tmp_path: Path) -> None:
    from aepose.apps.demo import run_demo

    before = torch.get_num_threads()
    settings = DemoSettings(out=tmp_path / "d", train_images=4, val_images=1, epochs=1,
                            overlays=0, threads=1)
    run_demo(settings)
    assert torch.get_num_threads() == before
    progress = [line for line in (tmp_path / "d" / "demo.log").read_text().splitlines()
                if "training: step" in line]
    assert len(progress) == 1 and "training: step 1/1 (100%" in progress[0]
    assert "thread" not in progress[0]  # pinned: no thread checks


def test_verdict_names_what_a_run_changed_when_the_whole_recipe_ran(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    clock = FakeClock()
    ctl = control(clock, budget=480.0, full=126)
    run(ctl, clock, lambda i: 0.5)
    with DemoLog(tmp_path / "demo.log") as log:
        verdict(DemoSettings(epochs=2), {"AP": 0.01}, ctl, Timing(480, 90, 70, 20, 40), log)
    out = capsys.readouterr().out
    assert "below the 0.58-0.65 that README documents, although all 126 steps ran: this run " \
           "changed epochs" in out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux's /proc")
def test_process_age_counts_from_the_start_of_the_process() -> None:
    code = ("import time; time.sleep(1.5); "
            "from aepose.apps.demo_budget import process_age; print(process_age())")
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert 1.5 <= float(out) <= time.perf_counter() - start + 0.02  # ticks are 10 ms


def test_a_rerun_replaces_the_demos_training_but_never_a_foreign_folder(tmp_path: Path) -> None:
    from aepose.apps.demo import run_demo
    from aepose.errors import AeposeError

    settings = DemoSettings(out=tmp_path / "d", train_images=4, val_images=1, epochs=1,
                            overlays=0, threads=1)
    run_demo(settings)
    (tmp_path / "d" / "train" / "epoch_007.pth").write_bytes(b"an earlier run's file")
    run_demo(settings)  # the demo's own folder: replaced, not refused as an earlier run
    assert not (tmp_path / "d" / "train" / "epoch_007.pth").exists()
    log = (tmp_path / "d" / "demo.log").read_text()
    assert "replacing the previous demo training" in log
    assert "[1/4] reusing the generated dataset" in log  # README: a second run reuses it

    foreign = DemoSettings(out=tmp_path / "e", train_images=4, val_images=1, epochs=1,
                           overlays=0, threads=1)
    (tmp_path / "e" / "train").mkdir(parents=True)
    (tmp_path / "e" / "train" / "notes.txt").write_text("mine")
    with pytest.raises(AeposeError, match="holds files that aepose demo did not write"):
        run_demo(foreign)
    assert (tmp_path / "e" / "train" / "notes.txt").read_text() == "mine"
    assert not (tmp_path / "e" / "train" / "demo-run.json").exists()
    assert not (tmp_path / "e" / "data").exists()  # refused before any work
