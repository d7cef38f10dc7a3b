"""The one place files are read and written: JSON, atomic writes, writability, run locks.

Every write goes through :func:`atomic_write`: the bytes land in a temporary file with a
short unique name in the target's folder (``.aepose-<8 hex>.tmp``: short, so a 244-character
target name still fits the 255-byte limit; hidden, so folder scans skip it; unique, so two
writers never share it), are flushed to disk and renamed over the target. Readers see the
old file or the whole new one; on any failure the temporary file is removed and the target
is untouched. An operating-system failure (read-only file system, a path under a file, a
full disk, a name too long) becomes one :class:`~aepose.errors.AeposeError` line naming the
file and the reason.

:func:`check_writable` proves a folder writable before long work starts;
:func:`claim_run_folder` holds a run folder for one run (a :class:`RunLock`: a second live
run into it is refused) and refuses an earlier run's outputs. :class:`FileLock` is the one
file lock (run folders, the weights cache).
"""

from __future__ import annotations

import errno
import fcntl
import json
import math
import os
import re
import secrets
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from aepose.errors import AeposeError, Terminated

__all__ = [
    "LOCK_NAME",
    "AtomicFile",
    "FileLock",
    "RunLock",
    "atomic_write",
    "check_writable",
    "claim_run_folder",
    "interrupt_after",
    "json_text",
    "note_terminated",
    "read_json",
    "terminate_as_interrupt",
    "terminated",
    "write_bytes",
    "write_json",
    "write_text",
]

LOCK_NAME = ".aepose.lock"  # hidden, like the temporary files: folder scans skip it
_FILE_MODE = 0o644  # results are meant to be shared; the user's umask still applies


def _reason(err: OSError) -> str:
    """The OS's own words for ``err`` ("Read-only file system", "No space left on device")."""
    return err.strerror or str(err)


def _temporary_name(folder: Path, suffix: str = "") -> Path:
    return folder / f".aepose-{secrets.token_hex(4)}.tmp{suffix}"


_TEMPORARY = re.compile(r"\.aepose-[0-9a-f]{8}\.tmp(\.\w+)?")  # names _temporary_name makes


def terminate_as_interrupt() -> None:
    """From now on SIGTERM raises :class:`~aepose.errors.Terminated` (a KeyboardInterrupt) in
    the main thread, so every command keeps its finished work on SIGTERM as on Ctrl-C.
    Call it from the main thread, before worker processes are forked (they reset it)."""
    signal.signal(signal.SIGTERM, _terminate)


def terminated() -> bool:
    """Whether SIGTERM stopped this process's command (it then ends with status 143)."""
    return _TERMINATED.is_set()


def note_terminated() -> None:
    """Record that SIGTERM stopped the command (for a handler of its own, as training's)."""
    _TERMINATED.set()


_TERMINATED = threading.Event()


def _terminate(signum: int, frame: FrameType | None) -> None:
    _TERMINATED.set()
    raise Terminated


_HELD = {signal.SIGINT: (signal.default_int_handler, KeyboardInterrupt),
         signal.SIGTERM: (_terminate, Terminated)}
"""Signals :func:`interrupt_after` holds when they are set to raise: the handler that
raises, and what it raises."""


@contextmanager
def interrupt_after() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT), and SIGTERM where :func:`terminate_as_interrupt` made it raise,
    until the block ends, then raise ``KeyboardInterrupt`` (or ``Terminated``).

    For writes that must not be cut in two: an interrupt inside PyAV's encode-and-mux of a
    frame lost packets the encoder had already given up (a frame missing from the middle
    of a video), and one while results are merged left the previous run's files in place.
    Blocks are short, so the wait is too. Outside the main thread, or for a signal whose
    handler does not raise (another handler is installed), the block runs as it is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = [s for s, (handler, _) in _HELD.items() if signal.getsignal(s) is handler]
    caught: list[int] = []
    previous = {s: signal.signal(s, lambda signum, _: caught.append(signum)) for s in held}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if signal.SIGTERM in caught:
            _TERMINATED.set()
        if caught:
            raise _HELD[signal.Signals(caught[0])][1]


def read_json(path: str | Path, what: str) -> Any:
    """The parsed JSON file ``path``; a missing, unreadable, malformed or absurdly nested file
    raises a one-line AeposeError naming it as the ``what`` file (e.g. "annotation")."""
    file = Path(path)
    try:
        with file.open(encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise AeposeError(f"{what} file {file} not found") from None
    except IsADirectoryError:
        raise AeposeError(f"{what} file {file} is a folder, not a file") from None
    except OSError as err:
        raise AeposeError(f"cannot read {what} file {file}: {_reason(err)}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise AeposeError(f"{what} file {file} is not valid JSON: {err}") from None
    except RecursionError:
        # The decoder recurses once per nesting level; no real file nests this deep.
        raise AeposeError(f"{what} file {file} is nested too deeply to be read") from None


def atomic_write(path: str | Path, writer: Callable[[Path], None], *, what: str = "") -> Path:
    """Create or replace ``path`` atomically with what ``writer(temporary_path)`` writes.

    ``writer`` receives the temporary file's path (already created, empty) and writes the
    whole content there; any library that writes to a path works (torch.save, onnx, ...).
    Missing parent folders are created. Returns ``path`` as a :class:`Path`. ``what`` names
    the kind of file in messages ("image" gives "cannot write image PATH: reason").

    Raises:
        AeposeError: one line naming ``path`` when the operating system refuses (read-only,
            full, a parent that is a file, a name too long). Exceptions of ``writer`` itself
            propagate unchanged; either way the temporary file is gone and ``path`` is as
            it was.
    """
    file = AtomicFile(path, what=what)
    try:
        writer(file.tmp)
    except OSError as err:
        file.discard()
        raise AeposeError(f"cannot write {file.name}: {_reason(err)}") from None
    except BaseException:  # the writer's own errors and Ctrl-C: no debris either way
        file.discard()
        raise
    return file.commit()


class AtomicFile:
    """A file written under a temporary name and renamed into place: the steps of
    :func:`atomic_write`, for writers that fill the file over time (a video, frame by frame).

    ``tmp`` is reserved at construction (missing folders are created); write it, then
    :meth:`commit` (flush to disk, rename over ``path``) or :meth:`discard`. ``suffix`` ends
    the temporary name, for libraries that choose a format by extension (``".mp4"``).
    Operating-system failures are one AeposeError line naming ``path`` (as ``what``).
    """

    def __init__(self, path: str | Path, *, what: str = "", suffix: str = "") -> None:
        self.path = Path(path)
        self.name = f"{what} {self.path}" if what else str(self.path)
        try:
            _make_folder(self.path.parent)
            self.tmp = _reserve(self.path.parent, suffix)
        except OSError as err:
            raise AeposeError(f"cannot write {self.name}: {_reason(err)}") from None

    def commit(self) -> Path:
        """Flush the temporary file to disk and rename it to ``path``; returns ``path``."""
        try:
            _fsync(self.tmp)
            os.replace(self.tmp, self.path)
        except OSError as err:
            self.discard()
            raise AeposeError(f"cannot write {self.name}: {_reason(err)}") from None
        return self.path

    def discard(self) -> None:
        """Remove the temporary file; ``path`` stays as it was."""
        self.tmp.unlink(missing_ok=True)


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # mkdir's words for "a file sits where a folder must be"
        raise NotADirectoryError(errno.ENOTDIR, f"{folder} is a file, not a folder") from None


def _reserve(folder: Path, suffix: str = "") -> Path:
    """A new, empty temporary file in ``folder``, created exclusively (never shared)."""
    while True:
        tmp = _temporary_name(folder, suffix)
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE))
            return tmp
        except FileExistsError:  # 1 in 4 billion: draw another name
            continue


def _fsync(file: Path) -> None:
    # The rename must not reach the disk before the data, or a power cut leaves an empty file.
    fd = os.open(file, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes(path: str | Path, data: bytes, *, what: str = "") -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda tmp: _write_all(tmp, data), what=what)


def _write_all(tmp: Path, data: bytes) -> None:
    with open(tmp, "wb") as f:
        f.write(data)


def write_text(path: str | Path, text: str, *, what: str = "") -> Path:
    """Write ``text`` as UTF-8 to ``path`` atomically (see :func:`atomic_write`)."""
    return write_bytes(path, text.encode("utf-8"), what=what)


def write_json(path: str | Path, data: Any, *, sort_keys: bool = False,
               indent: int | None = None, what: str = "") -> Path:
    """Write ``data`` as JSON to ``path`` atomically (see :func:`atomic_write`).

    The text is made in memory first (:func:`json_text`), so data that is not JSON (a set,
    say) raises its TypeError, and a NaN or infinite number its AeposeError, before
    anything touches the disk.
    """
    name = f"{what} {path}" if what else str(path)
    return write_text(path, json_text(data, name, sort_keys=sort_keys, indent=indent),
                      what=what)


def json_text(data: Any, name: str | Path, *, sort_keys: bool = False,
              indent: int | None = None) -> str:
    """``data`` as JSON text, for the file ``name``: results, predictions and every
    :func:`write_json` file (numbers from a network among them) are made here.

    ``json.dumps`` would write NaN and infinities as ``NaN`` and ``Infinity``, which are not
    JSON (strict readers refuse the whole file): they raise one AeposeError naming the file
    and where the number is (``people[0].score = inf``) instead.
    """
    try:
        return json.dumps(data, sort_keys=sort_keys, indent=indent, allow_nan=False)
    except ValueError:
        where = _non_finite(data)
        if where is None:  # another fault (a circular reference): the caller's bug
            raise
        raise AeposeError(f"cannot write {name}: {where} is not a JSON number (NaN and "
                          "infinities have no JSON form)") from None


def _non_finite(data: Any) -> str | None:
    """``path = value`` of the first NaN or infinite float in ``data`` (depth first, in
    order), or None. A loop (a list holding itself) is walked once."""
    stack: list[tuple[str, Any]] = [("", data)]
    seen: set[int] = set()
    while stack:
        where, value = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            return f"{where or 'the value'} = {value}"
        if id(value) in seen:
            continue
        if isinstance(value, dict):
            children = [(f"{where}.{k}" if where else str(k), v) for k, v in value.items()]
        elif isinstance(value, list | tuple):
            children = [(f"{where}[{i}]", v) for i, v in enumerate(value)]
        else:
            continue
        seen.add(id(value))
        stack.extend(reversed(children))
    return None


def check_writable(folder: str | Path) -> Path:
    """Create ``folder`` if needed and prove it writable by creating and removing a file.

    Call it before long work starts, so an unwritable output costs one line, not the work.
    """
    where = Path(folder)
    if where.exists() and not where.is_dir():
        raise AeposeError(f"cannot write to {where}: it is a file, not a folder")
    try:
        _make_folder(where)
        _reserve(where).unlink()
    except OSError as err:
        raise AeposeError(f"cannot write to {where}: {_reason(err)}") from None
    return where


def _remove_debris(folder: Path) -> None:
    """Delete the temporary files a killed run left in ``folder`` (a ``kill -9`` gives it
    no chance to): called by the lock's holder, the only process writing there, so none of
    them is in use."""
    for path in folder.glob(".aepose-*.tmp*"):
        if _TEMPORARY.fullmatch(path.name):
            with suppress(OSError):  # not ours to delete after all: leave it
                path.unlink()


def _same_file(path: Path, fd: int) -> bool:
    """Whether ``fd`` is the file now at ``path`` (not one an earlier holder deleted)."""
    try:
        there = os.stat(path)
    except FileNotFoundError:
        return False
    here = os.fstat(fd)
    return (there.st_dev, there.st_ino) == (here.st_dev, here.st_ino)


class FileLock:
    """An exclusive ``flock`` on the file ``path``, held by one live process at a time.

    The one lock policy of aepose (run folders and the weights cache): the kernel drops the
    ``flock`` when its holder exits or dies, so a killed process never leaves a stale lock,
    only a stale file that the next holder takes over; a holder that releases deletes the
    file, so a finished run leaves none. Deleting before closing, and checking after locking
    that the file locked is still the one at ``path``, keeps two processes from ever holding
    locks on two different files of one name. The holder writes its pid into the file, for
    the messages of the processes it keeps waiting (:meth:`holder`).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    def acquire(self, on_busy: Callable[[int], None], *, poll_s: float | None = None) -> int:
        """Take the lock and return its open descriptor (of ``path``, created if missing).

        While another process holds it, ``on_busy(fd)`` is called: it raises to give up
        (``fd`` is closed then), or returns to wait. Without ``poll_s`` it is called once and
        the wait lasts until the holder lets go; with ``poll_s`` the lock is tried again every
        ``poll_s`` seconds and ``on_busy`` is called before each try, so that it can bound
        the wait (by time, or by what the holder is seen doing).
        """
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, _FILE_MODE)
            try:
                if not _try_lock(fd):
                    on_busy(fd)
                    if poll_s is None:
                        fcntl.flock(fd, fcntl.LOCK_EX)
                    else:
                        while not _try_lock(fd):
                            time.sleep(poll_s)
                            on_busy(fd)
                # The holder before deletes the file; locked after that, this is a lock on
                # a file nobody else sees: start over on the one at ``path``.
                if _same_file(self.path, fd):
                    os.ftruncate(fd, 0)
                    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
                    self._fd = fd
                    return fd
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)

    @staticmethod
    def holder(fd: int) -> str:
        """The pid the holder wrote into the lock file open as ``fd`` ("unknown" while the
        file is still empty)."""
        return os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"

    def release(self) -> None:
        """Delete the file and give the lock up (closing the file releases the flock)."""
        if self._fd is not None:
            self.path.unlink(missing_ok=True)
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._fd is not None


def _try_lock(fd: int) -> bool:
    """Take the ``flock`` of ``fd`` if no other process holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


class RunLock:
    """Exclusive use of a run folder by one live process, as a context manager.

    The lock is a :class:`FileLock` on ``FOLDER/.aepose.lock``, which holds the owner's pid
    for the message a second run gets. Taking the lock deletes the temporary files
    (``.aepose-<8 hex>.tmp*``) that a killed run left in the folder.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._lock = FileLock(self.folder / LOCK_NAME)

    def acquire(self) -> None:
        """Take the lock, or raise one line naming the folder and the holder's pid."""
        check_writable(self.folder)
        try:
            self._lock.acquire(self._refuse)
        except OSError as err:
            raise AeposeError(f"cannot lock {self.folder}: {_reason(err)}") from None
        _remove_debris(self.folder)

    def _refuse(self, fd: int) -> None:
        raise AeposeError(
            f"{self.folder} is in use by another aepose run (pid {FileLock.holder(fd)}); wait "
            "for it to finish or choose another output folder")

    def release(self) -> None:
        """Give the lock up and delete the lock file."""
        self._lock.release()

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._lock.held

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


@contextmanager
def claim_run_folder(folder: str | Path,
                     refuse: Callable[[Path], None] | None = None) -> Iterator[Path]:
    """Hold ``folder`` for one run of ``train``, ``test`` or ``predict``; yields it.

    Everything that could refuse the run's outputs does so here, before any work: a folder
    that cannot be written (one line naming it and the reason), one that another live run
    holds (:class:`RunLock`), and then whatever ``refuse(folder)`` raises as
    :class:`~aepose.errors.AeposeError` while the lock is held: an earlier run's outputs this
    run would mix with or replace (it may also delete outputs it is told to replace). On a
    refusal the lock is given up at once; otherwise it is held until the block ends, and its
    file is deleted then.
    """
    with RunLock(folder) as lock:
        if refuse is not None:
            refuse(lock.folder)
        yield lock.folder
