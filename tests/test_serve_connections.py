"""``aepose serve``'s ``--max-connections``: requests in progress and open streams together.
Past the bound a request gets the project's refusal (503, ``Retry-After``, one line of JSON,
counted in the metrics) at once and its connection is closed; a stream is accepted, told
so and closed with code 1013; a flood of connections holds no more work than the bound;
once the held ones finish, the server serves again.

A request is held in progress by sending its headers and half its body, then waiting.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import struct
import time
from collections.abc import Callable

import pytest
from serve_helpers import Running, jpeg, post_image, request, serving, tiny_predictor

from aepose.apps.bench import crowd_images
from aepose.pipeline.predictor import Predictor
from aepose.serve.app import RETRY_AFTER_S
from aepose.serve.limits import ServeLimits

pytest.importorskip("websockets", reason="pip install 'aepose[serve]'")
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return tiny_predictor()


@pytest.fixture(scope="module")
def image() -> bytes:
    return jpeg(crowd_images(1, (200, 150), seed=5)[0])


class _Held:
    """A ``POST /predict`` of ``image`` in progress: its headers and half its body sent."""

    def __init__(self, server: Running, image: bytes) -> None:
        self.image, self.half = image, len(image) // 2
        self.sock = socket.create_connection(("127.0.0.1", _port(server)), timeout=30)
        self.sock.sendall(_post_head(len(image)) + image[:self.half])

    def finish(self) -> tuple[int, dict[str, object]]:
        """Send the rest of the body: (status, JSON) of the reply."""
        self.sock.sendall(self.image[self.half:])
        reply = http.client.HTTPResponse(self.sock)
        reply.begin()
        try:
            return reply.status, json.loads(reply.read())
        finally:
            self.sock.close()


def _port(server: Running) -> int:
    return int(server.url.rsplit(":", 1)[1])


def _post_head(length: int) -> bytes:
    return (f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


def _wait(condition: Callable[[], bool], what: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, flags=re.M)
    assert match, f"{name} not in the metrics"
    return float(match.group(1))


def _assert_busy_refusal(status: int, headers: dict[str, str], body: bytes) -> None:
    """503, Retry-After, the connection closed, and ``{"error": "one line"}``."""
    assert status == 503
    assert headers["retry-after"] == str(RETRY_AFTER_S)
    assert headers["connection"] == "close"
    assert headers["content-type"] == "application/json"
    assert b"\n" not in body.strip()
    error = json.loads(body)["error"]
    assert list(json.loads(body)) == ["error"]
    assert "2 requests and streams are in progress" in error
    assert f"retry in {RETRY_AFTER_S} s" in error


def _raw_reply(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_past_the_limit_requests_get_503_with_retry_after_and_the_bound_holds(
        predictor: Predictor, image: bytes) -> None:
    with serving(predictor, ServeLimits(max_connections=2)) as server:
        metrics = server.service.metrics
        held = [_Held(server, image) for _ in range(2)]
        _wait(lambda: metrics.connections == 2, "the two requests are not in progress")

        start = time.monotonic()
        _assert_busy_refusal(*request(f"{server.url}/metrics", timeout=10))
        assert time.monotonic() - start < 5  # refused at once, not left waiting
        for probe in ("/healthz", "/readyz"):  # a busy server is alive and ready
            assert request(f"{server.url}{probe}", timeout=10)[0] == 200

        # 10 x the bound: each connection sends a request with part of a large body; each is
        # refused at once and closed, its body unread, and no more work is taken on.
        flood = [socket.create_connection(("127.0.0.1", _port(server)), timeout=10)
                 for _ in range(20)]
        try:
            for sock in flood:
                sock.sendall(_post_head(10_000_000) + image[:1000])
            for sock in flood:
                head, _, body = _raw_reply(sock).partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                headers = dict(line.lower().split(": ", 1) for line in lines[1:])
                assert lines[0].startswith("HTTP/1.1 503 ")
                _assert_busy_refusal(503, headers, body)
                assert metrics.connections == 2
        finally:
            for sock in flood:
                sock.close()

        for one in held:  # released: both held requests are answered in full
            status, reply = one.finish()
            assert status == 200 and reply["people"]
        _wait(lambda: metrics.connections == 0, "the held requests did not end")
        status, reply = post_image(server.url, image)
        assert status == 200 and reply["people"]
        text = request(f"{server.url}/metrics")[2].decode()
        assert _metric(text, 'aepose_errors_total{kind="too_many_connections"}') == 21
        assert _metric(text, 'aepose_requests_total{endpoint="/metrics",status="503"}') == 1
        assert _metric(text, 'aepose_requests_total{endpoint="/predict",status="503"}') == 20
        assert _metric(text, 'aepose_requests_total{endpoint="/predict",status="200"}') == 3
        assert _metric(text, "aepose_connections") == 1  # the /metrics request itself


def test_a_stream_holds_a_slot_and_one_past_the_limit_is_closed_with_1013(
        predictor: Predictor, image: bytes) -> None:
    frame = struct.pack("<d", 0.0) + image
    with serving(predictor, ServeLimits(max_connections=2, max_streams=4)) as server:
        metrics = server.service.metrics
        ws_url = server.url.replace("http://", "ws://") + "/stream"
        with connect(ws_url, open_timeout=10) as first:
            held = _Held(server, image)
            _wait(lambda: metrics.connections == 2, "the stream and request are not counted")
            _assert_busy_refusal(*request(f"{server.url}/metrics", timeout=10))
            with connect(ws_url, open_timeout=10) as second:
                error = json.loads(second.recv(timeout=10))["error"]
                assert "2 requests and streams are in progress" in error
                assert f"retry in {RETRY_AFTER_S} s" in error
                with pytest.raises(ConnectionClosed) as closed:
                    second.recv(timeout=10)
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
                assert f"retry in {RETRY_AFTER_S} s" in closed.value.rcvd.reason
            first.send(frame)  # the streams within the bound go on
            assert json.loads(first.recv(timeout=30))["people"]
            assert held.finish()[0] == 200
        _wait(lambda: metrics.connections == 0, "the stream's slot was not given back")
        with connect(ws_url, open_timeout=10) as again:
            again.send(frame)
            assert json.loads(again.recv(timeout=30))["people"]
        text = request(f"{server.url}/metrics")[2].decode()
        assert _metric(text, 'aepose_errors_total{kind="too_many_connections"}') == 2
        assert _metric(text, 'aepose_requests_total{endpoint="/metrics",status="503"}') == 1


def test_idle_connections_hold_no_slot(predictor: Predictor, image: bytes) -> None:
    # Idle sockets hold no work: they must not lock the clients that send requests out.
    with serving(predictor, ServeLimits(max_connections=2)) as server:
        idle = [socket.create_connection(("127.0.0.1", _port(server)), timeout=10)
                for _ in range(4)]
        try:
            time.sleep(0.2)  # the server has accepted them
            assert request(f"{server.url}/healthz", timeout=10)[0] == 200
            status, reply = post_image(server.url, image)
            assert status == 200 and reply["people"]
        finally:
            for sock in idle:
                sock.close()
