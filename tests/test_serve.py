"""``aepose serve`` over HTTP: every endpoint, the reply against the one driver, bad requests,
the token, the limits, batching across concurrent requests and the graceful shutdown.

Each test runs the real application (Starlette under uvicorn) on a free 127.0.0.1 port in a
thread, with the tiny preset's network, and talks to it with urllib.
"""

from __future__ import annotations

import base64
import copy
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
from serve_helpers import (
    TINY,
    CountingPool,
    job_key,
    jpeg,
    png,
    post_image,
    request,
    serving,
    tiny_predictor,
)
from torch import nn

import aepose
from aepose.apps.bench import crowd_images
from aepose.data.coco import decode_image
from aepose.pipeline.predictor import Predictor
from aepose.pipeline.workers import decode_pool
from aepose.serve.batching import Batcher, Job, QueueFull
from aepose.serve.limits import ServeLimits
from aepose.serve.metrics import Metrics
from aepose.serve.service import ServeSettings, Service

pytest.importorskip("starlette", reason="pip install 'aepose[serve]'")


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return tiny_predictor()


@pytest.fixture(scope="module")
def scenes() -> list[np.ndarray]:
    """Eight distinct generated crowds of one size (RGB)."""
    return [crowd_images(1, (200, 150), seed=seed)[0] for seed in range(8)]


def _expected(predictor: Predictor, data: bytes, **options: Any) -> list[dict[str, Any]]:
    """What ``aepose.predict`` gives for the image the bytes decode to."""
    image = decode_image(data, "test image")
    found = aepose.predict(image, predictor, channel_order="rgb", **options)
    return [p.to_dict() for p in found[0].poses]


def _assert_same_people(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    """The same people: a batch of several images may differ from one image alone in the
    last bits of the network's float32 sums, never more."""
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_allclose(a["keypoints"], b["keypoints"], atol=1e-4)
        assert a["score"] == pytest.approx(b["score"], abs=1e-5)


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, flags=re.M)
    assert match, f"{name} not in the metrics"
    return float(match.group(1))


def test_predict_replies_as_the_driver_with_the_settings(predictor: Predictor,
                                                          scenes: list[np.ndarray]) -> None:
    data = jpeg(scenes[0])
    with serving(predictor) as server:
        status, reply = post_image(server.url, data)
        assert status == 200
        assert reply["people"] == _expected(predictor, data)
        assert reply["people"]
        status, low = post_image(server.url, data, "?min_score=0.05&max_people=3&flip=false")
    assert status == 200
    own = Predictor(predictor.model, predictor.config, flip=False, max_people=3,
                    channel_order="rgb")
    assert low["people"] == _expected(own, data, min_score=0.05)
    assert len(reply["people"]) < len(low["people"]) <= 3
    spec = predictor.spec
    assert reply["keypoint_names"] == list(spec.keypoint_names)
    assert reply["skeleton"] == [list(link) for link in spec.skeleton]
    assert (reply["width"], reply["height"]) == (200, 150)
    assert reply["model"]["preset"] == TINY
    assert reply["test"]["min_score"] == 0.25 and low["test"]["min_score"] == 0.05
    assert reply["test"]["flip"] is True and low["test"]["flip"] is False
    assert low["test"]["max_people"] == 3
    assert "overlay" not in reply


def test_overlay_multipart_and_png(predictor: Predictor, scenes: list[np.ndarray]) -> None:
    boundary = "aeposeboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; "
            f"filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n").encode() + png(
        scenes[1]) + f"\r\n--{boundary}--\r\n".encode()
    with serving(predictor) as server:
        status, _, raw = request(f"{server.url}/predict?overlay=true", body,
                                 {"Content-Type": f"multipart/form-data; boundary={boundary}"})
        assert status == 200
        reply = json.loads(raw)
        status, plain = post_image(server.url, png(scenes[1]), content_type="image/png")
    assert status == 200
    assert reply["people"] == plain["people"] == _expected(predictor, png(scenes[1]))
    head, encoded = reply["overlay"].split(",", 1)
    assert head == "data:image/jpeg;base64"
    drawn = cv2.imdecode(np.frombuffer(base64.b64decode(encoded), np.uint8), cv2.IMREAD_COLOR)
    assert drawn.shape == (150, 200, 3)
    # The drawing differs from the photo where the people are.
    assert np.abs(drawn.astype(int) - scenes[1][..., ::-1]).mean() > 1.0


def _bomb_png(width: int, height: int) -> bytes:
    """A PNG header declaring a huge image (a few bytes: a decompression bomb's start)."""
    header = png(np.zeros((2, 2, 3), np.uint8))
    return header[:16] + width.to_bytes(4, "big") + height.to_bytes(4, "big") + header[24:]


BAD_REQUESTS = [  # (what, body, query, content type, status)
    ("not an image", b"hello, world", "", "image/jpeg", 415),
    ("empty body", b"", "", "image/jpeg", 415),
    ("truncated JPEG", "truncated", "", "image/jpeg", 400),
    ("JPEG header only", "header", "", "image/jpeg", 400),
    ("huge declared image", _bomb_png(20000, 20000), "", "image/png", 413),
    ("zero-sized image", _bomb_png(0, 10), "", "image/png", 400),
    ("wrong content type", "image", "", "application/json", 415),
    ("no content type", "image", "", "", 415),
    ("NaN option", "image", "?min_score=nan", "image/jpeg", 400),
    ("option out of range", "image", "?min_score=2", "image/jpeg", 400),
    ("unknown option", "image", "?min_scor=0.3", "image/jpeg", 400),
    ("option twice", "image", "?flip=true&flip=false", "image/jpeg", 400),
    ("bad boolean", "image", "?overlay=yes", "image/jpeg", 400),
    ("max_people zero", "image", "?max_people=0", "image/jpeg", 400),
    ("max_people not a number", "image", "?max_people=1e3", "image/jpeg", 400),
    ("multipart without its boundary", "image", "", "multipart/form-data", 400),
]


def _body(kind: bytes | str, image: bytes) -> bytes:
    if isinstance(kind, bytes):
        return kind
    return {"image": image, "truncated": image[: len(image) // 2],
            "header": image[:300]}[kind]


def test_bad_requests_are_one_line_4xx_and_the_server_goes_on(
        predictor: Predictor, scenes: list[np.ndarray]) -> None:
    image = jpeg(scenes[0])
    limits = ServeLimits(max_body_mb=0.2)
    with serving(predictor, limits) as server:
        for what, kind, query, content_type, expected in BAD_REQUESTS:
            headers = {"Content-Type": content_type} if content_type else {}
            status, _, raw = request(f"{server.url}/predict{query}", _body(kind, image),
                                     headers)
            reply = json.loads(raw)
            assert status == expected, (what, reply)
            assert list(reply) == ["error"] and "\n" not in reply["error"], what
        # Too large: told by Content-Length (refused before the body is read), or counted
        # in a chunked body.
        status, reply = _unsent_body(server.url, 300_000)
        assert status == 413 and "0.2 MB" in reply["error"]
        status, reply = _chunked(server.url, [image[:2]] + [b"\0" * 100_000] * 3)
        assert status == 413 and "0.2 MB" in reply["error"]
        status, reply = _chunked(server.url, [image[:1000], image[1000:]])
        assert status == 200
        status, _, raw = request(f"{server.url}/nowhere")
        assert status == 404 and list(json.loads(raw)) == ["error"]
        status, _, raw = request(f"{server.url}/predict")  # GET
        assert status == 405 and list(json.loads(raw)) == ["error"]
        status, reply = post_image(server.url, image)
        assert status == 200 and reply["people"]


def _unsent_body(url: str, length: int) -> tuple[int, dict[str, Any]]:
    """The reply to ``POST /predict`` announcing ``length`` bytes, none sent."""
    connection = http.client.HTTPConnection(urllib.parse.urlsplit(url).netloc, timeout=30)
    try:
        connection.putrequest("POST", "/predict")
        connection.putheader("Content-Type", "image/png")
        connection.putheader("Content-Length", str(length))
        connection.endheaders()
        reply = connection.getresponse()
        return reply.status, json.loads(reply.read())
    finally:
        connection.close()


def _chunked(url: str, chunks: list[bytes]) -> tuple[int, dict[str, Any]]:
    """The reply to ``POST /predict`` with a chunked body (no Content-Length)."""
    connection = http.client.HTTPConnection(urllib.parse.urlsplit(url).netloc, timeout=30)
    try:
        connection.request("POST", "/predict", iter(chunks),
                           {"Content-Type": "image/jpeg"}, encode_chunked=True)
        reply = connection.getresponse()
        return reply.status, json.loads(reply.read())
    finally:
        connection.close()


def test_health_ready_metrics_and_the_token(predictor: Predictor,
                                            scenes: list[np.ndarray]) -> None:
    with serving(predictor, settings=ServeSettings(token="s3cret")) as server:
        assert request(f"{server.url}/healthz")[2] == b'{"status":"ok"}'
        assert request(f"{server.url}/readyz")[0] == 200
        batches = _metric(request(f"{server.url}/metrics?token=s3cret")[2].decode(),
                          "aepose_batch_size_count")
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            status, reply = post_image(server.url, jpeg(scenes[0]), headers=headers)
            assert status == 401 and "token" in reply["error"]
        assert request(f"{server.url}/metrics")[0] == 401
        status, _ = post_image(server.url, jpeg(scenes[0]), "?token=wrong")
        assert status == 401
        text = request(f"{server.url}/metrics", headers={
            "Authorization": "Bearer s3cret"})[2].decode()
        assert _metric(text, "aepose_batch_size_count") == batches  # no inference
        assert _metric(text, 'aepose_errors_total{kind="unauthorized"}') == 5
        status, reply = post_image(server.url, jpeg(scenes[0]),
                                   headers={"Authorization": "Bearer s3cret"})
        assert status == 200 and reply["people"]
        status, reply = post_image(server.url, jpeg(scenes[0]), "?token=s3cret")
        assert status == 200
        text = request(f"{server.url}/metrics?token=s3cret")[2].decode()
    assert _metric(text, 'aepose_requests_total{endpoint="/predict",status="200"}') == 2
    assert _metric(text, 'aepose_requests_total{endpoint="/predict",status="401"}') == 4
    assert _metric(text, "aepose_request_seconds_count") >= 2
    assert _metric(text, "aepose_queue_depth") == 0
    assert "# TYPE aepose_dropped_frames_total counter" in text


def test_concurrent_requests_are_batched_and_each_gets_its_own_result(
        predictor: Predictor, scenes: list[np.ndarray]) -> None:
    images = [jpeg(scene) for scene in scenes]
    expected = [_expected(predictor, data) for data in images]
    assert len({json.dumps(e) for e in expected}) == len(images)  # distinct answers
    limits = ServeLimits(max_batch=8, max_wait_ms=500)
    # A slow network keeps the device busy with the first request while the others arrive
    # (an idle device runs a request at once).
    slow_predictor, _ = _slow(predictor, 0.3)
    with serving(slow_predictor, limits) as server, ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda data: post_image(server.url, data), images))
        text = request(f"{server.url}/metrics")[2].decode()
    for (status, reply), own in zip(replies, expected, strict=True):
        assert status == 200
        _assert_same_people(reply["people"], own)
    # Warm-up was one batch of 1; the 8 requests ran in fewer batches than requests.
    assert _metric(text, "aepose_batch_size_count") - 1 < len(images)
    assert _metric(text, 'aepose_batch_size_bucket{le="1"}') < _metric(
        text, "aepose_batch_size_count")


class _Slow(nn.Module):
    """A network that waits for ``gate`` and then ``seconds`` before each forward pass."""

    def __init__(self, inner: nn.Module, seconds: float) -> None:
        super().__init__()
        self.inner, self.seconds = inner, seconds
        self.gate = threading.Event()
        self.gate.set()
        self.calls = 0

    def forward(self, images: torch.Tensor) -> Any:
        self.gate.wait(30)
        time.sleep(self.seconds)
        self.calls += 1
        return self.inner(images)


def _slow(predictor: Predictor, seconds: float) -> tuple[Predictor, _Slow]:
    slow = _Slow(predictor.model, seconds).eval()
    return Predictor(slow, predictor.config, channel_order="rgb"), slow


def test_a_full_queue_answers_503_at_once_and_serves_after(
        predictor: Predictor, scenes: list[np.ndarray]) -> None:
    slow_predictor, _ = _slow(predictor, 0.4)
    limits = ServeLimits(max_batch=1, max_wait_ms=0, queue=2)
    data = jpeg(scenes[0])
    with serving(slow_predictor, limits) as server, ThreadPoolExecutor(10) as pool:
        started = time.monotonic()
        replies = list(pool.map(lambda _: request(
            f"{server.url}/predict", data, {"Content-Type": "image/jpeg"}), range(10)))
        refused = [r for r in replies if r[0] == 503]
        answered = [r for r in replies if r[0] == 200]
        assert len(refused) + len(answered) == 10
        assert 1 <= len(answered) <= 4 and refused
        for _, headers, raw in refused:
            assert headers["retry-after"] == "1"
            assert "queue is full" in json.loads(raw)["error"]
        for _, _, raw in answered:
            assert json.loads(raw)["people"] == _expected(predictor, data)
        assert time.monotonic() - started < 5
        status, reply = post_image(server.url, data)
        assert status == 200 and reply["people"] == _expected(predictor, data)
        text = request(f"{server.url}/metrics")[2].decode()
    assert _metric(text, 'aepose_errors_total{kind="queue_full"}') == len(refused)


def test_readyz_waits_for_the_warm_up(predictor: Predictor, scenes: list[np.ndarray]) -> None:
    slow_predictor, slow = _slow(predictor, 0.0)
    slow.gate.clear()
    with serving(slow_predictor, ready=False) as server:
        status, headers, _ = request(f"{server.url}/readyz")
        assert status == 503 and headers["retry-after"] == "1"
        assert request(f"{server.url}/healthz")[0] == 200
        status, reply = post_image(server.url, jpeg(scenes[0]))
        assert status == 503 and "warming up" in reply["error"]
        slow.gate.set()
        server.service.ready.wait(30)
        assert request(f"{server.url}/readyz")[0] == 200
        assert post_image(server.url, jpeg(scenes[0]))[0] == 200


def test_shutdown_finishes_the_accepted_requests(predictor: Predictor,
                                                 scenes: list[np.ndarray]) -> None:
    slow_predictor, slow = _slow(predictor, 0.0)
    data = jpeg(scenes[0])
    with ThreadPoolExecutor(3) as pool, serving(slow_predictor) as server:
        slow.gate.clear()
        pending = [pool.submit(post_image, server.url, data) for _ in range(3)]
        # Shut down only once all three are inside the app: a connection still in the
        # listening socket's backlog is reset when it closes, as for any server (CI hit it).
        deadline = time.monotonic() + 10
        while server.service.metrics.connections < 3:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        server.server.should_exit = True  # as on SIGTERM: stop accepting, finish the rest
        time.sleep(0.2)
        slow.gate.set()
        replies = [future.result(timeout=30) for future in pending]
    for status, reply in replies:
        assert status == 200 and reply["people"] == _expected(predictor, data)


def test_the_page_and_static_files_are_served(predictor: Predictor, tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<!doctype html><title>placeholder</title>")
    (tmp_path / "app.js").write_text("console.log('placeholder');")
    with serving(predictor, static=tmp_path, settings=ServeSettings(token="t")) as server:
        # The page and its files need no token (a browser cannot send one for them);
        # what they call does.
        status, headers, body = request(f"{server.url}/")
        assert status == 200 and b"placeholder" in body
        assert headers["content-type"].startswith("text/html")
        status, headers, body = request(f"{server.url}/static/app.js")
        assert status == 200 and b"placeholder" in body
        assert request(f"{server.url}/static/nothing.css")[0] == 404
        assert request(f"{server.url}/metrics")[0] == 401
        assert request(f"{server.url}/metrics?token=t")[0] == 200
    with serving(predictor, static=tmp_path / "absent") as server:
        status, _, body = request(f"{server.url}/")
        assert status == 404 and "not installed" in json.loads(body)["error"]


def test_the_queue_is_bounded_in_bytes_of_decoded_image_too(
        predictor: Predictor, scenes: list[np.ndarray]) -> None:
    slow_predictor, slow = _slow(predictor, 0.0)
    data = jpeg(scenes[0])  # 200 x 150: 90,000 bytes decoded
    limits = ServeLimits(max_batch=1, max_wait_ms=0, queue=10, queue_mb=0.15)
    with ThreadPoolExecutor(2) as pool, serving(slow_predictor, limits) as server:
        slow.gate.clear()
        first = pool.submit(post_image, server.url, data)
        deadline = time.monotonic() + 10
        while server.service.batcher._held == 0:  # the first request holds its image
            assert time.monotonic() < deadline
            time.sleep(0.01)
        status, reply = post_image(server.url, data)
        assert status == 503 and "queue is full" in reply["error"]
        slow.gate.set()
        assert first.result(timeout=30)[0] == 200
        assert post_image(server.url, data)[0] == 200  # the bytes were given back
        deadline = time.monotonic() + 10  # (the worker gives them back after replying)
        while server.service.batcher._held or server.service.body_bytes:
            assert time.monotonic() < deadline
            time.sleep(0.01)


def test_stopping_waits_for_an_image_still_being_decoded(predictor: Predictor,
                                                         scenes: list[np.ndarray]) -> None:
    metrics = Metrics()
    batcher = Batcher([lambda key: predictor], ServeLimits(max_wait_ms=0), metrics, None)
    image = scenes[0]
    batcher.reserve(image.nbytes)  # a request admitted, its image not yet decoded
    stopping = threading.Thread(target=batcher.stop)
    stopping.start()
    time.sleep(0.2)
    assert stopping.is_alive()  # the worker waits for it
    future = batcher.submit(Job(image, (True, 30), image.nbytes))
    assert len(future.result(timeout=30).poses) > 0
    stopping.join(30)
    assert not stopping.is_alive()
    with pytest.raises(QueueFull):
        batcher.reserve(image.nbytes)


_THREAD_REUSE = """
import resource, sys, threading
import numpy as np
from aepose.pipeline.workers import keep_freed_memory
if sys.argv[1] == "keep":
    keep_freed_memory()
faults = []
def work():  # a batch worker's pattern: the same large arrays, allocated and freed per call
    for _ in range(3):
        before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
        arrays = [np.full(16 << 20, 1, np.uint8) for _ in range(10)]
        del arrays
        faults.append(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before)
thread = threading.Thread(target=work)
thread.start()
thread.join()
print(*faults)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_a_worker_thread_reuses_freed_memory_as_the_main_thread_does(tmp_path: Path) -> None:
    """The batch workers run the network in threads: with the command's allocator settings
    (keep_freed_memory), the activations a thread frees are reused by its next call, not
    unmapped and faulted in again (2.7 M page faults for a w32 batch of 8 at 512)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}

    def faults(mode: str) -> list[int]:
        out = subprocess.run([sys.executable, "-c", _THREAD_REUSE, mode], env=env,
                             capture_output=True, text=True, timeout=60, check=True).stdout
        return [int(n) for n in out.split()]

    plain, kept = faults("plain"), faults("keep")
    assert plain[0] > 1000  # the first round touches its pages, either way
    assert kept[0] > 1000
    assert max(kept[1:]) < kept[0] // 100  # then reuses them


def test_the_warm_up_runs_one_batch_on_every_worker(predictor: Predictor) -> None:
    """Two workers (as on two devices): each runs a warm-up batch on its own network,
    although one worker waiting ``max_wait_ms`` could gather both images into one batch."""
    second = Predictor(copy.deepcopy(predictor.model), predictor.config, channel_order="rgb")
    forwards = [0, 0]

    def counter(i: int) -> Any:
        return lambda *_: forwards.__setitem__(i, forwards[i] + 1)

    handles = [network.register_forward_hook(counter(i))
               for i, network in enumerate((predictor.model, second.model))]
    service = Service([predictor, second], ServeLimits(max_batch=8, max_wait_ms=500))
    try:
        service.warm_up()
        assert service.ready.is_set()
        assert forwards == [1, 1]
        assert "aepose_batch_size_count 2" in service.metrics.render()  # two batches of 1
        assert "aepose_batch_size_sum 2" in service.metrics.render()
    finally:
        service.batcher.stop()
        for handle in handles:
            handle.remove()


def _submit_all(batcher: Batcher, key: Any, images: list[np.ndarray]) -> list[Any]:
    """Reserve and submit each image as a job of ``key``, all under the queue's lock (so
    that a worker takes them as one batch), then wait for every result."""
    futures = []
    with batcher._wake:
        for image in images:
            batcher.reserve(image.nbytes)
            futures.append(batcher.submit(Job(image, key, image.nbytes)))
    return [future.result(60) for future in futures]


def _pooled(predictor: Predictor, pool: Any) -> Batcher:
    """A batcher of ``predictor`` (batches of up to 8) decoding in ``pool``."""
    return Batcher([lambda _: predictor], ServeLimits(max_batch=8, max_wait_ms=500),
                   Metrics(), None, [pool])


def test_a_batch_is_decoded_in_the_pool_and_one_image_in_the_worker(
        predictor: Predictor, scenes: list[np.ndarray]) -> None:
    pool = CountingPool()
    batcher = _pooled(predictor, pool)
    try:
        alone = _submit_all(batcher, job_key(predictor), scenes[:1])
        assert pool.decoded == 0
        together = _submit_all(batcher, job_key(predictor), scenes[:4])
        assert pool.decoded == 4
    finally:
        batcher.stop()
    assert pool._shutdown  # the batcher's to close
    expected = aepose.predict(scenes[:4], predictor, channel_order="rgb", min_score=0,
                              pose_nms=None, threshold=0)
    for got, own in zip(alone + together, expected[:1] + expected, strict=True):
        _assert_same_people([p.to_dict() for p in got.poses], [p.to_dict() for p in own.poses])


def test_a_killed_decode_process_leaves_the_batches_answered(
        predictor: Predictor, scenes: list[np.ndarray]) -> None:
    """A decode process killed (as by the OOM killer) between batches: the next batch is
    decoded in the worker's thread, and every later one too (a new pool would fork a
    threaded server)."""
    pool = decode_pool(torch.device("cpu"), 1)
    victim = pool.submit(os.getpid).result()
    batcher = _pooled(predictor, pool)
    try:
        os.kill(victim, signal.SIGKILL)
        first = _submit_all(batcher, job_key(predictor), scenes[:3])
        second = _submit_all(batcher, job_key(predictor), scenes[3:6])
    finally:
        batcher.stop()
    expected = aepose.predict(scenes[:6], predictor, channel_order="rgb", min_score=0,
                              pose_nms=None, threshold=0)
    for got, own in zip(first + second, expected, strict=True):
        assert got.error is None
        _assert_same_people([p.to_dict() for p in got.poses], [p.to_dict() for p in own.poses])
