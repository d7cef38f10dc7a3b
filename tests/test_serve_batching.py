"""The batch worker's threads (serve/batching.py): a device's threads take turns in the
network and overlap everything else."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest
from serve_helpers import CountingPool, job_key, tiny_predictor

import aepose
from aepose.apps.bench import crowd_images
from aepose.pipeline.predictor import Predictor
from aepose.serve.batching import RUNNERS_PER_DEVICE, Batcher, Job, locked_maker
from aepose.serve.limits import ServeLimits
from aepose.serve.metrics import Metrics

pytest.importorskip("starlette", reason="pip install 'aepose[serve]'")


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return tiny_predictor()


@pytest.fixture(scope="module")
def scenes() -> list[np.ndarray]:
    return [crowd_images(1, (200, 150), seed=seed)[0] for seed in range(6)]


def _job(predictor: Predictor, image: np.ndarray) -> Job:
    return Job(image, job_key(predictor), image.nbytes)


def _submit(batcher: Batcher, job: Job) -> Any:
    batcher.reserve(job.nbytes)
    return batcher.submit(job)


def _held(job: Job) -> tuple[threading.Event, threading.Event]:
    """(held, release): the worker thread that sets ``job``'s result stays in its batch,
    having set ``held``, until ``release`` is set (a slow reply)."""
    held, release = threading.Event(), threading.Event()

    def slow_reply(_: Any) -> None:  # runs in the worker thread that sets the result
        held.set()
        release.wait(30)

    job.future.add_done_callback(slow_reply)
    return held, release


def test_a_batch_runs_while_the_last_one_is_still_being_answered(
        predictor: Predictor, scenes: list[np.ndarray]) -> None:
    """The thread that ran a batch is held up answering it (a slow client callback): the
    device's other thread takes the next job and runs it meanwhile. With one thread a
    device, the second job would wait for the first reply."""
    assert RUNNERS_PER_DEVICE >= 2
    batcher = Batcher([locked_maker(predictor)], ServeLimits(max_batch=1, max_wait_ms=0),
                      Metrics(), None)
    first = _job(predictor, scenes[0])
    held, release = _held(first)
    try:
        _submit(batcher, first)
        assert held.wait(30)
        second = _submit(batcher, _job(predictor, scenes[1]))
        assert len(second.result(timeout=30).poses) > 0  # while the first thread is held
        assert not release.is_set()
    finally:
        release.set()
        batcher.stop()
    expected = aepose.predict(scenes[1], predictor, channel_order="rgb", min_score=0,
                              pose_nms=None, threshold=0)[0]
    got = second.result()
    assert [p.score for p in got.poses] == pytest.approx([p.score for p in expected.poses])


class _Watched:
    """A network that records how many threads are in its forward pass at once."""

    def __init__(self, network: Any) -> None:
        self.network, self.inside, self.most = network, 0, 0
        self.threads: set[str] = set()
        self._count = threading.Lock()

    def __call__(self, *args: Any) -> Any:
        with self._count:
            self.inside += 1
            self.most = max(self.most, self.inside)
            self.threads.add(threading.current_thread().name)
        try:
            time.sleep(0.02)  # long enough for the other thread to try
            return self.network(*args)
        finally:
            with self._count:
                self.inside -= 1

    def eval(self) -> _Watched:
        self.network.eval()
        return self

    def __getattr__(self, name: str) -> Any:
        return getattr(self.network, name)


def test_the_threads_of_a_device_take_turns_in_the_network(
        predictor: Predictor, scenes: list[np.ndarray]) -> None:
    watched = _Watched(predictor.model)
    server_predictor = Predictor(watched, predictor.config,  # type: ignore[arg-type]
                                 channel_order="rgb", device=None)
    batcher = Batcher([locked_maker(server_predictor)],
                      ServeLimits(max_batch=2, max_wait_ms=0), Metrics(), None)
    try:
        futures = [_submit(batcher, _job(predictor, image))
                   for image in scenes * 2]
        results = [future.result(timeout=60) for future in futures]
    finally:
        batcher.stop()
    assert all(result.error is None for result in results)
    assert watched.most == 1  # one forward pass at a time
    assert len(watched.threads) == RUNNERS_PER_DEVICE  # both threads ran batches


def test_a_batcher_without_the_lock_lets_threads_in_together(
        predictor: Predictor, scenes: list[np.ndarray]) -> None:
    """The check above can fail: the same Predictor shared without a lock."""
    watched = _Watched(predictor.model)
    shared = Predictor(watched, predictor.config, channel_order="rgb")  # type: ignore[arg-type]
    batcher = Batcher([lambda _: shared], ServeLimits(max_batch=1, max_wait_ms=0), Metrics(),
                      None)
    try:
        futures = [_submit(batcher, _job(predictor, image))
                   for image in scenes * 2]
        for future in futures:
            future.result(timeout=60)
    finally:
        batcher.stop()
    assert watched.most == 2


def test_one_image_goes_to_the_pool_beside_other_work_and_stays_in_its_thread_alone(
        predictor: Predictor, scenes: list[np.ndarray]) -> None:
    """A thread decoding holds the GIL and stalls the other thread's forward pass: beside
    other work of the device an image alone is decoded in the pool; as the only work, in
    its thread (no hand-over)."""
    pool = CountingPool()
    batcher = Batcher([locked_maker(predictor)], ServeLimits(max_batch=1, max_wait_ms=0),
                      Metrics(), None, [pool])
    first = _job(predictor, scenes[0])
    held, release = _held(first)
    try:
        _submit(batcher, first)
        assert held.wait(30)
        assert pool.decoded == 0  # the first image was the only work
        beside = _submit(batcher, _job(predictor, scenes[1]))
        assert beside.result(timeout=30).error is None
        assert pool.decoded == 1  # decoded in the pool, the first thread still busy
        release.set()
        first.future.result(timeout=30)
        deadline = time.monotonic() + 30
        while batcher._running[0]:  # the first thread gives its batch up
            assert time.monotonic() < deadline
            time.sleep(0.01)
        alone = _submit(batcher, _job(predictor, scenes[2]))
        assert alone.result(timeout=30).error is None
        assert pool.decoded == 1
    finally:
        release.set()
        batcher.stop()


def test_an_idle_device_runs_a_job_at_once_and_a_busy_one_gathers_the_next(
        predictor: Predictor, scenes: list[np.ndarray]) -> None:
    """``max_wait_ms`` is how long a batch waits for company while the device is busy; an
    idle device does not wait (here 5 s would show)."""
    metrics = Metrics()
    batcher = Batcher([locked_maker(predictor)], ServeLimits(max_batch=8, max_wait_ms=5000),
                      metrics, None)
    first = _job(predictor, scenes[0])
    held, release = _held(first)
    try:
        start = time.monotonic()
        _submit(batcher, first)
        assert held.wait(30)
        assert time.monotonic() - start < 2.5  # run at once, not after 5 s
        later = []
        for image in scenes[1:4]:  # arriving one by one while the first thread is busy
            later.append(_submit(batcher, _job(predictor, image)))
            time.sleep(0.1)
        assert not any(future.done() for future in later)  # waiting for company
        release.set()  # the device's other thread finishes: the three go as one batch
        assert all(future.result(timeout=30).error is None for future in later)
        assert time.monotonic() - start < 4.5
    finally:
        release.set()
        batcher.stop()
    assert "aepose_batch_size_count 2" in metrics.render()
    assert "aepose_batch_size_sum 4" in metrics.render()
