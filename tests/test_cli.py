"""The ``aepose`` command: version, models, info, errors as one line with a suggestion."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import run_cli as _run

import aepose
from aepose import build_model
from aepose.apps.cli import _compile_mode, build_parser
from aepose.apps.profile import model_cost
from aepose.config import PRESETS


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "--version")
    assert code == 0 and out.strip() == f"aepose {aepose.__version__}"


def test_models_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "models", "--no-flops")
    assert code == 0
    rows = {line.split()[0]: line.split() for line in out.splitlines()[2:] if line.strip()}
    assert set(PRESETS) <= set(rows)
    assert rows["hrnet_w32_aic_512"][1:6] == ["aic", "14", "512", "128", "28.54M"]
    assert rows["higherhrnet_w32_crowdpose_512"][4:6] == ["128/256", "28.64M"]


def test_flops_of_hrnet_w32_at_512() -> None:
    """HRNet-W32 + AE head at 512x512: 81.6 GFLOP (multiply-add = 2), as the issue states."""
    params, gflops = model_cost(PRESETS["hrnet_w32_aic_512"])
    assert params == 28_536_476
    assert gflops == pytest.approx(81.56, abs=0.01)
    # Convolution cost scales with the input area exactly.
    _, small = model_cost(PRESETS["hrnet_w32_aic_512"], input_size=256)
    assert small * 4 == pytest.approx(gflops, rel=1e-9)


def test_info_describes_an_mmpose_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "higher_hrnet32_crowdpose_512x512-1aa4a132_20201017.pth"
    with torch.device("meta"):
        shapes = build_model("higherhrnet_w32_crowdpose_512").state_dict()
    state = {k: torch.zeros(v.shape, dtype=v.dtype) for k, v in shapes.items()}
    torch.save({"state_dict": state, "meta": {"epoch": 300, "mmcv_version": "1.1.1"}}, path)
    code, out, _ = _run(capsys, "info", str(path))
    assert code == 0
    assert "layout:        mmpose (1810 state_dict entries, 28,641,962 parameters)" in out
    assert "HigherHRNet, HRNet-w32 backbone, 14 keypoints" in out
    assert "preset:        higherhrnet_w32_crowdpose_512" in out
    assert "also fits:     higherhrnet_w32_aic_512" in out
    assert "epoch:         300" in out


def test_bad_weights_give_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = _run(capsys, "info", str(tmp_path / "missing.pth"))
    assert code == 1 and out == ""
    assert err == f"aepose: error: {tmp_path / 'missing.pth'}: no such checkpoint file\n"


def test_unknown_subcommand_and_option_suggest(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "modles")
    assert code == 2 and "did you mean 'models'?" in err
    code, _, err = _run(capsys, "models", "--no-flop")
    assert code == 2 and "--no-flop; did you mean '--no-flops'" in err


@pytest.mark.parametrize("command", ["models", "info", "demo"])
def test_help_has_worked_examples(capsys: pytest.CaptureFixture[str], command: str) -> None:
    code, out, _ = _run(capsys, command, "--help")
    assert code == 0 and f"examples:\n  aepose {command}" in out


def test_synth_writes_a_dataset_folder(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from aepose.config import get_preset
    from aepose.data import load_split

    out = tmp_path / "synth"
    code, stdout, _ = _run(capsys, "synth", str(out), "--spec", "aic", "--images", "5",
                           "--size", "128")
    assert code == 0 and f"use it as --data-root {out}" in stdout
    data = get_preset("hrnet_w32_aic_512").data
    assert len(load_split(out, data, "train").images) == 4
    assert len(load_split(out, data, "val").images) == 1
    code, _, err = _run(capsys, "synth", str(out), "--spec", "aic", "--images", "5")
    assert code == 1 and err.count("\n") == 1 and "already exists" in err


@pytest.mark.parametrize(
    ("flags", "mode"),
    [((), None), (("--compile",), "default"),
     (("--compile-mode", "reduce-overhead"), "reduce-overhead"),
     (("--compile", "--compile-mode", "max-autotune"), "max-autotune")],
)
def test_compile_flags_choose_the_mode(flags: tuple[str, ...], mode: str | None) -> None:
    parser, _ = build_parser()
    for command in (["test", "--weights", "w.pth", "--data-root", "d"],
                    ["predict", "x.jpg", "--weights", "w.pth"], ["benchmark", "--preset", "p"]):
        assert _compile_mode(parser.parse_args([*command, *flags])) == mode


def test_unknown_compile_mode_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "benchmark", "--preset", "hrnet_tiny_aic_128",
                        "--compile-mode", "fast")
    assert code == 2 and "invalid choice: 'fast'" in err
