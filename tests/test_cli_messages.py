"""What the command line says: typos of required options, options that are config fields,
devices the machine lacks, where ``test`` looks for images, outputs it will not replace, and
worked examples that name files an earlier example writes."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
import torch
from helpers import run_cli

from aepose.apps.arguments import HELP
from aepose.apps.demo import DEMO_PRESET, DemoSettings
from aepose.config import get_preset
from aepose.models import build_model
from aepose.synth import generate_dataset

TINY = "higherhrnet_tiny_crowdpose_128"


def assert_one_line(code: int, err: str) -> None:
    """A non-zero exit whose stderr ends in the one error line (log lines such as "using
    preset ..." may come before it, as in a terminal) and holds no traceback."""
    assert code != 0
    lines = err.splitlines()
    assert lines and lines[-1].startswith("aepose") and err.endswith("\n"), err
    assert sum("error:" in line for line in lines) == 1 and "Traceback" not in err, err


@pytest.mark.parametrize(("argv", "hint"), [
    (["predict", "x.png", "--wieghts", "w.pth"], "--wieghts; did you mean '--weights'"),
    (["predict", "x.png", "--wieghts=w.pth"], "--wieghts=w.pth; did you mean '--weights'"),
    (["export", "--weights", "w.pth", "--ouptut", "m.onnx"], "--ouptut; did you mean '--output'"),
    (["benchmark", "--prest", "p"], "--prest; did you mean '--preset'"),
])
def test_a_misspelt_required_option_is_named_not_reported_missing(
    capsys: pytest.CaptureFixture[str], argv: list[str], hint: str
) -> None:
    code, _, err = run_cli(capsys, *argv)
    assert_one_line(code, err)
    assert code == 2 and "unrecognized arguments: " + hint in err
    assert "required" not in err


@pytest.mark.parametrize(("argv", "hint"), [
    (["train", "--preset", TINY, "--epochs", "3"],
     "--epochs 3; did you mean --set train.epochs=3?"),
    (["train", "--preset", TINY, "--data-root", "d", "--lr=0.01"],
     "--lr=0.01; did you mean --set train.lr=0.01?"),
    (["train", "--preset", TINY, "--data-root", "d", "--batch-size", "4"],
     "--batch-size 4; did you mean --set train.batch_size=4?"),
    (["demo", "--lr", "0.1"], "--lr 0.1; did you mean --set train.lr=0.1?"),
    (["predict", "x.png", "--weights", "w", "--max-people", "5"],
     "--max-people 5; did you mean --set test.max_people=5?"),
    (["test", "--weights", "w", "--detection-threshold", "0.2"],
     "--detection-threshold 0.2; did you mean --set test.detection_threshold=0.2?"),
])
def test_an_option_that_is_a_config_field_suggests_set(
    capsys: pytest.CaptureFixture[str], argv: list[str], hint: str
) -> None:
    code, _, err = run_cli(capsys, *argv)
    assert_one_line(code, err)
    assert code == 2 and "unrecognized arguments: " + hint in err


@pytest.mark.parametrize(("argv", "message"), [
    # The value given to a misspelt option once trailed the suggestion: "... did you mean
    # '--conf' or '--no-flip'? 0.2".
    (["predict", "x.jpg", "--cnf", "0.2"],
     "unrecognized arguments: --cnf; did you mean '--conf' or '--no-flip'?"),
    (["predict", "x.jpg", "--weights", "w", "--cnf", "0.2", "--ouut", "o"],
     "unrecognized arguments: --cnf; did you mean '--conf' or '--no-flip'? --ouut; did you "
     "mean '--out' or '--smooth'?"),
    # Stray arguments come first: after a suggestion they would read as part of it.
    (["export", "--weights", "w", "--output", "o", "extra", "--ouptut=m.onnx"],
     "unrecognized arguments: extra --ouptut=m.onnx; did you mean '--output' or '--opset'?"),
])
def test_a_misspelt_option_is_named_with_its_suggestion_and_nothing_after_it(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    assert err == f"aepose {argv[0]}: error: {message} (see aepose {argv[0]} --help)\n"


@pytest.mark.parametrize("command", [
    ["predict", "x.png", "--weights", "w.pth"],
    ["test", "--weights", "w.pth", "--data-root", "d"],
    ["benchmark", "--preset", TINY, "--stage", "forward"],
])
def test_a_device_the_machine_lacks_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: list[str]
) -> None:
    code, out, err = run_cli(capsys, *command, "--device", "cuda:99")
    assert_one_line(code, err)
    assert code == 1 and out == "" and err.startswith("aepose: error: device 'cuda:99'")
    if not torch.cuda.is_available():
        code, _, err = run_cli(capsys, *command, "--device", "cuda")
        assert_one_line(code, err)
        assert "CUDA is not available on this machine" in err


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(weights of the tiny preset, a CrowdPose-layout dataset of 2 val images)."""
    root = tmp_path_factory.mktemp("messages")
    cfg = get_preset(TINY)
    torch.save({"model": build_model(cfg).state_dict(), "config": dataclasses.asdict(cfg)},
               root / "w.pth")
    generate_dataset(root / "data", "crowdpose", train_images=1, val_images=2, seed=3,
                     size=(96, 128))
    return root / "w.pth", root / "data"


def test_ann_alone_finds_the_images_where_the_layout_puts_them(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, dataset: tuple[Path, Path]
) -> None:
    weights, data = dataset
    ann = data / "annotations" / "mmpose_crowdpose_test.json"
    code, _, err = run_cli(capsys, "test", "--weights", str(weights), "--ann", str(ann),
                           "--out", str(tmp_path / "t"), "--device", "cpu", "--workers", "0")
    assert code == 0, err
    assert json.loads((tmp_path / "t" / "metrics.json").read_text())["images"] == 2


def test_test_without_images_stops_naming_the_folder(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, dataset: tuple[Path, Path]
) -> None:
    weights, data = dataset
    # The annotation file alone, in the layout: ROOT/annotations/x.json -> ROOT/images.
    ann = tmp_path / "root" / "annotations" / "mmpose_crowdpose_test.json"
    ann.parent.mkdir(parents=True)
    ann.write_bytes((data / "annotations" / ann.name).read_bytes())
    common = ["test", "--weights", str(weights), "--device", "cpu", "--out", str(tmp_path / "t")]
    code, out, err = run_cli(capsys, *common, "--ann", str(ann))
    assert_one_line(code, err)
    assert code == 1 and out == ""
    assert f"no images: {tmp_path / 'root' / 'images'} is not a folder" in err
    # A folder that exists but holds none of the images: no all-zero table either.
    (tmp_path / "empty").mkdir()
    code, out, err = run_cli(capsys, *common, "--ann", str(ann), "--images",
                             str(tmp_path / "empty"))
    assert_one_line(code, err)
    assert "AP" not in out and not (tmp_path / "t" / "metrics.json").exists()
    assert f"none of the 2 images of {ann} could be read in {tmp_path / 'empty'}" in err


def test_outputs_of_an_earlier_run_are_not_replaced(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, dataset: tuple[Path, Path]
) -> None:
    weights, data = dataset
    out = tmp_path / "t"
    common = ["test", "--weights", str(weights), "--data-root", str(data), "--device", "cpu",
              "--workers", "0", "--out", str(out)]
    assert run_cli(capsys, *common)[0] == 0
    first = (out / "metrics.json").read_text()
    code, _, err = run_cli(capsys, *common)
    assert_one_line(code, err)
    assert f"{out / 'metrics.json'} exists (an earlier run's)" in err and "--overwrite" in err
    assert (out / "metrics.json").read_text() == first
    # Re-scoring without --out writes beside the results, never over metrics.json.
    rescore = ["test", "--results", str(out / "results.json"), "--ann",
               str(data / "annotations" / "mmpose_crowdpose_test.json"), "--spec", "crowdpose"]
    code, stdout, err = run_cli(capsys, *rescore)
    assert code == 0, err
    assert f"metrics: {out / 'metrics-results.json'}" in stdout
    assert (out / "metrics.json").read_text() == first
    again = json.loads((out / "metrics-results.json").read_text())
    assert again["metrics"] == json.loads(first)["metrics"]
    code, _, err = run_cli(capsys, *rescore)
    assert_one_line(code, err)
    assert run_cli(capsys, *rescore, "--overwrite")[0] == 0
    assert run_cli(capsys, *common, "--overwrite")[0] == 0


def test_a_skipped_input_is_reported_once(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, dataset: tuple[Path, Path]
) -> None:
    weights, data = dataset
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    code, _, err = run_cli(capsys, "predict", str(data / "images" / "1.jpg"),
                           str(tmp_path / "broken.jpg"), str(tmp_path / "missing.png"),
                           "--weights", str(weights), "--device", "cpu", "--no-draw",
                           "--out", str(tmp_path / "p"))
    assert code == 0, err
    assert err.count("broken.jpg") == 1 and err.count("missing.png") == 1, err


def test_benchmark_json_is_checked_before_timing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("timed although --json cannot be written")

    monkeypatch.setattr("aepose.apps.bench.command.run_benchmark", never)
    (tmp_path / "file").write_text("")
    code, _, err = run_cli(capsys, "benchmark", "--preset", TINY, "--json",
                           str(tmp_path / "file" / "rows.json"))
    assert_one_line(code, err)
    assert f"cannot write to {tmp_path / 'file'}: it is a file, not a folder" in err


def _examples(command: str) -> list[str]:
    """The example commands of ``aepose COMMAND --help``, continuation lines joined."""
    text = HELP[command][1].split("examples:\n", 1)[1].replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip()]


def test_help_examples_name_files_that_an_earlier_example_writes() -> None:
    """Every runs/..., data/clips... or data/synth... input is written by an example above
    it: the demo (its real output paths) or a command whose --out / folder names it."""
    demo = DemoSettings().out
    cfg = get_preset(DEMO_PRESET)
    demo_files = {demo / "train" / "last.pth", demo / "data" / cfg.data.val_ann,
                  demo / "data" / cfg.data.val_images}
    for command in ("info", "predict", "test", "export", "train"):
        written: set[Path] = set()
        for line in _examples(command):
            code = line.split("#")[0]
            if code.split()[:2] == ["aepose", "demo"]:
                written |= demo_files
            out = re.search(r"(?:--out|synth) (\S+)", code)
            for token in re.findall(r"runs/[^\s']+|data/(?:clips|synth)\b[^\s']*", code):
                path = Path(token.split("*")[0])
                if out and token.startswith(out.group(1)):
                    continue  # written by this very example
                assert any(path == w or w in path.parents or path in w.parents
                           for w in written), f"{command}: {line}"
            if out:
                written.add(Path(out.group(1)))


@pytest.mark.parametrize(("stop_after", "code", "line"), [
    (None, 130, "aepose: interrupted; checkpoint {ckpt} (epoch 1, iteration 7); continue "
     "with --resume {ckpt}\n"),
    ("7", 0, ""),  # --stop-after reached: a planned stop, exit 0
])
def test_train_stopped_by_ctrl_c_exits_130_naming_the_checkpoint(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    stop_after: str | None, code: int, line: str,
) -> None:
    from aepose.engine.train import TrainResult

    ckpt = tmp_path / "run" / "last.pth"
    monkeypatch.setattr("aepose.apps.train.train", lambda cfg, options: TrainResult(
        ckpt.parent, ckpt, 1, 7, True, {}))
    extra = ["--stop-after", stop_after] if stop_after else []
    result = run_cli(capsys, "train", "--preset", TINY, "--data-root", str(tmp_path), *extra)
    assert result[0] == code and result[2] == line.format(ckpt=ckpt)
    assert ("stopped early" in result[1]) == (stop_after is not None)


def test_ctrl_c_anywhere_is_one_line_and_130(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupt(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("aepose.apps.models.download", interrupt)
    code, _, err = run_cli(capsys, "download", "hrnet_w32_aic_512")
    assert code == 130 and err == "aepose: interrupted\n"
