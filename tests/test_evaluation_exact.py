"""Evaluation equals mmpose 0.x's per dataset (issue 23), and the fast readers read what the
checking reader reads.

Oracles: pycocotools' COCOeval (a dev dependency) with each person's annotated area, on
generated files whose areas are far from 0.53 w h (benchmarks/eval_sets.py), for COCO's
rule; xtcocotools itself, called as mmpose 0.x calls it, where it is installed (it is not a
dependency: README "Evaluate" says how to build it). The readers are compared on the same
generated files, whole and cut into many pieces.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_evaluation import ORACLE_STATS, one_line_error, oracle_evaluate

from aepose.engine import eval_inputs
from aepose.engine.eval_checked import checked_detections, checked_ground_truth
from aepose.engine.eval_inputs import detections_from_poses, read_detections, read_ground_truth
from aepose.engine.evaluation import evaluate_keypoints, results_from_poses, write_results
from aepose.keypoints import AIC, COCO, CROWDPOSE, KeypointSpec, get_spec

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from eval_sets import generate

Json = dict[str, Any]


def scored(records: list[Json]) -> list[Json]:
    """The records that every library evaluates (pycocotools keeps those without a positive
    keypoint score, which xtcocotools drops)."""
    return [r for r in records if any(v > 0 for v in r["keypoints"][2::3])]


def test_each_dataset_uses_mmpose_s_oks_area_rule() -> None:
    """bottom_up_coco.py: COCOeval(..., 'keypoints', sigmas) (use_area=True); bottom_up_aic.py
    and bottom_up_crowdpose.py: use_area=False."""
    assert (COCO.oks_area, AIC.oks_area, CROWDPOSE.oks_area) == ("annotated", "box", "box")
    with pytest.raises(ValueError, match="oks_area"):
        dataclasses.replace(COCO, oks_area="segment")  # type: ignore[arg-type]


def test_coco_scores_oks_with_the_annotated_area_as_pycocotools() -> None:
    """pycocotools uses each person's ``area`` for OKS and buckets, as xtcocotools does with
    use_area=True. The generated areas are 0.3-0.8 w h, so the 0.53 w h rule scores the
    same files differently."""
    gt, records = generate("coco", images=120, seed=5)
    records = scored(records)
    metrics = evaluate_keypoints(gt, records, "coco")
    oracle = oracle_evaluate(gt, records, COCO)
    assert [metrics[m] for m in ORACLE_STATS] == [float(v) for v in oracle.stats]
    box_rule = evaluate_keypoints(gt, records, dataclasses.replace(COCO, oks_area="box"))
    assert abs(box_rule["AP"] - metrics["AP"]) > 1e-3
    assert abs(box_rule["APm"] - metrics["APm"]) > 1e-3


def test_the_box_rule_is_pycocotools_fed_0_53_w_h() -> None:
    gt, records = generate("aic", images=120, seed=6)
    records = scored(records)
    for ann in gt["annotations"]:
        ann["area"] = ann["bbox"][3] * ann["bbox"][2] * 0.53  # what pycocotools reads
        ann["iscrowd"] = 0  # missing in AIC files, which means 0; pycocotools needs it
    metrics = evaluate_keypoints(gt, records, "aic")
    oracle = oracle_evaluate(gt, records, AIC)
    assert [metrics[m] for m in ORACLE_STATS] == [float(v) for v in oracle.stats]


def test_coco_without_area_is_a_one_line_error(tmp_path: Path) -> None:
    gt, _ = generate("coco", images=3, seed=1)
    del gt["annotations"][2]["area"]
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    one_line_error(lambda: evaluate_keypoints(path, [], "coco"), str(path), "annotation #2",
                   "'area'", "oks_area")
    gt["annotations"][2]["area"] = -1.0
    one_line_error(lambda: evaluate_keypoints(gt, [], "coco"), "annotation #2", "'area'")
    gt["annotations"][2]["area"] = 10.0
    gt["annotations"][1]["bbox"][3] = -5.0
    one_line_error(lambda: evaluate_keypoints(gt, [], "coco"), "annotation #1",
                   "negative width or height")


def xtcocotools_stats(gt_path: Path, results_path: Path, spec: KeypointSpec) -> list[float]:
    """xtcocotools' stats, called as mmpose 0.x's bottom-up datasets call it."""
    xt_coco = pytest.importorskip("xtcocotools.coco")
    xt_eval = pytest.importorskip("xtcocotools.cocoeval")
    with contextlib.redirect_stdout(io.StringIO()):
        coco = xt_coco.COCO(str(gt_path))
        found = coco.loadRes(str(results_path))
        evaluator = xt_eval.COCOeval(
            coco, found, "keypoints_crowd" if spec.name == "crowdpose" else "keypoints",
            np.array(spec.sigmas), use_area=spec.oks_area == "annotated")
        evaluator.params.useSegm = None
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return [float(v) for v in evaluator.stats]


XT_STATS = {
    "coco": ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl"),
    "aic": ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl"),
    "crowdpose": ("AP", "AP50", "AP75", "AR", "AR50", "AR75", "AP_easy", "AP_medium",
                  "AP_hard"),
}


@pytest.mark.parametrize("name", ["coco", "aic", "crowdpose"])
def test_equals_xtcocotools_to_the_last_bit(tmp_path: Path, name: str) -> None:
    """Every statistic, bit for bit, on files built to stress it: zero-score detections,
    more than 20 detections on some images, duplicates, crowds, unlabelled people, areas
    far from 0.53 w h, crowdIndex on the 0.2 / 0.8 thresholds."""
    gt, records = generate(name, images=300, seed=8)
    gt_path, results_path = tmp_path / "gt.json", tmp_path / "results.json"
    gt_path.write_text(json.dumps(gt))
    write_results(results_path, records)
    expected = xtcocotools_stats(gt_path, results_path, get_spec(name))
    metrics = evaluate_keypoints(gt_path, results_path, name)
    assert [metrics[m] for m in XT_STATS[name]] == expected


# --------------------------------------------------------------------------------------------
# Readers


def same_arrays(a: Any, b: Any) -> bool:
    for field in dataclasses.fields(a):
        x, y = getattr(a, field.name), getattr(b, field.name)
        if x is None or y is None:
            if not (x is None and y is None):
                return False
        elif not np.array_equal(x, y, equal_nan=True):
            return False
    return True


@pytest.mark.parametrize("name", ["coco", "aic", "crowdpose"])
def test_fast_readers_read_what_the_checking_readers_read(tmp_path: Path, name: str) -> None:
    spec = get_spec(name)
    gt, records = generate(name, images=60, seed=3)
    gt_path, results_path = tmp_path / "gt.json", tmp_path / "results.json"
    gt_path.write_text(json.dumps(gt))
    write_results(results_path, records)  # mmpose's layout: sorted keys, indent 4
    checked_gt = checked_ground_truth(gt, spec)
    checked = checked_detections(records, checked_gt, spec.num_keypoints)
    for gt_source in (gt_path, gt):
        fast_gt = eval_inputs._fast_ground_truth(gt_source, spec)
        assert fast_gt is not None  # the fast reader took these files
        assert same_arrays(fast_gt, checked_gt)
    for source in (results_path, records):
        fast = eval_inputs._fast_detections(source, checked_gt, spec.num_keypoints)
        assert fast is not None
        assert same_arrays(fast, checked)


def test_a_results_file_read_in_many_pieces(tmp_path: Path, monkeypatch: Any) -> None:
    """Pieces of 4 kB hold a few records each; compact and indented files alike."""
    gt, records = generate("coco", images=40, seed=4)
    records[3]["bbox"] = None  # no bbox: the keypoints' extent gives the area
    del records[5]["bbox"]
    truth = read_detections(records, read_ground_truth(gt, COCO), 17)
    monkeypatch.setattr(eval_inputs, "_PIECE_BYTES", 4096)
    for text in (json.dumps(records), json.dumps(records, indent=4), json.dumps([])):
        path = tmp_path / "results.json"
        path.write_text(f"\n  {text}\n")
        fast = eval_inputs._fast_detections(path, read_ground_truth(gt, COCO), 17)
        assert fast is not None
        if text != "[]":
            assert same_arrays(fast, truth)
    assert len(truth.score) == len(records)


def test_braces_inside_strings_never_misplace_a_cut(tmp_path: Path, monkeypatch: Any) -> None:
    """A string holding '}, {' where a piece would be cut: the piece does not decode, the
    checking reader reads the file, and the numbers are the same."""
    gt, records = generate("aic", images=20, seed=2)
    for record in records:
        record["note"] = "}, {" * 300
    path = tmp_path / "results.json"
    path.write_text(json.dumps(records))
    monkeypatch.setattr(eval_inputs, "_PIECE_BYTES", 2048)
    assert evaluate_keypoints(gt, path, "aic") == evaluate_keypoints(gt, records, "aic")


def test_poses_as_arrays_score_as_their_records() -> None:
    """The arrays that ``aepose test`` and training validation pass equal the result
    records written to results.json."""
    gt, records = generate("crowdpose", images=50, seed=9)
    by_image: dict[int, list[Json]] = {}
    for record in records:
        by_image.setdefault(record["image_id"], []).append(record)
    ids = list(by_image)
    kpts = [np.array([r["keypoints"] for r in by_image[i]], np.float32).reshape(-1, 14, 3)
            for i in ids]
    scores = [np.array([r["score"] for r in by_image[i]], np.float32) for i in ids]
    written = [r for i, k, s in zip(ids, kpts, scores, strict=True)
               for r in results_from_poses(i, k, s)]
    arrays = detections_from_poses(ids, kpts, scores, 14)
    assert evaluate_keypoints(gt, arrays, "crowdpose") == \
        evaluate_keypoints(copy.deepcopy(gt), written, "crowdpose")
    one_line_error(lambda: evaluate_keypoints(gt, detections_from_poses([123456789], [kpts[0]],
                                                                        [scores[0]], 14),
                                              "crowdpose"), "image id 123456789")


def test_precision_envelope_read_at_recall_thresholds_as_xtcocotools_loops() -> None:
    """xtcocotools' accumulate, as a loop: the running maximum from the right, then q[ri] =
    pr[inds[ri]] where inds[ri] is inside; our stretch maxima give the same values."""
    from aepose.engine.keypoint_eval import RECALL_THRESHOLDS, _envelope_at

    rng = np.random.default_rng(0)
    for nd in (1, 2, 7, 300):
        pr = rng.choice([0.1, 0.5, 0.5, 0.9, 1.0], nd) * rng.uniform(0.5, 1, nd)
        rc = np.sort(rng.choice(np.linspace(0, 1.2, 13), nd))  # ties, and recall past 1
        inds = np.searchsorted(rc, RECALL_THRESHOLDS, side="left")
        envelope = pr.tolist()
        for i in range(nd - 1, 0, -1):
            if envelope[i] > envelope[i - 1]:
                envelope[i - 1] = envelope[i]
        expected = [envelope[i] if i < nd else 0.0 for i in inds]
        assert _envelope_at(pr, inds).tolist() == expected


def test_results_arrays_grow_past_the_first_piece_s_estimate(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """The arrays are sized from the first piece's bytes per record: long records first
    (17-digit numbers, padding), then short ones, so later pieces outgrow that estimate."""
    gt, records = generate("coco", images=40, seed=6)
    for record in records[:8]:
        record["keypoints"] = [v + 1 / 3 for v in record["keypoints"]]
        record["note"] = "x" * 3000
    for record in records[8:]:
        record["keypoints"] = [round(v) for v in record["keypoints"]]
    truth = read_detections(records, read_ground_truth(gt, COCO), 17)
    monkeypatch.setattr(eval_inputs, "_PIECE_BYTES", 8192)
    grown = []
    empty = eval_inputs._Table._empty
    monkeypatch.setattr(eval_inputs._Table, "_empty",
                        lambda self, capacity: grown.append(capacity) or empty(self, capacity))
    path = tmp_path / "results.json"
    path.write_text(json.dumps(records))
    fast = eval_inputs._fast_detections(path, read_ground_truth(gt, COCO), 17)
    assert fast is not None and same_arrays(fast, truth)
    assert len(grown) > 2  # the first size (after the placeholder), then at least one growth
