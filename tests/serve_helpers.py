"""A server of ``aepose serve``'s application on 127.0.0.1 in a thread, and plain clients
(shared by the test_serve*.py files)."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import uvicorn

from aepose.apps.serve import uvicorn_config
from aepose.config import get_preset
from aepose.pipeline.predictor import Predictor
from aepose.serve.app import STATIC
from aepose.serve.limits import ServeLimits
from aepose.serve.service import ServeSettings, Service

TINY = "higherhrnet_tiny_crowdpose_128"


def tiny_predictor() -> Predictor:
    """The tiny preset's network with maps like a trained one's (people are found)."""
    from helpers import detecting_network

    return Predictor(detecting_network(TINY), get_preset(TINY), channel_order="rgb")


@dataclass
class Running:
    """A server running: its base URL and its Service."""

    url: str
    service: Service
    server: uvicorn.Server


@contextmanager
def serving(predictor: Predictor, limits: ServeLimits | None = None,
            settings: ServeSettings | None = None, static: Path = STATIC,
            ready: bool = True) -> Iterator[Running]:
    """The app on a free 127.0.0.1 port in a thread, warmed up when ``ready``; stopped (and
    its batcher drained) on leaving."""
    service = Service([predictor], limits, settings)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn_config(service, port=port, static=static))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started or (ready and not service.ready.is_set()):
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield Running(f"http://127.0.0.1:{port}", service, server)
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def request(url: str, data: bytes | None = None, headers: dict[str, str] | None = None,
            method: str | None = None, timeout: float = 30) -> tuple[int, dict[str, str], bytes]:
    """(status, headers by lower-case name, body) of one HTTP request; 4xx and 5xx are
    returned, not raised."""
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as reply:
            return reply.status, {k.lower(): v for k, v in reply.headers.items()}, reply.read()
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()


def post_image(url: str, image: bytes, query: str = "", headers: dict[str, str] | None = None,
               content_type: str = "image/jpeg") -> tuple[int, dict[str, Any]]:
    """(status, JSON) of ``POST /predict`` with a raw image body."""
    status, _, body = request(f"{url}/predict{query}", image,
                              {"Content-Type": content_type, **(headers or {})})
    return status, json.loads(body)


def jpeg(image_rgb: np.ndarray, quality: int = 95) -> bytes:
    ok, data = cv2.imencode(".jpg", np.ascontiguousarray(image_rgb[..., ::-1]),
                            [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return data.tobytes()


def png(image_rgb: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", np.ascontiguousarray(image_rgb[..., ::-1]))
    assert ok
    return data.tobytes()


class CountingPool(ThreadPoolExecutor):
    """A decode pool that counts the images handed to it."""

    def __init__(self) -> None:
        super().__init__(2)
        self.decoded = 0

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        self.decoded += 1
        return super().submit(fn, *args, **kwargs)


def job_key(predictor: Predictor) -> tuple[bool, int]:
    """A batcher job's settings key for ``predictor``'s own test settings."""
    return predictor.config.test.flip, predictor.config.test.max_people
