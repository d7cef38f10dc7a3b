"""ONNX export and the ONNX Runtime backend: outputs equal PyTorch's at the export size and
at other sizes and batches, the same poses through the whole test-time pipeline, the stored
config, and one-line errors. Skipped when the ``export`` extra is not installed."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from filelock import FileLock, Timeout
from helpers import lively
from torch import Tensor, nn

from aepose import AeposeError, get_preset
from aepose.pipeline.predictor import Predictor
from aepose.synth import SceneParams, render_scene, sample_scene

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
pytest.importorskip("onnxruntime")

from aepose.apps.export import (  # noqa: E402  (after the skips: needs the optional packages)
    CONFIG_KEY,
    OnnxNetwork,
    export_onnx,
    onnx_predictor,
)

HIGHER = "higherhrnet_tiny_crowdpose_128"
SIMPLE = "hrnet_tiny_aic_128"
SIZE = 128  # the tiny presets' input size, used as the export size


@dataclasses.dataclass(frozen=True)
class Exported:
    """A lively tiny network (eval mode) and the ONNX file written from it."""

    preset: str
    model: nn.Module
    path: Path


@pytest.fixture(scope="session")
def onnx_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each preset exported once per test session (the dynamo exporter takes seconds).

    Under pytest-xdist the workers share the files: a worker exports the presets no other
    worker is exporting, then waits for the rest, so two workers export one preset each at
    the same time instead of both exporting both. The models are exported in TRAINING mode:
    outputs equal to eval-mode PyTorch then prove that the export used eval mode.
    """
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    paths = {preset: root / "onnx" / f"{preset}.onnx" for preset in (SIMPLE, HIGHER)}
    for blocking in (False, True):
        for preset, path in paths.items():
            lock = FileLock(f"{path}.lock")
            try:
                lock.acquire(blocking=blocking)
            except Timeout:  # another worker is exporting it: come back in the second pass
                continue
            try:
                if not path.exists():  # written atomically: existing means complete
                    model = lively(preset, bn_statistics=True).train()
                    export_onnx(model, path, config=get_preset(preset), input_size=SIZE)
            finally:
                lock.release()
    return paths


@pytest.fixture(params=[SIMPLE, HIGHER])
def exported(request: pytest.FixtureRequest, onnx_files: dict[str, Path]) -> Exported:
    preset = request.param
    return Exported(preset, lively(preset, bn_statistics=True).eval(), onnx_files[preset])


def _torch_outputs(model: nn.Module, images: Tensor) -> list[Tensor]:
    with torch.no_grad():
        return list(model(images))


@pytest.mark.parametrize("shape", [(1, 3, SIZE, SIZE), (2, 3, 128, 192), (3, 3, 256, 64)])
def test_onnx_runtime_equals_pytorch(exported: Exported, shape: tuple[int, ...]) -> None:
    network = OnnxNetwork.load(exported.path, threads=1)
    images = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    got, expected = network(images), _torch_outputs(exported.model, images)
    assert len(got) == len(expected) == len(exported.model.config.with_ae)
    for out, ref in zip(got, expected, strict=True):
        assert out.shape == ref.shape and out.dtype == torch.float32
        assert ref.std() > 0.05  # lively maps, so 1e-4 is a real tolerance
        torch.testing.assert_close(out, ref, rtol=0, atol=1e-4)


def test_graph_interface_is_named_and_dynamic(exported: Exported) -> None:
    model = onnx.load(str(exported.path))
    onnx.checker.check_model(model, full_check=True)
    (images,) = model.graph.input
    dims = [d.dim_param or d.dim_value for d in images.type.tensor_type.shape.dim]
    assert (images.name, dims) == ("images", ["batch", 3, "height", "width"])
    count = len(exported.model.config.with_ae)
    assert [o.name for o in model.graph.output] == [f"output{i}" for i in range(count)]
    assert model.graph.output[0].type.tensor_type.shape.dim[0].dim_param == "batch"


def test_config_round_trips_through_metadata(exported: Exported) -> None:
    preset = get_preset(exported.preset)
    network = OnnxNetwork.load(exported.path)
    assert network.config == preset
    assert network.training is False and list(network.parameters()) == []
    assert network.output_names == [f"output{i}" for i in range(len(preset.model.with_ae))]


def _crowd_image(seed: int, width: int, height: int) -> np.ndarray:
    """A generated scene with several people, RGB uint8 [height, width, 3]."""
    rng = np.random.default_rng(seed)
    scene = sample_scene(rng, width, height, SceneParams(people=(4, 8)))
    return np.ascontiguousarray(render_scene(scene).image[..., ::-1])


def test_predictor_gives_the_same_poses(exported: Exported) -> None:
    config = get_preset(exported.preset)
    noise = np.random.default_rng(3).integers(0, 256, (100, 150, 3), dtype=np.uint8)
    images = [_crowd_image(0, 200, 160), noise, _crowd_image(1, 120, 180)]
    onnx_poses = onnx_predictor(exported.path, threads=1, channel_order="rgb").predict_batch(
        images)
    torch_poses = Predictor(exported.model, config, channel_order="rgb").predict_batch(images)
    assert all(len(poses) > 0 for poses in torch_poses)  # people found: a real comparison
    for got, expected in zip(onnx_poses, torch_poses, strict=True):
        assert len(got) == len(expected)
        for a, b in zip(got, expected, strict=True):
            np.testing.assert_allclose(a.keypoints, b.keypoints, rtol=0, atol=1e-4)
            assert a.score == pytest.approx(b.score, abs=1e-5)


def test_file_without_config_needs_a_preset(exported: Exported, tmp_path: Path) -> None:
    model = onnx.load(str(exported.path))
    del model.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save_model(model, str(bare))
    assert OnnxNetwork.load(bare).config is None
    with pytest.raises(AeposeError, match=f"bare.onnx: has no {CONFIG_KEY} metadata"):
        onnx_predictor(bare)
    assert onnx_predictor(bare, exported.preset).config == get_preset(exported.preset)


def test_config_of_another_network_is_refused(exported: Exported) -> None:
    other = HIGHER if exported.preset == SIMPLE else SIMPLE
    with pytest.raises(AeposeError, match=f"{exported.path.name}: holds the network of"):
        onnx_predictor(exported.path, other)
    with pytest.raises(AeposeError, match="describes a different network"):
        export_onnx(exported.model, exported.path.with_name("x.onnx"), config=get_preset(other))


def test_bad_inputs_to_the_network_raise_one_line(exported: Exported) -> None:
    network = OnnxNetwork.load(exported.path, threads=1)
    with pytest.raises(AeposeError, match=r"expects images \[B, 3, H, W\], got \(1, 1, 64, 64\)"):
        network(torch.zeros(1, 1, 64, 64))
    # 80 is no multiple of 32: HRNet's branches no longer line up inside the graph.
    with pytest.raises(AeposeError, match=r"ONNX Runtime failed on input \(1, 3, 80, 80\)"):
        network(torch.zeros(1, 3, 80, 80))
    with pytest.raises(AeposeError, match="cannot be trained"):
        network.train()
    assert network.eval() is network and not network.training


@pytest.mark.parametrize("content", [b"not an onnx model\n" * 20, b""])
def test_garbage_file_raises_naming_it(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "garbage.onnx"
    path.write_bytes(content)
    with pytest.raises(AeposeError, match=r"garbage.onnx: not a loadable ONNX model \(") as info:
        OnnxNetwork.load(path)
    assert "\n" not in str(info.value)


def test_missing_file_directory_and_unknown_provider(tmp_path: Path) -> None:
    with pytest.raises(AeposeError, match=r"nothing\.onnx: no such file"):
        OnnxNetwork.load(tmp_path / "nothing.onnx")
    with pytest.raises(AeposeError, match="is a directory"):
        OnnxNetwork.load(tmp_path)
    (tmp_path / "m.onnx").write_bytes(b"x")
    with pytest.raises(AeposeError, match=r"\['NoSuchExecutionProvider'\] are not available"):
        OnnxNetwork.load(tmp_path / "m.onnx", providers=["NoSuchExecutionProvider"])


@pytest.mark.parametrize("size", [0, 100])
def test_export_refuses_sizes_that_are_not_multiples_of_32(tmp_path: Path, size: int) -> None:
    with pytest.raises(AeposeError, match=f"multiple of 32, got {size}"):
        export_onnx(nn.Identity(), tmp_path / "m.onnx", input_size=size)
    assert list(tmp_path.iterdir()) == []


class _TwoMaps(nn.Module):
    """A small non-aepose network with two outputs (a tuple) and a BatchNorm."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=4, padding=1)
        self.norm = nn.BatchNorm2d(4)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        features = self.conv(images)
        return features, self.norm(features).relu()


def test_static_export_of_a_training_double_model_leaves_it_as_it_was(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = _TwoMaps().double().train()
    nn.init.uniform_(model.norm.running_mean, -1, 1)  # eval mode differs visibly
    path = export_onnx(model, tmp_path / "new" / "two.onnx", input_size=64, dynamic=False)
    assert path == tmp_path / "new" / "two.onnx"
    assert list(path.parent.iterdir()) == [path]  # no temporary file left beside it
    assert model.training and model.conv.weight.dtype == torch.float64
    network = OnnxNetwork.load(path, threads=1)
    assert network.config is None and network.output_names == ["output0", "output1"]
    images = torch.rand(1, 3, 64, 64)
    expected = _torch_outputs(model.float().eval(), images)
    for out, ref in zip(network(images), expected, strict=True):
        torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)
    with pytest.raises(AeposeError, match=r"two.onnx: ONNX Runtime failed on input \(2, 3"):
        network(torch.rand(2, 3, 64, 64))  # static: batch 1 only


def test_network_that_returns_no_list_is_refused(tmp_path: Path) -> None:
    class Mapping(nn.Module):
        def forward(self, images: Tensor) -> dict[str, Tensor]:
            return {"maps": images}

    with pytest.raises(AeposeError, match=r"must return a list of tensors.*got dict"):
        export_onnx(Mapping(), tmp_path / "m.onnx", input_size=64)


@pytest.mark.parametrize("poison", ["all", "one"])
def test_weights_giving_non_finite_outputs_are_not_exported(tmp_path: Path, poison: str) -> None:
    model = _TwoMaps()
    with torch.no_grad():
        if poison == "all":
            model.conv.weight.fill_(float("nan"))
        else:
            model.conv.weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(AeposeError, match=r"^the network's output 0 holds NaN or infinite "
                       r"values on a test input \(broken weights\); nothing was exported$"):
        export_onnx(model, tmp_path / "m.onnx", input_size=64)
    assert list(tmp_path.iterdir()) == []
