"""The overload and fuzz parts of ``serve_load.py`` (see there)."""

from __future__ import annotations

import argparse
import json
import random
import struct
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from serve_load_server import checkpoint, jpegs, serving, status


def run_overload(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    preset = args.presets[0]
    weights = checkpoint(preset, folder)
    images = jpegs(8, (320, 240))
    queue = 16
    with serving(weights, "--preset", preset, "--queue", str(queue)) as server:
        status(server.url, "POST", "/predict", images[0],
                    {"Content-Type": "image/jpeg"})  # warm the first request
        before = server.rss_mb()
        replies: list[tuple[int, dict[str, str], bytes]] = []
        lock = threading.Lock()

        def one(k: int) -> None:
            reply = status(server.url, "POST", "/predict", images[k % len(images)],
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
        after = status(server.url, "POST", "/predict", images[0],
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
    weights = checkpoint(preset, folder)
    image = jpegs(1, (320, 240))[0]
    rng = random.Random(0)
    statuses: dict[int, int] = {}
    not_one_line = 0
    with serving(weights, "--preset", preset, "--max-body-mb", "1") as server:
        for path, body, headers in _fuzz_requests(rng, image, args.fuzz):
            code, _, raw = status(server.url, "POST", path, body, headers)
            statuses[code] = statuses.get(code, 0) + 1
            if code != 200:
                reply = json.loads(raw) if raw else {}
                not_one_line += list(reply) != ["error"] or "\n" in reply["error"]
        stream = _fuzz_stream(server.url, rng, image, args.fuzz // 2)
        alive = status(server.url, "GET", "/healthz")[0]
        crashed = server.process.poll() is not None
    result = {"requests": args.fuzz, "statuses": dict(sorted(statuses.items())),
              "5xx": sum(n for s, n in statuses.items() if s >= 500 or s == 0),
              "refusals_not_one_json_line": not_one_line, "stream_messages": stream,
              "healthz_after": alive, "crashed": crashed}
    print(json.dumps(result), flush=True)
    return result

