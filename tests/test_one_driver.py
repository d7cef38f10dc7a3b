"""One driver behind every way to predict: ``aepose predict``, ``aepose.predict()``,
``Predictor``, torchrun predict and the ONNX backend give, on one folder and one clip, the
poses recorded in tests/data/one_driver_golden.json, which were written by the code before
the driver was unified (each path then had its own copy of source handling and tracking).

``outputs`` uses only the public API and the command line, so the same function recorded
the golden file on the earlier tree. Regenerate deliberately with
``AEPOSE_WRITE_GOLDEN=1 pytest tests/test_one_driver.py``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch

import aepose

GOLDEN = Path(__file__).parent / "data" / "one_driver_golden.json"
TINY = "higherhrnet_tiny_crowdpose_128"
FULL = 3  # people per image whose keypoints are recorded
SRC = Path(aepose.__file__).resolve().parents[1]

Digest = list[list[Any]]  # per image or frame: [file name, frame, people]
# The recorded outputs are the reference's: every person, no pose NMS, every keypoint's own
# score. The prediction defaults keep fewer people and mark weak keypoints; compare like
# with like.
EVERYONE = ["--min-score", "0", "--pose-nms", "none", "--threshold", "0"]


def make_inputs(root: Path) -> tuple[Path, Path, Path]:
    """A seeded tiny checkpoint, a folder of three generated crowd images and a 12-frame
    clip of three walking people (whose tracks the video paths must keep)."""
    from aepose.apps.bench import crowd_images, mimic_trained_maps, realistic_weights
    from aepose.data.dataset import normalize_image
    from aepose.synth import render_scene, sample_scene
    from aepose.synth.video import write_sequence

    cfg = aepose.get_preset(TINY)
    torch.manual_seed(0)
    model = realistic_weights(aepose.build_model(cfg)).eval()
    # Maps shaped like a trained network's, so people score high enough to be tracked.
    batch = torch.stack([normalize_image(im) for im in crowd_images(2, (160, 128), seed=2)])
    mimic_trained_maps(model, cfg, batch)
    weights = root / "w.pth"
    torch.save({"model": model.state_dict(), "config": dataclasses.asdict(cfg)}, weights)
    folder = root / "images"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for n in range(3):
        image = render_scene(sample_scene(rng, 160, 128)).image
        cv2.imwrite(str(folder / f"{n}.png"), image[..., ::-1])
    clip, _ = write_sequence(root / "clip", "crowdpose", frames=12, people=3, size=(160, 128),
                             seed=0, name="clip")
    return weights, folder, clip


def _people(poses: list[dict[str, Any]]) -> list[Any]:
    """One image's people, compactly: [score, track_id] of each, and the keypoints of the
    first FULL of them (enough to pin the coordinates; the file stays small)."""
    return [[[round(float(p["score"]), 6), p.get("track_id")] for p in poses],
            [np.round(np.asarray(p["keypoints"], np.float64), 3).tolist()
             for p in poses[:FULL]]]


def _from_predictions_json(path: Path) -> Digest:
    doc = json.loads(path.read_text())
    return [[Path(e["file_name"]).name, e.get("frame"), _people(e["people"])]
            for e in doc["images"]]


def _cli(*argv: str, ranks: int = 1) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SRC)}
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                str(ranks)] if ranks > 1 else []
    done = subprocess.run([sys.executable, *launcher, "-m", "aepose", *argv], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def outputs(weights: Path, folder: Path, clip: Path, out: Path) -> dict[str, Digest]:
    """The torch paths' poses on ``folder`` and ``clip`` (rounded: see _people)."""
    common = [str(folder), str(clip), "--weights", str(weights), "--device", "cpu",
              "--no-draw", *EVERYONE]
    got: dict[str, Digest] = {}
    _cli("predict", *common, "--out", str(out / "cli"))
    got["cli"] = _from_predictions_json(out / "cli" / "predictions.json")
    _cli("predict", *common, "--out", str(out / "torchrun"), ranks=2)
    got["torchrun"] = _from_predictions_json(out / "torchrun" / "predictions.json")
    api = aepose.predict([folder, clip], str(weights), device="cpu", min_score=0,
                         pose_nms=None, threshold=0)
    got["api"] = [[Path(p.name).name, p.frame, _people([
        {"keypoints": pose.keypoints.tolist(), "score": pose.score, "track_id": pose.track_id}
        for pose in p.poses])] for p in api]
    predictor = aepose.Predictor.from_checkpoint(weights, device="cpu")
    files = sorted(folder.iterdir())
    got["predictor"] = [[f.name, None, _people([
        {"keypoints": pose.keypoints.tolist(), "score": pose.score} for pose in poses])]
        for f, poses in zip(files, predictor.predict_batch(files), strict=True)]
    return got


def onnx_outputs(weights: Path, folder: Path, clip: Path, out: Path) -> Digest:
    """``aepose predict --backend onnxruntime`` on the exported network."""
    _cli("export", "--weights", str(weights), "--output", str(out / "w.onnx"))
    _cli("predict", str(folder), str(clip), "--weights", str(out / "w.onnx"), "--backend",
         "onnxruntime", "--device", "cpu", "--no-draw", *EVERYONE, "--out", str(out / "onnx"))
    return _from_predictions_json(out / "onnx" / "predictions.json")


def _golden(name: str, got: Any) -> Any:
    """The recorded value of ``name`` (written first under AEPOSE_WRITE_GOLDEN)."""
    recorded = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
    if os.environ.get("AEPOSE_WRITE_GOLDEN"):
        recorded[name] = got
        GOLDEN.write_text(json.dumps(recorded))
    return recorded[name]


def _assert_same(mine: Digest, theirs: Digest, what: str) -> None:
    assert [e[:2] for e in mine] == [e[:2] for e in theirs], what
    for (name, frame, (people, points)), (_, _, (their_people, their_points)) in zip(
            mine, theirs, strict=True):
        where = f"{what}: {name} frame {frame}"
        assert [p[1] for p in people] == [p[1] for p in their_people], where  # track IDs
        # The tolerance of test_golden: other CPUs round convolutions differently.
        np.testing.assert_allclose([p[0] for p in people], [p[0] for p in their_people],
                                   atol=1e-5, err_msg=where)
        np.testing.assert_allclose(points, their_points, atol=2e-3, err_msg=where)


@pytest.mark.slow
def test_every_prediction_path_gives_the_recorded_poses(tmp_path: Path) -> None:
    got = outputs(*make_inputs(tmp_path), tmp_path / "out")
    golden = _golden("torch", got)
    # Where the paths' poses must agree, they do: the CLI on one rank and on two, the Python
    # API, and the Predictor on the images (no tracking there).
    assert got["cli"] == got["torchrun"]
    _assert_same(got["api"], got["cli"], "api")  # in-process decoding rounds differently
    _assert_same([[n, f, ([[s, None] for s, _ in people], points)]
                  for n, f, (people, points) in got["api"] if f is None],
                 got["predictor"], "predictor")
    tracked = [p for e in got["api"] if e[1] is not None for p in e[2][0]]
    assert tracked and all(p[1] is not None for p in tracked)
    assert any(p[1] >= 0 for p in tracked)  # people strong enough to start tracks
    assert set(got) == set(golden)
    for path in got:
        _assert_same(got[path], golden[path], path)


@pytest.mark.slow
def test_the_onnx_backend_gives_the_recorded_poses(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime", reason="the ONNX backend needs aepose[export]")
    got = onnx_outputs(*make_inputs(tmp_path), tmp_path / "out")
    _assert_same(got, _golden("onnx", got), "onnx")
