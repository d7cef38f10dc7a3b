"""Every bad number costs one line: ``--set`` values and numeric options are fuzzed through
``aepose.apps.cli.main`` in-process; each must end with exactly one stderr line, a non-zero exit
and no traceback, before any work starts."""

from __future__ import annotations

import math
import string
from pathlib import Path

import pytest
from helpers import run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aepose.config import get_preset, override_keys

FUZZ = settings(max_examples=25, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
TINY = "higherhrnet_tiny_crowdpose_128"

# Text that is never a valid number of the option it is given to.
_words = st.text(alphabet=string.ascii_letters + " ,;[]", min_size=1, max_size=8)
_non_finite = st.sampled_from(["nan", "inf", "-inf", "1e999", "-1e999", "NaN"])
_fractions = st.floats(0.01, 1e6).filter(lambda v: v != int(v)).map(repr)
NOT_POSITIVE_INT = st.one_of(st.integers(max_value=0).map(str), _non_finite, _fractions, _words,
                             st.integers(min_value=10**9 + 1).map(str))
NOT_SEED = st.one_of(st.integers(max_value=-1).map(str), st.integers(min_value=2**31).map(str),
                     _non_finite, _words)


def assert_one_line(code: int, out: str, err: str) -> None:
    assert code != 0, (out, err)
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert "Traceback" not in err and "error: " in err, err


@FUZZ
@given(key=st.sampled_from(override_keys(get_preset(TINY))),
       value=st.one_of(_non_finite, st.integers().map(str), st.floats().map(repr), _words,
                       st.sampled_from(["-1", "0", "99", "1,1", ""])))
def test_fuzzed_set_values_end_in_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, key: str, value: str
) -> None:
    # A value the config takes still ends at the missing data root: one line either way.
    result = run_cli(capsys, "train", "--preset", TINY, "--data-root", str(tmp_path / "none"),
                     "--out", str(tmp_path / "run"), "--set", f"{key}={value}")
    assert_one_line(*result)


@pytest.mark.parametrize(("item", "key"), [
    ("train.lr=-1", "train.lr"), ("train.lr=nan", "train.lr"),
    ("train.batch_size=0", "train.batch_size"), ("model.num_keypoints=99", "model.num_keypoints"),
    ("train.workers=-1", "train.workers"), ("test.scales=0", "test.scales"),
])
def test_named_bad_values_are_refused_naming_the_key(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, item: str, key: str
) -> None:
    for command in (["train", "--preset", TINY, "--data-root", str(tmp_path)],
                    ["demo", "--out", str(tmp_path / "demo")]):
        code, out, err = run_cli(capsys, *command, "--set", item)
        assert_one_line(code, out, err)
        assert err.startswith(f"aepose: error: {key} = ")
    assert not (tmp_path / "demo" / "data").exists()  # refused before generating anything


@FUZZ
@given(option=st.sampled_from(["--log-interval", "--stop-after", "--seed"]),
       value=NOT_POSITIVE_INT)
def test_fuzzed_train_numbers(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, option: str, value: str
) -> None:
    if option == "--seed" and value.lstrip("-").isdigit() and 0 <= int(value) < 2**31:
        value = "-1"  # 0 and up are seeds
    code, out, err = run_cli(capsys, "train", "--preset", TINY, "--data-root", str(tmp_path),
                             f"{option}={value}")
    assert_one_line(code, out, err)
    assert code == 2 and f"argument {option}: " in err


@FUZZ
@given(option=st.sampled_from(["--epochs", "--minutes", "--seed"]), value=NOT_POSITIVE_INT)
def test_fuzzed_demo_numbers(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, option: str, value: str
) -> None:
    if option == "--seed" and value.lstrip("-").isdigit() and 0 <= int(value) < 2**31:
        value = "-1"
    if option == "--minutes" and value.replace(".", "").isdigit():
        value = "-" + value  # a positive number of minutes is a valid budget
    code, out, err = run_cli(capsys, "demo", "--out", str(tmp_path / "demo"), f"{option}={value}")
    assert_one_line(code, out, err)
    assert code == 2 and not (tmp_path / "demo").exists()


@FUZZ
@given(option=st.sampled_from(["--images", "--seed", "--frames", "--people", "--fps"]),
       value=NOT_SEED)
def test_fuzzed_synth_numbers(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, option: str, value: str
) -> None:
    code, out, err = run_cli(capsys, "synth", str(tmp_path / "s"), f"{option}={value}")
    assert_one_line(code, out, err)
    assert code == 2 and not (tmp_path / "s").exists()


@FUZZ
@given(option=st.sampled_from(["--opset", "--input-size"]),
       value=st.one_of(NOT_SEED, st.integers(-5, 15).map(str), st.integers(29, 10**6).map(str)))
def test_fuzzed_export_numbers(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, option: str, value: str
) -> None:
    if option == "--input-size" and value.isdigit() and 32 <= int(value) <= 4096:
        value = "4097"
    code, out, err = run_cli(capsys, "export", "--weights", "w.pth", "--output",
                             str(tmp_path / "m.onnx"), f"{option}={value}")
    assert_one_line(code, out, err)
    assert code == 2


def test_export_opset_99_names_the_range(capsys: pytest.CaptureFixture[str]) -> None:
    onnx = pytest.importorskip("onnx", reason="the range ends at the newest opset onnx knows "
                               "(pip install 'aepose[export]')")

    code, _, err = run_cli(capsys, "export", "--weights", "w.pth", "--output", "m.onnx",
                           "--opset", "99")
    assert code == 2 and err == (
        f"aepose export: error: argument --opset: 99 is not an integer in "
        f"[16, {onnx.defs.onnx_opset_version()}] (see aepose export --help)\n")


# Numeric options of predict, test and benchmark: (option, how many values, allowed range).
# A value inside the range is swapped for one outside it, so every example must be refused.
_RANGES: dict[str, tuple[float, float, bool]] = {  # low, high, integer
    "--batch-size": (1, 4096, True), "--workers": (0, 256, True),
    "--decode-workers": (0, 256, True), "--scales": (0.125, 8.0, False),
    "--pose-nms": (0.0, 1.0, False), "--min-score": (0.0, 1.0, False),
    "--threshold": (0.0, 1.0, False), "--repeats": (1, 10**9, True),
    "--warmup": (0, 10**9, True), "--input-size": (32, 4096, True),
    "--images": (1, 10**9, True),
}
_COMMAND_OPTIONS = {
    "predict": ["--batch-size", "--workers", "--decode-workers", "--scales", "--pose-nms",
                "--min-score", "--threshold"],
    "test": ["--batch-size", "--workers", "--decode-workers", "--scales"],
    "benchmark": ["--batch-size", "--repeats", "--warmup", "--input-size", "--images",
                  "--decode-workers"],
}
_ANY_NUMBER = st.one_of(_non_finite, st.integers(-10**12, 10**12).map(str),
                        st.floats(allow_nan=False, allow_infinity=False).map(repr), _words)


def _out_of_range(option: str, value: str) -> str:
    """``value`` if ``option`` refuses it, else a value just past the option's range."""
    low, high, integer = _RANGES[option]
    try:
        number = float(value)
    except ValueError:
        return value
    if not math.isfinite(number) or not low <= number <= high:
        return value
    if integer and number == int(number) and "." not in value and "e" not in value.lower():
        return str(int(high) + 1)
    return value if integer else repr(high * 2 + 1)


@FUZZ
@given(command=st.sampled_from(sorted(_COMMAND_OPTIONS)), data=st.data())
def test_fuzzed_predict_test_benchmark_numbers(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str, data: st.DataObject
) -> None:
    option = data.draw(st.sampled_from(_COMMAND_OPTIONS[command]))
    value = _out_of_range(option, data.draw(_ANY_NUMBER))
    out = tmp_path / "out"
    argv = {"predict": ["predict", str(tmp_path / "x.png"), "--weights", "w.pth", "--out",
                        str(out)],
            "test": ["test", "--weights", "w.pth", "--data-root", str(tmp_path), "--out",
                     str(out)],
            "benchmark": ["benchmark", "--preset", TINY, "--json", str(out / "rows.json")]}
    code, stdout, err = run_cli(capsys, *argv[command], f"{option}={value}")
    assert_one_line(code, stdout, err)
    assert code == 2 and f"argument {option}: " in err and not out.exists()


@pytest.mark.parametrize(("option", "value", "allowed"), [
    ("--scales", "nan", "a finite number in [0.125, 8]"),
    ("--scales", "100", "a finite number in [0.125, 8]"),
    ("--scales", "0.0001", "a finite number in [0.125, 8]"),
    ("--batch-size", "-3", "an integer in [1, 4096]"),
    ("--pose-nms", "-1", "a finite number in [0, 1]"),
])
def test_named_bad_predict_numbers(
    capsys: pytest.CaptureFixture[str], option: str, value: str, allowed: str
) -> None:
    code, out, err = run_cli(capsys, "predict", "x.png", "--weights", "w.pth", option, value)
    assert_one_line(code, out, err)
    assert f"argument {option}: " in err and allowed in err


@pytest.mark.parametrize("value", ["0x0", "161x", "x64", "64*64", "31x64", "64x4097", "ax b"])
def test_bad_frame_size_names_the_form_and_range(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, value: str
) -> None:
    code, out, err = run_cli(capsys, "synth", str(tmp_path / "s"), "--video",
                             f"--frame-size={value}")
    assert_one_line(code, out, err)
    assert code == 2 and "argument --frame-size: " in err and "sides in [32, 4096]" in err
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize(("args", "named", "advice"), [
    (["predict", "x.mp4", "--weights", "w.pth", "--no-track", "--smooth"], "--smooth",
     "without tracking: drop --no-track"),
    (["predict", "x.mp4", "--weights", "w.pth", "--no-track", "--track-max-age=5",
      "--smooth-beta", "2"], "--smooth-beta, --track-max-age", "without tracking"),
    (["predict", "x.mp4", "--weights", "w.pth", "--smooth-beta", "2"], "--smooth-beta",
     "without --smooth"),
    (["synth", "s", "--frames", "3"], "--frames", "without --video"),
    (["synth", "s", "--fps", "30", "--frame-size", "64x64"], "--frame-size, --fps",
     "without --video"),
    (["synth", "s", "--video", "--size", "64"], "--size", "with --video: clips take "
     "--frame-size"),
])
def test_options_that_would_be_ignored_are_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    args: list[str], named: str, advice: str
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, *args)
    assert_one_line(code, out, err)
    assert code == 2 and f"error: {named} would be ignored {advice}" in err
    assert not (tmp_path / "s").exists()
