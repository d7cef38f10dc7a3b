"""``aepose test --results``: no torch, the spec from the files, outputs named after the
results file (issues 21 and 23)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import run_cli

from aepose.engine.evaluation import evaluate_keypoints
from aepose.keypoints import AIC, CROWDPOSE

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from eval_sets import generate

SRC = Path(__file__).resolve().parents[1] / "src"
Json = dict[str, Any]


def _write_set(folder: Path, dataset: str, names: tuple[str, ...] | None = None,
               images: int = 40) -> tuple[Path, Path]:
    """(annotation file, results file) of a small generated set; ``names``: the keypoint
    names its category lists (the generated files list none)."""
    gt, records = generate(dataset, images=images, seed=3)
    if names is not None:
        gt["categories"][0]["keypoints"] = list(names)
    folder.mkdir(parents=True, exist_ok=True)
    ann, results = folder / "gt.json", folder / "results.json"
    ann.write_text(json.dumps(gt))
    results.write_text(json.dumps(records))
    return ann, results


def _metrics(path: Path) -> Json:
    metrics: Json = json.loads(path.read_text())["metrics"]
    return metrics


def _one_error_line(code: int, err: str) -> str:
    lines = err.splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith("aepose: error: "), err
    return lines[0]


# Runs ``aepose ARGV`` through cli.main in a fresh interpreter and prints, as JSON, the exit
# status and whether torch was imported by the end.
_PROBE = """
import json, sys
from aepose.apps.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "torch": "torch" in sys.modules}), file=sys.stderr)
"""


def test_rescoring_does_not_import_torch(tmp_path: Path) -> None:
    """Importing torch costs ~2 s of CPU, a fifth of re-scoring a 50,000-image set."""
    ann, results = _write_set(tmp_path, "coco")
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, "test", "--results", str(results), "--ann", str(ann),
         "--spec", "coco"],
        capture_output=True, text=True, timeout=120, env={"PYTHONPATH": str(SRC), "PATH": ""})
    assert json.loads(done.stderr.strip().splitlines()[-1]) == {"code": 0, "torch": False}, \
        done.stderr
    assert (tmp_path / "metrics-results.json").is_file()


def test_17_keypoints_are_scored_as_coco_without_spec(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ann, results = _write_set(tmp_path, "coco")
    code, out, err = run_cli(capsys, "test", "--results", str(results), "--ann", str(ann))
    assert code == 0, err
    assert out.splitlines()[0].split() == ["AP", "AP50", "AP75", "AR", "AR50", "APm", "APl"]
    report = json.loads((tmp_path / "metrics-results.json").read_text())
    assert report["spec"] == "coco"
    assert report["metrics"] == evaluate_keypoints(ann, results, "coco")


@pytest.mark.parametrize(("dataset", "names"), [
    ("crowdpose", CROWDPOSE.keypoint_names),
    # CrowdPose's own files name the head 'head'; most names still agree.
    ("crowdpose", (*CROWDPOSE.keypoint_names[:12], "head", "neck")),
    ("aic", AIC.keypoint_names),
])
def test_14_keypoints_are_told_apart_by_the_category_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], dataset: str, names: tuple[str, ...]
) -> None:
    ann, results = _write_set(tmp_path, dataset, names)
    code, _, err = run_cli(capsys, "test", "--results", str(results), "--ann", str(ann))
    assert code == 0, err
    report = json.loads((tmp_path / "metrics-results.json").read_text())
    assert report["spec"] == dataset
    assert report["metrics"] == evaluate_keypoints(ann, results, dataset)


def test_14_keypoints_without_names_ask_for_spec_naming_both(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ann, results = _write_set(tmp_path, "crowdpose")
    code, _, err = run_cli(capsys, "test", "--results", str(results), "--ann", str(ann))
    line = _one_error_line(code, err)
    assert str(results) in line and "14 keypoints" in line
    assert "--spec aic or --spec crowdpose" in line
    assert not list(tmp_path.glob("metrics*"))
    # Names that fit neither spec decide nothing either.
    ann_mixed, _ = _write_set(tmp_path, "crowdpose", tuple(f"joint_{i}" for i in range(14)))
    code, _, err = run_cli(capsys, "test", "--results", str(results), "--ann", str(ann_mixed))
    assert "--spec aic or --spec crowdpose" in _one_error_line(code, err)


def test_a_results_file_without_records_asks_for_spec(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ann, _ = _write_set(tmp_path, "coco")
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    code, _, err = run_cli(capsys, "test", "--results", str(empty), "--ann", str(ann))
    line = _one_error_line(code, err)
    assert str(empty) in line and "--spec" in line
    # A keypoint count that no spec has is named.
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps([{"image_id": 1, "category_id": 1, "score": 1.0,
                                "keypoints": [0.0] * 30}]))
    code, _, err = run_cli(capsys, "test", "--results", str(odd), "--ann", str(ann))
    assert "10 keypoints per record, which no keypoint spec has" in _one_error_line(code, err)


def test_first_record_longer_than_the_head_read_is_counted(tmp_path: Path) -> None:
    """A results file whose first record does not fit the first MB read for its count, and
    one that is not one JSON array of records at all: the whole file is read instead."""
    from aepose.engine.eval_inputs import results_keypoint_count

    padded = tmp_path / "padded.json"
    records = [{"keypoints": [1.0] * 51, "pad": "x" * (1 << 21)}, {"keypoints": [1.0] * 51}]
    padded.write_text(json.dumps(records))
    assert results_keypoint_count(padded) == 17
    spaced = tmp_path / "spaced.json"
    spaced.write_text(json.dumps(records[1:], indent=4))
    assert results_keypoint_count(spaced) == 17


def test_results_files_rescore_side_by_side(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two results files re-scored into one folder get a metrics file each, named after
    them; neither replaces the other nor an evaluation's metrics.json."""
    ann, results = _write_set(tmp_path, "coco")
    (tmp_path / "metrics.json").write_text("{}")  # an evaluation's own
    second = tmp_path / "flipless.json"
    records = json.loads(results.read_text())
    second.write_text(json.dumps(records[: len(records) // 2]))
    for path in (results, second):
        code, _, err = run_cli(capsys, "test", "--results", str(path), "--ann", str(ann))
        assert code == 0, err
    assert _metrics(tmp_path / "metrics-results.json") == evaluate_keypoints(ann, results, "coco")
    assert _metrics(tmp_path / "metrics-flipless.json") == evaluate_keypoints(ann, second, "coco")
    assert (tmp_path / "metrics.json").read_text() == "{}"
    # Again: refused without --overwrite, one line naming the file.
    code, _, err = run_cli(capsys, "test", "--results", str(second), "--ann", str(ann))
    line = _one_error_line(code, err)
    assert f"{tmp_path / 'metrics-flipless.json'} exists" in line and "--overwrite" in line
    assert run_cli(capsys, "test", "--results", str(second), "--ann", str(ann),
                   "--overwrite")[0] == 0
    # --out: metrics.json there, as test writes it.
    out = tmp_path / "elsewhere"
    code, stdout, err = run_cli(capsys, "test", "--results", str(second), "--ann", str(ann),
                                "--out", str(out))
    assert code == 0, err
    assert f"metrics: {out / 'metrics.json'}" in stdout
    assert _metrics(out / "metrics.json") == _metrics(tmp_path / "metrics-flipless.json")


def _custom_set(folder: Path, names: list[str] | None) -> tuple[Path, Path]:
    """A 21-point (COCO-17 + hands + toes) annotation file, its category naming ``names``
    (none: no names), and results near its people (each joint moved by up to 6 px)."""
    from custom_skeleton import BODY21, BODY21_LINKS, coco_file

    gt = coco_file(BODY21, BODY21_LINKS, images=6, people=3, size=160, seed=5)
    if names is None:
        del gt["categories"][0]["keypoints"]
    rng = np.random.default_rng(0)
    records = []
    for person in gt["annotations"]:
        points = np.asarray(person["keypoints"], float).reshape(-1, 3)
        points[:, :2] += rng.uniform(-6, 6, (len(points), 2))
        points[:, 2] = 0.9
        records.append({"image_id": person["image_id"], "category_id": 1, "score": 0.9,
                        "keypoints": [round(float(v), 2) for v in points.ravel()]})
    folder.mkdir(parents=True, exist_ok=True)
    ann, results = folder / "gt.json", folder / "results.json"
    ann.write_text(json.dumps(gt))
    results.write_text(json.dumps(records))
    return ann, results


def test_a_custom_skeleton_is_scored_with_the_annotation_files_own_spec(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """21 keypoints: no built-in spec has them, the annotation file's category names them,
    so its own skeleton (its sigmas) scores them; ``--spec FILE`` overrides that skeleton."""
    from custom_skeleton import BODY21

    from aepose.skeleton_file import spec_from_annotations

    ann, results = _custom_set(tmp_path, BODY21)
    code, _, err = run_cli(capsys, "test", "--results", str(results), "--ann", str(ann))
    assert code == 0, err
    report = json.loads((tmp_path / "metrics-results.json").read_text())
    spec = spec_from_annotations(ann)
    assert report["spec"]["keypoint_names"] == BODY21
    assert report["metrics"] == evaluate_keypoints(ann, results, spec)
    assert 0.0 < report["metrics"]["AP"] < 1.0
    # Wider sigmas through a spec file: the same detections match better.
    wide = tmp_path / "wide.json"
    wide.write_text(json.dumps({"sigmas": dict.fromkeys(BODY21, 0.2)}))
    code, _, err = run_cli(capsys, "test", "--results", str(results), "--ann", str(ann),
                           "--spec", str(wide), "--out", str(tmp_path / "wide"))
    assert code == 0, err
    widened = _metrics(tmp_path / "wide" / "metrics.json")
    assert widened == evaluate_keypoints(ann, results, spec_from_annotations(ann, wide))
    assert widened["AP"] > report["metrics"]["AP"]


def test_a_custom_count_without_names_or_a_wrong_spec_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ann, results = _custom_set(tmp_path, None)
    code, _, err = run_cli(capsys, "test", "--results", str(results), "--ann", str(ann))
    line = _one_error_line(code, err)
    assert "21 keypoints per record, which no keypoint spec has" in line
    assert "no skeleton of its own" in line and str(ann) in line
    code, _, err = run_cli(capsys, "test", "--results", str(results), "--ann", str(ann),
                           "--spec", str(tmp_path / "absent.json"))
    assert "neither a built-in keypoint spec" in _one_error_line(code, err)
    assert not list(tmp_path.glob("metrics*"))
