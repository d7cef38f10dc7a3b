"""aepose's thread settings (aepose.threads) reach every entry point, the override works,
and the benchmark's background load is bounded and always stopped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from aepose import threads
from aepose.apps.bench.contention import busy_core
from aepose.errors import AeposeError

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process as if aepose had not set its threads yet, torch on 3 threads (neither
    torch's default here nor aepose's); the suite's one thread afterwards."""
    monkeypatch.delenv(threads.ENV_VAR, raising=False)
    monkeypatch.setattr(threads, "_applied_in", None)
    torch.set_num_threads(3)
    yield
    torch.set_num_threads(1)


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in (threads.ENV_VAR, "OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    return {**env, "PYTHONPATH": str(SRC), **extra}


# -- the choice and its override -------------------------------------------------------------


def test_default_is_one_thread_and_the_variable_overrides_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(threads.ENV_VAR, raising=False)
    assert threads.chosen_threads() == 1
    monkeypatch.setenv(threads.ENV_VAR, " 4 ")
    assert threads.chosen_threads() == 4


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5"])
def test_a_bad_override_is_one_line_naming_the_variable(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(threads.ENV_VAR, value)
    with pytest.raises(AeposeError, match=f"AEPOSE_THREADS='{value}': give a positive"):
        threads.chosen_threads()


def test_use_threads_sets_the_count_once_per_process(fresh: None,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    threads.use_threads()
    assert torch.get_num_threads() == 1
    torch.set_num_threads(2)  # the caller's own choice, after aepose's first call, stays
    threads.use_threads()
    assert torch.get_num_threads() == 2
    monkeypatch.setattr(threads, "_applied_in", None)
    monkeypatch.setenv(threads.ENV_VAR, "2")
    torch.set_num_threads(3)
    threads.use_threads()
    assert torch.get_num_threads() == 2


# -- the entry points ------------------------------------------------------------------------


def test_predictor_construction_applies_the_threads(fresh: None) -> None:
    from aepose.models import build_model
    from aepose.pipeline.predictor import Predictor

    Predictor(build_model("higherhrnet_tiny_crowdpose_128"), "higherhrnet_tiny_crowdpose_128")
    assert torch.get_num_threads() == 1


def test_streaming_applies_the_threads(fresh: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """aepose.predict, predict_images and evaluation all stream (pipeline.engine.stream)."""
    from aepose.config import get_preset
    from aepose.models import build_model
    from aepose.pipeline.predictor import predict_images

    cfg = get_preset("higherhrnet_tiny_crowdpose_128")
    model = build_model(cfg).eval()
    monkeypatch.setenv(threads.ENV_VAR, "2")
    predict_images(model, cfg, [np.zeros((64, 64, 3), np.uint8)])
    assert torch.get_num_threads() == 2


def test_benchmark_stages_run_on_the_threads(fresh: None) -> None:
    """aepose benchmark measures what aepose runs: its stages apply the same choice."""
    from aepose.apps.bench import run_benchmark

    run_benchmark("higherhrnet_tiny_crowdpose_128", stage="decode", repeats=1, warmup=0,
                  input_size=64, people=2)
    assert torch.get_num_threads() == 1


def test_decode_poses_applies_the_threads(fresh: None) -> None:
    from aepose.codec.decode import decode_poses

    decode_poses(torch.zeros(2, 8, 8), torch.zeros(2, 8, 8, 1))
    assert torch.get_num_threads() == 1


def test_the_api_in_a_fresh_interpreter_runs_on_one_thread() -> None:
    """The API as a user calls it, torch's default being every core: after a Predictor is
    built, and after aepose.predict, torch runs on one thread; the environment is left
    alone."""
    code = """
import json, os, numpy as np, torch, aepose
from aepose.models import build_model
before = torch.get_num_threads()
preset = "higherhrnet_tiny_crowdpose_128"
predictor = aepose.Predictor(build_model(preset), preset)
built = torch.get_num_threads()
torch.set_num_threads(2)  # the caller's own choice, after aepose's first call, stays
aepose.predict(np.zeros((64, 64, 3), np.uint8), predictor, decode_workers=0)
print(json.dumps([before, built, torch.get_num_threads(), os.environ.get("OMP_WAIT_POLICY")]))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env=_clean_env())
    assert done.returncode == 0, done.stderr
    before, *after = json.loads(done.stdout.splitlines()[-1])
    assert before >= 1  # torch's own default: the physical cores (2 here)
    assert after == [1, 2, None]


_CLI_PROBE = """
import json, os, sys
from aepose.apps.cli import main
code = main(sys.argv[1:])
import torch
print(json.dumps([code, os.environ.get("OMP_NUM_THREADS"), os.environ.get("OMP_WAIT_POLICY"),
                  torch.get_num_threads()]))
"""


@pytest.mark.parametrize(("override", "count"), [(None, 1), ("2", 2)])
def test_the_command_line_sets_threads_and_passive_waiting_before_torch_loads(
    override: str | None, count: int, tmp_path: Path
) -> None:
    env = _clean_env(**({threads.ENV_VAR: override} if override else {}))
    done = subprocess.run([sys.executable, "-c", _CLI_PROBE, "train", "--preset", "missing",
                           "--data-root", "."], capture_output=True, text=True, timeout=120,
                          env=env, cwd=tmp_path)
    code, omp_threads, policy, torch_threads = json.loads(done.stdout.splitlines()[-1])
    assert code == 1  # the missing preset
    assert (omp_threads, policy, torch_threads) == (str(count), "PASSIVE", count)


def test_the_command_line_refuses_a_bad_override_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "aepose", "models"], capture_output=True,
                          text=True, timeout=120, env=_clean_env(AEPOSE_THREADS="many"),
                          cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "aepose: error: AEPOSE_THREADS='many': give a positive whole number of threads (for "
        "example AEPOSE_THREADS=2), or unset it for aepose's default of 1"]


def _threads_here() -> tuple[int, str | None]:
    return torch.get_num_threads(), os.environ.get(threads.ENV_VAR)


def test_decode_workers_run_one_thread_whatever_the_override(
    fresh: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aepose.pipeline.workers import decode_pool

    monkeypatch.setenv(threads.ENV_VAR, "2")
    torch.set_num_threads(2)  # what a forked worker would inherit
    with decode_pool(torch.device("cpu"), 1) as pool:
        assert pool.submit(_threads_here).result(timeout=60) == (1, "2")


def test_training_data_workers_run_one_thread(fresh: None,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import signal

    import cv2

    from aepose.engine import loader

    monkeypatch.setenv(threads.ENV_VAR, "2")
    handler, opencv = signal.getsignal(signal.SIGINT), cv2.getNumThreads()
    try:
        loader._worker_init(0)
        assert torch.get_num_threads() == 1
    finally:
        signal.signal(signal.SIGINT, handler)
        cv2.setNumThreads(opencv)


def test_training_applies_the_threads(fresh: None, tmp_path: Path) -> None:
    from aepose.config import get_preset
    from aepose.engine.train import TrainOptions, train

    with pytest.raises(AeposeError):  # no data: stops once the threads are set
        train(get_preset("higherhrnet_tiny_crowdpose_128"),
              TrainOptions(data_root=tmp_path / "missing", out=tmp_path / "run", device="cpu"))
    assert torch.get_num_threads() == 1


# -- the background load -----------------------------------------------------------------


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its reaper has ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_busy_core_runs_inside_the_block_and_stops_after_it() -> None:
    with busy_core(30) as child:
        assert child.poll() is None
        time.sleep(0.3)
        assert child.poll() is None
    assert child.returncode is not None and not _alive(child.pid)


def test_busy_core_stops_on_an_exception() -> None:
    with pytest.raises(RuntimeError, match="boom"), busy_core(30) as child:
        raise RuntimeError("boom")
    assert child.returncode is not None and not _alive(child.pid)


def test_busy_core_ends_by_itself_at_its_cap() -> None:
    with busy_core(0.5) as child:
        assert child.wait(timeout=20) == 0  # ended by its own deadline, not killed


def test_busy_core_ends_when_its_parent_is_killed() -> None:
    code = ("import sys, time; from aepose.apps.bench.contention import busy_core\n"
            "with busy_core(60) as child:\n"
            "    print(child.pid, flush=True); time.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              env=_clean_env())
    assert parent.stdout is not None
    pid = int(parent.stdout.readline())
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 20
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid)


def test_busy_core_refuses_an_unbounded_load() -> None:
    with pytest.raises(AeposeError, match="busy core runs for"), busy_core(1e9):
        pass


def test_the_demo_pins_to_the_override_and_otherwise_measures_every_core(
    fresh: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo's chooser measures thread counts up to the cores, not up to torch's count
    (which aepose has set to one), and AEPOSE_THREADS pins it as --threads does."""
    from aepose.apps import demo

    settings = demo.DemoSettings()
    cfg = demo._recipe(settings)
    torch.set_num_threads(1)
    chooser = demo._thread_chooser(cfg, settings)
    if threads.cpu_cores() > 1:
        assert chooser is not None and max(chooser.candidates) == threads.cpu_cores()
    monkeypatch.setenv(threads.ENV_VAR, "2")
    assert demo._thread_chooser(cfg, settings) is None
    assert demo._pinned_threads(settings) == 2
    assert demo._pinned_threads(demo.DemoSettings(threads=1)) == 1
