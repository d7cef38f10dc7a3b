"""Keypoint evaluation speed and exactness: aepose against every evaluator installed (issue 23).

The sets come from ``eval_sets.generate`` (seeded; see its docstring for what makes them
hard): COCO-17 and CrowdPose-14 with 5,000 images, AIC-14 with 5,000, COCO-17 with 50,000.
They are written once into ``--data`` and reused.

Every (set, evaluator) runs in a fresh process that reads the two files and prints the
metrics with its CPU time (user + system: imports, loading and evaluation) and peak
resident memory, from ``getrusage``. Evaluators, each called with mmpose 0.x's rules
where it has them (COCO: OKS by the annotated area; AIC, CrowdPose: 0.53 w h; CrowdPose:
'keypoints_crowd' and the easy/medium/hard split; maxDets 20; the dataset's sigmas):

- ``aepose``: ``aepose.evaluate_keypoints(gt, results, spec)``;
- ``aepose-cli``: ``aepose test --results R --ann GT --spec S`` (the command);
- ``xtcocotools``: what mmpose 0.x runs; every other evaluator's metrics are compared with
  its own, to the last bit;
- ``faster-coco-eval``, ``hotcoco``, ``xthotcoco``: as they come (all three keep
  detections whose keypoint scores are all 0, which xtcocotools drops);
- ``hotcoco-mmpose``: hotcoco driven with mmpose 0.x's rules, as a comparison (it is no
  dependency of aepose): AIC and CrowdPose annotations get ``area`` = 0.53 w h (xtcocotools'
  ``use_area=False``; COCO keeps its annotated area), the results file without the
  detections whose keypoint scores are all 0 (written once beside it, not timed: xtcocotools
  drops them as it loads), and CrowdPose's AP(easy/medium/hard) from one more evaluation
  per ``crowdIndex`` subset (``round(mean(precision), 4)``, -1 entries kept, as xtcocotools).

An evaluator that is not installed is skipped and named. xtcocotools' wheel needs NumPy
1.x; with NumPy 2 build it from source (needs a C compiler)::

    .venv/bin/pip install cython setuptools wheel
    .venv/bin/pip install --no-build-isolation --no-binary xtcocotools xtcocotools

Usage::

    .venv/bin/python benchmarks/eval_speed.py [--data /tmp/aepose-eval-sets]
        [--sets coco5k crowdpose5k aic5k coco50k] [--evaluators aepose xtcocotools ...]

Prints a Markdown table (the one in BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

SETS = {  # name: (dataset, images, seed)
    "coco5k": ("coco", 5000, 0),
    "crowdpose5k": ("crowdpose", 5000, 0),
    "aic5k": ("aic", 5000, 0),
    "coco50k": ("coco", 50000, 1),
}
EVALUATORS = ("aepose", "aepose-cli", "xtcocotools", "faster-coco-eval", "hotcoco",
              "hotcoco-mmpose", "xthotcoco")
MODULES = {"xtcocotools": "xtcocotools", "faster-coco-eval": "faster_coco_eval",
           "hotcoco": "hotcoco", "hotcoco-mmpose": "hotcoco", "xthotcoco": "xthotcoco"}
# Metric names in COCOeval.stats order.
KEYPOINT_STATS = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
CROWD_STATS = ("AP", "AP50", "AP75", "AR", "AR50", "AR75", "AP_easy", "AP_medium", "AP_hard")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path,
                        default=Path(tempfile.gettempdir()) / "aepose-eval-sets")
    parser.add_argument("--sets", nargs="+", choices=list(SETS), default=list(SETS))
    parser.add_argument("--evaluators", nargs="+", choices=EVALUATORS, default=list(EVALUATORS))
    parser.add_argument("--child", nargs=4, metavar=("EVALUATOR", "DATASET", "GT", "RESULTS"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--drop-unscored", nargs=2, metavar=("RESULTS", "SCORED"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drop_unscored:
        drop_unscored(*args.drop_unscored)
        return
    if args.child:
        import resource

        evaluator, dataset, gt, results = args.child
        metrics = run_evaluator(evaluator, dataset, gt, results)
        usage = resource.getrusage(resource.RUSAGE_SELF)  # imports and loading included
        print(json.dumps({"metrics": metrics, "cpu": usage.ru_utime + usage.ru_stime,
                          "rss_mb": usage.ru_maxrss / 1024}))
        return
    from eval_sets import write_set

    missing = [e for e in args.evaluators
               if e in MODULES and importlib.util.find_spec(MODULES[e]) is None]
    if missing:
        print(f"not installed, skipped: {', '.join(missing)}", file=sys.stderr)
    evaluators = [e for e in args.evaluators if e not in missing]
    rows = []
    for name in args.sets:
        dataset, images, seed = SETS[name]
        gt, results = write_set(args.data / name, dataset, images, seed)
        outcome = {e: measure(e, dataset, gt, results) for e in evaluators}
        reference = outcome.get("xtcocotools", {}).get("metrics")
        for evaluator in evaluators:
            rows.append((name, evaluator, outcome[evaluator], reference))
            print(row_text(*rows[-1]), file=sys.stderr, flush=True)
    print("| set | evaluator | CPU s | peak memory | metrics vs xtcocotools |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(row_text(*row))


def row_text(name: str, evaluator: str, outcome: dict[str, Any],
             reference: dict[str, float] | None) -> str:
    if "error" in outcome:
        return f"| {name} | {evaluator} | - | - | failed: {outcome['error'][:120]} |"
    metrics = outcome["metrics"]
    if evaluator == "xtcocotools":
        verdict = "(reference) AP " + f"{metrics['AP']:.4f}"
    elif reference is None:
        verdict = "xtcocotools not run"
    else:
        common = [k for k in reference if k in metrics]
        worst = max(abs(metrics[k] - reference[k]) for k in common)
        verdict = "identical, every bit" if worst == 0 else f"max difference {worst:.1e}"
    return (f"| {name} | {evaluator} | {outcome['cpu']:.2f} | {outcome['rss_mb']:.0f} MB "
            f"| {verdict} |")


def measure(evaluator: str, dataset: str, gt: Path, results: Path) -> dict[str, Any]:
    """Run one evaluator in a fresh process: its metrics, CPU seconds and peak memory."""
    if evaluator == "hotcoco-mmpose":
        results = scored_results(results)
    command = [sys.executable, __file__, "--child", evaluator, dataset, str(gt), str(results)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def scored_results(results: Path) -> Path:
    """The results file without the records whose keypoint scores are all 0 (xtcocotools'
    loadRes drops them), written once beside it by a child process: parsed here, the file
    would stay in this process's memory, and every child started later would report it as
    its own peak (a child's maximum RSS starts from its parent's)."""
    scored = results.with_name("results-scored.json")
    if not scored.exists() or scored.stat().st_mtime < results.stat().st_mtime:
        subprocess.run([sys.executable, __file__, "--drop-unscored", str(results), str(scored)],
                       check=True)
    return scored


def drop_unscored(results: str, scored: str) -> None:
    records = json.loads(Path(results).read_text())
    kept = [r for r in records if any(v > 0 for v in r["keypoints"][2::3])]
    Path(scored).write_text(json.dumps(kept))


# --------------------------------------------------------------------------------------------
# Evaluators (run in the child process)


def run_evaluator(evaluator: str, dataset: str, gt: str, results: str) -> dict[str, float]:
    import numpy as np

    from aepose.keypoints import get_spec

    spec = get_spec(dataset)
    crowd = dataset == "crowdpose"
    use_area = spec.oks_area == "annotated"
    sigmas = np.array(spec.sigmas)
    names = CROWD_STATS if crowd else KEYPOINT_STATS
    iou_type = "keypoints_crowd" if crowd else "keypoints"
    if evaluator == "aepose":
        import aepose

        return aepose.evaluate_keypoints(gt, results, spec)
    if evaluator == "aepose-cli":
        from aepose.apps.cli import main as cli

        with tempfile.TemporaryDirectory() as out, contextlib.redirect_stdout(io.StringIO()):
            if cli(["test", "--results", results, "--ann", gt, "--spec", dataset, "--out", out]):
                raise SystemExit("aepose test --results failed")
            metrics: dict[str, float] = json.loads(
                (Path(out) / "metrics.json").read_text())["metrics"]
        return metrics
    with contextlib.redirect_stdout(io.StringIO()):
        if evaluator in ("xtcocotools", "xthotcoco"):
            if evaluator == "xtcocotools":
                from xtcocotools.coco import COCO
                from xtcocotools.cocoeval import COCOeval
            else:
                from xthotcoco import COCO, COCOeval
            coco = COCO(gt)
            ev = COCOeval(coco, coco.loadRes(results), iou_type, sigmas, use_area=use_area)
            if evaluator == "xtcocotools":
                ev.params.useSegm = None  # as mmpose sets it
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            return dict(zip(names, (float(v) for v in ev.stats), strict=False))
        if evaluator == "faster-coco-eval":
            from faster_coco_eval import COCO as FCOCO
            from faster_coco_eval import COCOeval_faster

            coco = FCOCO(gt)
            ev = COCOeval_faster(coco, coco.loadRes(results), iouType=iou_type,
                                 kpt_oks_sigmas=list(spec.sigmas), use_area=use_area)
            ev.params.maxDets = [20]
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            stats = [float(v) for v in ev.stats]
            if crowd:  # its crowd stats: AP, AP50, AP75, AR, AR50, AR75, then E/M/H
                stats = stats[:6] + [float(v) for v in ev.get_type_result(0.2, 0.8)]
            return dict(zip(names, stats, strict=False))
        if evaluator == "hotcoco-mmpose":
            return hotcoco_mmpose(spec, gt, results)
        if evaluator == "hotcoco":
            from hotcoco import COCO as HCOCO
            from hotcoco import COCOeval as HCOCOeval

            coco = HCOCO(gt)
            ev = HCOCOeval(coco, coco.loadRes(results), "keypoints")
            ev.params.kpt_oks_sigmas = list(spec.sigmas)
            ev.params.max_dets = [20]
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            return dict(zip(KEYPOINT_STATS, (float(v) for v in ev.stats), strict=False))
    raise SystemExit(f"unknown evaluator {evaluator}")


def hotcoco_mmpose(spec: Any, gt: str, results: str) -> dict[str, float]:
    """hotcoco with mmpose 0.x's rules (module docstring); ``results`` holds only records
    with a positive keypoint score."""
    import numpy as np
    from hotcoco import COCO as HCOCO
    from hotcoco import COCOeval as HCOCOeval

    coco = HCOCO(gt)
    if spec.oks_area == "box":  # xtcocotools use_area=False: bbox[3] * bbox[2] * 0.53
        anns = coco.anns
        ids = np.fromiter(anns, dtype=np.int64, count=len(anns))
        area = np.array([anns[i]["bbox"][3] * anns[i]["bbox"][2] * 0.53 for i in ids.tolist()])
        coco.update_anns(ids=ids, area=area)
    ev = HCOCOeval(coco, coco.loadRes(results), "keypoints")
    ev.params.kpt_oks_sigmas = list(spec.sigmas)
    ev.params.max_dets = [20]
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    stats = [float(v) for v in ev.stats]
    if spec.name != "crowdpose":
        return dict(zip(KEYPOINT_STATS, stats, strict=True))
    metrics = dict(zip(CROWD_STATS, stats[:3] + stats[5:8], strict=False))
    crowd_index = {i: image["crowdIndex"] for i, image in coco.imgs.items()}
    subsets = {"AP_easy": lambda c: c < 0.2, "AP_medium": lambda c: 0.2 <= c < 0.8,
               "AP_hard": lambda c: c >= 0.8}
    for name, inside in subsets.items():
        ev.params.img_ids = sorted(i for i, c in crowd_index.items() if inside(c))
        ev.evaluate()
        ev.accumulate()
        precision = np.asarray(ev.eval["precision"])  # [T, R, K, A, M]
        metrics[name] = float(round(np.mean(precision[:, :, :, 0, :]), 4))
    return metrics


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
