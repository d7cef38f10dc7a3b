"""``aepose test --weights model.onnx``: an exported file is evaluated in ONNX Runtime with
its metadata's config, test settings and keypoints, as ``predict`` runs it, and scores as
the PyTorch weights it came from. The PyTorch-only options are refused in predict's words."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from custom_skeleton import POINTS9, POINTS9_LINKS, coco_file
from helpers import liven, run_cli

from aepose.config import apply_overrides, get_preset
from aepose.engine import eval_loop
from aepose.keypoints import KeypointSpec, recipe_for
from aepose.models import build_from_config
from aepose.pipeline.predictor import Predictor
from aepose.skeleton_file import spec_from_annotations

TINY = "hrnet_tiny_aic_128"
# Wider than the sigmas the names would get, so that scoring with them shows in the AP.
SIGMAS = dict.fromkeys(POINTS9, 0.3)
NOISE_PX = 4.0  # how far the ground truth lies from the network's own poses


@dataclasses.dataclass(frozen=True)
class Files:
    """A 9-keypoint network as a checkpoint and its ONNX export, and a set to test it on."""

    pth: Path
    onnx: Path
    ann: Path
    images: Path
    spec_file: Path
    spec: KeypointSpec


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    """The network's own poses on generated crowd images, moved by a few pixels, are the
    ground truth: its AP is then well above 0 and depends on the sigmas."""
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")
    from aepose.apps.bench import crowd_images
    from aepose.apps.export import export_onnx
    from aepose.pipeline.draw import save_image

    root = tmp_path_factory.mktemp("onnxtest")
    names_only = root / "names.json"  # the category alone, for the spec
    names_only.write_text(json.dumps(coco_file(POINTS9, POINTS9_LINKS, images=1)))
    spec_file = root / "spec.json"
    spec_file.write_text(json.dumps({"name": "points9", "sigmas": SIGMAS}))
    spec = spec_from_annotations(names_only, spec_file)
    # Stored test settings unlike the preset's: the ONNX run must take them from the file.
    cfg = recipe_for(apply_overrides(get_preset(TINY), ["test.max_people=6"]), spec)
    torch.manual_seed(3)
    model = liven(build_from_config(cfg.model, spec), bn_statistics=True).eval()
    pth = root / "points9.pth"
    torch.save({"model": model.state_dict(), "config": dataclasses.asdict(cfg),
                "keypoints": spec.to_dict()}, pth)
    onnx = export_onnx(model, root / "points9.onnx", config=cfg, input_size=128)

    images = root / "images"
    data = coco_file(POINTS9, POINTS9_LINKS, images=3, size=128)
    data["images"], data["annotations"] = [], []
    rng = np.random.default_rng(0)
    predictor = Predictor(model, cfg, channel_order="rgb")
    for i, image in enumerate(crowd_images(3, (160, 128), seed=5), start=1):
        save_image(images / f"{i}.png", image)
        data["images"].append({"id": i, "file_name": f"{i}.png", "width": 160, "height": 128})
        for pose in sorted(predictor(image), key=lambda p: -p.score)[:4]:
            xy = pose.keypoints[:, :2] + rng.normal(0, NOISE_PX, (len(POINTS9), 2))
            xy = np.clip(xy, 0, [159, 127])  # labelled points lie in the image
            (x0, y0), (x1, y1) = xy.min(0), xy.max(0)
            w, h = max(x1 - x0, 8.0), max(y1 - y0, 8.0)
            data["annotations"].append({
                "id": len(data["annotations"]) + 1, "image_id": i, "category_id": 1,
                "iscrowd": 0, "num_keypoints": len(POINTS9), "area": float(w * h),
                "bbox": [float(x0), float(y0), float(w), float(h)],
                "keypoints": [round(float(v), 2) for x, y in xy for v in (x, y, 2)]})
    assert len(data["annotations"]) >= 6  # people on every image: a real comparison
    ann = root / "val.json"
    ann.write_text(json.dumps(data))
    return Files(pth, onnx, ann, images, spec_file, spec)


def _test(capsys: pytest.CaptureFixture[str], weights: Path, files: Files, out: Path,
          *extra: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``aepose test`` on the set: (metrics.json, results.json)."""
    code, _, err = run_cli(capsys, "test", "--weights", str(weights), "--ann", str(files.ann),
                           "--images", str(files.images), "--out", str(out), "--device",
                           "cpu", *extra)
    assert code == 0, err
    return (json.loads((out / "metrics.json").read_text()),
            json.loads((out / "results.json").read_text()))


@pytest.mark.slow
def test_an_onnx_file_scores_as_the_weights_it_came_from(
        files: Files, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    used: list[KeypointSpec] = []
    score = eval_loop.evaluate_keypoints
    monkeypatch.setattr(eval_loop, "evaluate_keypoints",
                        lambda ann, found, spec: used.append(spec) or score(ann, found, spec))
    torch_metrics, torch_results = _test(capsys, files.pth, files, tmp_path / "pth")
    onnx_metrics, onnx_results = _test(capsys, files.onnx, files, tmp_path / "onnx")
    # The same people, to 1e-3 px, and the same metrics.
    assert len(onnx_results) == len(torch_results) > 0
    for a, b in zip(onnx_results, torch_results, strict=True):
        assert a["image_id"] == b["image_id"]
        np.testing.assert_allclose(a["keypoints"], b["keypoints"], rtol=0, atol=1e-3)
        assert a["score"] == pytest.approx(b["score"], abs=1e-4)
    assert onnx_metrics["metrics"].keys() == torch_metrics["metrics"].keys()
    for key, value in torch_metrics["metrics"].items():
        assert onnx_metrics["metrics"][key] == pytest.approx(value, abs=1e-3), key
    assert 0.2 < onnx_metrics["metrics"]["AP"] < 1  # neither empty nor trivial
    # Config, test settings and keypoints from the file's metadata, with no flag.
    assert onnx_metrics["preset"] == torch_metrics["preset"]
    assert onnx_metrics["test"] == torch_metrics["test"]
    assert onnx_metrics["test"]["max_people"] == 6  # the stored setting, not the preset's
    assert used == [files.spec, files.spec]
    assert used[1].name == "points9" and list(used[1].keypoint_names) == POINTS9
    assert set(used[1].sigmas) == {0.3}


@pytest.mark.slow
def test_an_onnx_file_of_a_custom_skeleton_scores_with_its_sigmas(
        files: Files, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Independently of the network: re-scoring the ONNX run's results with the spec file
    gives its metrics; with the sigmas the names alone give, other ones."""
    metrics, _ = _test(capsys, files.onnx, files, tmp_path / "onnx")
    results = tmp_path / "onnx" / "results.json"
    rescored = {}
    for name, extra in (("spec", ("--spec", str(files.spec_file))), ("names", ())):
        code, _, err = run_cli(capsys, "test", "--results", str(results), "--ann",
                               str(files.ann), "--out", str(tmp_path / name), *extra)
        assert code == 0, err
        rescored[name] = json.loads((tmp_path / name / "metrics.json").read_text())
    assert rescored["spec"]["metrics"] == pytest.approx(metrics["metrics"], abs=1e-9)
    assert rescored["names"]["metrics"]["AP"] < metrics["metrics"]["AP"] - 0.05


def test_test_refuses_pytorch_options_for_an_onnx_file_as_predict_does(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    weights = str(tmp_path / "model.onnx")  # refused before the file is read
    ann = tmp_path / "a.json"
    lines = {}
    for command in ("test", "predict"):
        where = ("--ann", str(ann)) if command == "test" else (str(tmp_path),)
        code, out, err = run_cli(capsys, command, *where, "--weights", weights, "--dtype",
                                 "bf16", "--channels-last", "--out", str(tmp_path / command))
        assert (code, out) == (1, "")
        lines[command] = err
    assert lines["test"] == lines["predict"] == (
        f"aepose: error: --dtype bf16, --channels-last: not for an ONNX network ({weights} "
        "runs in ONNX Runtime, in float32)\n")


def test_test_names_a_missing_or_broken_onnx_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("onnxruntime")
    ann = tmp_path / "a.json"
    ann.write_text(json.dumps(coco_file(POINTS9, POINTS9_LINKS, images=1)))
    missing = tmp_path / "missing.onnx"
    code, _, err = run_cli(capsys, "test", "--weights", str(missing), "--ann", str(ann),
                           "--images", str(tmp_path), "--device", "cpu")
    assert (code, err) == (1, f"aepose: error: {missing}: no such file; expected an ONNX "
                              "model file\n")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x00" * 64)
    code, _, err = run_cli(capsys, "test", "--weights", str(broken), "--ann", str(ann),
                           "--images", str(tmp_path), "--device", "cpu")
    assert code == 1 and err.startswith(f"aepose: error: {broken}: not a loadable ONNX model (")
    assert err.count("\n") == 1


def test_predict_backend_onnxruntime_runs_onnx_runtime_only(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Asked for ONNX Runtime, predict no longer falls back to PyTorch for a file that is
    no ONNX model: it names the file in one line."""
    pytest.importorskip("onnxruntime")
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"\x00" * 64)
    code, _, err = run_cli(capsys, "predict", str(tmp_path), "--weights", str(weights),
                           "--backend", "onnxruntime", "--device", "cpu", "--out",
                           str(tmp_path / "out"))
    assert code == 1 and err.startswith(f"aepose: error: {weights}: not a loadable ONNX model (")
    assert err.count("\n") == 1
