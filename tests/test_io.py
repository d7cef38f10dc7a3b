"""aepose.io: atomic writes that fail in one line and leave nothing behind, JSON reading,
strict JSON writing (NaN and infinities refused naming the file, by every writer of
results and predictions), writability checks and run-folder locks (across processes, and
after a kill)."""

from __future__ import annotations

import errno
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from aepose import io
from aepose.apps.predictions import PredictionWriter, merge_predictions
from aepose.engine.evaluation import write_results
from aepose.errors import AeposeError
from aepose.io import RunLock, atomic_write, check_writable, read_json, write_bytes, write_json
from aepose.pipeline.pose import Pose

ROOT = Path(__file__).resolve().parents[1]


def one_line(error: pytest.ExceptionInfo[AeposeError]) -> str:
    message = str(error.value)
    assert "\n" not in message and message
    return message


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_write_replaces_atomically_with_a_short_hidden_temporary(tmp_path: Path) -> None:
    seen: list[str] = []

    def writer(tmp: Path) -> None:
        seen.append(tmp.name)
        assert tmp.parent == tmp_path  # same folder: the rename stays on one file system
        tmp.write_bytes(b"new")

    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    assert atomic_write(target, writer) == target
    assert target.read_bytes() == b"new" and listing(tmp_path) == ["out.bin"]
    assert len(seen[0]) == len(".aepose-12345678.tmp") and seen[0].startswith(".aepose-")


def test_long_target_names_fit(tmp_path: Path) -> None:
    target = tmp_path / ("x" * 240 + ".png")  # 244 characters: no room for a longer temporary
    write_bytes(target, b"data")
    assert target.read_bytes() == b"data"
    with pytest.raises(AeposeError) as error:  # 256: the OS's limit, in one line
        write_bytes(tmp_path / ("y" * 252 + ".png"), b"data")
    assert "File name too long" in one_line(error) and "yyyy" in str(error.value)
    assert listing(tmp_path) == [target.name]


def test_interrupted_write_keeps_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "results.json"
    write_json(target, {"a": 1})

    def dies(tmp: Path) -> None:
        tmp.write_bytes(b"{\"a\": 2, \"trunc")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, dies)
    assert read_json(target, "results") == {"a": 1}
    assert listing(tmp_path) == ["results.json"]


def test_full_disk_is_one_line_and_leaves_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "predictions.json"
    write_json(target, [1, 2])

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(io.os, "fsync", no_space)
    with pytest.raises(AeposeError) as error:
        write_json(target, [3])
    assert one_line(error) == f"cannot write {target}: No space left on device"
    monkeypatch.undo()
    assert read_json(target, "x") == [1, 2] and listing(tmp_path) == [target.name]


def test_path_under_a_file_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(AeposeError) as error:
        write_bytes(blocker / "sub" / "x.bin", b"")
    assert one_line(error).startswith(f"cannot write {blocker / 'sub' / 'x.bin'}: ")
    with pytest.raises(AeposeError, match="it is a file, not a folder"):
        check_writable(blocker)
    with pytest.raises(AeposeError, match="Not a directory"):
        check_writable(blocker / "sub")


def test_read_only_folder_is_refused_before_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        if os.geteuid() == 0:  # root writes anywhere: simulate the file system's refusal
            real_open = os.open

            def read_only(path: object, flags: int, *args: int) -> int:
                if flags & os.O_CREAT:
                    raise OSError(errno.EROFS, os.strerror(errno.EROFS))
                return real_open(path, flags, *args)  # type: ignore[arg-type]

            monkeypatch.setattr(io.os, "open", read_only)
        with pytest.raises(AeposeError) as error:
            check_writable(folder)
        assert one_line(error).startswith(f"cannot write to {folder}: ")
        with pytest.raises(AeposeError) as error:
            write_bytes(folder / "x.png", b"")
        assert one_line(error).startswith(f"cannot write {folder / 'x.png'}: ")
    finally:
        monkeypatch.undo()
        folder.chmod(0o700)
    assert listing(folder) == []


def test_check_writable_creates_the_folder_and_leaves_it_empty(tmp_path: Path) -> None:
    assert check_writable(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert listing(tmp_path / "a" / "b") == []


def test_read_json_errors_are_one_line(tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(AeposeError) as error:
        read_json(deep, "annotation")
    assert one_line(error) == f"annotation file {deep} is nested too deeply to be read"
    with pytest.raises(AeposeError, match="not found"):
        read_json(tmp_path / "missing.json", "results")
    with pytest.raises(AeposeError, match="is a folder"):
        read_json(tmp_path, "results")
    (tmp_path / "bad.json").write_bytes(b"\xff\xfe{")
    with pytest.raises(AeposeError, match="not valid JSON"):
        read_json(tmp_path / "bad.json", "results")


NOT_JSON = "is not a JSON number (NaN and infinities have no JSON form)"


@pytest.mark.parametrize(("data", "where"), [
    ({"people": [{"score": math.inf}]}, "people[0].score = inf"),
    ([{"keypoints": [1.0, math.nan, 2.0]}], "[0].keypoints[1] = nan"),
    (-math.inf, "the value = -inf")], ids=["dict", "list", "number"])
def test_write_json_refuses_non_finite_numbers_naming_the_file(
        tmp_path: Path, data: object, where: str) -> None:
    # json.dumps writes them as NaN and Infinity, which strict JSON readers refuse.
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(AeposeError) as error:
        write_json(target, data, what="results")
    assert one_line(error) == f"cannot write results {target}: {where} {NOT_JSON}"
    assert target.read_text() == "old" and listing(tmp_path) == ["out.json"]


def test_json_text_leaves_other_faults_to_the_caller() -> None:
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="Circular reference") as error:
        io.json_text(loop, "x.json")
    assert not isinstance(error.value, AeposeError)


def test_results_and_predictions_refuse_non_finite_numbers(tmp_path: Path) -> None:
    with pytest.raises(AeposeError) as error:
        write_results(tmp_path / "results.json", [{"image_id": 1, "score": math.nan}])
    assert one_line(error) == (f"cannot write {tmp_path / 'results.json'}: "
                               f"[0].score = nan {NOT_JSON}")
    with PredictionWriter(tmp_path, {"a.png": 0}) as writer, \
            pytest.raises(AeposeError) as error:
        writer.add({"file_name": "a.png"}, [Pose(np.ones((3, 3), np.float32), math.inf)])
    assert one_line(error) == (f"cannot write {tmp_path / 'predictions.jsonl'}: "
                               f"people[0].score = inf {NOT_JSON}")
    # A partial file holding a NaN (as Python's json writes it) is not merged into one.
    (tmp_path / "predictions.jsonl").write_text(
        '{"order": [0, 0], "file_name": "a.png", "people": [{"keypoints": [[1, 1, 1]], '
        '"score": NaN, "bbox": [1, 1, 0, 0]}]}\n')
    with pytest.raises(AeposeError) as error:
        merge_predictions(tmp_path, {"preset": "x"})
    assert one_line(error) == (f"cannot write {tmp_path / 'predictions.json'}: "
                               f"people[0].score = nan {NOT_JSON}")
    assert not (tmp_path / "predictions.json").exists()


def _hold_lock(folder: Path) -> subprocess.Popen[str]:
    """Another process that takes the lock, says so, and sleeps."""
    code = ("import sys, time; from aepose.io import RunLock\n"
            "with RunLock(sys.argv[1]):\n    print('locked', flush=True); time.sleep(60)\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    holder = subprocess.Popen([sys.executable, "-c", code, str(folder)], env=env,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    return holder


def test_second_run_lock_is_refused_until_the_holder_dies(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    holder = _hold_lock(folder)
    try:
        with pytest.raises(AeposeError) as error, RunLock(folder):
            pass
        assert one_line(error) == (
            f"{folder} is in use by another aepose run (pid {holder.pid}); wait for it to "
            "finish or choose another output folder")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    deadline = time.monotonic() + 10
    while True:  # the kernel releases the flock with the dead process's files
        try:
            with RunLock(folder) as lock:
                assert lock.held
            break
        except AeposeError:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert not lock.held


def test_run_lock_deletes_what_a_killed_run_left_and_nothing_else(tmp_path: Path) -> None:
    debris = [".aepose-0123abcd.tmp", ".aepose-deadbeef.tmp.mp4"]
    kept = [".aepose-xyz.tmp", "notes.tmp", "a.aepose-0123abcd.tmp", "sub/.aepose-0123abcd.tmp"]
    (tmp_path / "sub").mkdir()
    for name in debris + kept:
        (tmp_path / name).write_bytes(b"x")
    with RunLock(tmp_path):
        live = tmp_path / ".aepose-00000000.tmp"  # the holder's own file, being written
        live.write_bytes(b"x")
        with pytest.raises(AeposeError, match="in use"):
            RunLock(tmp_path).acquire()  # a refused second run deletes nothing
        assert live.exists()
    assert not any((tmp_path / name).exists() for name in debris)
    assert all((tmp_path / name).exists() for name in kept)


def test_interrupt_after_holds_ctrl_c_until_the_block_ends() -> None:
    finished = []
    with pytest.raises(KeyboardInterrupt), io.interrupt_after():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # the signal is handled (held) here, not raised
        finished.append(True)
    assert finished == [True]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with io.interrupt_after():  # no Ctrl-C: nothing raised
        finished.append(True)
    assert finished == [True, True]


def test_sigterm_raises_terminated_and_is_held_like_ctrl_c() -> None:
    from aepose.errors import Terminated

    previous = signal.getsignal(signal.SIGTERM)
    try:
        io.terminate_as_interrupt()
        finished = []
        with pytest.raises(Terminated), io.interrupt_after():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)  # held here, like Ctrl-C
            finished.append(True)
        assert finished == [True] and io.terminated()
        with pytest.raises(KeyboardInterrupt):  # Terminated is one: Ctrl-C's paths apply
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
    finally:
        signal.signal(signal.SIGTERM, previous)
        io._TERMINATED.clear()


def test_run_lock_is_exclusive_within_a_process_and_reusable(tmp_path: Path) -> None:
    with RunLock(tmp_path), pytest.raises(AeposeError, match="in use by another aepose run"):
        RunLock(tmp_path).acquire()
    with RunLock(tmp_path):  # released on exit
        pass
    assert listing(tmp_path) == []  # the lock file goes with the lock
    (tmp_path / "file").write_text("")
    with pytest.raises(AeposeError, match="not a folder"):
        RunLock(tmp_path / "file").acquire()


def test_a_killed_holder_leaves_a_stale_file_that_the_next_run_takes_over(
    tmp_path: Path,
) -> None:
    holder = _hold_lock(tmp_path)
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    assert listing(tmp_path) == [io.LOCK_NAME]  # kill -9: no chance to delete it
    with RunLock(tmp_path):
        assert (tmp_path / io.LOCK_NAME).read_text() == f"{os.getpid()}\n"
    assert listing(tmp_path) == []


def test_a_lock_taken_on_a_deleted_file_is_taken_again_on_the_new_one(tmp_path: Path) -> None:
    """The holder deletes the file when it releases: a waiter that opened the old file
    must not count the lock it then gets on it (a third process could lock the new one)."""
    path = tmp_path / "x.lock"
    first, second = io.FileLock(path), io.FileLock(path)
    first.acquire(lambda fd: pytest.fail("nobody holds it yet"))
    seen: list[int] = []

    def release_first(fd: int) -> None:  # called while ``first`` holds it: let it go
        seen.append(os.fstat(fd).st_ino)
        first.release()

    fd = second.acquire(release_first)
    assert second.held and not first.held and len(seen) == 1
    assert os.fstat(fd).st_ino == os.stat(path).st_ino  # the file at the path, not the old one
    second.release()
    assert not path.exists()


def test_claim_run_folder_refuses_under_the_lock_and_lets_go_on_refusal(tmp_path: Path) -> None:
    checked: list[bool] = []

    def refuse_old(folder: Path) -> None:
        checked.append((folder / io.LOCK_NAME).is_file())  # called with the lock held
        if (folder / "old.json").exists():
            raise AeposeError(f"{folder} holds old.json")

    with io.claim_run_folder(tmp_path / "run", refuse_old) as folder:
        assert folder == tmp_path / "run" and checked == [True]
        (folder / "old.json").write_text("{}")
        with pytest.raises(AeposeError, match="in use by another aepose run"), \
                io.claim_run_folder(folder, refuse_old):
            pass
        assert checked == [True]  # a folder in use is refused before the check
    with pytest.raises(AeposeError, match=r"holds old\.json"), \
            io.claim_run_folder(tmp_path / "run", refuse_old):
        pass
    assert listing(tmp_path / "run") == ["old.json"]  # refused: the lock is gone at once
    with io.claim_run_folder(tmp_path / "run"):  # no check: any folder will do
        pass
