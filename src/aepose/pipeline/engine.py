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
the previous batches are decoded (:mod:`aepose.pipeline.workers`), with queues bounded in
items and in bytes: memory stays flat on a million images and on huge ones. A bad item
becomes a Result with an ``error`` line, and so does one the memory cannot hold (an
allocation failure in any stage); the others go on.

Legend: B batch, K keypoints, P people.
"""

from __future__ import annotations

import collections
import re
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
import torch

from aepose.errors import AeposeError
from aepose.pipeline.stages import Decoded, Prepared, Stages
from aepose.pipeline.timer import StageTimer, sync
from aepose.pipeline.workers import Inline, decode_pool
from aepose.threads import use_threads

__all__ = ["BATCH_PIXELS_PER_IMAGE", "READ_AHEAD_BYTES", "Result", "named_error", "stream"]

T = TypeVar("T")

READ_AHEAD_BYTES = 1 << 30
"""Default byte budget (1 GiB) of what a stream holds for the items read ahead of its
output: the images it keeps (for overlays, or held by the items themselves, as video frames
are) and their prepared network inputs. Thirty 8000 x 8000 frames (192 MB each) once held
6.45 GB under a budget in items alone."""

BATCH_PIXELS_PER_IMAGE = 1 << 20
"""A forward pass holds at most ``batch_size`` x this many pixels (1 Mpx an image, e.g.
1024 x 1024) of network input at the largest test scale. A batch of images with larger
inputs holds fewer of them: at ``--scales 4 1`` a 600 x 600 image is a 2048 x 2048 input,
and eight of them with the flip test asked for a 4 GiB first activation (HRNet-w32's
64-channel stem at 1024 x 1024 x 16 rows). One image always runs, alone if need be (its
input is bounded by :data:`~aepose.pipeline.stages.MAX_INPUT_PIXELS`)."""


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
    item_bytes: int  # of the arrays the item itself holds (a video frame)
    prepared: Future[_Loaded]
    result: Result[Any] | None = None
    decoded: Future[Decoded] | None = None
    nbytes: int | None = None  # held while it waits: known once its read has finished


@dataclass(frozen=True, eq=False)
class _Loaded:
    """An item read and preprocessed: ``image`` when the stream keeps images; ``nbytes``
    what the item holds from now until its Result is yielded."""

    prepared: Prepared
    image: np.ndarray | None
    nbytes: int


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
    read_ahead_bytes: int = READ_AHEAD_BYTES,
) -> Generator[Result[T], None, None]:
    """Poses of every item, yielded in input order.

    Args:
        stages: the pipeline's stages.
        items: anything iterable (file paths, video frames, dataset entries); consumed
            lazily, never more than 2 x ``window`` items ahead of the output, nor more than
            ``read_ahead_bytes`` (the first item ahead always).
        read: item -> RGB uint8 [H, W, 3]; an :class:`~aepose.errors.AeposeError` it raises
            becomes that item's ``error``. Runs in the read threads.
        batch_size: most images per forward pass (2x rows with the flip test), and
            ``batch_size`` x :data:`BATCH_PIXELS_PER_IMAGE` the most pixels of network input
            (at the largest test scale) in one pass: large inputs run in smaller batches.
        window: how far ahead of the oldest waiting image same-size images are gathered
            into its batch (default 4 x batch_size); its batch also runs once the images
            from it on hold ``read_ahead_bytes``.
        read_workers: threads reading and preprocessing (0: in the calling thread).
        decode_workers: processes (CPU network) or threads (GPU network) aggregating and
            decoding; 0 decodes in the calling thread, between forward passes; None takes
            :func:`default_decode_workers`.
        keep_images: put each RGB image in its Result (for overlays).
        timer: receives the seconds of every stage.
        decoders: an executor from :func:`decode_pool` to use instead of starting one
            (it stays open: successive streams then share its warm worker processes).
        read_ahead_bytes: the budget of what the items between the input and the output
            hold (:data:`READ_AHEAD_BYTES`): the images kept (``keep_images``, or arrays
            inside the items, such as video frames) and their network inputs. Reading stops
            at it, once the reads in progress are counted at the largest item's bytes.

    A batch that fails for want of memory (``MemoryError``, an allocator's or CUDA's "out
    of memory") runs again image by image; an image that fails alone, or whose reading or
    decoding fails so, becomes a Result with a one-line ``error``, and the stream goes on.
    """
    if batch_size < 1:
        raise AeposeError(f"batch size must be at least 1, got {batch_size}")
    if read_ahead_bytes < 1:
        raise AeposeError(f"read-ahead budget must be at least 1 byte, got {read_ahead_bytes}")
    use_threads()  # every prediction and evaluation comes through here (aepose.threads)
    own = decoders is None
    pool = decode_pool(stages.device, decode_workers) if decoders is None else decoders
    engine = _Engine(stages, read, batch_size, window or 4 * batch_size, read_workers,
                     pool, keep_images, timer or StageTimer(), read_ahead_bytes)
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
    batch (:meth:`_capacity`), and the oldest waiting item's bucket runs once the item
    ``window - 1`` places after it has been assigned, or once the items assigned from it on
    hold ``read_ahead_bytes`` (or the input ends). Reading ahead of the output is capped at
    twice the window and at ``read_ahead_bytes``, which bounds memory without deciding any
    batch; when the bytes stop the reading, the items held are exactly those assigned from
    the oldest waiting one on, so its batch has run (no stall).
    """

    def __init__(self, stages: Stages, read: Callable[[T], np.ndarray], batch_size: int,
                 window: int, read_workers: int, decoders: Executor, keep_images: bool,
                 timer: StageTimer, read_ahead_bytes: int) -> None:
        if window < batch_size:
            raise AeposeError(f"window ({window}) must hold at least one batch ({batch_size})")
        self.stages, self.read, self.timer = stages, read, timer
        self.batch_size, self.window, self.keep_images = batch_size, window, keep_images
        self.read_ahead_bytes = read_ahead_bytes
        self.read_workers = read_workers
        self.readers: Executor = (ThreadPoolExecutor(read_workers, "aepose-read")
                                  if read_workers > 0 else Inline())
        self.decoders = decoders
        self.queue: collections.deque[_Pending] = collections.deque()  # input order
        self.unassigned: collections.deque[_Pending] = collections.deque()  # being read
        self.waiting: list[_Pending] = []  # prepared, not yet run, in input order
        self.assigned = -1  # index of the last item assigned
        self.largest: int | None = None  # the most bytes an item read so far holds

    def run(self, items: Iterator[T]) -> Iterator[Result[T]]:
        index, exhausted = 0, False
        while self.queue or not exhausted:
            while not exhausted and self._may_read_ahead():
                try:
                    item = next(items)
                except StopIteration:
                    exhausted = True
                    break
                pending = _Pending(index, item, _array_bytes(item),
                                   self.readers.submit(self._load, item))
                self.queue.append(pending)
                self.unassigned.append(pending)
                index += 1
            self._advance(exhausted)
            while self.queue and self._finished(self.queue[0]):
                yield self._result(self.queue.popleft())

    def _may_read_ahead(self) -> bool:
        """Whether one more item may be taken from the input: always when none is held;
        else within twice the window and the byte budget, the reads in progress counted at
        the largest item's bytes (before any read has finished: ``read_workers`` reads)."""
        if not self.queue:
            return True
        if len(self.queue) >= 2 * self.window:
            return False
        held, reading = 0, 0
        for pending in self.queue:
            nbytes = self._bytes(pending)
            if nbytes is None:
                held += pending.item_bytes
                reading += 1
            else:
                held += nbytes
        if self.largest is None:
            return reading < max(1, self.read_workers)
        return held + reading * self.largest < self.read_ahead_bytes

    def _bytes(self, pending: _Pending) -> int | None:
        """What ``pending`` holds until it is yielded; None while it is being read."""
        if pending.nbytes is None and pending.prepared.done():
            failed = pending.prepared.exception() is not None
            pending.nbytes = (pending.item_bytes if failed
                              else pending.prepared.result().nbytes)
            self.largest = max(self.largest or 0, pending.nbytes)
        return pending.nbytes

    def _load(self, item: T) -> _Loaded:
        start = time.perf_counter()
        image = self.read(item)
        read_done = time.perf_counter()
        prepared = self.stages.preprocess(image)
        self.timer.add("read", read_done - start)
        self.timer.add("preprocess", time.perf_counter() - read_done)
        nbytes = _array_bytes(item) + sum(int(t.nbytes) for t in prepared.inputs)
        kept = image if self.keep_images else None
        if kept is not None and not _holds(item, kept):
            nbytes += kept.nbytes
        return _Loaded(prepared, kept, nbytes)

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
        self._bytes(pending)
        error = _error_of(pending.prepared, "reading and preparing the image")
        if error is not None:
            pending.result = Result(pending.index, pending.item, error=error)
        else:
            self.waiting.append(pending)
            bucket = self._bucket_of(pending)
            if len(bucket) == self._capacity(pending):
                self._run_batch(bucket)
        while self.waiting and self._oldest_is_due():
            self._run_batch(self._bucket_of(self.waiting[0]))

    def _oldest_is_due(self) -> bool:
        """Whether the oldest waiting item's batch must run now: the window past it has
        been assigned, or the items assigned from it on hold the byte budget."""
        oldest = self.waiting[0].index
        if self.assigned >= oldest + self.window - 1:
            return True
        held = sum(p.nbytes or 0 for p in self.queue if oldest <= p.index <= self.assigned)
        return held >= self.read_ahead_bytes

    def _capacity(self, pending: _Pending) -> int:
        """The most images of ``pending``'s input size in one forward pass: ``batch_size``,
        fewer when their inputs exceed :data:`BATCH_PIXELS_PER_IMAGE` each, at least 1."""
        width, height = _size_key(pending)[0]  # the largest scale's
        fit = self.batch_size * BATCH_PIXELS_PER_IMAGE // (width * height)
        return max(1, min(self.batch_size, fit))

    def _bucket_of(self, pending: _Pending) -> list[_Pending]:
        """The waiting items of ``pending``'s input size, oldest first, at most a batch."""
        key = _size_key(pending)
        return [p for p in self.waiting if _size_key(p) == key][: self._capacity(pending)]

    def _run_batch(self, batch: list[_Pending]) -> None:
        for pending in batch:
            self.waiting.remove(pending)
        self._forward(batch)

    def _forward(self, batch: list[_Pending]) -> None:
        """The network over ``batch``, its images then handed to the decoders. Out of
        memory, a batch runs again image by image, and an image alone gets the error."""
        prepared = [p.prepared.result().prepared for p in batch]
        start = time.perf_counter()
        failure = None
        try:
            outputs = self.stages.network_outputs(prepared)
            sync(self.stages.device)
        except (MemoryError, RuntimeError) as error:
            if not _out_of_memory(error):
                raise
            failure = _memory_line(error, f"running the network on its "
                                   f"{_input_size(prepared[0])} input")
        if failure is not None:  # out of the except block: its traceback holds the tensors
            if self.stages.device.type == "cuda":
                torch.cuda.empty_cache()
            if len(batch) > 1:
                for pending in batch:
                    self._forward([pending])
            else:
                pending = batch[0]
                pending.result = Result(pending.index, pending.item, error=failure,
                                        height=prepared[0].height, width=prepared[0].width)
            return
        self.timer.add("network", time.perf_counter() - start, len(batch))
        to_process = isinstance(self.decoders, ProcessPoolExecutor)
        for b, pending in enumerate(batch):
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
        loaded = pending.prepared.result()
        prepared, image = loaded.prepared, loaded.image
        error = _error_of(pending.decoded, "decoding the poses")
        if error is not None:
            return Result(pending.index, pending.item, error=error, image=image,
                          height=prepared.height, width=prepared.width)
        decoded = pending.decoded.result()
        for stage, seconds in decoded.seconds.items():
            self.timer.add(stage, seconds)
        return Result(pending.index, pending.item, decoded.poses, decoded.scores, image=image,
                      height=prepared.height, width=prepared.width)


def _size_key(pending: _Pending) -> tuple[tuple[int, int], ...]:
    return pending.prepared.result().prepared.sizes.input_sizes


def _input_size(prepared: Prepared) -> str:
    """``W x H`` of the largest test scale's input, and the scales when there are several."""
    width, height = prepared.sizes.input_sizes[0]
    scales = prepared.sizes.scales
    shown = f" at test scales {', '.join(f'{s:g}' for s in scales)}" if len(scales) > 1 else ""
    return f"{width}x{height}{shown}"


def _array_bytes(item: object) -> int:
    """Bytes of the arrays an item holds itself: an array, or arrays in a tuple or list (a
    video frame is ``(index, frame)``)."""
    if isinstance(item, np.ndarray):
        return int(item.nbytes)
    if isinstance(item, tuple | list):
        return sum(int(part.nbytes) for part in item if isinstance(part, np.ndarray))
    return 0


def _holds(item: object, image: np.ndarray) -> bool:
    """Whether ``image`` is (a view of) an array the item holds itself, counted with it."""
    parts = item if isinstance(item, tuple | list) else (item,)
    return any(isinstance(part, np.ndarray) and np.may_share_memory(part, image)
               for part in parts)


def named_error(name: str, error: str) -> str:
    """``error`` with the file or frame it concerns named first (unless it names it)."""
    return error if name in error else f"{name}: {error}"


_OUT_OF_MEMORY = re.compile(r"out of memory|can't allocate memory|not enough memory",
                            re.IGNORECASE)
_ASKED = re.compile(r"allocate (\d+) bytes|[Tt]ried to allocate ([\d.]+ [KMGT]?i?B)")


def _out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is an allocation failure: Python's, torch's CPU allocator's, or
    CUDA's (``torch.OutOfMemoryError``) or another device's out-of-memory error."""
    return isinstance(error, MemoryError) or (
        isinstance(error, RuntimeError) and bool(_OUT_OF_MEMORY.search(str(error))))


def _memory_line(error: BaseException, doing: str) -> str:
    """One line for an allocation failure while ``doing``, with the size asked for when
    the error says it (the allocators' own messages run to several lines)."""
    asked = _ASKED.search(str(error))
    if asked is None:
        return f"out of memory {doing}"
    size = (f"{int(asked.group(1)) / 2**30:.2f} GiB" if asked.group(1) is not None
            else asked.group(2))
    return f"out of memory {doing} (an allocation of {size} failed)"


def _error_of(future: Future[Any], doing: str) -> str | None:
    """The one-line message of a future's AeposeError or allocation failure while
    ``doing``, None on success; other exceptions (bugs, Ctrl-C) propagate."""
    error = future.exception()
    if error is None:
        return None
    if isinstance(error, AeposeError):
        return str(error)
    if _out_of_memory(error):
        return _memory_line(error, doing)
    raise error
