"""``aepose serve`` under load, on 127.0.0.1 only, bounded in requests and seconds.

Four parts (``--parts``), each against the real command (``python -m aepose serve``) in its
own process, its RSS read from /proc:

load      requests/s and latency p50/p95 with 1, 4, 16, 64 clients (threads, each one
          keep-alive connection posting generated 320x240 crowd JPEGs back to back for
          ``--seconds``), per preset, with batching (``--max-batch 8``) and without
          (``--max-batch 1``), the two servers measured in turn for each row; networks with
          realistic weights whose maps load the decoder like a trained one's.
overload  a burst of 10 x the queue (``--queue 16``: 160 requests at once): every reply must
          be 200 or 503 with Retry-After; the server's peak RSS; one normal request after.
fuzz      ``--fuzz`` malformed requests (bodies: random bytes, cut and bit-flipped JPEGs,
          bomb headers; headers: content types, tokens; options: unknown, NaN, inf, huge,
          repeated) and malformed WebSocket messages: no reply may be a 5xx, every refusal is
          one line of JSON, and the server must still answer /healthz.
stream    a generated 30 fps clip (``aepose synth --video``) sent over ``WS /stream`` in
          real time (frame k at k / 30 s): frames answered per second, dropped frames, and
          IDF1 against the clip's truth (benchmarks/tracking.py's evaluation) beside
          ``aepose predict`` on the same clip with the same weights (``--weights``: a
          trained model, e.g. ``python -m aepose demo``'s runs/demo/train/last.pth); then
          the clip again in lock-step, as PNG (each frame sent once the last is answered: no
          drops, and the very pixels predict reads).

    .venv/bin/python benchmarks/serve_load.py --parts load --presets \
        higherhrnet_small_crowdpose_128 higherhrnet_w32_crowdpose_512
    .venv/bin/python benchmarks/serve_load.py --parts overload fuzz stream \
        --weights runs/demo/train/last.pth
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from tracking import evaluate_tracking

from aepose.apps.bench import crowd_images, mimic_trained_maps, realistic_weights
from aepose.config import get_preset
from aepose.data.dataset import normalize_image
from aepose.keypoints import get_spec
from aepose.models import build_model

SRC = Path(__file__).resolve().parents[1] / "src"


# ---------------------------------------------------------------------------------------
# The server and its clients


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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serving(weights: Path | str, *options: str) -> Iterator[Server]:
    """``aepose serve`` on a free 127.0.0.1 port, ready; stopped (SIGTERM) on leaving."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "aepose", "serve", "--weights", str(weights), "--port",
         str(port), *options], env={**os.environ, "PYTHONPATH": str(SRC)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    server = Server(f"127.0.0.1:{port}", process)
    try:
        deadline = time.monotonic() + 300
        while _status(server.url, "GET", "/readyz")[0] != 200:
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


def _status(host: str, method: str, path: str, body: bytes | None = None,
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


def _jpegs(count: int, size: tuple[int, int]) -> list[bytes]:
    out = []
    for image in crowd_images(count, size, seed=11):
        ok, data = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
        assert ok
        out.append(data.tobytes())
    return out


def _checkpoint(preset: str, folder: Path) -> Path:
    """``preset``'s network with realistic weights and trained-like maps, saved."""
    cfg = get_preset(preset)
    torch.manual_seed(0)
    model = realistic_weights(build_model(cfg), seed=0).eval()
    probe = torch.stack([normalize_image(crowd_images(1, (128, 128), seed=1)[0])])
    mimic_trained_maps(model, cfg, probe)
    path = folder / f"{preset}.pth"
    torch.save({"state_dict": model.state_dict(), "meta": {}}, path)
    return path


# ---------------------------------------------------------------------------------------
# load


def _client(host: str, images: list[bytes], until: float, seed: int,
            latencies: list[float], statuses: list[int]) -> None:
    rng = random.Random(seed)
    connection = http.client.HTTPConnection(host, timeout=600)
    while time.monotonic() < until:
        start = time.perf_counter()
        try:
            connection.request("POST", "/predict", rng.choice(images),
                               {"Content-Type": "image/jpeg"})
            reply = connection.getresponse()
            reply.read()
            status = reply.status
        except OSError:
            status = 0
            connection.close()
            connection = http.client.HTTPConnection(host, timeout=600)
        latencies.append(time.perf_counter() - start)
        statuses.append(status)
    connection.close()


def load(host: str, images: list[bytes], clients: int, seconds: float) -> dict[str, Any]:
    """Clients posting back to back for ``seconds``; requests still running then finish
    and count (their latency is real), the rate is over the whole time."""
    latencies: list[float] = []
    statuses: list[int] = []
    start = time.monotonic()
    threads = [threading.Thread(target=_client, args=(host, images, start + seconds, i,
                                                      latencies, statuses))
               for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - start
    ok = [t for t, s in zip(latencies, statuses, strict=True) if s == 200]
    return {"clients": clients, "requests": len(ok), "errors": len(statuses) - len(ok),
            "req_per_s": len(ok) / elapsed,
            "p50_ms": 1000 * float(np.percentile(ok, 50)) if ok else float("nan"),
            "p95_ms": 1000 * float(np.percentile(ok, 95)) if ok else float("nan")}


def run_load(args: argparse.Namespace, folder: Path) -> list[dict[str, Any]]:
    images = _jpegs(8, (320, 240))
    rows = []
    for preset in args.presets:
        weights = _checkpoint(preset, folder)
        # Both servers up, measured in turn for each number of clients: on a shared machine
        # the load drifts, and alternating keeps each pair of rows under the same drift.
        with (serving(weights, "--preset", preset, "--max-batch", "8") as on,
              serving(weights, "--preset", preset, "--max-batch", "1") as off):
            for server in (on, off):
                load(server.url, images, 1, 2.0)  # warm the server's first requests
            for clients in args.clients:
                for batch, server in ((8, on), (1, off)):
                    row = {"preset": preset, "max_batch": batch,
                           **load(server.url, images, clients, args.seconds),
                           "rss_mb": server.rss_mb(peak=True),
                           "load_average": os.getloadavg()[0]}
                    print(json.dumps(row), flush=True)
                    rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------
# overload


def run_overload(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    preset = args.presets[0]
    weights = _checkpoint(preset, folder)
    images = _jpegs(8, (320, 240))
    queue = 16
    with serving(weights, "--preset", preset, "--queue", str(queue)) as server:
        load(server.url, images, 1, 2.0)
        before = server.rss_mb()
        replies: list[tuple[int, dict[str, str], bytes]] = []
        lock = threading.Lock()

        def one(k: int) -> None:
            reply = _status(server.url, "POST", "/predict", images[k % len(images)],
                            {"Content-Type": "image/jpeg"})
            with lock:
                replies.append(reply)

        start = time.monotonic()
        threads = [threading.Thread(target=one, args=(k,)) for k in range(10 * queue)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        burst_s = time.monotonic() - start
        after = _status(server.url, "POST", "/predict", images[0],
                        {"Content-Type": "image/jpeg"})
        refused = [r for r in replies if r[0] == 503]
        result = {
            "preset": preset, "queue": queue, "burst": len(replies),
            "answered_200": sum(r[0] == 200 for r in replies),
            "refused_503": len(refused),
            "503_with_retry_after": sum("retry-after" in r[1] for r in refused),
            "other": sorted({r[0] for r in replies} - {200, 503}),
            "burst_s": burst_s, "rss_before_mb": before, "rss_peak_mb": server.rss_mb(True),
            "rss_after_mb": server.rss_mb(), "after_status": after[0],
            "after_people": len(json.loads(after[2]).get("people", [])) if after[0] else 0}
    print(json.dumps(result), flush=True)
    return result


# ---------------------------------------------------------------------------------------
# fuzz


def _fuzz_requests(rng: random.Random, image: bytes, count: int) -> Iterator[
        tuple[str, bytes, dict[str, str]]]:
    """(path with query, body, headers) of malformed requests."""
    names = ["min_score", "max_people", "flip", "overlay", "token", "x", "min_scor", "",
             "flip[]", "ü"]
    values = ["nan", "inf", "-inf", "-1", "2", "1e309", "0x10", "", "true", "false", "yes",
              "3", "0", "99999999999999999999", "%00", "é", "1" * 500, "0.5"]
    types = ["image/jpeg", "image/png", "image/gif", "application/json", "text/plain", "",
             "multipart/form-data", "multipart/form-data; boundary=x", "image/*",
             "application/octet-stream", "IMAGE/JPEG", "image/jpeg; charset=utf-8"]
    for k in range(count):
        kind = k % 6
        body = image
        if kind == 0:
            body = rng.randbytes(rng.randint(0, 4096))
        elif kind == 1:
            body = image[: rng.randint(0, len(image))]
        elif kind == 2:
            flipped = bytearray(image)
            for _ in range(rng.randint(1, 40)):
                flipped[rng.randrange(len(flipped))] = rng.randrange(256)
            body = bytes(flipped)
        elif kind == 3:
            side = rng.choice([0, 1, 65535, 2**31, 40000])
            body = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR" + side.to_bytes(4, "big") * 2 + b"\0" * 16
        query = "&".join(f"{urllib.parse.quote(rng.choice(names))}="
                         f"{urllib.parse.quote(rng.choice(values))}"
                         for _ in range(rng.randint(0, 3))) if kind in (4, 5) else ""
        headers = {"Content-Type": rng.choice(types) if kind != 5 else "image/jpeg"}
        if rng.random() < 0.2:
            headers["Authorization"] = rng.choice(["Bearer", "Bearer x" * 50, "Basic eA==",
                                                   "bearer  x"])
        if kind == 5 and rng.random() < 0.5:
            boundary = "b" + str(k)
            headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
            field = rng.choice(["image", "img", "image\"; filename=\"", ""])
            body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"\r\n\r\n"
                    .encode() + body[: rng.randint(0, len(body))]
                    + (f"\r\n--{boundary}--\r\n".encode() if rng.random() < 0.7 else b""))
        yield "/predict" + ("?" + query if query else ""), body, headers


def _fuzz_message(rng: random.Random, image: bytes, k: int) -> str | bytes:
    """A malformed (or, rarely, a lucky valid) WebSocket message."""
    kind = k % 5
    if kind == 0:
        return rng.choice(["", "hello", "{}", "\0" * 100])
    if kind == 1:
        return rng.randbytes(rng.randint(0, 16))
    if kind == 2:
        stamp = rng.choice([float("nan"), float("inf"), -1e308, 1e308])
        return struct.pack("<d", stamp) + image
    if kind == 3:
        return struct.pack("<d", 1e6 + k) + image[: rng.randint(0, len(image))]
    return struct.pack("<d", 1e6 + k) + rng.randbytes(rng.randint(1, 2048))


def _fuzz_stream(host: str, rng: random.Random, image: bytes, count: int) -> dict[str, int]:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    counts = {"sent": 0, "errors": 0, "replies": 0, "closed": 0}
    messages = iter(range(count))
    left = True
    while left:  # one connection until the server closes one (it should not)
        with connect(f"ws://{host}/stream", open_timeout=30) as ws:
            for k in messages:
                try:
                    ws.send(_fuzz_message(rng, image, k))
                    counts["sent"] += 1
                    reply = json.loads(ws.recv(timeout=60))
                    counts["errors" if "error" in reply else "replies"] += 1
                except (ConnectionClosed, TimeoutError):
                    counts["closed"] += 1
                    break
            else:
                left = False
    return counts


def run_fuzz(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    preset = args.presets[0]
    weights = _checkpoint(preset, folder)
    image = _jpegs(1, (320, 240))[0]
    rng = random.Random(0)
    statuses: dict[int, int] = {}
    not_one_line = 0
    with serving(weights, "--preset", preset, "--max-body-mb", "1") as server:
        for path, body, headers in _fuzz_requests(rng, image, args.fuzz):
            status, _, raw = _status(server.url, "POST", path, body, headers)
            statuses[status] = statuses.get(status, 0) + 1
            if status != 200:
                reply = json.loads(raw) if raw else {}
                not_one_line += list(reply) != ["error"] or "\n" in reply["error"]
        stream = _fuzz_stream(server.url, rng, image, args.fuzz // 2)
        alive = _status(server.url, "GET", "/healthz")[0]
        crashed = server.process.poll() is not None
    result = {"requests": args.fuzz, "statuses": dict(sorted(statuses.items())),
              "5xx": sum(n for s, n in statuses.items() if s >= 500 or s == 0),
              "refusals_not_one_json_line": not_one_line, "stream_messages": stream,
              "healthz_after": alive, "crashed": crashed}
    print(json.dumps(result), flush=True)
    return result


# ---------------------------------------------------------------------------------------
# stream


def _replayed(frames: list[tuple[list[int], np.ndarray]]) -> Any:
    """A 'tracker' for evaluate_tracking that gives back recorded IDs frame by frame."""
    queue = iter(frames)

    def tracker(detections: np.ndarray, scores: np.ndarray, timestamp_ms: float
                ) -> tuple[list[int], np.ndarray]:
        return next(queue)

    return tracker


def _idf1(truth: dict[str, Any], frames: list[tuple[list[int], np.ndarray]], spec: Any
          ) -> float:
    import motmetrics as mm

    detections = [k for _, k in frames]
    acc, _, _ = evaluate_tracking(truth, detections, _replayed(frames), spec)
    summary = mm.metrics.create().compute(acc, metrics=["idf1"])
    return float(summary["idf1"].iloc[0])


def _people(records: list[dict[str, Any]], k: int) -> tuple[list[int], np.ndarray]:
    ids = [int(p.get("track_id", -1)) for p in records]
    points = (np.array([p["keypoints"] for p in records], np.float64) if records
              else np.zeros((0, k, 3)))
    return ids, points


def run_stream(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    from websockets.sync.client import connect

    from aepose.video.readers import iter_video_frames

    if not args.weights:
        raise SystemExit("--parts stream needs --weights: a trained model (python -m aepose "
                         "demo writes runs/demo/train/last.pth)")
    clips = folder / "clips"
    subprocess.run([sys.executable, "-m", "aepose", "synth", str(clips), "--video",
                    "--images", "1", "--frames", str(args.frames), "--fps", "30", "--people",
                    "4"], check=True, env={**os.environ, "PYTHONPATH": str(SRC)},
                   stdout=subprocess.DEVNULL)
    video = next(clips.rglob("*.mp4"))
    truth = json.loads(video.with_suffix(".json").read_text())
    spec = get_spec("crowdpose")
    out = folder / "predicted"
    subprocess.run([sys.executable, "-m", "aepose", "predict", str(video), "--weights",
                    args.weights, "--out", str(out), "--no-draw"], check=True,
                   env={**os.environ, "PYTHONPATH": str(SRC)}, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    predicted = json.loads((out / "predictions.json").read_text())["images"]
    by_frame = {e["frame"]: e["people"] for e in predicted}
    predict_frames = [_people(by_frame.get(f, []), spec.num_keypoints)
                      for f in range(len(truth["frames"]))]
    jpegs, pngs = [], []  # PNG: lossless, the very frames predict reads
    for _, rgb in iter_video_frames(video):
        ok, data = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
        ok2, lossless = cv2.imencode(".png", rgb[..., ::-1])
        assert ok and ok2
        jpegs.append(data.tobytes())
        pngs.append(lossless.tobytes())
    replies: dict[float, dict[str, Any]] = {}
    with serving(args.weights) as server, connect(f"ws://{server.url}/stream") as ws:

        def receive() -> None:
            while len(replies) + sum(r["dropped"] for r in replies.values()) < len(jpegs):
                reply = json.loads(ws.recv(timeout=120))
                replies[reply["timestamp_ms"]] = reply

        reader = threading.Thread(target=receive)
        reader.start()
        start = time.monotonic()
        for k, data in enumerate(jpegs):  # in real time: frame k at k / 30 s
            time.sleep(max(0.0, start + k / 30.0 - time.monotonic()))
            ws.send(struct.pack("<d", k * 1000.0 / 30.0) + data)
        reader.join(300)
        elapsed = time.monotonic() - start
        # Lock-step on a new stream: each frame (PNG) sent once the last is answered, so none
        # is dropped and the tracker sees what predict's sees.
        with connect(f"ws://{server.url}/stream") as lockstep:
            stepped = []
            for k, data in enumerate(pngs):
                lockstep.send(struct.pack("<d", k * 1000.0 / 30.0) + data)
                stepped.append(json.loads(lockstep.recv(timeout=120)))
    served_frames = []
    for k in range(len(jpegs)):
        reply = replies.get(k * 1000.0 / 30.0)
        served_frames.append(_people(reply["people"] if reply else [], spec.num_keypoints))
    latencies = [r["latency_ms"] for r in replies.values()]
    result = {"frames": len(jpegs), "answered": len(replies),
              "dropped": sum(r["dropped"] for r in replies.values()),
              "answered_per_s": len(replies) / elapsed,
              "latency_p50_ms": float(np.percentile(latencies, 50)),
              "latency_p95_ms": float(np.percentile(latencies, 95)),
              "idf1_stream": _idf1(truth, served_frames, spec),
              "idf1_lockstep": _idf1(truth, [_people(r["people"], spec.num_keypoints)
                                             for r in stepped], spec),
              "idf1_predict": _idf1(truth, predict_frames, spec)}
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", nargs="+", default=["load", "overload", "fuzz", "stream"],
                        choices=["load", "overload", "fuzz", "stream"])
    parser.add_argument("--presets", nargs="+", default=["higherhrnet_small_crowdpose_128",
                                                         "higherhrnet_w32_crowdpose_512"])
    parser.add_argument("--clients", nargs="+", type=int, default=[1, 4, 16, 64])
    parser.add_argument("--seconds", type=float, default=15.0, help="per load row")
    parser.add_argument("--fuzz", type=int, default=240, help="malformed requests (and half "
                        "as many WebSocket messages)")
    parser.add_argument("--frames", type=int, default=150, help="stream: clip frames")
    parser.add_argument("--weights", help="stream: a trained model")
    parser.add_argument("--json", help="also write every result to this file")
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()}", flush=True)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for part in args.parts:
            results[part] = {"load": run_load, "overload": run_overload, "fuzz": run_fuzz,
                             "stream": run_stream}[part](args, Path(tmp))
    print(f"load average at end: {os.getloadavg()}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
