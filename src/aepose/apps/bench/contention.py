"""A bounded background CPU load for measuring under contention: one busy-looping child
process, one core's worth of work, stopped on leaving the ``with`` block (also on an
error or Ctrl-C), at the interpreter's exit, and by itself after a time cap or once its
parent is gone."""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import subprocess
import sys
from collections.abc import Iterator

from aepose.errors import AeposeError

__all__ = ["BUSY_CAP_S", "busy_core"]

BUSY_CAP_S = 600.0
"""The longest a busy loop runs, whoever forgets to stop it."""

# One thread spinning on pure Python; every ~10 ms it checks its deadline and its parent.
_LOOP = """
import os, sys, time
parent, end = int(sys.argv[1]), time.monotonic() + float(sys.argv[2])
while time.monotonic() < end and os.getppid() == parent:
    for _ in range(100_000):
        pass
"""


@contextlib.contextmanager
def busy_core(cap_s: float = BUSY_CAP_S) -> Iterator[subprocess.Popen[bytes]]:
    """Keep one core busy while the block runs (at most ``cap_s`` seconds); yields the
    busy-looping child process. It is pinned to this process's last allowed core where the
    OS allows, so that it contends with whatever runs there."""
    if not 0 < cap_s <= BUSY_CAP_S:
        raise AeposeError(f"a busy core runs for (0, {BUSY_CAP_S:g}] seconds, got {cap_s}")
    child = subprocess.Popen([sys.executable, "-c", _LOOP, str(os.getpid()), str(cap_s)],
                             stdin=subprocess.DEVNULL)
    stop = functools.partial(_stop, child)  # its own entry: nested loads stay registered
    atexit.register(stop)
    try:
        with contextlib.suppress(AttributeError, OSError):  # no affinity on macOS
            os.sched_setaffinity(child.pid, {max(os.sched_getaffinity(0))})
        yield child
    finally:
        stop()
        atexit.unregister(stop)


def _stop(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is None:
        child.kill()
    child.wait()
