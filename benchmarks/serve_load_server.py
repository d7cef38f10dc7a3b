"""What the parts of ``serve_load.py`` share: ``aepose serve`` started in its own process
(:func:`serving`), one request (:func:`status`), generated JPEGs and checkpoints."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import torch

from aepose.apps.bench import crowd_images, mimic_trained_maps, realistic_weights
from aepose.config import get_preset
from aepose.data.dataset import normalize_image
from aepose.models import build_model

SRC = Path(__file__).resolve().parents[1] / "src"


@dataclass
class Server:
    url: str
    process: subprocess.Popen[str]

    def rss_mb(self, peak: bool = False) -> float:
        key = "VmHWM:" if peak else "VmRSS:"
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1]) / 1024
        return float("nan")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serving(weights: Path | str, *options: str) -> Iterator[Server]:
    """``aepose serve`` on a free 127.0.0.1 port, ready; stopped (SIGTERM) on leaving."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "aepose", "serve", "--weights", str(weights), "--port",
         str(port), *options], env={**os.environ, "PYTHONPATH": str(SRC)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    server = Server(f"127.0.0.1:{port}", process)
    try:
        deadline = time.monotonic() + 300
        while status(server.url, "GET", "/readyz")[0] != 200:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"aepose serve {weights} did not become ready")
            time.sleep(0.3)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def status(host: str, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None, timeout: float = 120
            ) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of one request on a new connection; (0, ...) when the
    connection fails."""
    connection = http.client.HTTPConnection(host, timeout=timeout)
    try:
        connection.request(method, path, body, headers or {})
        reply = connection.getresponse()
        return (reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read())
    except OSError:
        return 0, {}, b""
    finally:
        connection.close()


def jpegs(count: int, size: tuple[int, int]) -> list[bytes]:
    out = []
    for image in crowd_images(count, size, seed=11):
        ok, data = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
        assert ok
        out.append(data.tobytes())
    return out


def checkpoint(preset: str, folder: Path) -> Path:
    """``preset``'s network with realistic weights and trained-like maps, saved."""
    cfg = get_preset(preset)
    torch.manual_seed(0)
    model = realistic_weights(build_model(cfg), seed=0).eval()
    probe = torch.stack([normalize_image(crowd_images(1, (128, 128), seed=1)[0])])
    mimic_trained_maps(model, cfg, probe)
    path = folder / f"{preset}.pth"
    torch.save({"state_dict": model.state_dict(), "meta": {}}, path)
    return path

