"""Dynamic batching: :class:`Batcher` runs the images of concurrent requests as one batch
through the one driver (:func:`aepose.pipeline.run.run`).

Requests are queued as :class:`Job` objects. Each device has a worker of
:data:`RUNNERS_PER_DEVICE` threads; a thread takes the oldest job and, while the device is
busy with another batch, waits up to ``max_wait_ms`` from its arrival for others (an idle
device runs what is queued at once: no request waits for company that a free device does
not need), up to ``max_batch`` in all, and runs them through ``run()`` as one list of
inputs: the stream batches the images of equal network-input size into shared forward
passes. The device's threads take turns in the
network (its Predictors share one forward lock, :func:`locked_maker`) and overlap the rest:
while one runs a batch's forward pass, the other gathers the next batch, or decodes and
answers the last one, so the network never waits for a decoding. Jobs whose test settings
differ (the flip test, max_people) run as separate groups of the same turn, each through a
:class:`~aepose.pipeline.predictor.Predictor` of its settings on the worker's network. Each
job gets its own :class:`~aepose.pipeline.prediction.Prediction`, matched by its position in
the list. A batch of several images is decoded in the worker's decode pool (on the CPU,
processes: the batch's images are decoded side by side, where the thread alone would decode
them one after another; decoding is about half of a small network's time); so is one image
beside other work, and one image that is the worker's only work is decoded in its thread,
which costs no hand-over (:meth:`Batcher._alone`). The queue is bounded in jobs and in
bytes of decoded image: past either, :meth:`Batcher.reserve` raises :class:`QueueFull` at
once.

The driver runs with no person-score threshold and no keypoint threshold: those are each
request's (see :func:`kept`), applied to its own Prediction.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field

import numpy as np

from aepose.errors import AeposeError
from aepose.pipeline.inputs import Input, Inputs
from aepose.pipeline.pose import Pose
from aepose.pipeline.prediction import Prediction
from aepose.pipeline.predictor import Predictor
from aepose.pipeline.run import RunOptions, run
from aepose.serve.limits import ServeLimits
from aepose.serve.metrics import Metrics

__all__ = ["RUNNERS_PER_DEVICE", "Batcher", "Job", "PredictorKey", "QueueFull", "kept",
           "locked_maker"]

PredictorKey = tuple[bool, int]
"""A request's network-side test settings: (flip, max_people)."""
logger = logging.getLogger("aepose")
_PREDICTORS_PER_THREAD = 8  # settings kept built; others are rebuilt (cheap) when asked
RUNNERS_PER_DEVICE = 2
"""Threads per device's worker: two keep the network busy (one runs its forward pass while
the other prepares, decodes and answers); more would only queue at the forward lock."""


class QueueFull(Exception):  # noqa: N818  (a refusal, reported as 503)
    """The queue holds its most jobs or bytes: come back later."""


@dataclass(eq=False)
class Job:
    """One image to run: RGB uint8 [H, W, 3], its settings, and where its result goes;
    ``nbytes``: what its :meth:`Batcher.reserve` held for it."""

    image: np.ndarray
    key: PredictorKey
    nbytes: int
    future: Future[Prediction] = field(default_factory=Future)
    arrived: float = field(default_factory=time.monotonic)


def kept(poses: Sequence[Pose], min_score: float) -> list[Pose]:
    """The people of a batch's Prediction that a request's ``min_score`` keeps. The batch ran
    the pose NMS on everyone first; filtering after it keeps the same people as filtering
    before (a person is only ever suppressed by a better-scored one, who scores at least
    ``min_score`` whenever the suppressed one does)."""
    return list(poses) if min_score <= 0 else [p for p in poses if p.score >= min_score]


class Batcher:
    """The queue and its workers: ``predictors[i](key)`` gives worker i's Predictor for a
    job's settings (one worker per device, :data:`RUNNERS_PER_DEVICE` threads each: build
    them with :func:`locked_maker` so that the threads take turns in the network);
    ``decoders[i]``, when given, the executor (:func:`~aepose.pipeline.workers.decode_pool`)
    that decodes worker i's batches of several images, shut down by :meth:`stop`."""

    def __init__(self, predictors: Sequence[Callable[[PredictorKey], Predictor]],
                 limits: ServeLimits, metrics: Metrics, pose_nms: float | None,
                 decoders: Sequence[Executor] | None = None) -> None:
        self.limits, self.metrics = limits, metrics
        self.options = RunOptions(batch_size=limits.max_batch, decode_workers=0,
                                  min_score=0.0, pose_nms=pose_nms, keypoint_threshold=0.0,
                                  tracker=None)
        self._queue: collections.deque[Job] = collections.deque()
        # Jobs for one worker alone (the warm-up of each device), run before the queue's.
        self._pinned: list[collections.deque[Job]] = [collections.deque() for _ in predictors]
        self._held = 0  # bytes of the jobs reserved, queued or running
        self._decoding = 0  # places reserved, not yet submitted
        self._running = [0] * len(predictors)  # each worker's threads holding a batch
        self._stopping = False
        self._wake = threading.Condition()
        self._decoders: list[Executor | None] = (list(decoders) if decoders is not None
                                                 else [None] * len(predictors))
        self._threads = [threading.Thread(target=self._work, args=(i, make), daemon=True,
                                          name=f"aepose-batch-{i}.{r}")
                         for i, make in enumerate(predictors)
                         for r in range(RUNNERS_PER_DEVICE)]
        for thread in self._threads:
            thread.start()

    def reserve(self, nbytes: int) -> None:
        """Hold a place in the queue and ``nbytes`` of its memory for an image about to be
        decoded (so that decoding happens within the bounds too); :class:`QueueFull` when
        ``limits.queue`` requests are waiting or being decoded, or ``limits.queue_mb`` would
        be passed (an image alone is always taken when nothing is held). Then
        :meth:`submit` the job, or :meth:`release` the place."""
        with self._wake:
            if self._stopping:
                raise QueueFull("the server is shutting down")
            if len(self._queue) + self._decoding >= self.limits.queue or (
                    self._held and self._held + nbytes > self.limits.queue_bytes):
                raise QueueFull(f"the queue is full ({len(self._queue)} requests waiting)")
            self._held += nbytes
            self._decoding += 1

    def release(self, nbytes: int) -> None:
        """Give back a reserved place that will not be submitted."""
        with self._wake:
            self._held -= nbytes
            self._decoding -= 1
            self._wake.notify_all()

    def submit(self, job: Job, worker: int | None = None) -> Future[Prediction]:
        """Queue ``job`` in the place reserved for it (:meth:`reserve` of ``job.nbytes``);
        ``worker``: for that worker alone, as a batch of its own (each device's warm-up)."""
        with self._wake:
            self._decoding -= 1
            (self._queue if worker is None else self._pinned[worker]).append(job)
            self.metrics.queue_depth = len(self._queue)
            self._wake.notify_all()  # a stopping worker may be waiting for the last one
        return job.future

    @property
    def workers(self) -> int:
        """The number of workers (devices)."""
        return len(self._pinned)

    def stop(self) -> None:
        """Refuse new jobs, finish the queued ones and those being decoded, and end the
        workers."""
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        for thread in self._threads:
            thread.join()
        for pool in self._decoders:
            if pool is not None:
                pool.shutdown(wait=True)

    def _take(self, worker: int) -> list[Job] | None:
        """``worker``'s next batch: a job pinned to it alone, else the oldest job and those
        queued with it, ``max_batch`` at most, waiting for more up to ``max_wait_ms`` from
        its arrival while another of the worker's threads holds a batch; None once stopping
        with nothing queued or being decoded."""
        wait_s = self.limits.max_wait_ms / 1000.0
        pinned = self._pinned[worker]
        with self._wake:
            while True:  # until a batch: another worker may take the jobs waited for
                while not self._queue and not pinned:
                    if self._stopping and not self._decoding:
                        return None
                    self._wake.wait()
                if pinned:
                    self._running[worker] += 1
                    return [pinned.popleft()]
                deadline = self._queue[0].arrived + wait_s
                while (0 < len(self._queue) < self.limits.max_batch and not self._stopping
                       and not pinned and self._running[worker]):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._wake.wait(left)
                if self._queue and not pinned:
                    break
            count = min(self.limits.max_batch, len(self._queue))
            jobs = [self._queue.popleft() for _ in range(count)]
            self.metrics.queue_depth = len(self._queue)
            self._running[worker] += 1
        return jobs

    def _work(self, worker: int, make: Callable[[PredictorKey], Predictor]) -> None:
        built: collections.OrderedDict[PredictorKey, Predictor] = collections.OrderedDict()
        while (jobs := self._take(worker)) is not None:
            self.metrics.batch(len(jobs))
            groups: dict[PredictorKey, list[Job]] = {}
            for job in jobs:
                groups.setdefault(job.key, []).append(job)
            for key, group in groups.items():
                try:
                    if key not in built:
                        built[key] = make(key)
                        if len(built) > _PREDICTORS_PER_THREAD:
                            built.popitem(last=False)
                    built.move_to_end(key)
                    self._run(built[key], group, worker)
                except Exception as error:
                    for job in group:
                        if not job.future.done():
                            self._finish(job, error)
            with self._wake:
                self._running[worker] -= 1
                self._wake.notify_all()  # a thread waiting for company may go now

    def _run(self, predictor: Predictor, jobs: list[Job], worker: int) -> None:
        inputs = Inputs(tuple(Input(f"request {i}", i, image=job.image, order="rgb")
                              for i, job in enumerate(jobs)))
        # Reading an array is a copy and a resize: read threads pay off only for several.
        options, pool = self.options, self._decoders[worker]
        if len(jobs) == 1:
            options = dataclasses.replace(self.options, read_workers=0)
            if self._alone(worker):
                pool = None
        try:
            with contextlib.closing(run(inputs, predictor, options, decoders=pool)) as results:
                for prediction in results:
                    self._finish(jobs[prediction.position], prediction)
        except AeposeError:
            if pool is None or not _broken(pool):
                raise
            # A decode process died (the OOM killer): a new pool would fork this threaded
            # process, so this worker decodes in its thread from now on.
            logger.warning("aepose serve: a decode worker process died; worker %d decodes "
                           "in its thread from now on", worker)
            self._decoders[worker] = None
            pool.shutdown(wait=False)
            self._run(predictor, [job for job in jobs if not job.future.done()], worker)

    def _alone(self, worker: int) -> bool:
        """Whether this thread's batch is ``worker``'s only work: then one image is decoded
        in the thread, which costs no hand-over. Beside other work it goes to the pool: a
        thread decoding holds the GIL for milliseconds at a time, and the device's other
        thread, waiting for it between two operations of its forward pass, would leave the
        network idle (decoding it in the pool then: 15 % more requests a second at 4 and 16
        clients without batching, BENCHMARKS.md "Serve")."""
        with self._wake:
            return self._running[worker] == 1 and not self._queue

    def _finish(self, job: Job, outcome: Prediction | Exception) -> None:
        """Give back the job's bytes, then its result (or the error that stopped its batch):
        a client that sends again as soon as it has its reply finds them free."""
        with self._wake:
            self._held -= job.nbytes
        if isinstance(outcome, Exception):
            job.future.set_exception(outcome)
        else:
            job.future.set_result(outcome)


def locked_maker(predictor: Predictor) -> Callable[[PredictorKey], Predictor]:
    """The Predictor of a job's settings on ``predictor``'s network, for one worker: all it
    builds share one forward lock, so that the worker's threads take turns in the network
    (one batch's activations at a time)."""
    lock = threading.Lock()

    def make(key: PredictorKey) -> Predictor:
        flip, max_people = key
        return Predictor(predictor.model, predictor.config, flip=flip, max_people=max_people,
                         channel_order="rgb", forward_lock=lock)

    return make


def _broken(pool: Executor) -> bool:
    """Whether ``pool`` can no longer run anything (a process pool whose worker died)."""
    try:
        pool.submit(int).result()
    except BrokenProcessPool:
        return True
    return False
