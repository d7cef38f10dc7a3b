"""ONNX export and the ONNX Runtime backend: outputs equal PyTorch's at the export size and
at other sizes and batches, the same poses through the whole test-time pipeline, the stored
config, and one-line errors. Skipped when the ``export`` extra is not installed."""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from filelock import FileLock, Timeout
from helpers import lively, run_cli
from torch import Tensor, nn

from aepose import AeposeError, get_preset
from aepose.pipeline.predictor import Predictor
from aepose.synth import SceneParams, render_scene, sample_scene

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
pytest.importorskip("onnxruntime")

from aepose.apps.export import export_onnx  # noqa: E402  (after the skips: optional packages)
from aepose.pipeline.onnx_network import CONFIG_KEY, OnnxNetwork  # noqa: E402

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
    onnx_poses = Predictor.from_checkpoint(exported.path, channel_order="rgb").predict_batch(
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
        Predictor.from_checkpoint(bare)
    assert Predictor.from_checkpoint(bare, exported.preset).config == get_preset(exported.preset)


def test_config_of_another_network_is_refused(exported: Exported) -> None:
    other = HIGHER if exported.preset == SIMPLE else SIMPLE
    with pytest.raises(AeposeError, match=f"{exported.path.name}: holds the network of"):
        Predictor.from_checkpoint(exported.path, other)
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


@pytest.mark.parametrize(("bias", "problem"), [
    (1e30, "hold a value of 5e+29; the decoder takes magnitudes up to 1e+18"),
    (2e38, "hold a value of 1e+38; the decoder takes magnitudes up to 1e+18"),  # near max
])
def test_export_refuses_weights_whose_maps_overflow_after_aggregation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bias: float, problem: str
) -> None:
    """Finite but huge head outputs passed the check of the raw outputs and were exported;
    every image predicted with the file then failed (or, before the decoder's guard, hung)."""
    model = lively(HIGHER, seed=1).eval()
    with torch.no_grad():
        model.keypoint_head.final_layers[1].bias.fill_(bias)  # the stride-2 heatmaps
    weights = tmp_path / "huge.pth"
    torch.save({"model": model.state_dict(), "config": dataclasses.asdict(get_preset(HIGHER))},
               weights)
    code, out, err = run_cli(capsys, "export", "--weights", str(weights), "--output",
                             str(tmp_path / "huge.onnx"))
    assert (code, out) == (1, "")
    assert err.splitlines()[-1] == (
        f"aepose: error: {weights}: the network's heatmaps after aggregation {problem} "
        "(broken weights or an overflow in reduced precision), on a probe image; nothing "
        "was exported")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["huge.pth"]


# ---------------------------------------------------------------------------------------
# ONNX as a first-class path: Predictor.from_checkpoint, aepose info, aepose predict


def test_from_checkpoint_runs_an_onnx_file_with_its_stored_settings(
    onnx_files: dict[str, Path],
) -> None:
    path = onnx_files[SIMPLE]
    predictor = Predictor.from_checkpoint(str(path), flip=False, detection_threshold=0.2)
    assert isinstance(predictor.model, OnnxNetwork) and predictor.model.path == path
    assert predictor.model.session.get_providers() == ["CPUExecutionProvider"]
    stored = get_preset(SIMPLE)
    # The file's Config, with the keyword overrides applied on top of its test settings.
    assert predictor.config == dataclasses.replace(stored, test=dataclasses.replace(
        stored.test, flip=False, detection_threshold=0.2))
    assert predictor.spec.name == stored.data.dataset and predictor.device.type == "cpu"
    image = _crowd_image(4, 160, 128)
    torch_poses = Predictor(lively(SIMPLE, bn_statistics=True).eval(), predictor.config)(image)
    onnx_poses = predictor(image)
    assert len(onnx_poses) == len(torch_poses) > 0
    for a, b in zip(onnx_poses, torch_poses, strict=True):
        np.testing.assert_allclose(a.keypoints, b.keypoints, rtol=0, atol=1e-4)


def test_info_prints_what_the_onnx_metadata_says(
    onnx_files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(capsys, "info", str(onnx_files[HIGHER]))
    assert (code, err) == (0, "")
    lines = dict(line.split(":", 1) for line in out.splitlines())
    assert lines["file"].strip() == str(onnx_files[HIGHER])
    assert re.fullmatch(r"ONNX \(IR version \d+; opset ai\.onnx \d+.*\)", lines["format"].strip())
    assert lines["input"].strip() == "images [batch, 3, height, width] float32"
    assert [o.split(" [")[0] for o in lines["outputs"].strip().split("] float32")[:-1]] == [
        "output0", ", output1"]
    assert lines["preset"].strip() == f"{HIGHER} (stored in the file's metadata)"
    assert lines["keypoints"].strip() == "crowdpose (14)"
    assert lines["input size"].strip() == "128"
    test = get_preset(HIGHER).test
    assert lines["test"].strip().startswith(f"scales={test.scales}, flip={test.flip}, "
                                            f"max_people={test.max_people}, ")
    # A file without the metadata, and one that is no ONNX model: one line each.
    model = onnx.load(str(onnx_files[HIGHER]))
    del model.metadata_props[:]
    onnx.save_model(model, str(tmp_path / "bare.onnx"))
    code, out, _ = run_cli(capsys, "info", str(tmp_path / "bare.onnx"))
    assert code == 0 and f"preset:        none stored (no {CONFIG_KEY} metadata)" in out
    (tmp_path / "junk.onnx").write_bytes(b"\xff" * 64)
    code, out, err = run_cli(capsys, "info", str(tmp_path / "junk.onnx"))
    assert (code, out) == (1, "")
    assert re.fullmatch(r"aepose: error: \S+junk\.onnx: not a loadable ONNX model \(.+\)\n", err)


def test_predict_runs_onnx_weights_without_being_told_the_backend(
    onnx_files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from aepose.pipeline.draw import save_image

    save_image(tmp_path / "in" / "crowd.png", _crowd_image(5, 160, 128))
    weights = str(onnx_files[HIGHER])
    runs = {}
    for name, extra in (("detected", ()), ("told", ("--backend", "onnxruntime"))):
        code, _, err = run_cli(capsys, "predict", str(tmp_path / "in"), "--weights", weights,
                               "--device", "cpu", "--no-draw", "--out", str(tmp_path / name),
                               *extra)
        assert code == 0, err
        runs[name] = json.loads((tmp_path / name / "predictions.json").read_text())
    assert runs["detected"]["model"]["preset"] == HIGHER
    assert runs["detected"]["images"] == runs["told"]["images"]
    assert runs["detected"]["images"][0]["people"]  # people found: a real comparison
    # PyTorch's fast paths would be ignored by ONNX Runtime: refused in one line.
    code, _, err = run_cli(capsys, "predict", str(tmp_path / "in"), "--weights", weights,
                           "--dtype", "bf16", "--out", str(tmp_path / "bf16"))
    assert code == 1 and err.splitlines() == [
        f"aepose: error: --dtype bf16: not for an ONNX network ({weights} runs in ONNX "
        "Runtime, in float32)"]


def test_export_refuses_an_onnx_file_as_weights(
    onnx_files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(capsys, "export", "--weights", str(onnx_files[SIMPLE]), "--output",
                           str(tmp_path / "again.onnx"))
    assert code == 1 and err == (f"aepose: error: {onnx_files[SIMPLE]}: is an ONNX file "
                                 "already; export takes PyTorch weights\n")


def test_no_module_below_apps_imports_apps() -> None:
    """The ONNX Runtime network lives in pipeline/ so that Predictor can use it: nothing
    outside apps/ (the top layer) may import from it."""
    root = Path(__file__).resolve().parents[1] / "src" / "aepose"
    offenders = []
    for module in root.rglob("*.py"):
        if module.parent.name == "apps" or "apps" in module.relative_to(root).parts:
            continue
        if module.name == "__main__.py":  # the entry point runs the command line
            continue
        for node in ast.walk(ast.parse(module.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{module.relative_to(root)}: {n}" for n in names
                          if n.startswith("aepose.apps")]
    assert offenders == []
