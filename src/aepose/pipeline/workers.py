"""Where post-processing runs beside the network: inline, in threads (GPU networks) or in
forked worker processes (CPU networks) that exit with their parent; and glibc's
keep-freed-memory setting for image-heavy commands."""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

import torch

from aepose.threads import use_worker_threads

__all__ = ["Inline", "decode_pool", "default_decode_workers", "keep_freed_memory"]


class Inline(Executor):
    """An executor that runs each call at once in the calling thread."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as error:  # handed to the caller through the future
            future.set_exception(error)
        return future


def default_decode_workers(device: torch.device) -> int:
    """Post-processing workers when none are asked for: on a GPU one thread (its kernels
    queue behind the network's anyway); on the CPU one process per core, at most 4 (on 2
    cores, aggregation and decoding of a crowd take twice the network's time: measured in
    BENCHMARKS.md, "Streamed pipeline")."""
    if device.type != "cpu":
        return 1
    return max(1, min(4, os.cpu_count() or 1))


def decode_pool(device: torch.device, workers: int | None) -> Executor:
    """Where post-processing runs: inline (0 workers; None: :func:`default_decode_workers`);
    threads on a GPU, where the maps stay on the device; processes on the CPU, each with one
    torch thread (:func:`aepose.threads.use_worker_threads`). Shut it down after use
    (``with decode_pool(...) as pool:``)."""
    if workers is None:
        workers = default_decode_workers(device)
    if workers <= 0:
        return Inline()
    if device.type != "cpu":
        return ThreadPoolExecutor(workers, "aepose-decode")
    # Forked, as torch's DataLoader workers are: in milliseconds, and a user's script needs
    # no __main__ guard (spawning re-imports it and takes seconds to import torch). Forking
    # is only safe before other threads hold locks, so every worker starts now, before
    # the stream starts its read threads.
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                               initializer=_worker_init, initargs=(os.getpid(),))
    for started in [pool.submit(os.getpid) for _ in range(workers)]:
        started.result()
    return pool


def keep_freed_memory() -> None:
    """Make glibc keep freed memory for reuse instead of returning it to the system, in
    every thread. Call it before the process starts threads.

    Every image allocates and frees maps of tens of MB; returned to the system, each new
    one is paid again in page faults, which measured more than half of aggregation's time
    (150 -> 55 ms per 640x480 image). The process then holds its peak heap, which the
    window bounds. Every thread allocates from the one main heap: a thread's own arena
    (glibc's default) unmaps each of its 64 MiB heaps as soon as it empties, whatever the
    trim threshold, so a network run in a thread (``aepose serve``'s batch workers) paid
    its activations' pages again on every call (HigherHRNet-w32, 8 images at 512: 2.7 M
    page faults and 21 s of CPU against 0.47 M and 15 s). No-op where the C library is not
    glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    for parameter in (_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD):
        if not libc.mallopt(parameter, 1 << 30):
            libc.mallopt(parameter, 32 << 20)  # older glibc: the largest it accepts
    libc.mallopt(_M_ARENA_MAX, 1)


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8  # mallopt's (malloc.h)


def _worker_init(parent: int) -> None:
    # Ctrl-C and SIGTERM reach the whole process group (a terminal, torchrun): the parent
    # stops the run and keeps what finished; workers stay quiet and exit with it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _exit_with_parent(parent)
    use_worker_threads()  # one core each, whatever AEPOSE_THREADS asks of the main process
    keep_freed_memory()


_PARENT_POLL_S = 0.5


def _exit_with_parent(parent: int) -> None:
    """End this worker within _PARENT_POLL_S once the process ``parent`` is gone.

    A parent killed outright (SIGKILL, the OOM killer) cannot shut its pool down, and a
    forked worker waiting for its next call never notices: it holds both ends of the call
    queue's pipe, and it would run for good, holding the parent's stdout and stderr too (a
    caller's ``subprocess.run(..., capture_output=True)`` never returns). An orphan is
    re-parented (to init or a subreaper), so a thread polls its parent's PID. Not Linux's
    PR_SET_PDEATHSIG: that fires when the *thread* that forked the worker ends, which may be
    any caller's thread, and does not exist on macOS. Not multiprocessing's parent sentinel
    (a pipe): every process the parent forks later (the next worker, a DataLoader worker)
    holds its write end too, so it may never close. ``parent`` is taken before the fork: a
    parent that died before this runs is noticed too.
    """
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(_PARENT_POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name="aepose-parent-watch", daemon=True).start()
