"""load_model: mmpose files as they are, other layouts, preset recognition, one-line errors."""

from __future__ import annotations

import dataclasses
import logging
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from aepose import AeposeError, build_model, get_preset, load_model
from aepose.models.checkpoint import read_checkpoint


def _randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights AND BN statistics, so that a wrong load cannot go unnoticed."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                values = torch.rand(tensor.shape, generator=g)
                tensor.copy_(values + 0.5 if name.endswith("running_var") else values - 0.5)
    return model.eval()


def _mmpose_file(model: nn.Module, path: Path, **extra_meta: object) -> Path:
    """The layout mmcv writes and mmpose publishes: no module. prefix, plus meta."""
    meta = {"epoch": 300, "iter": 123, "mmcv_version": "1.3.8", "time": "Sun Jan 31 2021",
            **extra_meta}
    torch.save({"state_dict": model.state_dict(), "meta": meta}, path)
    return path


def _outputs(model: nn.Module, size: int = 64) -> list[torch.Tensor]:
    image = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        return list(model(image))


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("name", ["hrnet_w32_aic_512", "higherhrnet_w32_crowdpose_512"])
def test_seed_in_mmpose_layout_reloads_with_identical_outputs(name: str, tmp_path: Path) -> None:
    model = _randomise(build_model(name))
    path = _mmpose_file(model, tmp_path / f"{name}.pth")
    loaded = load_model(path)
    assert loaded.config == get_preset(name).model
    assert not loaded.training
    assert _same(_outputs(model), _outputs(loaded))


def test_numpy_values_in_meta_are_accepted(tmp_path: Path) -> None:
    """mmcv stored evaluation scores as NumPy scalars in meta; those must not block loading."""
    model = _randomise(build_model("hrnet_tiny_aic_128"))
    path = _mmpose_file(model, tmp_path / "m.pth",
                        hook_msgs={"best_score": np.float64(0.303), "arr": np.arange(3)})
    assert read_checkpoint(path).meta["hook_msgs"]["best_score"] == pytest.approx(0.303)
    assert _same(_outputs(model), _outputs(load_model(path)))


def test_bare_and_prefixed_state_dicts(tmp_path: Path) -> None:
    model = _randomise(build_model("higherhrnet_tiny_crowdpose_128"))
    bare = tmp_path / "bare.pth"
    torch.save(model.state_dict(), bare)
    prefixed = tmp_path / "ddp.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, prefixed)
    for path in (bare, prefixed):
        assert _same(_outputs(model), _outputs(load_model(path)))


def test_aepose_checkpoint_uses_its_own_config(tmp_path: Path) -> None:
    cfg = get_preset("higherhrnet_tiny_coco_128")
    cfg = dataclasses.replace(cfg, name="custom", model=dataclasses.replace(
        cfg.model, num_basic_blocks=2))
    model = _randomise(build_model(cfg))
    path = tmp_path / "ours.pth"
    torch.save({"model": model.state_dict(), "config": dataclasses.asdict(cfg), "epoch": 3,
                "version": "0.1.0"}, path)
    loaded = load_model(path)
    assert loaded.config.num_basic_blocks == 2
    assert _same(_outputs(model), _outputs(loaded))


def test_preset_is_recognised_and_named(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    model = build_model("higherhrnet_tiny_crowdpose_128")
    plain = _mmpose_file(model, tmp_path / "weights.pth")
    with caplog.at_level(logging.INFO, logger="aepose"):
        load_model(plain)
    assert "using preset higherhrnet_tiny_crowdpose_128" in caplog.text
    # 17 keypoints can only be the COCO tiny preset.
    coco = _mmpose_file(build_model("higherhrnet_tiny_coco_128"), tmp_path / "x.pth")
    assert load_model(coco).config.num_keypoints == 17


def test_file_name_breaks_the_aic_crowdpose_tie(tmp_path: Path) -> None:
    model = build_model("higherhrnet_w32_crowdpose_512")
    # (no hash in the name: a name promising 9a674c33 would have to hash to it, aepose.hub)
    aic = _mmpose_file(model, tmp_path / "higher_hrnet32_aic_512x512.pth")
    ckpt = read_checkpoint(aic)
    from aepose.models.checkpoint import choose_preset, detect_architecture

    name, reason = choose_preset(ckpt, detect_architecture(ckpt.state_dict, aic))
    assert name == "higherhrnet_w32_aic_512"
    assert "also matches higherhrnet_w32_crowdpose_512" in reason


# --- bad input: one line naming the file and the problem ------------------------------------

def _error(path: Path, preset: str | None = None) -> str:
    with pytest.raises(AeposeError) as info:
        load_model(path, preset=preset)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    return message


def test_missing_file_and_directory(tmp_path: Path) -> None:
    assert "no such checkpoint file" in _error(tmp_path / "nope.pth")
    assert "is a directory" in _error(tmp_path)


def test_truncated_and_garbage_files(tmp_path: Path) -> None:
    good = _mmpose_file(build_model("hrnet_tiny_aic_128"), tmp_path / "good.pth")
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    assert "not a PyTorch checkpoint or truncated" in _error(truncated)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x89PNG not a checkpoint at all" * 10)
    assert "not a PyTorch checkpoint or truncated" in _error(garbage)


class _Payload:
    """An arbitrary class: unpickling it would run code, so it must be refused."""


def test_pickled_objects_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {}, "meta": _Payload()}, path)
    message = _error(path)
    assert "refusing to unpickle" in message and "_Payload" in message
    legacy = tmp_path / "legacy.pkl"
    legacy.write_bytes(pickle.dumps({"a": 1}))
    assert "not a PyTorch checkpoint or truncated" in _error(legacy)


def test_foreign_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(10, 64)}, path)
    assert "not an HRNet associative-embedding checkpoint" in _error(path)
    listed = tmp_path / "list.pth"
    torch.save([1, 2, 3], listed)
    assert "not a checkpoint" in _error(listed)


def test_wrong_architecture_for_preset(tmp_path: Path) -> None:
    with torch.device("meta"):
        coco = build_model("hrnet_w32_coco_512").state_dict()
    path = tmp_path / "coco.pth"
    torch.save({"state_dict": {k: torch.zeros(v.shape, dtype=v.dtype) for k, v in coco.items()}},
               path)
    message = _error(path, preset="hrnet_w32_aic_512")
    assert message.endswith("has 17 keypoints (COCO); preset hrnet_w32_aic_512 expects 14")
    higher = _mmpose_file(build_model("higherhrnet_tiny_crowdpose_128"), tmp_path / "h.pth")
    assert "is a HigherHRNet checkpoint; preset hrnet_tiny_aic_128 is HRNet" in _error(
        higher, preset="hrnet_tiny_aic_128")
    assert "has an HRNet-tiny backbone; preset higherhrnet_w32_crowdpose_512 expects HRNet-w32" in (
        _error(higher, preset="higherhrnet_w32_crowdpose_512"))


def test_missing_unexpected_and_misshapen_keys(tmp_path: Path) -> None:
    state = build_model("hrnet_tiny_aic_128").state_dict()
    dropped = dict(state)
    for key in list(dropped)[5:9]:
        del dropped[key]
    dropped["backbone.extra.weight"] = torch.zeros(1)
    path = tmp_path / "partial.pth"
    torch.save({"state_dict": dropped}, path)
    message = _error(path)
    assert "4 missing keys (backbone." in message and ", ...)" in message
    assert "1 unexpected keys (backbone.extra.weight)" in message
    state["backbone.conv2.weight"] = torch.zeros(16, 16, 1, 1)
    torch.save(state, path)
    assert "1 shape mismatches (backbone.conv2.weight [16, 16, 1, 1] vs [16, 16, 3, 3])" in (
        _error(path))


def test_complex_weights_are_refused(tmp_path: Path) -> None:
    """Loading once dropped the imaginary parts with only a warning: wrong weights, no error."""
    state = build_model("hrnet_tiny_aic_128").state_dict()
    for key in ("backbone.conv1.weight", "keypoint_head.final_layer.weight"):
        state[key] = state[key].to(torch.complex64)
    path = tmp_path / "complex.pth"
    torch.save({"state_dict": state}, path)
    assert _error(path).endswith(": holds complex-valued weights (backbone.conv1.weight "
                                 "(complex64), keypoint_head.final_layer.weight (complex64)); "
                                 "network weights are real")


@pytest.mark.parametrize(("device", "message"), [
    ("cuda", r"^device 'cuda': CUDA is not available on this machine"),
    (torch.device("cuda", 0), r"^device 'cuda:0': CUDA is not available on this machine"),
    ("tpu:3", r"^device 'tpu:3' is not a device name; use cpu, cuda or cuda:N$"),
])
def test_a_device_this_machine_lacks_is_one_line_before_anything_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, device: object, message: str
) -> None:
    """``aepose.predict(..., device="cuda")`` without CUDA raised a bare AssertionError, and
    ``device="tpu:3"`` a raw torch error: every API path passes its device to the loader."""
    import aepose
    from aepose.models.checkpoint import load_with_config
    from aepose.pipeline.predictor import Predictor

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    path = _mmpose_file(build_model("hrnet_tiny_aic_128"), tmp_path / "w.pth")
    image = np.zeros((32, 32, 3), np.uint8)
    calls = [lambda: load_model(path, device=device),  # type: ignore[arg-type]
             lambda: load_with_config(path, device=device),  # type: ignore[arg-type]
             lambda: Predictor.from_checkpoint(path, device=device),  # type: ignore[arg-type]
             lambda: aepose.predict(image, path, device=device)]  # type: ignore[arg-type]
    for call in calls:
        with pytest.raises(AeposeError, match=message) as info:
            call()
        assert "\n" not in str(info.value)
    # Checked first: no download or read is wasted on a run that cannot start.
    with pytest.raises(AeposeError, match=message):
        load_model(tmp_path / "missing.pth", device=device)  # type: ignore[arg-type]
