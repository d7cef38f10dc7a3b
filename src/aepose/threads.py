"""How many CPU threads torch uses in aepose, and how OpenMP's idle threads wait: one
choice for every entry point.

Why one thread: aepose's CPU work is mostly many small torch operations (decoding a crowd,
a small network's layers), each an OpenMP parallel region that ends at a barrier. With two
threads, as soon as another process wants a core, the thread the OS has descheduled holds
up every region, and with OpenMP's default spin-waiting the other thread burns its core
waiting. Measured on 2 cores that other jobs kept at a load of 8-13 (BENCHMARKS.md, "Under
contention"): on torch's default 2 threads, decoding a 94-person map ran 3-4x slower than on
1, a Predictor loop 6x, a training step 9-11x; HRNet-w32's 512-px forward pass, the largest
op aepose runs, was faster on 1 thread too (0.22 against 0.14 passes/s with passive
waiting). So aepose runs torch on **one intra-op thread** unless told otherwise, and its
parallelism comes from processes (decode workers, data-loader workers) whose threads never
wait on each other.

What is set, and when:

* ``aepose`` commands (:func:`prepare_command_line`, before torch loads):
  ``OMP_NUM_THREADS`` to the chosen count and ``OMP_WAIT_POLICY=PASSIVE`` (unless set), so
  that more threads, when asked for, sleep instead of spinning; both reach the command's
  worker processes.
* Python use (:func:`use_threads`): ``torch.set_num_threads`` once per process, at the
  first aepose call that runs torch (a :class:`~aepose.pipeline.predictor.Predictor`
  being built, any streamed prediction or evaluation, ``decode_poses``, training). The
  environment is left alone: OpenMP's wait policy can only be set before ``import torch``.
* Worker processes (:func:`use_worker_threads`): decode workers and training data-loader
  workers always run one thread each, whatever the override.

Override: the environment variable ``AEPOSE_THREADS=N`` (a positive whole number) sets the
count for commands and Python alike; ``torch.set_num_threads`` called after aepose's first
call also stays in force, since aepose sets it only once per process.
"""

from __future__ import annotations

import os

from aepose.errors import AeposeError

__all__ = ["DEFAULT_THREADS", "ENV_VAR", "WORKER_THREADS", "chosen_threads", "cpu_cores",
           "pinned_threads", "prepare_command_line", "use_threads", "use_worker_threads"]

ENV_VAR = "AEPOSE_THREADS"
"""The one override: torch's intra-op threads in aepose's main process."""
DEFAULT_THREADS = 1  # see the module docstring for the measurements behind it
WORKER_THREADS = 1  # a decode or data-loader worker is one core's worth of work

_applied_in: int | None = None  # the process (PID) that has had its count set


def pinned_threads() -> int | None:
    """The count :data:`ENV_VAR` asks for, or None when it is unset or empty; anything but a
    positive whole number is a one-line AeposeError."""
    text = os.environ.get(ENV_VAR, "").strip()
    if not text:
        return None
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise AeposeError(f"{ENV_VAR}={text!r}: give a positive whole number of threads "
                          f"(for example {ENV_VAR}=2), or unset it for aepose's default of "
                          f"{DEFAULT_THREADS}")
    return count


def chosen_threads() -> int:
    """torch's intra-op threads in aepose's main process: :data:`ENV_VAR`, else
    :data:`DEFAULT_THREADS`."""
    pinned = pinned_threads()
    return DEFAULT_THREADS if pinned is None else pinned


def cpu_cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def prepare_command_line() -> None:
    """For the command line, before torch loads: the chosen count as ``OMP_NUM_THREADS`` and
    passive waiting unless ``OMP_WAIT_POLICY`` is set (libgomp reads both when it loads).
    A bad :data:`ENV_VAR` is refused here, before any work."""
    os.environ["OMP_NUM_THREADS"] = str(chosen_threads())
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def use_threads() -> None:
    """Set torch's intra-op threads to :func:`chosen_threads`, the first time this is called
    in a process; later calls leave the count alone (a caller's own
    ``torch.set_num_threads`` then stays in force)."""
    global _applied_in
    if _applied_in == os.getpid():
        return
    count = chosen_threads()
    import torch  # here, not at the top: the command line imports this module without torch

    torch.set_num_threads(count)
    _applied_in = os.getpid()


def use_worker_threads() -> None:
    """One torch thread in a worker process (decoding, data loading), whatever
    :data:`ENV_VAR` says: the workers share the cores with the main process and each
    other."""
    global _applied_in
    import torch

    torch.set_num_threads(WORKER_THREADS)
    _applied_in = os.getpid()
