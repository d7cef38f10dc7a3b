"""Fault injection: outputs that cannot be written, kill -9 and Ctrl-C in the middle of a run,
two runs into one folder. Each ends with one clear line and every finished result on disk.

The machine may run as root, so read-only and full folders are made by patching aepose.io
(the one module that writes files) to fail as the operating system would (EROFS, ENOSPC).
Runs that are killed are subprocesses whose image reading is slowed down, so that the test
can act while the run is half done.
"""

from __future__ import annotations

import dataclasses
import errno
import http.server
import importlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
from helpers import run_cli

from aepose import io as aepose_io
from aepose.config import get_preset
from aepose.models import build_model
from aepose.synth import generate_dataset

TINY = "higherhrnet_tiny_crowdpose_128"
SRC = Path(__file__).resolve().parents[1] / "src"
IMAGES = 8
RUN_MODULE = importlib.import_module("aepose.pipeline.run")

# ``python -c _SLOW MARKS SECONDS ARGV...``: aepose ARGV with every image read slowed down by
# SECONDS and marked by a line in MARKS (so the test knows the run is under way).
_SLOW = """
import importlib, signal, sys, time
from aepose.data.coco import read_image

# As from a terminal, whatever started the tests: a shell's background job (nohup ... &)
# hands its children SIGINT ignored, and Python keeps it so.
signal.signal(signal.SIGINT, signal.default_int_handler)

def slow(path):
    with open(sys.argv[1], "a") as marks:
        marks.write("read\\n")
    time.sleep(float(sys.argv[2]))
    return read_image(path)

for module in ("aepose.pipeline.predictor", "aepose.engine.eval_loop"):
    importlib.import_module(module).read_image = slow
from aepose.apps.cli import main
sys.exit(main(sys.argv[3:]))
"""


@dataclasses.dataclass(frozen=True)
class Setup:
    weights: Path
    images: Path  # a folder of IMAGES small PNGs
    data: Path  # a CrowdPose-layout dataset of 3 val images


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    root = tmp_path_factory.mktemp("faults")
    cfg = get_preset(TINY)
    torch.manual_seed(0)
    weights = root / "w.pth"
    torch.save({"model": build_model(cfg).state_dict(), "config": dataclasses.asdict(cfg)},
               weights)
    data = root / "data"
    generate_dataset(data, "crowdpose", train_images=IMAGES, val_images=3, seed=1,
                     size=(96, 128))
    images = root / "images"
    images.mkdir()
    for n, path in enumerate(sorted((data / "images").iterdir())[:IMAGES]):
        (images / f"{n}{path.suffix}").write_bytes(path.read_bytes())
    return Setup(weights, images, data)


def _predict_args(setup: Setup, out: Path) -> list[str]:
    return ["predict", str(setup.images), "--weights", str(setup.weights), "--out", str(out),
            "--device", "cpu", "--batch-size", "1", "--workers", "1", "--no-draw"]


def _test_args(setup: Setup, out: Path) -> list[str]:
    return ["test", "--weights", str(setup.weights), "--data-root", str(setup.data), "--out",
            str(out), "--device", "cpu", "--workers", "1", "--batch-size", "1"]


def assert_one_line(code: int, err: str) -> None:
    """A non-zero exit whose stderr ends in the one error line (log lines such as "using
    preset ..." may come before it, as in a terminal) and holds no traceback."""
    assert code != 0
    lines = err.splitlines()
    assert lines and lines[-1].startswith("aepose: error: ") and err.endswith("\n"), err
    assert sum("error:" in line for line in lines) == 1 and "Traceback" not in err, err


def _os_error(code: int) -> OSError:
    return OSError(code, os.strerror(code))


def _read_only(folder: Path, suffix: str = "") -> Path:
    """aepose.io's temporary-file reservation on a read-only file system."""
    raise _os_error(errno.EROFS)


# ---------------------------------------------------------------------------------------
# Read-only and full output folders (in-process, aepose.io patched)


def test_predict_into_a_read_only_folder_stops_before_any_work(
    setup: Setup, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(aepose_io, "_reserve", _read_only)
    monkeypatch.setattr(RUN_MODULE, "stream", _never("the pipeline"))
    code, _, err = run_cli(capsys, *_predict_args(setup, tmp_path / "out"))
    assert_one_line(code, err)
    assert f"cannot write to {tmp_path / 'out'}: Read-only file system" in err


def test_predict_on_a_full_disk_keeps_every_finished_image(
    setup: Setup, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The disk fills up while predictions.json is written: one line that says where the
    finished images are, and they are all there."""
    def full(file: Path) -> None:
        raise _os_error(errno.ENOSPC)

    monkeypatch.setattr(aepose_io, "_fsync", full)
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, *_predict_args(setup, out))
    assert_one_line(code, err)
    assert "No space left on device" in err
    assert err.rstrip().endswith(f"the images finished before it are in "
                                 f"{out / 'predictions.jsonl'}")
    assert len(_jsonl(out / "predictions.jsonl")) == IMAGES
    assert sorted(p.name for p in out.iterdir()) == ["predictions.jsonl"]


def test_test_into_a_read_only_folder_stops_before_the_evaluation(
    setup: Setup, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(aepose_io, "_reserve", _read_only)
    monkeypatch.setattr("aepose.apps.test.evaluate_model", _never("the evaluation"))
    code, _, err = run_cli(capsys, *_test_args(setup, tmp_path / "out"))
    assert_one_line(code, err)
    assert f"cannot write to {tmp_path / 'out'}: Read-only file system" in err


def test_test_on_a_full_disk_prints_the_table_and_keeps_the_results(
    setup: Setup, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """metrics.json cannot be written: the table was printed first and results.json stays."""
    write_all = aepose_io._write_all

    def full_for_metrics(tmp: Path, data: bytes) -> None:
        if data.startswith(b'{\n  "preset"'):
            raise _os_error(errno.ENOSPC)
        write_all(tmp, data)

    monkeypatch.setattr(aepose_io, "_write_all", full_for_metrics)
    out = tmp_path / "out"
    code, stdout, err = run_cli(capsys, *_test_args(setup, out))
    assert_one_line(code, err)
    assert err.endswith(f"aepose: error: cannot write metrics {out / 'metrics.json'}: No space "
                        "left on device\n")
    assert stdout.split()[:2] == ["AP", "AP50"]
    assert isinstance(json.loads((out / "results.json").read_text()), list)
    assert sorted(p.name for p in out.iterdir()) == ["results.json"]


def _never(what: str):  # type: ignore[no-untyped-def]
    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"{what} started although the output cannot be written")

    return fail


# ---------------------------------------------------------------------------------------
# kill -9, Ctrl-C and a second run (subprocesses)


@pytest.fixture
def slow_run(tmp_path: Path) -> Iterator[SlowRun]:
    runs: list[SlowRun] = []

    def start(argv: list[str], seconds: float = 0.4) -> SlowRun:
        run = SlowRun(argv, tmp_path / f"marks{len(runs)}", seconds)
        runs.append(run)
        return run

    yield start  # type: ignore[misc]
    for run in runs:
        run.stop()


class SlowRun:
    """``aepose ARGV`` in its own process group (Ctrl-C in a terminal reaches the group)."""

    def __init__(self, argv: list[str], marks: Path, seconds: float) -> None:
        env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
        self.marks = marks
        self.process = subprocess.Popen(
            [sys.executable, "-c", _SLOW, str(marks), str(seconds), *argv], env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)

    def wait_for(self, ready: object, timeout: float = 90.0) -> None:
        """Poll ``ready()`` until it is true (the run has got that far)."""
        deadline = time.monotonic() + timeout
        while not ready():  # type: ignore[operator]
            assert self.process.poll() is None, self.process.communicate()
            assert time.monotonic() < deadline, "the run did not get under way"
            time.sleep(0.05)

    def signal(self, signum: int) -> None:
        os.killpg(self.process.pid, signum)

    def finish(self) -> tuple[int, str, str]:
        out, err = self.process.communicate(timeout=120)
        return self.process.returncode, out, err

    def stop(self) -> None:
        if self.process.poll() is None:
            self.signal(signal.SIGKILL)
            self.process.communicate()


def _jsonl(path: Path) -> list[dict[str, object]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def _lines(path: Path) -> int:
    return path.read_text().count("\n") if path.is_file() else 0


def test_kill_9_of_predict_leaves_every_finished_image(
    setup: Setup, tmp_path: Path, slow_run: object, capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out"
    run = slow_run(_predict_args(setup, out))  # type: ignore[operator]
    run.wait_for(lambda: _lines(out / "predictions.jsonl") >= 2)
    run.signal(signal.SIGKILL)
    assert run.finish()[0] == -signal.SIGKILL
    entries = _jsonl(out / "predictions.jsonl")  # every line whole and parseable
    names = [e["file_name"] for e in entries]
    assert 2 <= len(entries) < IMAGES and len(set(names)) == len(names)
    assert {Path(str(n)).parent for n in names} == {setup.images}
    # The dead run holds no lock: a new run into the folder needs only --overwrite.
    code, _, err = run_cli(capsys, *_predict_args(setup, out))
    assert_one_line(code, err)
    assert "already holds predictions.jsonl of an earlier run" in err
    code, _, err = run_cli(capsys, *_predict_args(setup, out), "--overwrite")
    assert code == 0, err
    assert len(json.loads((out / "predictions.json").read_text())["images"]) == IMAGES


@pytest.mark.parametrize(("signum", "code", "word"), [
    (signal.SIGINT, 130, "interrupted"),
    # Containers, schedulers and torchrun stop jobs with SIGTERM: handled as Ctrl-C.
    (signal.SIGTERM, 143, "terminated"),
])
def test_ctrl_c_or_sigterm_of_predict_writes_what_finished(
    setup: Setup, tmp_path: Path, slow_run: object, signum: int, code: int, word: str
) -> None:
    out = tmp_path / "out"
    run = slow_run(_predict_args(setup, out))  # type: ignore[operator]
    run.wait_for(lambda: _lines(out / "predictions.jsonl") >= 2)
    seen = _lines(out / "predictions.jsonl")
    run.signal(signum)
    returned, stdout, err = run.finish()
    assert returned == code and "Traceback" not in err, err
    last = err.rstrip("\n").splitlines()[-1]
    match = re.fullmatch(rf"aepose: {word}; the (\d+) finished images/frames are in (.*)",
                         last)
    assert match and Path(match.group(2)) == out / "predictions.json", last
    images = json.loads((out / "predictions.json").read_text())["images"]
    assert seen <= len(images) == int(match.group(1)) < IMAGES
    assert not (out / "predictions.jsonl").exists() and not (out / ".aepose.lock").exists()
    assert f"predictions: {out / 'predictions.json'}" in stdout


@pytest.mark.slow
def test_a_rank_killed_under_torchrun_leaves_the_others_work_merged(
    setup: Setup, tmp_path: Path
) -> None:
    # torchrun answers a dead rank by sending SIGTERM to the others: they stop as on Ctrl-C,
    # and rank 0 merges what every rank wrote without waiting for the dead one.
    out, marks = tmp_path / "out", tmp_path / "marks"
    script = tmp_path / "slow.py"
    script.write_text(_SLOW.replace('marks.write("read\\n")',
                                    'marks.write(f"{os.environ[\'RANK\']} {os.getpid()}\\n")')
                      .replace("import importlib,", "import importlib, os,"))
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    run = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
         "2", str(script), str(marks), "1.0", *_predict_args(setup, out)], env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not (_lines(out / "predictions.jsonl") >= 1
                   and _lines(out / "predictions.rank1.jsonl") >= 1):
            assert run.poll() is None and time.monotonic() < deadline, run.communicate()
            time.sleep(0.05)
        written = _lines(out / "predictions.jsonl") + _lines(out / "predictions.rank1.jsonl")
        rank1 = next(int(line.split()[1]) for line in marks.read_text().splitlines()
                     if line.startswith("1 "))
        os.kill(rank1, signal.SIGKILL)
        run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.communicate()
    assert run.returncode != 0  # torchrun reports the dead rank
    images = json.loads((out / "predictions.json").read_text())["images"]
    assert written <= len(images) < IMAGES
    assert not list(out.glob("predictions*.jsonl"))


def test_overwrite_removes_a_dead_ranks_partial_file(tmp_path: Path) -> None:
    from aepose.apps.predict import _refuse_old_outputs
    from aepose.errors import AeposeError

    left = tmp_path / "predictions.rank1.jsonl"  # a torchrun rank killed in an earlier run
    left.write_text("{}\n")
    with pytest.raises(AeposeError, match=r"already holds predictions\.rank1\.jsonl"):
        _refuse_old_outputs(tmp_path, overwrite=False)
    _refuse_old_outputs(tmp_path, overwrite=True)
    assert not left.exists()


def test_ctrl_c_of_test_ends_in_one_line_and_exits_130(
    setup: Setup, tmp_path: Path, slow_run: object
) -> None:
    out = tmp_path / "out"
    run = slow_run(_test_args(setup, out), seconds=1.0)  # type: ignore[operator]
    run.wait_for(lambda: _lines(run.marks) >= 1)
    run.signal(signal.SIGINT)
    code, _, err = run.finish()
    assert code == 130 and "Traceback" not in err, err
    assert err.rstrip("\n").splitlines()[-1] == "aepose: interrupted"
    assert not (out / "metrics.json").exists()


def test_a_second_predict_into_a_busy_folder_is_refused(
    setup: Setup, tmp_path: Path, slow_run: object, capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out"
    run = slow_run(_predict_args(setup, out), seconds=0.2)  # type: ignore[operator]
    run.wait_for(lambda: _lines(out / "predictions.jsonl") >= 1)
    code, _, err = run_cli(capsys, *_predict_args(setup, out), "--overwrite")
    assert_one_line(code, err)
    assert f"{out} is in use by another aepose run (pid {run.process.pid})" in err
    code, _, err = run.finish()
    assert code == 0, err
    images = json.loads((out / "predictions.json").read_text())["images"]
    assert len(images) == IMAGES  # the first run was not disturbed


# ---------------------------------------------------------------------------------------
# Out of memory outside the pipeline (drawing, merging): one line, the finished work kept

# ``python -c _OUT_OF_MEMORY MODULE NAME N ARGV...``: aepose ARGV where the N-th call of
# MODULE.NAME, and every later one, fails for want of memory.
_OUT_OF_MEMORY = """
import importlib, sys
target = importlib.import_module(sys.argv[1])
real, calls = getattr(target, sys.argv[2]), [0]

def failing(*args, **kwargs):
    calls[0] += 1
    if calls[0] >= int(sys.argv[3]):
        raise MemoryError("Unable to allocate 1.00 GiB for an array")
    return real(*args, **kwargs)

setattr(target, sys.argv[2], failing)
from aepose.apps.cli import main
sys.exit(main(sys.argv[4:]))
"""


def _out_of_memory(name: str, call: int, argv: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", _OUT_OF_MEMORY, "aepose.apps.predict", name,
                           str(call), *argv, "--decode-workers", "0"], env=env,
                          capture_output=True, text=True,
                          timeout=300)


def test_out_of_memory_drawing_an_overlay_keeps_the_finished_images(
    setup: Setup, tmp_path: Path
) -> None:
    """The third overlay cannot be drawn: a MemoryError traceback once lost the merged
    JSON; now the run stops there in one line and every finished image is merged."""
    out = tmp_path / "out"
    argv = [a for a in _predict_args(setup, out) if a != "--no-draw"]
    done = _out_of_memory("save_image", 3, argv)
    assert_one_line(done.returncode, done.stderr)
    assert done.returncode == 1
    third = sorted(setup.images.iterdir())[2]
    assert done.stderr.splitlines()[-1] == (
        f"aepose: error: out of memory drawing the overlay of {third}; the 3 finished "
        f"images/frames are in {out / 'predictions.json'}")
    images = json.loads((out / "predictions.json").read_text())["images"]
    assert len(images) == 3 and (out / "results.json").is_file()
    assert len([p for p in out.iterdir() if p.suffix in (".jpg", ".png")]) == 2


def test_out_of_memory_merging_the_json_keeps_every_finished_image(
    setup: Setup, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    done = _out_of_memory("merge_predictions", 1, _predict_args(setup, out))
    assert_one_line(done.returncode, done.stderr)
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == (
        f"aepose: error: out of memory merging the predictions into {out / 'predictions.json'}"
        f"; the images finished before it are in {out / 'predictions.jsonl'}")
    assert len(_jsonl(out / "predictions.jsonl")) == IMAGES
    assert not (out / "predictions.json").exists()


def test_out_of_memory_in_any_command_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def exhausted(*args: object, **kwargs: object) -> None:
        raise MemoryError("Unable to allocate 1.00 GiB for an array")

    monkeypatch.setattr("aepose.apps.models.print_models", exhausted)
    code, _, err = run_cli(capsys, "models")
    assert_one_line(code, err)
    assert code == 1 and err == ("aepose: error: out of memory (Unable to allocate 1.00 GiB "
                                 "for an array)\n")


# ---------------------------------------------------------------------------------------
# A live stream that sends slowly


class _SlowMjpeg(http.server.BaseHTTPRequestHandler):
    """A live MJPEG stream (multipart/x-mixed-replace, as IP cameras serve it) stating 25
    fps: three frames at once (enough for FFmpeg to open it), then one every 2 s. Each
    frame's send time goes to the server's ``sent`` list."""

    server: _StreamServer

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        jpeg = cv2.imencode(".jpg", np.full((96, 128, 3), 90, np.uint8))[1].tobytes()
        part = (b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                % len(jpeg)) + jpeg + b"\r\n"
        try:
            for n in range(60):
                self.wfile.write(part)
                self.wfile.flush()
                self.server.sent.append(time.monotonic())
                if self.server.stopped.wait(0.04 if n < 2 else 2.0):
                    return
        except OSError:  # the reader went away
            pass


class _StreamServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _SlowMjpeg)
        self.sent: list[float] = []
        self.stopped = threading.Event()


def test_duration_ends_a_slow_live_stream_on_time(setup: Setup, tmp_path: Path) -> None:
    """``--duration 1`` on a stream sending a frame every 3 s ran 86 s (25 frames of stream
    time at the stated 25 fps; here, a frame every 2 s, 50 s): on a live source it is
    wall-clock time from the first frame, and the wait for the next frame ends with it; what
    finished is written then."""
    server = _StreamServer()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "aepose", "predict", f"http://127.0.0.1:{server.server_port}/cam",
         "--weights", str(setup.weights), "--out", str(out), "--device", "cpu", "--duration",
         "1", "--workers", "1", "--decode-workers", "0"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not (out / "predictions.json").exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "predictions.json not written in 30 s"
            time.sleep(0.02)
        written = time.monotonic()
        # The process exits once the read in progress returns (at the next frame): a thread
        # left inside FFmpeg's read while the process tore down crashed it (SIGSEGV).
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        server.stopped.set()
        server.shutdown()
        server.server_close()
    assert process.returncode == 0, err
    # From the first frame: the 1 s, then the frames in flight and the merge.
    assert written - server.sent[0] <= 3.0, err
    frames = json.loads((out / "predictions.json").read_text())["images"]
    assert 1 <= len(frames) <= 3 and (out / "cam.mp4").is_file()
