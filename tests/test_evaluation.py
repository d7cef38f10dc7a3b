"""Keypoint evaluation (reference.md §5.2-5.5, §7 items 22-23).

Oracles: hand-derived AP values for tiny scenes (OKS computed here with the §5.3 formula),
pycocotools' COCOeval on generated scenes (fed ``area = 0.53 w h`` so that its area-based OKS and
buckets equal xtcocotools' ``use_area=False``), and the reference's own test: ground truth fed
back as predictions scores AP 1.0 on the real samples in ../shared/fixtures.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pycocotools import coco as oracle_coco
from pycocotools import cocoeval as oracle_cocoeval

from aepose.engine.evaluation import (
    CROWD_METRICS,
    STANDARD_METRICS,
    evaluate_keypoints,
    format_table,
    results_from_poses,
    write_results,
)
from aepose.errors import AeposeError
from aepose.keypoints import KeypointSpec, get_spec

Json = dict[str, Any]

FIXTURE_FILES = {
    "aic": "aic/test_aic.json",
    "crowdpose": "crowdpose/test_crowdpose.json",
    "coco": "coco/test_coco.json",
}
ORACLE_STATS = STANDARD_METRICS  # pycocotools' keypoint stats come in the same order
# xtcocotools' precision is tp / (tp + fp + eps): one right detection and no wrong one give
# 1 / (1 + eps), the float just below 1, not 1.
ONE_OF_ONE = 1 / (1 + np.spacing(1))


def one_line_error(call: Callable[[], object], *expected: str) -> str:
    """Run ``call``, which must raise a one-line AeposeError containing each of ``expected``."""
    with pytest.raises(AeposeError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    for part in expected:
        assert part in message, message
    return message


# --------------------------------------------------------------------------------------------
# Scene builders


def person(image_id: int, bbox: list[float], xy: np.ndarray, vis: np.ndarray, **extra: Any) -> Json:
    """A ground-truth annotation: K points ``xy`` [K, 2] with visibilities ``vis`` [K]."""
    kpts = np.concatenate([xy, vis[:, None]], axis=1)
    return {
        "image_id": image_id,
        "category_id": 1,
        "bbox": [float(v) for v in bbox],
        "keypoints": [float(v) for v in kpts.reshape(-1)],
        "iscrowd": 0,
        "num_keypoints": int((vis > 0).sum()),
        **extra,
    }


def ground_truth(images: list[Json], annotations: list[Json]) -> Json:
    for i, ann in enumerate(annotations):
        ann["id"] = i + 1
        ann["area"] = (
            0.53 * ann["bbox"][2] * ann["bbox"][3]
        )  # what xtcocotools uses; for the oracle
    return {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 1, "name": "person"}],
    }


def random_scene(spec: KeypointSpec, seed: int, n_images: int = 16) -> Json:
    """Random people of every size bucket; some crowd, some unlabelled (all v = 0).

    CrowdPose people get ``num_keypoints`` = count of v = 2 (so some with labelled points have
    0, as in the real files), the others count of v > 0; images cycle through crowdIndex
    values on both sides of the 0.2 / 0.8 thresholds.
    """
    rng = np.random.default_rng(seed)
    k = spec.num_keypoints
    crowd_indices = [0.05, 0.2, 0.5, 0.8, 0.95, 0.19]
    images, anns = [], []
    for image_id in range(1, n_images + 1):
        image: Json = {"id": image_id, "width": 640, "height": 480}
        if spec.name == "crowdpose":
            image["crowdIndex"] = crowd_indices[image_id % len(crowd_indices)]
        images.append(image)
        for _ in range(rng.integers(1, 5)):
            w, h = rng.uniform(15, 250), rng.uniform(20, 350)
            x0, y0 = rng.uniform(0, 640 - w), rng.uniform(0, 480 - h)
            xy = np.stack([rng.uniform(x0, x0 + w, k), rng.uniform(y0, y0 + h, k)], axis=1)
            vis = rng.choice([0, 1, 2], size=k, p=[0.2, 0.3, 0.5]).astype(float)
            if rng.random() < 0.1:
                vis[:] = 0
            elif rng.random() < 0.1:
                vis[vis > 0] = 1  # labelled, yet num_keypoints 0 in CrowdPose's count
            xy[vis == 0] = 0
            ann = person(image_id, [x0, y0, w, h], xy, vis, iscrowd=int(rng.random() < 0.08))
            if spec.name == "crowdpose":
                ann["num_keypoints"] = int((vis == 2).sum())
            anns.append(ann)
    return ground_truth(images, anns)


def gt_as_predictions(gt: Json) -> list[Json]:
    """Every annotation as a score-1 result; keypoint score 1 where labelled, else 0."""
    records = []
    for ann in gt["annotations"]:
        kpts = np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
        kpts[:, 2] = kpts[:, 2] > 0
        records += results_from_poses(ann["image_id"], kpts[None], np.ones(1))
    return records


def perturbed_predictions(gt: Json, spec: KeypointSpec, seed: int) -> list[Json]:
    """Noisy copies of most non-crowd people, random false positives, and one image with 25.

    Every keypoint score is > 0, so no record is one that xtcocotools would drop (pycocotools
    keeps those, and the comparison must not depend on that rule).
    """
    rng = np.random.default_rng(seed)
    records: list[Json] = []
    for ann in gt["annotations"]:
        if ann["iscrowd"] or rng.random() < 0.15:
            continue
        kpts = np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
        size = np.sqrt(ann["bbox"][2] * ann["bbox"][3])
        # Per-joint error in units of that joint's OKS scale, so every OKS level occurs.
        scale = rng.uniform(0, 1.2) * size * np.array(spec.sigmas)[:, None]
        kpts[:, :2] += rng.normal(0, 1, (len(kpts), 2)) * scale
        kpts[:, 2] = rng.uniform(0.05, 1, len(kpts))
        records += results_from_poses(ann["image_id"], kpts[None], rng.uniform(0.2, 1, 1))
    k = len(gt["annotations"][0]["keypoints"]) // 3
    for image in gt["images"]:
        n_false = 25 if image["id"] == 2 else int(rng.integers(0, 3))
        kpts = np.concatenate(
            [rng.uniform(0, 480, (n_false, k, 2)), rng.uniform(0.05, 1, (n_false, k, 1))], axis=2
        )
        records += results_from_poses(image["id"], kpts, rng.uniform(0, 0.7, n_false))
    return records


# --------------------------------------------------------------------------------------------
# Result records and files


def test_results_from_poses_writes_the_reference_record() -> None:
    keypoints = np.array(
        [
            [[10.5, 20.0, 0.9], [0.0, 0.0, 0.0], [30.25, 5.0, 0.4]],
            [[7, 8, 1], [9, 12, 1], [8, 9, 1]],
        ],
        dtype=np.float32,
    )
    records = results_from_poses(7, keypoints, np.array([0.75, 0.5], dtype=np.float32))
    assert records[0] == {
        "image_id": 7,
        "category_id": 1,
        "keypoints": [
            10.5,
            20.0,
            float(np.float32(0.9)),
            0.0,
            0.0,
            0.0,
            30.25,
            5.0,
            float(np.float32(0.4)),
        ],
        "score": 0.75,
        # over all K points, the unfilled (0, 0) one included (§5.2)
        "bbox": [0.0, 0.0, 30.25, 20.0],
    }
    assert records[1]["bbox"] == [7.0, 8.0, 2.0, 4.0]
    assert json.loads(json.dumps(records)) == records  # plain Python numbers
    assert all(type(v) is float for r in records for v in [*r["keypoints"], *r["bbox"], r["score"]])
    assert results_from_poses(1, np.zeros((0, 14, 3)), np.zeros(0)) == []
    one_line_error(lambda: results_from_poses(3, np.zeros((2, 14)), np.zeros(2)), "image 3")


def test_write_results_is_atomic(tmp_path: Path) -> None:
    path = tmp_path / "result_keypoints.json"
    path.write_text("old")
    records = results_from_poses(1, np.arange(12, dtype=float).reshape(2, 2, 3), np.ones(2))
    write_results(path, records)
    assert json.loads(path.read_text()) == records
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    assert path.stat().st_mode & 0o777 == 0o644

    with pytest.raises(TypeError):  # a set is not JSON: the write fails half way
        write_results(path, [{"a": 1}, {"b": {1, 2}}])
    assert json.loads(path.read_text()) == records
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


# --------------------------------------------------------------------------------------------
# Ground truth as predictions


@pytest.mark.parametrize("name", ["aic", "crowdpose", "coco"])
def test_ground_truth_as_predictions_scores_one_on_the_real_samples(
    fixtures: Path, tmp_path: Path, name: str
) -> None:
    gt_path = fixtures / FIXTURE_FILES[name]
    gt = json.loads(gt_path.read_text())
    untouched = copy.deepcopy(gt)
    write_results(tmp_path / "results.json", gt_as_predictions(gt))
    metrics = evaluate_keypoints(gt_path, tmp_path / "results.json", name)
    for key in ("AP", "AP50", "AP75", "AR", "AR50", "AR75", "APl", "ARl"):
        assert metrics[key] == 1.0, key
    # The same content given as a dict is not modified by the evaluation.
    assert evaluate_keypoints(gt, gt_as_predictions(gt), get_spec(name)) == metrics
    assert gt == untouched


def test_real_sample_size_buckets_and_crowd_split(fixtures: Path) -> None:
    """Known facts of the samples: the small COCO people are medium at 0.53 w h, no AIC or
    CrowdPose person is; both CrowdPose images are medium crowds (crowdIndex 0.33, 0.39)."""
    results = {}
    for name, file in FIXTURE_FILES.items():
        gt = json.loads((fixtures / file).read_text())
        results[name] = evaluate_keypoints(gt, gt_as_predictions(gt), name)
    assert results["coco"]["APm"] == results["coco"]["ARm"] == 1.0
    assert results["aic"]["APm"] == results["crowdpose"]["APm"] == -1.0
    assert [results["crowdpose"][m] for m in CROWD_METRICS] == [-1.0, 1.0, -1.0]


@pytest.mark.parametrize("name", ["aic", "crowdpose", "coco"])
def test_ground_truth_as_predictions_scores_one_on_a_generated_set(name: str) -> None:
    gt = random_scene(get_spec(name), seed=3)
    metrics = evaluate_keypoints(gt, gt_as_predictions(gt), name)
    expected = STANDARD_METRICS + (CROWD_METRICS if name == "crowdpose" else ())
    assert metrics == dict.fromkeys(expected, 1.0)


# --------------------------------------------------------------------------------------------
# Agreement with pycocotools


def oracle_evaluate(gt: Json, records: list[Json], spec: KeypointSpec) -> Any:
    """pycocotools' COCOeval run with maxDets [20] and the spec's sigmas."""
    oracle_gt = oracle_coco.COCO()
    oracle_gt.dataset = copy.deepcopy(gt)
    with contextlib.redirect_stdout(io.StringIO()):
        oracle_gt.createIndex()
        oracle = oracle_cocoeval.COCOeval(
            oracle_gt, oracle_gt.loadRes(copy.deepcopy(records)), "keypoints"
        )
        oracle.params.kpt_oks_sigmas = np.array(spec.sigmas)
        oracle.params.maxDets = [20]
        oracle.evaluate()
        oracle.accumulate()
        oracle.summarize()
    return oracle


@pytest.mark.parametrize("name", ["coco", "aic", "crowdpose"])
def test_agrees_with_pycocotools_on_perturbed_predictions(name: str) -> None:
    """pycocotools ignores people by the ``num_keypoints`` field: for COCO/AIC the scene's field
    is the v > 0 count (what xtcocotools counts), for CrowdPose the file's own field."""
    spec = get_spec(name)
    gt = random_scene(spec, seed=11, n_images=24)
    records = perturbed_predictions(gt, spec, seed=12)
    metrics = evaluate_keypoints(gt, records, spec)
    oracle = oracle_evaluate(gt, records, spec)
    np.testing.assert_allclose([metrics[m] for m in ORACLE_STATS], oracle.stats, rtol=0, atol=1e-9)
    assert 0.2 < metrics["AP"] < 0.9  # a scene that tells good from bad matching
    if name == "crowdpose":
        thresholds = {"AP_easy": (0.0, 0.2), "AP_medium": (0.2, 0.8), "AP_hard": (0.8, 9.0)}
        for metric, (low, high) in thresholds.items():
            oracle.params.imgIds = [
                im["id"] for im in gt["images"] if low <= im["crowdIndex"] < high
            ]
            with contextlib.redirect_stdout(io.StringIO()):
                oracle.evaluate()
                oracle.accumulate()
            expected = round(float(np.mean(oracle.eval["precision"][:, :, :, 0, :])), 4)
            assert metrics[metric] == expected, metric


# --------------------------------------------------------------------------------------------
# Hand-computed cases


def hand_oks(
    gt_xy: np.ndarray, dt_xy: np.ndarray, vis: np.ndarray, sigmas: np.ndarray, bbox: list[float]
) -> float:
    """§5.3: mean over v > 0 joints of exp(-d^2 / (2 * 0.53 w h * (2 sigma)^2))."""
    d2 = ((gt_xy - dt_xy) ** 2).sum(axis=1)
    e = d2 / (2 * 0.53 * bbox[2] * bbox[3] * (2 * sigmas) ** 2)
    return float(np.exp(-e)[vis > 0].mean())


@pytest.mark.parametrize(("target_oks", "passed"), [(0.72, 5), (0.93, 9), (0.47, 0)])
def test_hand_computed_oks_passes_exactly_the_thresholds_below_it(
    target_oks: float, passed: int
) -> None:
    """One person, one detection shifted right by s: AP = (thresholds <= OKS) / 10.

    The box is 80 x 150 (w h = 12000, above 96^2) but 0.53 w h = 6360 makes it medium; the
    face joints are unlabelled and their detections are far off, which must not matter.
    """
    spec = get_spec("coco")
    sigmas = np.array(spec.sigmas)
    bbox = [100.0, 50.0, 80.0, 150.0]
    gt_xy = np.stack([np.linspace(110, 170, 17), np.linspace(60, 190, 17)], axis=1)
    vis = np.where(np.arange(17) < 5, 0.0, 2.0)
    low, high = 0.0, 100.0
    for _ in range(80):  # bisection for the shift giving target_oks
        s = (low + high) / 2
        dt_xy = gt_xy + np.array([s, 0.0])
        low, high = (
            (s, high) if hand_oks(gt_xy, dt_xy, vis, sigmas, bbox) > target_oks else (low, s)
        )
    dt_xy[vis == 0] += 300.0
    assert hand_oks(gt_xy, dt_xy, vis, sigmas, bbox) == pytest.approx(target_oks, abs=1e-9)
    assert sum(t <= target_oks for t in np.linspace(0.5, 0.95, 10)) == passed

    gt = ground_truth([{"id": 1}], [person(1, bbox, np.where(vis[:, None] > 0, gt_xy, 0.0), vis)])
    kpts = np.concatenate([dt_xy, np.ones((17, 1))], axis=1)
    metrics = evaluate_keypoints(gt, results_from_poses(1, kpts[None], np.ones(1)), spec)
    # The mean over [10 thresholds, 101 recall points] of precision ONE_OF_ONE where found.
    expected_ap = np.mean(np.repeat([ONE_OF_ONE] * passed + [0.0] * (10 - passed), 101))
    assert metrics["AP"] == metrics["APm"] == expected_ap
    assert metrics["AR"] == metrics["ARm"] == passed / 10
    found = np.mean(np.full(101, ONE_OF_ONE))
    assert metrics["AP50"] == (found if passed else 0.0)
    assert metrics["AP75"] == (found if passed > 5 else 0.0)
    assert metrics["APl"] == metrics["ARl"] == -1.0  # no large person at 0.53 w h


def line_people(image_id: int, n: int, k: int, x_start: float = 20.0) -> list[Json]:
    """n separate, fully visible people standing side by side."""
    people = []
    for i in range(n):
        x0 = x_start + 110.0 * i
        xy = np.stack([np.linspace(x0 + 5, x0 + 95, k), np.linspace(30, 380, k)], axis=1)
        people.append(person(image_id, [x0, 20.0, 100.0, 370.0], xy, np.full(k, 2.0)))
    return people


def predictions_of(people: list[Json], score: float, shift: float = 0.0) -> list[Json]:
    records = []
    for ann in people:
        kpts = np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3).copy()
        kpts[:, 0] += shift
        kpts[:, 2] = 1.0
        records += results_from_poses(ann["image_id"], kpts[None], np.array([score]))
    return records


def test_false_positives_on_an_image_without_people() -> None:
    """Four people found (score 0.5) after one false positive (score 0.99) on an image that
    the file lists with no person: precision 4/5 at every recall, recall 1."""
    people = line_people(1, 2, 17) + line_people(2, 2, 17)
    gt = ground_truth([{"id": 1}, {"id": 2}, {"id": 3}], people)
    false_positive = predictions_of(line_people(3, 1, 17), 0.99)
    metrics = evaluate_keypoints(gt, [*predictions_of(people, 0.5), *false_positive], "coco")
    assert metrics["AP"] == pytest.approx(0.8, abs=1e-12)
    assert metrics["AR"] == 1.0


def test_only_the_twenty_best_detections_of_an_image_count() -> None:
    """maxDets 20: the right detection ranked 21st is never seen; ranked 20th it is found."""
    gt = ground_truth([{"id": 1}], line_people(1, 1, 14))
    hit = predictions_of(gt["annotations"], 0.1)
    misses = predictions_of(line_people(1, 1, 14, x_start=400.0), 0.9)
    assert evaluate_keypoints(gt, hit + misses * 20, "aic")["AR"] == 0.0
    assert evaluate_keypoints(gt, hit + misses * 19, "aic")["AR"] == 1.0


def test_detections_without_a_positive_keypoint_score_are_dropped() -> None:
    """A far-off detection with keypoint scores all 0 / negative outranks the right one; kept,
    it would halve AP (precision 1/2 at every recall)."""
    gt = ground_truth([{"id": 1}], line_people(1, 1, 14))
    junk = predictions_of(line_people(1, 1, 14, x_start=400.0), 0.9)[0]
    junk["keypoints"][2::3] = [0.0, -0.5] * 7
    metrics = evaluate_keypoints(gt, [*predictions_of(gt["annotations"], 0.5), junk], "aic")
    assert metrics["AP"] == ONE_OF_ONE
    junk["keypoints"][2] = 0.01
    metrics = evaluate_keypoints(gt, [*predictions_of(gt["annotations"], 0.5), junk], "aic")
    assert metrics["AP"] == pytest.approx(0.5, abs=1e-12)


def test_crowdpose_ignores_people_by_num_keypoints_and_aic_by_labelled_count() -> None:
    """Person B is labelled (v = 1 everywhere) but has num_keypoints 0, as CrowdPose files
    allow. Only A is predicted. CrowdPose ignores B (AR 1); AIC's rule counts B (AR 1/2)."""
    a, b = line_people(1, 2, 14)
    b["keypoints"][2::3] = [1.0] * 14
    b["num_keypoints"] = 0
    gt = ground_truth([{"id": 1, "crowdIndex": 0.1}], [a, b])
    predictions = predictions_of([a], 0.8)
    crowdpose = evaluate_keypoints(gt, predictions, "crowdpose")
    aic = evaluate_keypoints(gt, predictions, "aic")
    assert crowdpose["AP"] == ONE_OF_ONE
    assert crowdpose["AR"] == crowdpose["AP_easy"] == 1.0  # AP_easy is rounded to 4 places
    assert aic["AR"] == 0.5
    assert aic["AP"] == pytest.approx(51 / 101)  # precision 1 up to recall 0.5


def test_crowdpose_easy_medium_hard() -> None:
    """Perfect on easy images (crowdIndex 0, 0.19), all wrong on hard ones (0.8, 1.5); medium
    (0.2, 0.79) has a wrong detection (0.9) ranked above a right one (0.5): precision 1/2 at
    recall thresholds 0..0.5 (51 of 101), 0 above, at every OKS threshold."""
    crowd_index = {1: 0.0, 2: 0.19, 3: 0.2, 4: 0.79, 5: 0.8, 6: 1.5}
    people = {i: line_people(i, 1, 14) for i in crowd_index}
    gt = ground_truth(
        [{"id": i, "crowdIndex": c} for i, c in crowd_index.items()],
        [p for ps in people.values() for p in ps],
    )
    predictions = [
        *predictions_of(people[1] + people[2], 0.7),
        *predictions_of(people[3], 0.5),
        *predictions_of(people[4], 0.9, shift=300.0),
        *predictions_of(people[5] + people[6], 0.7, shift=300.0),
    ]
    metrics = evaluate_keypoints(gt, predictions, "crowdpose")
    assert metrics["AP_easy"] == 1.0
    assert metrics["AP_medium"] == round(51 * 0.5 / 101, 4) == 0.2525
    assert metrics["AP_hard"] == 0.0
    assert metrics["AR"] == 0.5


def test_empty_predictions_score_zero_where_people_exist(tmp_path: Path) -> None:
    gt = random_scene(get_spec("crowdpose"), seed=5)
    expected = dict.fromkeys(STANDARD_METRICS + CROWD_METRICS, 0.0)
    assert evaluate_keypoints(gt, [], "crowdpose") == expected
    write_results(tmp_path / "empty.json", [])
    assert evaluate_keypoints(gt, tmp_path / "empty.json", "crowdpose") == expected
    # Only dropped records (no positive keypoint score) is the same as none.
    dropped = gt_as_predictions(gt)
    for record in dropped:
        record["keypoints"][2::3] = [0.0] * 14
    assert evaluate_keypoints(gt, dropped, "crowdpose") == expected


# --------------------------------------------------------------------------------------------
# Bad input


def test_prediction_on_an_unknown_image_is_an_error() -> None:
    gt = ground_truth([{"id": 1}], line_people(1, 1, 14))
    records = predictions_of(gt["annotations"], 0.5) + predictions_of(line_people(99, 1, 14), 0.5)
    one_line_error(lambda: evaluate_keypoints(gt, records, "aic"), "record #1", "image_id 99")


def test_prediction_with_the_wrong_keypoint_count_is_an_error() -> None:
    gt = ground_truth([{"id": 1}], line_people(1, 1, 17))
    records = [r for score in (0.5, 0.6, 0.7) for r in predictions_of(gt["annotations"], score)]
    records[2]["keypoints"] = records[2]["keypoints"][:42]
    one_line_error(
        lambda: evaluate_keypoints(gt, records, "coco"), "record #2", "42 values", "17 keypoints"
    )


def test_malformed_ground_truth_is_a_one_line_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    cases: list[tuple[str, tuple[str, ...]]] = [
        ('{"images": [', (str(bad), "not valid JSON")),
        ("[]", (str(bad), "not a COCO-format")),
        ('{"images": [], "categories": []}', (str(bad), "'annotations'")),
        (
            '{"images": [{"id": 1}], "annotations": [{"image_id": 1, "bbox": [0, 0, 1, 1],'
            ' "category_id": 1, "keypoints": [1, 2, 2]}], "categories": [{"id": 1}]}',
            (str(bad), "annotation #0", "42 numbers"),
        ),
        (
            '{"images": [{"id": 1}], "annotations": [{"image_id": 2, "bbox": [0, 0, 1, 1],'
            f' "category_id": 1, "keypoints": {[0] * 42}}}], "categories": [{{"id": 1}}]}}',
            (str(bad), "image id 2"),
        ),
    ]
    for text, expected in cases:
        bad.write_text(text)
        one_line_error(lambda: evaluate_keypoints(bad, [], "aic"), *expected)
    one_line_error(lambda: evaluate_keypoints(tmp_path / "none.json", [], "aic"), "not found")
    bad.write_text('{"images": [{"id": 1}], "annotations": [], "categories": [{"id": 1}]}')
    # CrowdPose's split needs crowdIndex on every image
    one_line_error(lambda: evaluate_keypoints(bad, [], "crowdpose"), "image id 1", "crowdIndex")
    (tmp_path / "results.json").write_text("{oops")
    one_line_error(
        lambda: evaluate_keypoints(bad, tmp_path / "results.json", "aic"),
        "results.json",
        "not valid JSON",
    )


# --------------------------------------------------------------------------------------------
# Table


def test_format_table_matches_the_seeds_columns() -> None:
    metrics = dict.fromkeys(STANDARD_METRICS, 0.5) | {"AP": 0.30349, "AR50": 0.7556, "APm": -1.0}
    assert format_table(metrics, "aic") == (
        "AP     AP50   AP75   AR     AR50   APm     APl\n"
        "0.303  0.500  0.500  0.500  0.756  -1.000  0.500"
    )
    crowd = metrics | {"AP_easy": 0.728, "AP_medium": 0.66, "AP_hard": 0.5774}
    assert format_table(crowd, get_spec("crowdpose")) == (
        "AP     AP50   AP75   AR     AR50   AP(E)  AP(M)  AP(H)\n"
        "0.303  0.500  0.500  0.500  0.756  0.728  0.660  0.577"
    )
    one_line_error(lambda: format_table(metrics, "crowdpose"), "AP_easy")


def test_a_nan_keypoint_is_reported_as_non_finite_not_as_a_count(tmp_path: Path) -> None:
    gt = ground_truth([{"id": 1}], line_people(1, 1, 17))
    records = predictions_of(gt["annotations"], 0.5)
    records[0]["keypoints"][4] = float("nan")
    path = tmp_path / "results.json"
    path.write_text(json.dumps(records))  # Python writes NaN, and reads it back
    one_line_error(lambda: evaluate_keypoints(gt, path, "coco"), "record #0",
                   "the non-finite value nan at position 4", "51 numbers, all finite")
    records[0]["keypoints"][4] = "7"
    one_line_error(lambda: evaluate_keypoints(gt, records, "coco"),
                   "the non-numeric value '7' at position 4")
    gt["annotations"][0]["keypoints"][1] = float("inf")
    one_line_error(lambda: evaluate_keypoints(gt, [], "coco"), "annotation #0",
                   "the non-finite value inf at position 1")
