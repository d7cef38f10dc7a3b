"""The user-facing jobs end to end on a tiny generated dataset: train -> test -> re-score ->
predict through the CLI, and a shortened demo."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import run_cli as _run

from aepose.apps.demo import DemoSettings, run_demo
from aepose.models.checkpoint import read_training_state
from aepose.synth import generate_dataset

TINY = "higherhrnet_tiny_crowdpose_128"




@pytest.fixture(scope="module")
def crowd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("crowd")
    generate_dataset(root, "crowdpose", train_images=8, val_images=3, seed=1, size=(128, 160))
    return root


def test_train_test_rescore_predict(
    crowd: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    code, out, err = _run(capsys, "train", "--preset", TINY, "--data-root", str(crowd),
                          "--out", str(run), "--set", "train.epochs=1", "train.batch_size=4",
                          "--device", "cpu", "--deterministic")
    assert code == 0, err
    assert f"finished after epoch 1, iteration 2; checkpoint {run / 'last.pth'}" in out
    val = [json.loads(line) for line in (run / "metrics.jsonl").open()
           if '"val"' in line]
    assert len(val) == 1 and "AP_hard" in val[0]  # validation ran after the last epoch

    code, out, err = _run(capsys, "test", "--weights", str(run / "last.pth"), "--data-root",
                          str(crowd), "--out", str(tmp_path / "test"), "--device", "cpu",
                          "--workers", "0")
    assert code == 0, err
    assert out.splitlines()[0].split() == ["AP", "AP50", "AP75", "AR", "AR50", "AP(E)",
                                           "AP(M)", "AP(H)"]
    report = json.loads((tmp_path / "test" / "metrics.json").read_text())
    assert report["images"] == 3 and report["flip"] is True and report["scales"] == [1.0]
    results = json.loads((tmp_path / "test" / "results.json").read_text())
    assert len(results) == report["people"]
    # The trainer's validation used the same weights and test settings.
    assert report["metrics"] == {k: v for k, v in val[0].items()
                                 if k not in ("kind", "epoch", "iteration")}

    code, out, _ = _run(capsys, "test", "--results", str(tmp_path / "test" / "results.json"),
                        "--ann", str(crowd / "annotations" / "mmpose_crowdpose_test.json"),
                        "--spec", "crowdpose", "--out", str(tmp_path / "rescore"))
    assert code == 0
    again = json.loads((tmp_path / "rescore" / "metrics.json").read_text())["metrics"]
    assert again == report["metrics"]  # re-scoring without the network gives the same table

    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    code, out, err = _run(capsys, "predict", str(crowd / "images"), str(tmp_path / "broken.jpg"),
                          str(tmp_path / "missing.png"), "--weights", str(run / "last.pth"),
                          "--out", str(tmp_path / "pred"), "--device", "cpu")
    assert code == 0
    assert "broken.jpg" in err and "missing.png: no such file or folder" in err
    predictions = json.loads((tmp_path / "pred" / "predictions.json").read_text())
    assert len(predictions["images"]) == 11  # 8 train + 3 val images share the folder
    assert predictions["model"] == {"preset": "higherhrnet_tiny_crowdpose_128",
                                    "weights": str(run / "last.pth")}
    assert len(predictions["keypoint_names"]) == 14 and predictions["test"]["flip"] is True
    people = [p for image in predictions["images"] for p in image["people"]]
    records = json.loads((tmp_path / "pred" / "results.json").read_text())
    assert len(records) == len(people)
    assert {r["image_id"] for r in records} <= {i["id"] for i in predictions["images"]}
    assert not (tmp_path / "pred" / "predictions.jsonl").exists()  # removed once complete
    # JPEG overlays of JPEG images, in the inputs' layout below their common folder.
    assert len(list((tmp_path / "pred").rglob("*.jpg"))) == 11

    code, _, err = _run(capsys, "predict", str(tmp_path / "broken.jpg"), "--weights",
                        str(run / "last.pth"), "--out", str(tmp_path / "pred2"))
    assert code == 1 and "nothing could be predicted" in err


def test_train_rejects_unknown_override(crowd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "train", "--preset", TINY, "--data-root", str(crowd),
                        "--set", "train.epoch=3")
    assert code == 1
    assert err.startswith("aepose: error: unknown config key 'train.epoch'; did you mean "
                          "'train.epochs'")


def test_short_demo_is_complete_and_deterministic(tmp_path: Path) -> None:
    # The thread count is pinned: the demo's own choice follows the machine's load, and
    # a different count adds the gradients' parts in another order.
    settings = DemoSettings(out=tmp_path / "a", train_images=12, val_images=3, epochs=2,
                            overlays=2, threads=1)
    metrics = run_demo(settings)
    out = settings.out
    for name in ("metrics.json", "results.json", "train/last.pth", "train/metrics.jsonl",
                 "train/config.yaml", "data/demo-dataset.json", "demo.log"):
        assert (out / name).is_file(), name
    log = [line[9:] for line in (out / "demo.log").read_text().splitlines()]
    steps = [line for line in log if line.startswith("[")]
    assert [line[:5] for line in steps] == ["[1/4]", "[2/4]", "[3/4]", "[4/4]"]
    assert any(line.startswith("training: step 2/2 (100%") for line in log)  # progress
    assert log[-2].startswith("result: AP ") and log[-1].startswith("time: ")
    assert len(list((out / "overlays").glob("*.png"))) == 2
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        pass
    else:
        assert (out / "curves.png").stat().st_size > 1000
    assert {"AP", "AP50", "AR", "AP_easy"} <= set(metrics)
    assert all(math.isfinite(v) for v in metrics.values())
    # Same seed, fresh folder: the same weights, bit for bit (CPU, deterministic kernels).
    other = run_demo(DemoSettings(out=tmp_path / "b", train_images=12, val_images=3, epochs=2,
                                  overlays=0, threads=1))
    assert other == metrics
    a = read_training_state(out / "train" / "last.pth")[1]["model"]
    b = read_training_state(tmp_path / "b" / "train" / "last.pth")[1]["model"]
    assert all(torch.equal(v, b[k]) for k, v in a.items())


def test_export_then_onnxruntime_predict_equals_torch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("onnxruntime")
    from aepose.apps.bench import crowd_images
    from aepose.pipeline.draw import save_image

    _detecting_checkpoint(tmp_path / "w.pth")
    for i, image in enumerate(crowd_images(2, (160, 128), seed=2)):
        save_image(tmp_path / "in" / f"{i}.png", image)
    assert _run(capsys, "export", "--weights", str(tmp_path / "w.pth"), "--output",
                str(tmp_path / "w.onnx"))[0] == 0
    runs = {}
    for backend, weights in (("torch", "w.pth"), ("onnxruntime", "w.onnx")):
        code, _, err = _run(capsys, "predict", str(tmp_path / "in"), "--weights",
                            str(tmp_path / weights), "--backend", backend, "--device", "cpu",
                            "--out", str(tmp_path / backend), "--no-draw")
        assert code == 0, err
        runs[backend] = json.loads((tmp_path / backend / "results.json").read_text())
    _check_self_describing(tmp_path / "torch", runs["torch"])
    a, b = runs["torch"], runs["onnxruntime"]
    assert len(a) == len(b) > 0
    for x, y in zip(a, b, strict=True):
        assert x["image_id"] == y["image_id"]
        assert max(abs(p - q) for p, q in zip(x["keypoints"], y["keypoints"], strict=True)) < 1e-2


def _check_self_describing(out: Path, records: list[dict]) -> None:
    """predictions.json: per image its people as [[x, y, score], ...]; results.json: the same
    people as flat COCO records, whose image_id is the number the file is named by (as
    COCO's and CrowdPose's images are; these are named 0.png, 1.png ...)."""
    predictions = json.loads((out / "predictions.json").read_text())
    assert predictions["model"]["preset"] and predictions["test"]["scales"] == [1.0]
    people = [(int(Path(image["file_name"]).stem), p) for image in predictions["images"]
              for p in image["people"]]
    assert len(people) == len(records) > 0
    for (image_id, person), record in zip(people, records, strict=True):
        k = len(predictions["keypoint_names"])
        assert len(person["keypoints"]) == k and all(len(kp) == 3 for kp in person["keypoints"])
        assert record["image_id"] == image_id and record["score"] == person["score"]
        assert record["keypoints"] == [v for kp in person["keypoints"] for v in kp]
        # COCO's box spans all keypoints (the reference's); the JSON's the detected ones.
        points = [kp for kp in person["keypoints"] if kp[2] > 0]
        for box, over in ((record["bbox"], person["keypoints"]), (person["bbox"], points)):
            xs, ys = [kp[0] for kp in over], [kp[1] for kp in over]
            assert box == [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]


def test_benchmark_command_writes_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "benchmark", "--preset", "hrnet_tiny_aic_128", "--stage",
                        "forward", "decode", "--batch-size", "2", "--repeats", "2", "--warmup",
                        "1", "--json", str(tmp_path / "rows.json"))
    assert code == 0 and out.splitlines()[0].split()[:3] == ["stage", "preset", "device"]
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert [r["stage"] for r in rows] == ["forward", "decode"]
    assert all(r["batch"] == 2 and r["images_per_s"] > 0 for r in rows)


def _detecting_checkpoint(path: Path) -> None:
    """A tiny checkpoint whose maps hold a trained network's number of candidates."""
    import dataclasses

    from aepose.apps.bench import crowd_images, mimic_trained_maps, realistic_weights
    from aepose.config import get_preset
    from aepose.data.dataset import normalize_image
    from aepose.models import build_model

    cfg = get_preset(TINY)
    model = realistic_weights(build_model(cfg)).eval()
    batch = torch.stack([normalize_image(im) for im in crowd_images(2, (160, 128), seed=2)])
    mimic_trained_maps(model, cfg, batch)
    torch.save({"model": model.state_dict(), "config": dataclasses.asdict(cfg)}, path)


def _on_two_ranks(*argv: str) -> subprocess.CompletedProcess[str]:
    """``aepose ARGV`` under torchrun with 2 CPU ranks (gloo), which must succeed."""
    src = Path(__file__).resolve().parents[1] / "src"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(src)}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "aepose", *argv], env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


@pytest.mark.slow
def test_test_command_on_two_ranks_decodes_each_image_once(
    crowd: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _detecting_checkpoint(tmp_path / "w.pth")
    common = ["test", "--weights", str(tmp_path / "w.pth"), "--data-root", str(crowd),
              "--device", "cpu", "--workers", "0"]
    assert _run(capsys, *common, "--out", str(tmp_path / "one"))[0] == 0
    _on_two_ranks(*common, "--out", str(tmp_path / "two"))
    one, two = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("one", "two"))
    assert two["metrics"] == one["metrics"] and two["images"] == one["images"] == 3
    results = [json.loads((tmp_path / d / "results.json").read_text()) for d in ("one", "two")]
    assert len(results[0]) > 0

    def key(r: dict[str, object]) -> str:
        return json.dumps(r, sort_keys=True)

    # The same records, each image's people once: rank 1 took image 2, rank 0 images 1 and 3.
    assert sorted(map(key, results[1])) == sorted(map(key, results[0]))


@pytest.mark.slow
def test_predict_on_two_ranks_writes_one_merged_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from aepose.apps.bench import crowd_images
    from aepose.pipeline.draw import save_image

    _detecting_checkpoint(tmp_path / "w.pth")
    for i, image in enumerate(crowd_images(5, (160, 128), seed=4)):
        save_image(tmp_path / "in" / f"{i}.png", image)
    # Batches of one: a convolution's float result may depend on its batch's size.
    common = ["predict", str(tmp_path / "in"), "--weights", str(tmp_path / "w.pth"),
              "--device", "cpu", "--batch-size", "1", "--no-draw"]
    assert _run(capsys, *common, "--out", str(tmp_path / "one"))[0] == 0
    done = _on_two_ranks(*common, "--out", str(tmp_path / "two"))
    assert done.stdout.count("predictions:") == 1  # rank 0 reports for both
    one, two = (json.loads((tmp_path / d / "predictions.json").read_text())
                for d in ("one", "two"))
    # Every image once, in input order, with the same people as one process finds.
    assert [i["file_name"] for i in two["images"]] == [i["file_name"] for i in one["images"]]
    assert two["images"] == one["images"] and sum(len(i["people"]) for i in one["images"]) > 0
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == [
        "predictions.json", "results.json"]


def test_predict_results_score_like_test(
    crowd: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """predict's results.json is a COCO export: images named by their ids (as COCO's and
    CrowdPose's are) keep those ids, so `test --results` gives test's own metrics."""
    _detecting_checkpoint(tmp_path / "w.pth")
    ann = crowd / "annotations" / "mmpose_crowdpose_test.json"
    names = [image["file_name"] for image in json.loads(ann.read_text())["images"]]
    assert all(Path(name).stem.isdigit() for name in names)
    common = ["--weights", str(tmp_path / "w.pth"), "--device", "cpu", "--batch-size", "1"]
    assert _run(capsys, "test", *common, "--data-root", str(crowd), "--out",
                str(tmp_path / "test"))[0] == 0
    # Every person, every keypoint's own score: the reference's output, as test's.
    assert _run(capsys, "predict", *(str(crowd / "images" / n) for n in names), *common,
                "--no-draw", "--min-score", "0", "--pose-nms", "none", "--threshold", "0",
                "--out", str(tmp_path / "pred"))[0] == 0
    code, _, err = _run(capsys, "test", "--results", str(tmp_path / "pred" / "results.json"),
                        "--ann", str(ann), "--spec", "crowdpose", "--out", str(tmp_path / "re"))
    assert code == 0, err
    tested = json.loads((tmp_path / "test" / "metrics.json").read_text())["metrics"]
    rescored = json.loads(next((tmp_path / "re").glob("metrics*.json")).read_text())["metrics"]
    assert rescored == tested
    # The records themselves are test's (an untrained network scores AP 0 on both sides).
    records = [json.loads((tmp_path / d / "results.json").read_text()) for d in ("test", "pred")]
    assert len(records[0]) > 0
    def key(record: dict) -> str:
        return json.dumps(record, sort_keys=True)

    assert sorted(map(key, records[1])) == sorted(map(key, records[0]))
