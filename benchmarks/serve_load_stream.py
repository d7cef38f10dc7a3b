"""The stream part of ``serve_load.py`` (see there)."""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from serve_load_server import SRC, serving
from tracking import evaluate_tracking

from aepose.keypoints import get_spec


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

