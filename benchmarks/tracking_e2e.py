"""Part (b) of issue 15 for ``benchmarks/tracking.py --end-to-end``: the trackers on a
trained model's poses of rendered sequences, in place of simulated detections."""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import motmetrics as mm
import numpy as np
from tracking import Tracker, evaluate_tracking, make_greedy, make_ours

from aepose.keypoints import KeypointSpec
from aepose.tracking.tracker import TrackerConfig


def model_detections(spec: KeypointSpec, weights: str, frames: int,
                     people: int, seed: int, min_score: float, folder: Path
                     ) -> tuple[dict[str, Any], list[np.ndarray], list[np.ndarray]]:
    """(truth, per-frame [P, K, 3] poses of the model, per-frame [P] their scores) for one
    rendered sequence."""
    from aepose.pipeline.predictor import Predictor
    from aepose.synth.video import write_sequence
    from aepose.video.readers import iter_video_frames

    video, truth_path = write_sequence(folder, spec, frames=frames, people=people, seed=seed,
                                       name=f"p{people}_s{seed}", overwrite=True)
    truth = json.loads(truth_path.read_text())
    predictor = _predictor(weights)
    assert isinstance(predictor, Predictor)
    detections, scores = [], []
    for _, rgb in iter_video_frames(video):
        poses = [p for p in predictor(rgb) if p.score >= min_score]
        detections.append(np.stack([p.keypoints for p in poses]) if poses
                          else np.zeros((0, spec.num_keypoints, 3), np.float32))
        scores.append(np.array([p.score for p in poses], dtype=np.float64))
    return truth, detections, scores


_PREDICTORS: dict[str, Any] = {}


def _predictor(weights: str) -> Any:
    """One Predictor per weights file (RGB frames, the checkpoint's own test settings)."""
    if weights not in _PREDICTORS:
        from aepose.pipeline.predictor import Predictor

        _PREDICTORS[weights] = Predictor.from_checkpoint(weights, device="cpu",
                                                         channel_order="rgb")
    return _PREDICTORS[weights]


def run_end_to_end(args: argparse.Namespace) -> None:
    """The table of part (b): trackers on a trained model's poses of rendered sequences."""
    if not Path(args.weights).is_file():
        raise SystemExit(f"{args.weights}: no such checkpoint; train one with "
                         "'python -m aepose demo --minutes 6 --out /tmp/demo15' and pass "
                         "--weights /tmp/demo15/train/last.pth")
    spec: KeypointSpec = _predictor(args.weights).spec  # the model's keypoints
    methods: dict[str, Callable[[], Tracker]] = {
        "greedy IoU (mmpose default)": lambda: make_greedy(spec, use_oks=False),
        "greedy OKS (mmpose --use-oks)": lambda: make_greedy(spec, use_oks=True),
        "PoseTracker min_score=0 (tracks everyone)": lambda: make_ours(spec, TrackerConfig(
            min_score=0.0)),
        "PoseTracker": lambda: make_ours(spec, TrackerConfig()),
        "PoseTracker smooth=True": lambda: make_ours(spec, TrackerConfig(smooth=True)),
    }
    print("| people | detections/frame | tracker | MOTA | IDF1 | ID switches "
          "| joint error px |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for people in args.people:
            sequences = [model_detections(spec, args.weights, args.frames, people,
                                          seed, args.min_score, Path(folder))
                         for seed in range(args.first_seed, args.first_seed + args.seeds)]
            per_frame = np.mean([len(d) for _, dets, _ in sequences for d in dets])
            for name, factory in methods.items():
                results = [evaluate_tracking(truth, dets, factory(), spec, args.gt, scores)
                           for truth, dets, scores in sequences]
                summary = mm.metrics.create().compute_many(
                    [r[0] for r in results], metrics=["mota", "idf1", "num_switches"],
                    generate_overall=True)
                row = summary.loc["OVERALL"]
                error = np.nanmean([r[2] for r in results])
                print(f"| {people} | {per_frame:.1f} | {name} | {row['mota']:.3f} | "
                      f"{row['idf1']:.3f} | {int(row['num_switches'])} | {error:.2f} |")
    print(f"\nend to end: {args.weights}; {args.seeds} rendered sequences of {args.frames} "
          f"frames (640x480) per row; spec {spec.name}; people scoring >= {args.min_score}")
