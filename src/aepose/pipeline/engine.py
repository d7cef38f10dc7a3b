"""The test-time pipeline: one implementation from an image to its poses, streamed.

Named stages, each with one owner:

``read``          the caller's function: a file, a video frame, an array (RGB uint8 [H, W, 3]);
``preprocess``    :func:`prepare` (:meth:`Stages.preprocess`): test sizes, resize, ImageNet
                  normalisation;
``network``       :meth:`Stages.network_outputs`: one forward pass per test scale over a batch of
                  images whose inputs have equal sizes (with the flip test: 2B rows);
``aggregate``     :func:`~aepose.codec.aggregate.aggregate_outputs` of one image's rows;
``decode``        a :class:`~aepose.codec.decode.Decoder` bound to the preset's test settings;
``back-project``  :func:`~aepose.data.transforms.back_project` to original-image pixels.

The last three run per image in :class:`PostProcess`, a picklable object: inline, in a pool
of forked worker processes (CPU networks: each image's raw outputs cross once, as arrays, and
its maps are computed in the worker), or in threads beside the network's GPU (the maps never
leave the device; only the [K, M] candidates cross for the matching).

:func:`stream` is the engine that :class:`~aepose.pipeline.predictor.Predictor`, ``aepose predict``,
``aepose test``, training validation, the ONNX backend and ``aepose benchmark`` all run: any
iterable of items in, one :class:`Result` per item out, in input order. Items are read and
preprocessed by a pool of threads (OpenCV and torch release the GIL; a video capture can be
read by them too, which DataLoader workers could not), batched by equal input size across a
window of pending images (batches depend on the input alone, never on timing), run through
the network while the previous batches are decoded, with bounded queues: memory stays flat
on a million images. A bad item becomes a Result with an ``error`` line; the others go on.

Legend: B batch, K keypoints, P people, L tag dims (2 with flip), h1 x w1 the base size.
"""

from __future__ import annotations

import collections
import ctypes
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
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
from torch import Tensor, nn

from aepose.codec.aggregate import (
    ScaleOutputs,
    aggregate_outputs,
    image_outputs,
    run_scales,
)
from aepose.codec.decode import Decoder
from aepose.config import Config, ModelConfig
from aepose.data.dataset import normalize_image
from aepose.data.transforms import TestSizes, back_project, resize_align, test_sizes
from aepose.errors import AeposeError
from aepose.image import check_rgb
from aepose.keypoints import get_spec
from aepose.pipeline.timer import Laps, StageTimer, sync

__all__ = [
    "MAX_INPUT_PIXELS",
    "Decoded",
    "PostProcess",
    "Prepared",
    "Result",
    "Stages",
    "decode_pool",
    "default_decode_workers",
    "keep_freed_memory",
    "named_error",
    "prepare",
    "stream",
]

T = TypeVar("T")

MAX_INPUT_PIXELS = 1 << 22
"""Most pixels of one network input (the largest test scale): 4.2 M, e.g. 2048 x 2048 or
1024 x 4096. The short side of an image is scaled to the input size and the long side
follows, so a 1 x 2000 strip would ask for a 512 x 1,024,000 input (6 GB): such images are
refused, one line each, instead of exhausting memory."""

# ---------------------------------------------------------------------------------------
# Stages


@dataclass(frozen=True, eq=False)
class Prepared:
    """One image ready for the network: its test geometry and, per test scale, the
    normalised input float32 [3, h_s, w_s]."""

    sizes: TestSizes
    inputs: tuple[Tensor, ...]
    height: int
    width: int


@dataclass(frozen=True, eq=False)
class Decoded:
    """Poses of one image: poses float32 [P, K, 3 + L] (x, y in original-image pixel
    indices, heatmap value, L tag values), people in the grouping's order; scores [P];
    seconds of the stages run for it."""

    poses: np.ndarray
    scores: np.ndarray
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class PostProcess:
    """aggregate -> decode -> back-project for one image's network outputs; picklable, so
    it can run in worker processes. Settings are bound at construction."""

    layout: ModelConfig
    flip_index: tuple[int, ...] | None
    stage_average: str
    decoder: Decoder

    def __call__(self, outputs: ScaleOutputs, sizes: TestSizes) -> Decoded:
        """``outputs``: this image's rows of every scale's head outputs [F, C, h, w]."""
        clock = Laps()
        outputs = [[torch.as_tensor(out) for out in scale] for scale in outputs]
        _check_finite(outputs)
        heatmaps, tags = aggregate_outputs(
            outputs, sizes.scales, sizes.base_size, self.layout, flip_index=self.flip_index,
            stage_average=self.stage_average)
        clock.lap("aggregate", heatmaps.device)
        poses, scores = self.decoder(heatmaps[0], tags[0])
        clock.lap("decode", heatmaps.device)
        poses[..., :2] = back_project(poses[..., :2], sizes)
        clock.lap("back-project", heatmaps.device)
        return Decoded(poses, scores, clock.seconds)


def _check_finite(outputs: ScaleOutputs) -> None:
    for scale, scale_outputs in enumerate(outputs):
        for o, out in enumerate(scale_outputs):
            if not bool(torch.isfinite(out).all()):
                where = f"output {o}" + (f" at test scale index {scale}" if len(outputs) > 1
                                         else "")
                raise AeposeError(f"the network's {where} holds NaN or infinite values "
                                  "(broken weights or an overflow in reduced precision)")


class Stages:
    """The pipeline's stages for one network and :class:`~aepose.config.Config`.

    ``network(images) -> list of head outputs`` in eval mode (a torch module, a
    :class:`~aepose.pipeline.network.FastNetwork`, or the ONNX Runtime wrapper). The test settings
    (scales, flip, thresholds, stage averaging) are ``config.test``'s: apply overrides to the
    Config (``dataclasses.replace``) before building the stages.
    """

    def __init__(self, network: nn.Module, config: Config,
                 device: torch.device | None = None) -> None:
        test = config.test
        if test.project2image is not True:
            raise AeposeError("test.project2image=False is not supported (maps are "
                              "aggregated at the input size, as every mmpose AE config does)")
        self.network = network
        self.config = config
        self.spec = get_spec(config.data.dataset)
        self.scales = test.scales
        self.device = device or _module_device(network)
        self.post = PostProcess(
            layout=config.model,
            flip_index=tuple(self.spec.flip_index) if test.flip else None,
            stage_average=test.stage_average,
            decoder=Decoder.from_config(test, self.spec),
        )

    def preprocess(self, image: np.ndarray) -> Prepared:
        """RGB uint8 [H, W, 3] -> :class:`Prepared` (CPU tensors)."""
        return prepare(image, self.config.data.input_size, self.scales)

    def network_outputs(self, batch: Sequence[Prepared]) -> ScaleOutputs:
        """The network over images whose inputs have equal sizes: per scale, per head
        output [F*B, C, h, w] on the network's device."""
        inputs = [torch.stack([p.inputs[i] for p in batch]).to(self.device, non_blocking=True)
                  for i in range(len(batch[0].inputs))]
        with torch.inference_mode():
            return run_scales(self.network, inputs, self.config.model,
                              self.post.flip_index is not None)

    def image_rows(self, outputs: ScaleOutputs, index: int, batch: int) -> ScaleOutputs:
        """Image ``index``'s rows of a batch's outputs (see :meth:`network_outputs`)."""
        return image_outputs(outputs, index, batch, self.post.flip_index is not None)


def prepare(image: np.ndarray, input_size: int | tuple[int, int],
            scales: Sequence[float]) -> Prepared:
    """The ``preprocess`` stage: RGB uint8 [H, W, 3] -> :class:`Prepared` (CPU tensors).

    Per test scale (largest first): the image resized with its aspect kept so that the short
    side of the scale-1 input is ``input_size`` and both sides are multiples of 64 (black
    padding, :func:`~aepose.data.transforms.test_sizes`), then normalised with the ImageNet
    mean and std (:func:`~aepose.data.dataset.normalize_image`): float32 [3, h_s, w_s].
    ``scales`` are a :class:`~aepose.config.TestConfig`'s (checked there).
    """
    height, width = check_rgb(image).shape[:2]
    sizes = test_sizes(width, height, input_size, scales)
    w, h = sizes.input_sizes[0]  # the largest scale comes first
    if w * h > MAX_INPUT_PIXELS:
        raise AeposeError(
            f"a {width}x{height} image needs a {w}x{h} network input, more than "
            f"{MAX_INPUT_PIXELS:,} pixels (aspect ratio or test scale too large)")
    inputs = tuple(normalize_image(resize_align(image, sizes, i))
                   for i in range(len(sizes.scales)))
    return Prepared(sizes, inputs, height, width)


def _module_device(module: nn.Module) -> torch.device:
    parameter = next(module.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


# ---------------------------------------------------------------------------------------
# The streamed engine


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
                                  if read_workers > 0 else _Inline())
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


class _Inline(Executor):
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
    torch thread. Shut it down after use (``with decode_pool(...) as pool:``)."""
    if workers is None:
        workers = default_decode_workers(device)
    if workers <= 0:
        return _Inline()
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
    """Make glibc keep freed memory for reuse instead of returning it to the system.

    Every image allocates and frees maps of tens of MB; returned to the system, each new
    one is paid again in page faults, which measured more than half of aggregation's time
    (150 -> 55 ms per 640x480 image). The process then holds its peak heap, which the
    window bounds. No-op where the C library is not glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    for parameter in (_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD):
        if not libc.mallopt(parameter, 1 << 30):
            libc.mallopt(parameter, 32 << 20)  # older glibc: the largest it accepts


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)


def _worker_init(parent: int) -> None:
    # Ctrl-C reaches the whole process group: the parent stops the run; workers stay quiet.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_parent(parent)
    # One core each: the workers share the machine with the network and with each other.
    torch.set_num_threads(1)
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
