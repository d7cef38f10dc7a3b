"""A skeleton no preset has, end to end: training on a file's own keypoints, fine-tuning
(--init, a frozen backbone), the checkpoint and the ONNX file carrying the spec, and every
command using it with no flag."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from clips import write_squares
from custom_skeleton import BODY21, BODY21_LINKS, POINTS9, POINTS9_LINKS, write_dataset
from helpers import run_cli

import aepose
from aepose.apps.cli import main
from aepose.config import apply_overrides, get_preset
from aepose.data.coco import load_annotations
from aepose.data.dataset import BottomUpDataset
from aepose.engine import eval_loop
from aepose.engine.distributed import DistInfo, init_distributed
from aepose.engine.finetune import init_from
from aepose.errors import AeposeError
from aepose.keypoints import AIC, COCO, CROWDPOSE, CUSTOM, recipe_for
from aepose.models import build_from_config
from aepose.models.checkpoint import read_checkpoint, read_training_state
from aepose.pipeline.predictor import Predictor
from aepose.pipeline.stages import Stages
from aepose.skeleton_file import spec_from_annotations

TINY = "higherhrnet_tiny_coco_128"
FAST = ["train.batch_size=2", "train.workers=0"]


def train_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    return run_cli(capsys, "train", "--device", "cpu", "--log-interval", "1", *argv)


@pytest.fixture(scope="module")
def body21(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 21-point dataset (COCO-17 + hands + toes): train.json, val.json, images/."""
    root = tmp_path_factory.mktemp("body21")
    write_dataset(root, BODY21, BODY21_LINKS, images=2, size=96)
    write_dataset(root, BODY21, BODY21_LINKS, images=1, size=96, seed=1, name="val.json")
    return root


@pytest.fixture(scope="module")
def trained(body21: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``aepose train --ann --images --val-ann`` for one step: the run's last.pth."""
    out = tmp_path_factory.mktemp("run") / "run"
    code = main(["train", "--preset", TINY, "--ann", str(body21 / "train.json"),
                 "--images", str(body21 / "images"), "--val-ann", str(body21 / "val.json"),
                 "--device", "cpu", "--set", "train.epochs=1", *FAST, "--out", str(out)])
    assert code in (0, None)
    return out / "last.pth"


@pytest.mark.slow
def test_training_on_a_files_own_keypoints(body21: Path, trained: Path) -> None:
    spec = spec_from_annotations(body21 / "train.json")
    ckpt = read_checkpoint(trained)
    assert ckpt.spec == spec and ckpt.spec.num_keypoints == 21
    assert ckpt.config is not None
    assert ckpt.config.model.num_keypoints == 21 and ckpt.config.data.dataset == CUSTOM
    assert ckpt.state_dict["keypoint_head.final_layers.0.weight"].shape[0] == 42  # K + K tags
    assert ckpt.state_dict["keypoint_head.final_layers.1.weight"].shape[0] == 21
    assert ckpt.config.model.backbone == get_preset(TINY).model.backbone  # preset's network
    # Validated on --val-ann: the AP table's keys.
    log = [json.loads(line) for line in (trained.parent / "metrics.jsonl").read_text().split(
        "\n") if line]
    assert [set(r) >= {"AP", "APm", "AR"} for r in log if r["kind"] == "val"] == [True]


@pytest.mark.slow
def test_every_user_of_the_checkpoint_takes_its_keypoints(
        body21: Path, trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = spec_from_annotations(body21 / "train.json")
    predictor = Predictor.from_checkpoint(trained, device="cpu")
    assert predictor.spec == spec
    image = str(body21 / "images" / "1.png")
    [prediction] = aepose.predict(image, weights=str(trained), device="cpu")
    assert prediction.spec == spec and prediction.keypoints.shape[1:] == (21, 3)
    video = tmp_path / "v.mp4"
    write_squares(video)  # tracked with the custom keypoints' OKS
    frames = aepose.predict(str(video), weights=str(trained), device="cpu")
    assert len(frames) == 5 and all(f.spec == spec for f in frames)
    code, out, _ = run_cli(capsys, "predict", image, "--weights", str(trained), "--out",
                           str(tmp_path / "p"), "--device", "cpu")
    written = json.loads((tmp_path / "p" / "predictions.json").read_text())
    assert code == 0 and written["keypoint_names"] == BODY21
    assert (tmp_path / "p" / "1.png").is_file()  # the overlay, drawn with the 23 links
    assert written["skeleton"] == [[a - 1, b - 1] for a, b in BODY21_LINKS]
    code, out, _ = run_cli(capsys, "info", str(trained))
    assert code == 0 and "keypoints:     person (21: nose" in out and "10 left/right" in out
    code, out, _ = run_cli(capsys, "test", "--weights", str(trained), "--ann",
                           str(body21 / "val.json"), "--images", str(body21 / "images"),
                           "--out", str(tmp_path / "t"), "--device", "cpu")
    assert code == 0 and "AP" in out


@pytest.mark.slow
def test_the_onnx_file_carries_the_keypoints(
        body21: Path, trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("onnxruntime")
    spec = spec_from_annotations(body21 / "train.json")
    onnx = tmp_path / "c.onnx"
    code, _, _ = run_cli(capsys, "export", "--weights", str(trained), "--output", str(onnx))
    assert code == 0
    predictor = Predictor.from_checkpoint(onnx)
    assert predictor.spec == spec
    assert len(predictor(str(body21 / "images" / "1.png"))) >= 0
    code, out, _ = run_cli(capsys, "info", str(onnx))
    assert code == 0 and "person (21: nose" in out


def test_evaluation_scores_with_the_networks_sigmas(
        body21: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec_file = tmp_path / "s.json"
    spec_file.write_text(json.dumps({"sigmas": {"left_hand": 0.031, "right_toe": 0.5}}))
    spec = spec_from_annotations(body21 / "train.json", spec_file)
    cfg = recipe_for(apply_overrides(get_preset(TINY), ["test.flip=false"]), spec)
    model = build_from_config(cfg.model, spec).eval()
    seen: list[Any] = []
    monkeypatch.setattr(eval_loop, "evaluate_keypoints",
                        lambda ann, detections, s: seen.append(s) or {})
    eval_loop.evaluate_model(model, cfg, body21 / "val.json", body21 / "images",
                             init_distributed("cpu"), progress=False, workers=0)
    assert seen[0] is spec
    assert seen[0].sigmas[17] == 0.031 and seen[0].sigmas[20] == 0.5


def test_a_skeleton_without_pairs_trains_without_flip(tmp_path: Path) -> None:
    ann = write_dataset(tmp_path, POINTS9, POINTS9_LINKS, images=1, size=96)
    spec_file = tmp_path / "s.json"
    spec_file.write_text(json.dumps({"flip_pairs": []}))
    spec = spec_from_annotations(ann, spec_file)
    cfg = recipe_for(get_preset(TINY), spec)
    assert cfg.test.flip is False and cfg.model.num_keypoints == 9
    annotations = load_annotations(ann, spec, image_dir=tmp_path / "images")
    data = {p: apply_overrides(cfg, [f"data.flip_prob={p}"]).data for p in (0, 1)}
    samples = [BottomUpDataset(annotations, data[p], seed=0)[0] for p in (0, 1)]
    assert samples[0] is not None and samples[1] is not None
    # flip_prob 1 flips nothing: the same image and targets as flip_prob 0.
    assert torch.equal(samples[0].image, samples[1].image)
    assert all(torch.equal(a, b) for a, b in zip(samples[0].heatmaps, samples[1].heatmaps,
                                                 strict=True))
    # With pairs, flip_prob 1 does flip (the check above can fail).
    paired = load_annotations(ann, spec_from_annotations(ann), image_dir=tmp_path / "images")
    flipped = BottomUpDataset(paired, data[1], seed=0)[0]
    assert flipped is not None and not torch.equal(flipped.image, samples[0].image)
    # A test-time flip is refused in one line.
    model = build_from_config(cfg.model, spec).eval()
    with pytest.raises(AeposeError, match=r"test\.flip: the person keypoints have no "
                       r"left/right pairs.*set test\.flip=false$"):
        Stages(model, apply_overrides(cfg, ["test.flip=true"]))
    assert Stages(model, cfg).spec is spec


def _save(model: torch.nn.Module, path: Path) -> Path:
    torch.save({"state_dict": model.state_dict()}, path)
    return path


def test_init_loads_what_matches_and_reports_counts(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, body21: Path) -> None:
    torch.manual_seed(1)
    source_model = build_from_config(get_preset(TINY).model)  # 17 keypoints
    source = _save(source_model, tmp_path / "coco17.pth")
    spec = spec_from_annotations(body21 / "train.json")
    torch.manual_seed(2)
    model = build_from_config(recipe_for(get_preset(TINY), spec).model, spec)
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    src = source_model.state_dict()
    # The oracle: a plain loop over names and shapes.
    match = [k for k in fresh if k in src and src[k].shape == fresh[k].shape]
    with caplog.at_level(logging.INFO, logger="aepose"):
        report = init_from(model, source)
    assert list(report.loaded) == match
    assert sorted(report.reinitialised) == sorted(set(fresh) - set(match))
    assert sorted(report.unused) == sorted(set(src) - set(match))
    # The K-dependent layers: both final layers and the deconv that reads the first output.
    assert set(report.reinitialised) == {
        "keypoint_head.final_layers.0.weight", "keypoint_head.final_layers.0.bias",
        "keypoint_head.final_layers.1.weight", "keypoint_head.final_layers.1.bias",
        "keypoint_head.deconv_layers.0.0.0.weight"}
    after = model.state_dict()
    assert all(torch.equal(after[k], src[k]) for k in match)
    assert all(torch.equal(after[k], fresh[k]) for k in report.reinitialised)
    line = f"{len(match)} tensors loaded, 5 re-initialised"
    assert line in caplog.text and f"{len(report.unused)} unused" in caplog.text
    with pytest.raises(AeposeError, match="no tensor matches"):
        init_from(build_from_config(get_preset(TINY).model),
                  _save(torch.nn.Linear(2, 2), tmp_path / "linear.pth"))


def test_only_rank_0_reports_the_starting_weights(
        tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Under torchrun every rank loads --pretrained and --init; rank 0 alone logs them."""
    import aepose.engine.train as train_module

    cfg = get_preset(TINY)
    source = build_from_config(cfg.model)
    init = _save(source, tmp_path / "w.pth")
    backbone = tmp_path / "backbone.pth"
    torch.save({"state_dict": source.backbone.state_dict()}, backbone)
    # The DDP wrapper needs a process group; what is logged does not depend on it.
    monkeypatch.setattr(train_module, "DistributedDataParallel", lambda model, **_: model)
    options = train_module.TrainOptions(data_root=tmp_path, device="cpu", init=str(init),
                                        pretrained=backbone)
    logged = {}
    for rank in (0, 1):
        caplog.clear()
        info = DistInfo(rank, 2, rank, torch.device("cpu"))
        with caplog.at_level(logging.INFO, logger="aepose"):
            run = train_module._make_run(cfg, COCO, options, info, tmp_path, 1)
        logged[rank] = [r.getMessage() for r in caplog.records]
        assert all(torch.equal(v, source.state_dict()[k])  # every rank loaded them
                   for k, v in run.model.state_dict().items())
    assert logged[1] == []
    assert [m.split(":")[0] for m in logged[0]] == [f"pretrained backbone {backbone}",
                                                    f"init from {init}"]


@pytest.mark.parametrize("val_ann", ["", "missing.json"])
def test_only_rank_0_says_there_is_no_validation(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, val_ann: str) -> None:
    import aepose.engine.train as train_module

    cfg = get_preset(TINY)
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, val_ann=val_ann))
    options = train_module.TrainOptions(data_root=tmp_path, device="cpu")
    said = {}
    for rank in (0, 1):
        caplog.clear()
        info = DistInfo(rank, 2, rank, torch.device("cpu"))
        with caplog.at_level(logging.INFO, logger="aepose"):
            assert train_module._default_validator(cfg, options, info) is None
        said[rank] = [r.getMessage() for r in caplog.records]
    assert said[1] == []
    assert len(said[0]) == 1 and said[0][0].startswith("no validation: ")
    assert ("--val-ann" if not val_ann else "missing.json does not exist") in said[0][0]


def test_init_restarts_the_final_layers_of_other_joints(tmp_path: Path) -> None:
    """Same K, other joints (CrowdPose's 14 -> AIC's 14): every shape matches, but the
    K-dependent layers start fresh; the same joints load everything."""
    crowd = get_preset("higherhrnet_tiny_crowdpose_128")
    source = _save(build_from_config(crowd.model), tmp_path / "higherhrnet_tiny_crowdpose.pth")
    same = init_from(build_from_config(crowd.model, CROWDPOSE), source)
    assert same.reinitialised == () and same.unused == ()
    model = build_from_config(crowd.model, AIC)
    rng = torch.get_rng_state()
    other = init_from(model, source)
    assert torch.equal(torch.get_rng_state(), rng)  # finding the layers draws nothing
    assert sorted(other.reinitialised) == sorted(other.unused) == sorted([
        "keypoint_head.final_layers.0.weight", "keypoint_head.final_layers.0.bias",
        "keypoint_head.final_layers.1.weight", "keypoint_head.final_layers.1.bias",
        "keypoint_head.deconv_layers.0.0.0.weight"])


def test_frozen_backbone_keeps_its_weights_for_n_epochs(
        body21: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.manual_seed(3)
    source = _save(build_from_config(get_preset(TINY).model), tmp_path / "start.pth")
    code, _, err = train_cli(
        capsys, "--preset", TINY, "--ann", str(body21 / "train.json"), "--images",
        str(body21 / "images"), "--init", str(source), "--out", str(tmp_path / "run"),
        "--set", "train.epochs=2", "train.checkpoint_interval=1",
        "train.freeze_backbone_epochs=1", "train.warmup_iters=0", "train.lr=0.01", *FAST)
    assert code == 0, err
    assert "tensors loaded, 5 re-initialised" in err
    start = torch.load(source, weights_only=True)["state_dict"]
    epochs = [read_training_state(tmp_path / "run" / f"epoch_00{e}.pth")[1]["model"]
              for e in (1, 2)]
    model = build_from_config(get_preset(TINY).model)
    backbone = [f"backbone.{n}" for n, _ in model.backbone.named_parameters()]
    assert all(torch.equal(epochs[0][k], start[k]) for k in backbone)  # frozen in epoch 1
    assert not all(torch.equal(epochs[1][k], start[k]) for k in backbone)  # trained in 2
    head = "keypoint_head.deconv_layers.0.1.0.conv1.weight"
    assert not torch.equal(epochs[0][head], start[head])  # the head learns from epoch 1


def test_train_command_line_errors(body21: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    ann = str(body21 / "train.json")
    nine = str(write_dataset(tmp_path, POINTS9, POINTS9_LINKS, images=1))
    cases = [
        (["--preset", TINY, "--ann", ann, "--images", "x", "--val-ann", nine],
         "categories: its keypoints differ from those of"),
        (["--preset", TINY, "--ann", ann], "needs --images DIR"),
        (["--preset", TINY, "--ann", ann, "--images", "x", "--data-root", "y"],
         "drop --data-root"),
        (["--preset", TINY], "train needs --data-root DIR"),
        (["--preset", TINY, "--ann", ann, "--images", "x", "--spec", "nope"],
         "--spec nope: neither a file nor a built-in name"),
    ]
    for argv, expected in cases:
        code, _, err = train_cli(capsys, *argv)
        # One error line (after the default-sigma note when the keypoints were read).
        lines = err.strip().splitlines()
        assert code != 0 and lines[-1].startswith("aepose: error: ") and expected in lines[-1]
        assert len(lines) == 1 or (len(lines) == 2 and "no known OKS sigma" in lines[0]), err
    spec_file = tmp_path / "s.json"
    spec_file.write_text(json.dumps({"flip_pairs": []}))
    code, _, err = train_cli(capsys, "--preset", TINY, "--ann", nine, "--images", "x", "--spec",
                             str(spec_file), "--set", "test.flip=true")
    assert code == 1 and err.strip().splitlines()[-1].endswith("drop test.flip=true"), err
    code, _, err = train_cli(capsys, "--preset", TINY, "--data-root", "x", "--images", "y")
    assert code == 2 and "--images would be ignored without --ann" in err


def test_a_checkpoint_without_keypoints_uses_its_preset(tmp_path: Path) -> None:
    cfg = get_preset("hrnet_tiny_aic_128")
    model = build_from_config(cfg.model)
    path = tmp_path / "old.pth"
    torch.save({"model": model.state_dict(), "config": dataclasses.asdict(cfg)}, path)
    predictor = Predictor.from_checkpoint(path, device="cpu")
    assert predictor.spec.name == "aic" and read_checkpoint(path).spec is None
    assert np.asarray(predictor.spec.sigmas).shape == (14,)
