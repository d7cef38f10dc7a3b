"""``aepose serve`` under load, on 127.0.0.1 only, bounded in requests and seconds.

Five parts (``--parts``), each against the real command (``python -m aepose serve``) in its
own process, its RSS read from /proc:

load      requests/s and latency p50/p95 with 1, 4, 16, 64 clients (threads, each one
          keep-alive connection posting generated 320x240 crowd JPEGs back to back for
          ``--seconds``), per preset, with batching (``--max-batch 8``) and without
          (``--max-batch 1``), the two servers measured in turn for each row, ``--repeats``
          rounds with either server first in turn; networks with realistic weights whose
          maps load the decoder like a trained one's. Parts live in serve_load_server.py
          (the server, requests, images, weights), serve_load_checks.py (overload, fuzz) and
          serve_load_stream.py.
overload  a burst of 10 x the queue (``--queue 16``: 160 requests at once): every reply must
          be 200 or 503 with Retry-After; the server's peak RSS; one normal request after.
fuzz      ``--fuzz`` malformed requests (bodies: random bytes, cut and bit-flipped JPEGs,
          bomb headers; headers: content types, tokens; options: unknown, NaN, inf, huge,
          repeated) and malformed WebSocket messages: no reply may be a 5xx, every refusal is
          one line of JSON, and the server must still answer /healthz.
cpu       where a request's CPU time goes, with and without batching (serve_load_cpu.py).
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
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from serve_load_checks import run_fuzz, run_overload
from serve_load_cpu import run_cpu
from serve_load_server import checkpoint, jpegs, serving
from serve_load_stream import run_stream


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
    images = jpegs(8, (320, 240))
    rows = []
    for preset in args.presets:
        weights = checkpoint(preset, folder)
        # Both servers up, measured in turn for each number of clients: on a shared machine
        # the load drifts, and alternating keeps each pair of rows under the same drift.
        with (serving(weights, "--preset", preset, "--max-batch", "8") as on,
              serving(weights, "--preset", preset, "--max-batch", "1") as off):
            for server in (on, off):
                load(server.url, images, 1, 2.0)  # warm the server's first requests
            for repeat in range(args.repeats):
                # Either server first in turn: a drift within a pair falls on both alike.
                pairs = ((8, on), (1, off)) if repeat % 2 == 0 else ((1, off), (8, on))
                for clients in args.clients:
                    for batch, server in pairs:
                        row = {"preset": preset, "max_batch": batch, "repeat": repeat,
                               **load(server.url, images, clients, args.seconds),
                               "rss_mb": server.rss_mb(peak=True),
                               "load_average": os.getloadavg()[0]}
                        print(json.dumps(row), flush=True)
                        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", nargs="+", default=["load", "overload", "fuzz", "stream"],
                        choices=["load", "overload", "fuzz", "stream", "cpu"])
    parser.add_argument("--presets", nargs="+", default=["higherhrnet_small_crowdpose_128",
                                                         "higherhrnet_w32_crowdpose_512"])
    parser.add_argument("--clients", nargs="+", type=int, default=[1, 4, 16, 64])
    parser.add_argument("--seconds", type=float, default=15.0, help="per load row")
    parser.add_argument("--repeats", type=int, default=1, help="load: rounds of every row")
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
                             "stream": run_stream, "cpu": run_cpu}[part](args, Path(tmp))
    print(f"load average at end: {os.getloadavg()}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
