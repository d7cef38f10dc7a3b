"""The streamed engine: :func:`stream` runs the pipeline's stages
(:mod:`aepose.pipeline.stages`) over any iterable of items.

``read``          the caller's function: a file, a video frame, an array (RGB uint8 [H, W, 3]);
then the stages: preprocess, network, aggregate, decode, back-project.

:func:`stream` is the engine that :class:`~aepose.pipeline.predictor.Predictor`, the driver
(:func:`aepose.pipeline.run.run`: ``aepose predict``, ``aepose.predict``), ``aepose test``,
training validation, the ONNX backend and ``aepose benchmark`` all run: any iterable of items
in, one :class:`Result` per item out, in input order. Items are read and preprocessed by a
pool of threads (OpenCV and torch release the GIL; a video capture can be read by them too,
which DataLoader workers could not), batched by equal input size across a window of pending
images (batches depend on the input alone, never on timing), run through the network while
the previous batches are decoded (:mod:`aepose.pipeline.workers`), with bounded queues:
memory stays flat on a million images. A bad item becomes a Result with an ``error`` line;
the others go on.

Legend: B batch, K keypoints, P people.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import (
    FIRST_COMPLETED,
    Executor,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import cv2
import numpy as np

from aepose.errors import AeposeError
from aepose.pipeline.stages import Decoded, Prepared, Stages
from aepose.pipeline.timer import StageTimer, sync
from aepose.pipeline.workers import Inline, decode_pool

__all__ = ["Result", "named_error", "stream"]

T = TypeVar("T")

@dataclass(eq=False)
class Result(Generic[T]):
    """What became of one item: its poses (see :class:`Decoded`) or a one-line ``error``
    (and then no poses).

    ``image`` is the RGB array when the stream keeps images (for overlays), else None;
    ``height``/``width`` the image's size (0 when it could not be read).
    """

    index: int
    item: T
    poses: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 3), np.float32))
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    error: str | None = None
    image: np.ndarray | None = None
    height: int = 0
    width: int = 0


@dataclass
class _Pending:
    """An item on its way: read/preprocess future, then its Prepared, then its decode."""

    index: int
    item: Any
    prepared: Future[tuple[Prepared, np.ndarray | None]]
    result: Result[Any] | None = None
    decoded: Future[Decoded] | None = None


def stream(
    stages: Stages,
    items: Iterable[T],
    read: Callable[[T], np.ndarray],
    *,
    batch_size: int = 8,
    window: int | None = None,
    read_workers: int = 2,
    decode_workers: int | None = 0,
    keep_images: bool = False,
    timer: StageTimer | None = None,
    decoders: Executor | None = None,
) -> Generator[Result[T], None, None]:
    """Poses of every item, yielded in input order.

    Args:
        stages: the pipeline's stages.
        items: anything iterable (file paths, video frames, dataset entries); consumed
            lazily, never more than 2 x ``window`` items ahead of the output.
        read: item -> RGB uint8 [H, W, 3]; an :class:`~aepose.errors.AeposeError` it raises
            becomes that item's ``error``. Runs in the read threads.
        batch_size: most images per forward pass (2x rows with the flip test).
        window: how far ahead of the oldest waiting image same-size images are gathered
            into its batch (default 4 x batch_size); memory is bounded by it.
        read_workers: threads reading and preprocessing (0: in the calling thread).
        decode_workers: processes (CPU network) or threads (GPU network) aggregating and
            decoding; 0 decodes in the calling thread, between forward passes; None takes
            :func:`default_decode_workers`.
        keep_images: put each RGB image in its Result (for overlays).
        timer: receives the seconds of every stage.
        decoders: an executor from :func:`decode_pool` to use instead of starting one
            (it stays open: successive streams then share its warm worker processes).
    """
    if batch_size < 1:
        raise AeposeError(f"batch size must be at least 1, got {batch_size}")
    own = decoders is None
    pool = decode_pool(stages.device, decode_workers) if decoders is None else decoders
    engine = _Engine(stages, read, batch_size, window or 4 * batch_size, read_workers,
                     pool, keep_images, timer or StageTimer())
    opencv_threads = cv2.getNumThreads()
    if read_workers > 0:
        # The read threads resize several images at once; OpenCV's own thread pool on top
        # of them only fights the network for the cores (measured: 5.2 -> 7.2 images/s).
        cv2.setNumThreads(1)
    try:
        yield from engine.run(iter(items))
    except BrokenProcessPool:
        raise AeposeError("a decode worker process died (killed, or out of memory); "
                          "decode_workers=0 (--decode-workers 0) decodes in this process "
                          "instead") from None
    finally:
        # On an error or Ctrl-C nothing queued is worth finishing.
        engine.readers.shutdown(wait=True, cancel_futures=True)
        if own:
            pool.shutdown(wait=True, cancel_futures=True)
        cv2.setNumThreads(opencv_threads)


class _Engine(Generic[T]):
    """The state of one :func:`stream` call (see there).

    Batches depend on the input sequence alone, never on timing, so a run is reproducible
    (a convolution's float result can depend on its batch size): prepared items are
    assigned to their size's bucket strictly in input order; a bucket runs when it holds a
    batch, and the oldest waiting item's bucket runs once the item ``window - 1`` places
    after it has been assigned (or the input ends). Items read ahead of the output are
    capped at twice the window, which bounds memory without deciding any batch.
    """

    def __init__(self, stages: Stages, read: Callable[[T], np.ndarray], batch_size: int,
                 window: int, read_workers: int, decoders: Executor, keep_images: bool,
                 timer: StageTimer) -> None:
        if window < batch_size:
            raise AeposeError(f"window ({window}) must hold at least one batch ({batch_size})")
        self.stages, self.read, self.timer = stages, read, timer
        self.batch_size, self.window, self.keep_images = batch_size, window, keep_images
        self.readers: Executor = (ThreadPoolExecutor(read_workers, "aepose-read")
                                  if read_workers > 0 else Inline())
        self.decoders = decoders
        self.queue: collections.deque[_Pending] = collections.deque()  # input order
        self.unassigned: collections.deque[_Pending] = collections.deque()  # being read
        self.waiting: list[_Pending] = []  # prepared, not yet run, in input order
        self.assigned = -1  # index of the last item assigned

    def run(self, items: Iterator[T]) -> Iterator[Result[T]]:
        index, exhausted = 0, False
        while self.queue or not exhausted:
            while not exhausted and len(self.queue) < 2 * self.window:
                try:
                    item = next(items)
                except StopIteration:
                    exhausted = True
                    break
                pending = _Pending(index, item, self.readers.submit(self._load, item))
                self.queue.append(pending)
                self.unassigned.append(pending)
                index += 1
            self._advance(exhausted)
            while self.queue and self._finished(self.queue[0]):
                yield self._result(self.queue.popleft())

    def _load(self, item: T) -> tuple[Prepared, np.ndarray | None]:
        start = time.perf_counter()
        image = self.read(item)
        read_done = time.perf_counter()
        prepared = self.stages.preprocess(image)
        self.timer.add("read", read_done - start)
        self.timer.add("preprocess", time.perf_counter() - read_done)
        return prepared, image if self.keep_images else None

    def _advance(self, exhausted: bool) -> None:
        """Assign the items read, in order, running the batches they complete; at the end
        of the input run what is left; wait when nothing could be done."""
        progressed = False
        while self.unassigned and self.unassigned[0].prepared.done():
            self._assign(self.unassigned.popleft())
            progressed = True
        if exhausted and not self.unassigned and self.waiting:
            while self.waiting:
                self._run_batch(self._bucket_of(self.waiting[0]))
            progressed = True
        if not progressed and self.queue and not self._finished(self.queue[0]):
            self._wait_for_progress()

    def _assign(self, pending: _Pending) -> None:
        self.assigned = pending.index
        error = _error_of(pending.prepared)
        if error is not None:
            pending.result = Result(pending.index, pending.item, error=error)
        else:
            self.waiting.append(pending)
            bucket = self._bucket_of(pending)
            if len(bucket) == self.batch_size:
                self._run_batch(bucket)
        while self.waiting and self.assigned >= self.waiting[0].index + self.window - 1:
            self._run_batch(self._bucket_of(self.waiting[0]))

    def _bucket_of(self, pending: _Pending) -> list[_Pending]:
        """The waiting items of ``pending``'s input size, oldest first, at most a batch."""
        key = _size_key(pending)
        return [p for p in self.waiting if _size_key(p) == key][: self.batch_size]

    def _run_batch(self, batch: list[_Pending]) -> None:
        prepared = [p.prepared.result()[0] for p in batch]
        start = time.perf_counter()
        outputs = self.stages.network_outputs(prepared)
        sync(self.stages.device)
        self.timer.add("network", time.perf_counter() - start, len(batch))
        to_process = isinstance(self.decoders, ProcessPoolExecutor)
        for b, pending in enumerate(batch):
            self.waiting.remove(pending)
            rows: Any = self.stages.image_rows(outputs, b, len(batch))
            if to_process:
                # As plain arrays through the pipe: passing tensors through shared memory
                # costs a file descriptor handshake per tensor, more than copying them.
                rows = [[out.numpy() for out in scale] for scale in rows]
            pending.decoded = self.decoders.submit(self.stages.post, rows, prepared[b].sizes)

    def _wait_for_progress(self) -> None:
        """Block until an item is read or the oldest item is decoded."""
        futures: list[Future[Any]] = [p.prepared for p in self.queue if not p.prepared.done()]
        head = self.queue[0].decoded
        if isinstance(head, Future):
            futures.append(head)
        if futures:
            wait(futures, return_when=FIRST_COMPLETED)

    def _finished(self, pending: _Pending) -> bool:
        if pending.result is not None:
            return True
        return pending.decoded is not None and pending.decoded.done()

    def _result(self, pending: _Pending) -> Result[T]:
        if pending.result is not None:
            return pending.result
        assert pending.decoded is not None
        prepared, image = pending.prepared.result()
        error = _error_of(pending.decoded)
        if error is not None:
            return Result(pending.index, pending.item, error=error, image=image,
                          height=prepared.height, width=prepared.width)
        decoded = pending.decoded.result()
        for stage, seconds in decoded.seconds.items():
            self.timer.add(stage, seconds)
        return Result(pending.index, pending.item, decoded.poses, decoded.scores, image=image,
                      height=prepared.height, width=prepared.width)


def _size_key(pending: _Pending) -> tuple[tuple[int, int], ...]:
    return pending.prepared.result()[0].sizes.input_sizes


def named_error(name: str, error: str) -> str:
    """``error`` with the file or frame it concerns named first (unless it names it)."""
    return error if name in error else f"{name}: {error}"


def _error_of(future: Future[Any]) -> str | None:
    """The one-line message of a future's AeposeError, None on success; other exceptions
    (bugs, Ctrl-C) propagate."""
    error = future.exception()
    if error is None:
        return None
    if isinstance(error, AeposeError):
        return str(error)
    raise error
