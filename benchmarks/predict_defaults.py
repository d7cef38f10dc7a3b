"""The defaults of ``aepose predict`` / ``aepose.predict``, measured against known truth.

Every image of an annotation file is run once through a ``Predictor`` with the reference's
settings (every grouped person, no pose NMS). The person-score threshold (``min_score``),
the pose NMS (an OKS threshold) and the keypoint threshold (what counts as a detected
keypoint) are then applied to those poses exactly as the driver applies them
(:func:`aepose.pipeline.run.run`: threshold, then greedy OKS NMS), and scored:

* people: people per image against the truth (annotated people with a labelled keypoint),
  |predicted - true| per image, and predictions matched one-to-one to the truth at COCO OKS
  >= 0.5 (greedy by score, as COCOeval): precision, recall, F1;
* keypoints, over the matched pairs: a keypoint counts as detected when its score reaches
  the keypoint threshold; it is right when the truth labels it and it lies within
  keypoint-OKS 0.5 of it. Precision: right / detected; recall: right / labelled;
* boxes: IoU with the truth's keypoint box (labelled keypoints) of a predicted person's
  box over all K keypoints (the reference's ``bbox``) and over its detected keypoints; and
  how many kept people have a box reaching more than 2 pixels outside the image.

    .venv/bin/python -m aepose demo --out /tmp/res/demo          # a model and a test split
    .venv/bin/python benchmarks/predict_defaults.py --weights /tmp/res/demo/train/last.pth \
        --ann /tmp/res/demo/data/annotations/mmpose_crowdpose_test.json \
        --images /tmp/res/demo/data/images

``--count-only`` compares people counts only (annotations of another keypoint set, e.g.
the real AIC and COCO photos of ../shared/fixtures); ``--ann`` and ``--images`` take
several files and folders, paired in order.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

import aepose
from aepose.codec.pose_nms import oks_nms
from aepose.keypoints import get_spec

MIN_SCORES = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4)
POSE_NMS: tuple[float | None, ...] = (None, 0.9, 0.7, 0.5)
KEYPOINT_THRESHOLDS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4)


def coco_oks(truth: np.ndarray, visible: np.ndarray, area: float, points: np.ndarray,
             sigmas: np.ndarray) -> np.ndarray:
    """COCOeval's OKS of one true person (``truth`` [K, 2], ``visible`` [K], ``area``)
    with each of ``points`` [P, K, 2]: mean over the labelled keypoints."""
    variances = (2 * sigmas) ** 2
    e = ((points - truth) ** 2).sum(-1) / variances / (area + np.spacing(1)) / 2  # [P, K]
    return np.exp(-e)[:, visible].mean(axis=1) if visible.any() else np.zeros(len(points))


def keypoint_oks(truth: np.ndarray, area: float, point: np.ndarray,
                 sigmas: np.ndarray) -> np.ndarray:
    """[K] per-keypoint OKS term of one predicted person against its true person."""
    e = ((point - truth) ** 2).sum(-1) / (2 * sigmas) ** 2 / (area + np.spacing(1)) / 2
    return np.exp(-e)


def box(points: np.ndarray) -> np.ndarray | None:
    """[x0, y0, x1, y1] of ``points`` [N, 2], None for no point."""
    if len(points) == 0:
        return None
    return np.concatenate([points.min(axis=0), points.max(axis=0)])


def iou(a: np.ndarray | None, b: np.ndarray | None) -> float:
    if a is None or b is None:
        return 0.0
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return float(w * h / union) if union > 0 else 0.0


def match(people: list[dict[str, Any]], poses: np.ndarray, sigmas: np.ndarray
          ) -> list[tuple[int, int]]:
    """(truth, prediction) pairs at OKS >= 0.5, predictions in descending score order
    taking their best free true person (COCOeval's greedy matching)."""
    pairs: list[tuple[int, int]] = []
    if not people or len(poses) == 0:
        return pairs
    oks = np.stack([coco_oks(p["xy"], p["visible"], p["area"], poses[:, :, :2], sigmas)
                    for p in people])  # [T, P]
    taken: set[int] = set()
    for d in range(len(poses)):  # poses are in descending score order
        free = [t for t in range(len(people)) if t not in taken and oks[t, d] >= 0.5]
        if free:
            best = max(free, key=lambda t: oks[t, d])
            taken.add(best)
            pairs.append((best, d))
    return pairs


def truth_of(ann: dict[str, Any]) -> dict[int, list[dict[str, Any]]]:
    """Per image id: its people with a labelled keypoint (not crowd regions)."""
    by_image: dict[int, list[dict[str, Any]]] = {im["id"]: [] for im in ann["images"]}
    for a in ann["annotations"]:
        kp = np.asarray(a["keypoints"], np.float64).reshape(-1, 3)
        if a.get("iscrowd", 0) or not (kp[:, 2] > 0).any():
            continue
        w, h = a["bbox"][2], a["bbox"][3]
        by_image[a["image_id"]].append({"xy": kp[:, :2], "visible": kp[:, 2] > 0,
                                        "area": float(a.get("area", w * h * 0.53))})
    return by_image


def raw_poses(weights: str, images: Sequence[Path]
              ) -> list[tuple[np.ndarray, np.ndarray, tuple[int, int]]]:
    """Every person the reference's settings give, per image: [P, K, 3], [P] scores and
    the image's (width, height), people by descending score."""
    found = aepose.predict(list(images), weights, device="cpu", min_score=0, pose_nms=None,
                           threshold=0)
    out = []
    for result in found:
        keypoints = result.keypoints
        scores = np.array([p.score for p in result.poses], np.float32)
        order = np.argsort(-scores, kind="stable")
        out.append((keypoints[order], scores[order], (result.width, result.height)))
    return out


def outside(box_: np.ndarray | None, size: tuple[int, int]) -> bool:
    """Whether ``box_`` reaches more than 2 pixels outside an image of ``size``."""
    return box_ is not None and bool(box_[0] < -2 or box_[1] < -2 or box_[2] > size[0] + 2
                                     or box_[3] > size[1] + 2)


def people_table(raw: list[tuple[np.ndarray, np.ndarray, tuple[int, int]]],
                 truth: list[list[dict[str, Any]]], sigmas: np.ndarray,
                 count_only: bool = False) -> list[str]:
    rows = ["| min_score | pose NMS | people/image | truth/image | mean abs error | "
            "precision | recall | F1 |", "|---|---|---|---|---|---|---|---|"]
    true_count = sum(len(t) for t in truth)
    for nms in POSE_NMS:
        for low in MIN_SCORES:
            found = tp = error = 0
            for (poses, scores, _), people in zip(raw, truth, strict=True):
                keep = scores >= low
                poses, scores = poses[keep], scores[keep]
                if nms is not None and len(poses):
                    poses = poses[np.sort(oks_nms(poses, scores, sigmas, nms))]
                found += len(poses)
                error += abs(len(poses) - len(people))
                tp += 0 if count_only else len(match(people, poses, sigmas))
            precision = tp / found if found else 0.0
            recall = tp / true_count if true_count else 0.0
            f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
            scores = ("- | - | -" if count_only else
                      f"{precision:.3f} | {recall:.3f} | {f1:.3f}")
            rows.append(f"| {low:g} | {'none' if nms is None else nms} | "
                        f"{found / len(raw):.2f} | {true_count / len(raw):.2f} | "
                        f"{error / len(raw):.2f} | {scores} |")
    return rows


def keypoint_table(raw: list[tuple[np.ndarray, np.ndarray, tuple[int, int]]],
                   truth: list[list[dict[str, Any]]], sigmas: np.ndarray,
                   min_score: float) -> list[str]:
    rows = ["| keypoint threshold | detected/person | precision | recall | "
            "box IoU, all K | box IoU, detected | kept people with none detected | "
            "boxes leaving the image, all K / detected |", "|---|---|---|---|---|---|---|---|"]
    pairs = []
    kept_people: list[tuple[np.ndarray, tuple[int, int]]] = []
    for (poses, scores, size), people in zip(raw, truth, strict=True):
        keep = scores >= min_score
        kept_people += [(pose, size) for pose in poses[keep]]
        for t, d in match(people, poses[keep], sigmas):
            pairs.append((people[t], poses[keep][d]))
    for threshold in KEYPOINT_THRESHOLDS:
        detected = right = labelled = 0
        all_k = kept = 0.0
        for person, pose in pairs:
            on = pose[:, 2] >= threshold
            good = person["visible"] & (keypoint_oks(person["xy"], person["area"],
                                                     pose[:, :2], sigmas) >= 0.5)
            detected += int(on.sum())
            right += int((on & good).sum())
            labelled += int(person["visible"].sum())
            true_box = box(person["xy"][person["visible"]])
            all_k += iou(box(pose[:, :2]), true_box)
            kept += iou(box(pose[on, :2]), true_box)
        n = max(1, len(pairs))
        on_all = [(p, size, p[:, 2] >= max(threshold, 1e-12)) for p, size in kept_people]
        empty = sum(not on.any() for _, _, on in on_all)
        out_all = sum(outside(box(p[:, :2]), size) for p, size, _ in on_all)
        out_kept = sum(outside(box(p[on, :2]), size) for p, size, on in on_all)
        rows.append(f"| {threshold:g} | {detected / n:.2f} | "
                    f"{right / max(1, detected):.3f} | {right / max(1, labelled):.3f} | "
                    f"{all_k / n:.3f} | {kept / n:.3f} | {empty} of {len(kept_people)} | "
                    f"{out_all} / {out_kept} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", required=True)
    parser.add_argument("--ann", required=True, nargs="+", help="COCO-format annotations")
    parser.add_argument("--images", required=True, nargs="+", help="folders of their images")
    parser.add_argument("--spec", default="crowdpose")
    parser.add_argument("--min-score", type=float, default=0.2,
                        help="people kept for the keypoint table (default 0.2)")
    parser.add_argument("--count-only", action="store_true",
                        help="people counts only (annotations of another keypoint set)")
    args = parser.parse_args()
    images: list[Path] = []
    truth: list[list[dict[str, Any]]] = []
    for ann_file, folder in zip(args.ann, args.images, strict=True):
        ann = json.loads(Path(ann_file).read_text())
        by_image = truth_of(ann)
        images += [Path(folder) / im["file_name"] for im in ann["images"]]
        truth += [by_image[im["id"]] for im in ann["images"]]
    sigmas = np.asarray(get_spec(args.spec).sigmas, np.float64)
    raw = raw_poses(args.weights, images)
    print(f"{len(images)} images, {sum(len(t) for t in truth)} people in the truth\n")
    print("\n".join(people_table(raw, truth, sigmas, args.count_only)))
    if not args.count_only:
        print()
        print("\n".join(keypoint_table(raw, truth, sigmas, args.min_score)))


if __name__ == "__main__":
    main()
