"""Trainer: the reference schedule, exact resume, DDP, NaN stop, checkpoints, and learning."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from aepose.config import apply_overrides, get_preset
from aepose.engine.distributed import DistInfo
from aepose.engine.loader import EpochSampler
from aepose.engine.train import TrainOptions, lr_factor, train
from aepose.errors import AeposeError
from aepose.models.checkpoint import TRAINING_KEYS, load_model, read_training_state
from aepose.synth import generate_dataset

TINY = "higherhrnet_tiny_crowdpose_128"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def crowd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated CrowdPose-layout dataset (16 training images of 128-160 px)."""
    root = tmp_path_factory.mktemp("crowd")
    generate_dataset(root, "crowdpose", train_images=16, val_images=4, seed=3, size=(128, 160))
    return root


def tiny(*overrides: str) -> object:
    return apply_overrides(get_preset(TINY), ["train.batch_size=4", *overrides])


def options(root: Path, out: Path, **kw: object) -> TrainOptions:
    settings: dict[str, object] = {"device": "cpu", "deterministic": True, "progress": False,
                                   "log_interval": 2, **kw}
    return TrainOptions(data_root=root, out=out, **settings)  # type: ignore[arg-type]


def test_lr_schedule_is_mmcv_warmup_then_steps() -> None:
    seed = get_preset("higherhrnet_w32_crowdpose_512").train
    # Reference §1.8: 1.5e-6 at i = 0, linear to 1.5e-3 at i = 500, x0.1 at epochs 200 / 260.
    assert seed.lr * lr_factor(seed, 0, 100) == pytest.approx(1.5e-6)
    assert lr_factor(seed, 250, 100) == pytest.approx(1 - 0.5 * 0.999)
    assert lr_factor(seed, 499, 100) == pytest.approx(1 - (1 / 500) * 0.999)
    assert lr_factor(seed, 500, 100) == 1.0
    assert lr_factor(seed, 199 * 100 + 99, 100) == 1.0
    assert lr_factor(seed, 200 * 100, 100) == pytest.approx(0.1)
    assert lr_factor(seed, 260 * 100, 100) == pytest.approx(0.01)
    # Warm-up multiplies the decayed value when a step falls inside it (tiny schedules).
    short = apply_overrides(get_preset(TINY), ["train.lr_steps=1"]).train
    assert lr_factor(short, 12, 10) == pytest.approx(0.1 * (1 - (1 - 12 / 50) * 0.999))


def test_epoch_sampler_deals_each_epoch_once_over_ranks() -> None:
    ranks = [EpochSampler(10, DistInfo(r, 3, r, torch.device("cpu")), seed=5) for r in range(3)]
    for s in ranks:
        s.set_epoch(2)
    dealt = [list(s) for s in ranks]
    assert [len(d) for d in dealt] == [4, 4, 4] == [len(s) for s in ranks]
    flat = sorted(i for d in dealt for i in d)
    assert set(flat) == set(range(10)) and len(flat) == 12  # two wrapped paddings
    ranks[0].set_epoch(3)
    assert list(ranks[0]) != dealt[0]  # a new permutation every epoch
    ranks[0].set_epoch(2, skip=3)
    assert list(ranks[0]) == dealt[0][3:] and len(ranks[0]) == 1


def test_run_writes_config_log_and_checkpoints(crowd: Path, tmp_path: Path) -> None:
    cfg = tiny("train.epochs=2", "train.checkpoint_interval=1")
    result = train(cfg, options(crowd, tmp_path))  # type: ignore[arg-type]
    assert (result.epoch, result.iteration, result.interrupted) == (2, 8, False)
    assert {p.name for p in tmp_path.glob("*.pth")} == {"epoch_001.pth", "epoch_002.pth",
                                                        "last.pth"}
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporaries
    ckpt, raw = read_training_state(tmp_path / "last.pth")
    assert set(TRAINING_KEYS) <= set(raw) and raw["iteration"] == 8 and raw["epoch"] == 2
    assert ckpt.config == cfg
    assert "train:" in (tmp_path / "config.yaml").read_text()
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().split("\n")
               if line]
    train_lines = [r for r in records if r["kind"] == "train"]
    assert [r["iteration"] for r in train_lines] == [2, 4, 6, 8]
    assert all(r["heatmap_loss"] > 0 and r["images_per_s"] > 0 for r in train_lines)
    assert [r["epoch"] for r in records if r["kind"] == "epoch"] == [1, 2]
    # The inference loader takes the training checkpoint as it is.
    model = load_model(tmp_path / "last.pth")
    assert model.config == cfg.model  # type: ignore[attr-defined]


def test_resume_mid_epoch_gives_the_same_weights(crowd: Path, tmp_path: Path) -> None:
    cfg = tiny("train.epochs=2", "train.warmup_iters=3", "train.lr_steps=1")
    full = train(cfg, options(crowd, tmp_path / "full"))  # type: ignore[arg-type]
    part = train(cfg, options(crowd, tmp_path / "part", stop_after=3))  # type: ignore[arg-type]
    assert part.interrupted and part.iteration == 3 and part.epoch == 0
    resumed = train(cfg, options(crowd, tmp_path / "part",  # type: ignore[arg-type]
                                 resume=tmp_path / "part" / "last.pth"))
    assert (resumed.epoch, resumed.iteration) == (full.epoch, full.iteration) == (2, 8)
    a = read_training_state(full.checkpoint)[1]
    b = read_training_state(resumed.checkpoint)[1]
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert a["scheduler"] == b["scheduler"]
    exp_avg = [s["exp_avg"] for s in a["optimizer"]["state"].values()]
    assert all(torch.equal(x, s["exp_avg"])
               for x, s in zip(exp_avg, b["optimizer"]["state"].values(), strict=True))


def test_non_finite_loss_stops_without_saving(
    crowd: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import aepose.engine.train as train_module

    real = train_module.compute_loss
    calls = {"n": 0}

    def poisoned(*args: object) -> dict[str, torch.Tensor]:
        terms = real(*args)  # type: ignore[arg-type]
        calls["n"] += 1
        if calls["n"] == 6:  # iteration index 5, in epoch 1
            terms["push_loss"] = terms["push_loss"] * float("nan")
        return terms

    monkeypatch.setattr(train_module, "compute_loss", poisoned)
    cfg = tiny("train.epochs=3", "train.checkpoint_interval=1")
    with pytest.raises(AeposeError, match=r"non-finite loss at iteration 5 \(epoch 1\): "
                       r"heatmap_loss=[0-9.e-]+, push_loss=nan"):
        train(cfg, options(crowd, tmp_path))  # type: ignore[arg-type]
    # Only the checkpoints of the finished, finite epoch 1 exist.
    assert read_training_state(tmp_path / "last.pth")[1]["iteration"] == 4
    assert not (tmp_path / "epoch_002.pth").exists()


def test_pretrained_backbone_is_loaded_and_reported(
    crowd: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from aepose.models import build_model

    donor = build_model(TINY)
    weights = {k: v + 1 for k, v in donor.backbone.state_dict().items()}
    weights["classifier.weight"] = torch.zeros(3)  # an ImageNet head the backbone lacks
    torch.save({"state_dict": weights}, tmp_path / "imagenet.pth")
    cfg = tiny("train.epochs=1", "train.lr=0")
    with caplog.at_level("INFO", logger="aepose"):
        result = train(cfg, options(crowd, tmp_path / "run",  # type: ignore[arg-type]
                                    pretrained=tmp_path / "imagenet.pth", stop_after=1))
    assert "0 missing, 1 unexpected (e.g. classifier.weight)" in caplog.text
    state = read_training_state(result.checkpoint)[1]["model"]
    key = "backbone.conv1.weight"
    assert torch.equal(state[key], weights["conv1.weight"])  # lr 0: the loaded values stay

    weights["conv1.weight"] = torch.zeros(1, 1, 1, 1)
    torch.save(weights, tmp_path / "bad.pth")
    with pytest.raises(AeposeError, match=r"bad.pth: conv1.weight has shape \[1, 1, 1, 1\]"):
        train(cfg, options(crowd, tmp_path / "run2",  # type: ignore[arg-type]
                           pretrained=tmp_path / "bad.pth"))


def test_resume_refuses_foreign_files(crowd: Path, tmp_path: Path) -> None:
    from aepose.models import build_model

    torch.save(build_model(TINY).state_dict(), tmp_path / "weights.pth")
    with pytest.raises(AeposeError, match="not an aepose training checkpoint"):
        train(tiny(), options(crowd, tmp_path, resume=tmp_path / "weights.pth"))  # type: ignore[arg-type]


@pytest.mark.slow
def test_two_gloo_ranks_end_with_identical_weights(crowd: Path, tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
           "2", str(ROOT / "tests" / "ddp_train_worker.py"), str(crowd), str(tmp_path)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    a, b = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    # 16 images, 2 ranks, batch 2: 4 steps, each on 4 images.
    assert a["iteration"] == b["iteration"] == 4
    for key, value in a["state"].items():
        assert torch.equal(value, b["state"][key]), key
    saved = read_training_state(tmp_path / "last.pth")[1]["model"]  # rank 0 writes it
    assert all(torch.equal(v, a["state"][k]) for k, v in saved.items())


@pytest.mark.slow
def test_tiny_higherhrnet_learns(tmp_path: Path) -> None:
    root = tmp_path / "data"
    generate_dataset(root, "crowdpose", train_images=32, val_images=1, seed=11, size=(128, 128))
    # The recipes' 'exp' push has no gradient while all tags start alike (d/dx e^-x^2 = 0 at
    # 0) and weighs 1e-3: it takes hours to move. 'max' with factor 0.1 shows within seconds
    # that the trainer lowers both parts of the objective (measured: 0.66x and 0.48x).
    cfg = apply_overrides(get_preset(TINY), [
        "train.epochs=16", "train.batch_size=8", "train.warmup_iters=5", "train.lr=3e-3",
        "train.push_loss_factor=0.1,0.1", "train.pull_loss_factor=0.1,0.1",
        "train.ae_loss_type=max"])
    train(cfg, options(root, tmp_path / "run", log_interval=4))  # type: ignore[arg-type]
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    steps = [r for r in records if r["kind"] == "train"]
    assert len(steps) == 16

    def mean(key: str, part: list[dict[str, float]]) -> float:
        return sum(r[key] for r in part) / len(part)

    first, last = steps[:2], steps[-2:]
    # Predicting zeros gives a heatmap loss of about 0.07 on these scenes.
    assert mean("heatmap_loss", last) < 0.85 * mean("heatmap_loss", first)
    ae_first = mean("push_loss", first) + mean("pull_loss", first)
    assert mean("push_loss", last) + mean("pull_loss", last) < 0.7 * ae_first


@pytest.mark.parametrize(("dtype", "channels_last"), [("bf16", False), ("fp16", True)])
def test_mixed_precision_steps_update_weights(
    crowd: Path, tmp_path: Path, dtype: str, channels_last: bool
) -> None:
    cfg = tiny("train.epochs=1", "train.warmup_iters=1")
    result = train(cfg, options(crowd, tmp_path, dtype=dtype,  # type: ignore[arg-type]
                                channels_last=channels_last, stop_after=2, validate=False))
    raw = read_training_state(result.checkpoint)[1]
    assert result.iteration == 2 and all(
        torch.isfinite(v).all() for v in raw["model"].values() if v.is_floating_point())
    from aepose.models import build_model

    torch.manual_seed(0)  # the trainer's initial weights (seed 0)
    fresh = build_model(TINY).state_dict()
    changed = [k for k, v in raw["model"].items()
               if v.is_floating_point() and not torch.equal(v, fresh[k])]
    assert any(k.endswith("final_layers.0.weight") for k in changed)
    # fp16 keeps a grad scaler state; bf16 needs none.
    assert bool(raw["scaler"]) == (dtype == "fp16")


# --------------------------------------------------------------------------------------------
# Run folders: one live run each, never reused silently; nothing trained is an error


def test_a_finished_run_folder_is_not_reused(crowd: Path, tmp_path: Path) -> None:
    cfg = tiny("train.epochs=1")
    train(cfg, options(crowd, tmp_path, stop_after=1, validate=False))  # type: ignore[arg-type]
    log = (tmp_path / "metrics.jsonl").read_text()
    with pytest.raises(AeposeError) as error:
        train(cfg, options(crowd, tmp_path, validate=False))  # type: ignore[arg-type]
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"{tmp_path} already holds a training run")
    assert f"continue it with --resume {tmp_path / 'last.pth'}, or choose a new --out" in message
    assert (tmp_path / "metrics.jsonl").read_text() == log  # nothing appended
    # Resuming into the run's own folder continues it.
    resumed = train(cfg, options(crowd, tmp_path, validate=False,  # type: ignore[arg-type]
                                 resume=tmp_path / "last.pth"))
    assert (resumed.epoch, resumed.iteration) == (1, 4)


def test_a_run_folder_held_by_a_live_run_is_refused(crowd: Path, tmp_path: Path) -> None:
    from test_io import _hold_lock

    holder = _hold_lock(tmp_path / "run")
    try:
        with pytest.raises(AeposeError, match=rf"run is in use by another aepose run \(pid "
                           rf"{holder.pid}\)"):
            train(tiny(), options(crowd, tmp_path / "run"))  # type: ignore[arg-type]
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert [p.name for p in (tmp_path / "run").iterdir()] == [".aepose.lock"]


def test_an_unwritable_run_folder_is_refused_before_work(crowd: Path, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(AeposeError, match=r"cannot write to .*file/run: "):
        train(tiny(), options(crowd, tmp_path / "file" / "run"))  # type: ignore[arg-type]


@pytest.mark.filterwarnings("ignore:skipping a training image")
def test_a_run_without_a_readable_image_stops(tmp_path: Path) -> None:
    root = tmp_path / "data"
    generate_dataset(root, "crowdpose", train_images=4, val_images=1, seed=1, size=(128, 128))
    for image in (root / "images").iterdir():
        image.write_bytes(b"not an image")  # there, but unreadable: found only by reading
    with pytest.raises(AeposeError, match=r"no training image could be read in epoch 1 "
                       r"\(see the warnings above\); check the image folder .*images"):
        train(tiny("train.epochs=2"), options(root, tmp_path / "run",  # type: ignore[arg-type]
                                              validate=False))
    assert not (tmp_path / "run" / "last.pth").exists()


def _first_train_image(root: Path) -> str:
    """The file name of the first image of the training annotations, in their order."""
    annotations = json.loads((root / get_preset(TINY).data.train_ann).read_text())
    return str(annotations["images"][0]["file_name"])


def test_all_images_missing_stop_before_the_first_epoch_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from helpers import run_cli

    root = tmp_path / "data"
    generate_dataset(root, "crowdpose", train_images=4, val_images=1, seed=1, size=(128, 128))
    for image in (root / "images").iterdir():
        image.unlink()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, out, err = run_cli(capsys, "train", "--preset", TINY, "--data-root", str(root),
                                 "--out", str(tmp_path / "run"), "--device", "cpu")
    images = root / "images"
    assert (code, out) == (1, "")
    assert err.splitlines() == [f"aepose: error: all 4 training images are missing (first: "
                                f"{images / _first_train_image(root)}); check the image "
                                f"folder {images}"]
    assert [str(w.message) for w in caught] == []  # no per-file warning before it
    assert list((tmp_path / "run").iterdir()) == []  # stopped before writing anything


@pytest.mark.slow
def test_some_images_missing_are_reported_once_and_skipped(
    crowd: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "data"
    shutil.copytree(crowd, root)
    first = _first_train_image(root)
    names = sorted(p.name for p in (root / "images").iterdir())
    gone = [first, *[n for n in names if n != first][:2]]
    for name in gone:
        (root / "images" / name).unlink()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = train(tiny("train.epochs=2", "train.batch_size=8"), options(  # type: ignore[arg-type]
            root, tmp_path / "run", validate=False))
    assert result.epoch == 2
    lines = [r.getMessage() for r in caplog.records if "images are missing" in r.getMessage()]
    assert lines == [f"3 of 16 training images are missing (first: {root / 'images' / first}); "
                     "they are skipped"]
    assert [str(w.message) for w in caught if "training image" in str(w.message)] == []
    epochs = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()
              if '"epoch"' in line and '"kind": "epoch"' in line]
    assert [e["skipped_images"] for e in epochs] == [3.0, 6.0]  # counted, every epoch
