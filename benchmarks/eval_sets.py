"""Generated keypoint-evaluation sets built to stress an evaluator (issue 23).

One set is a COCO-format annotation file and a results file (mmpose's records) drawn from a
seed. What makes it hard, per 5,000 images (the defaults): about 8 people per image
(40k), about 10 detections per image (50k), person ``area`` deliberately not 0.53 w h
(segmentation-like, 0.3-0.8 w h, so the COCO and AIC/CrowdPose area rules give different
numbers), ~6 % ignored people (crowd, or no labelled keypoint), ~5 % of images with more
than 20 detections (the maxDets cap), duplicate detections of one person (matching
conflicts), detections whose keypoint scores are all 0 (which xtcocotools drops), people
in every size bucket, a few records with a joint left at (0, 0), and non-contiguous image
ids listed out of order. CrowdPose sets
carry ``crowdIndex`` on every image (some exactly on the 0.2 / 0.8 thresholds) and
``num_keypoints`` counting only v = 2; AIC sets have neither ``area`` nor ``iscrowd``.

    from eval_sets import generate
    gt, results = generate("coco", images=200, seed=0)

Used by ``benchmarks/eval_speed.py`` and by the evaluation tests (small sets).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from aepose.keypoints import get_spec

Json = dict[str, Any]

IMAGE_W, IMAGE_H = 640, 480


def generate(dataset: str, images: int, seed: int) -> tuple[Json, list[Json]]:
    """(ground truth dict, result records) of a generated set (module docstring).

    Args:
        dataset: ``"coco"``, ``"aic"`` or ``"crowdpose"`` (its keypoint spec and file rules).
        images: number of images.
        seed: the set is a function of (dataset, images, seed).
    """
    rng = np.random.default_rng(seed)
    spec = get_spec(dataset)
    k = spec.num_keypoints
    sigmas = np.asarray(spec.sigmas)
    image_ids = rng.choice(np.arange(1, 40 * images + 1), size=images, replace=False)
    people_per_image = rng.poisson(7.05, images) + 1
    n = int(people_per_image.sum())
    owner = np.repeat(image_ids, people_per_image)

    # Boxes: sqrt(w h) log-uniform over every COCO size bucket, upright people.
    side = np.exp(rng.uniform(np.log(14), np.log(330), n))
    aspect = rng.uniform(1.0, 2.8, n)
    w, h = side / np.sqrt(aspect), side * np.sqrt(aspect)
    w, h = np.minimum(w, IMAGE_W - 1), np.minimum(h, IMAGE_H - 1)
    x0 = rng.uniform(0, IMAGE_W - w)
    y0 = rng.uniform(0, IMAGE_H - h)
    gx = np.rint(x0[:, None] + rng.uniform(0, 1, (n, k)) * w[:, None])
    gy = np.rint(y0[:, None] + rng.uniform(0, 1, (n, k)) * h[:, None])
    vis = rng.choice([0, 1, 2], size=(n, k), p=[0.25, 0.2, 0.55])
    unlabelled = rng.random(n) < 0.035
    vis[unlabelled] = 0
    crowd = (rng.random(n) < 0.025) & ~unlabelled
    if dataset == "crowdpose":
        # Labelled with v = 1 only: num_keypoints 0, so ignored by CrowdPose's rule.
        v1_only = rng.random(n) < 0.02
        vis[v1_only] = np.where(vis[v1_only] > 0, 1, 0)
    gx[vis == 0] = 0
    gy[vis == 0] = 0
    area = w * h * rng.uniform(0.3, 0.8, n)

    annotations = []
    for i in range(n):
        kpts = np.stack([gx[i], gy[i], vis[i]], axis=1).astype(int).reshape(-1).tolist()
        ann: Json = {
            "id": int(1000 + 7 * i),
            "image_id": int(owner[i]),
            "category_id": 1,
            "keypoints": kpts,
            "num_keypoints": int((vis[i] == 2).sum() if dataset == "crowdpose"
                                 else (vis[i] > 0).sum()),
            "bbox": [round(float(v), 2) for v in (x0[i], y0[i], w[i], h[i])],
        }
        if dataset != "aic":
            ann["iscrowd"] = int(crowd[i])
        if dataset == "coco":
            ann["area"] = round(float(area[i]), 3)
        annotations.append(ann)

    image_records: list[Json] = []
    thresholds = np.array([0.2, 0.8])
    for image_id in rng.permutation(image_ids):
        image: Json = {"id": int(image_id), "file_name": f"{image_id:012d}.jpg",
                       "width": IMAGE_W, "height": IMAGE_H}
        if dataset == "crowdpose":
            on_threshold = rng.random() < 0.05
            crowd_index = rng.choice(thresholds) if on_threshold else rng.uniform(0, 1)
            image["crowdIndex"] = round(float(crowd_index), 2)
        image_records.append(image)

    gt = {"images": image_records, "annotations": annotations,
          "categories": [{"id": 1, "name": "person", "supercategory": "person"}]}
    boxes = np.stack([x0, y0, w, h], axis=1)
    return gt, _detections(rng, gx, gy, vis, boxes, crowd, owner, image_ids, sigmas)


def _detections(rng: np.random.Generator, gx: np.ndarray, gy: np.ndarray, vis: np.ndarray,
                boxes: np.ndarray, crowd: np.ndarray, owner: np.ndarray,
                image_ids: np.ndarray, sigmas: np.ndarray) -> list[Json]:
    """mmpose result records: noisy copies of most people (some twice), false positives,
    a few images crowded past 20 detections, a few all-zero keypoint scores."""
    n, k = gx.shape
    x0, y0, w, h = boxes.T
    copies = np.where(rng.random(n) < 0.86, 1, 0) + (rng.random(n) < 0.08)
    src = np.repeat(np.arange(n), copies)
    size = np.sqrt(w[src] * h[src])
    # Per-joint error in units of that joint's OKS scale, so every OKS level occurs.
    err = rng.uniform(0, 1.3, len(src))[:, None] * size[:, None] * sigmas[None, :]
    dx = gx[src] + rng.normal(0, 1, (len(src), k)) * err
    dy = gy[src] + rng.normal(0, 1, (len(src), k)) * err
    # Unlabelled joints: predicted somewhere in the person's box.
    hidden = vis[src] == 0
    across, down = rng.uniform(0, 1, (2, len(src), k))
    dx = np.where(hidden, x0[src, None] + across * w[src, None], dx)
    dy = np.where(hidden, y0[src, None] + down * h[src, None], dy)
    det_img = owner[src]
    det_score = rng.uniform(0.05, 1, len(src))
    det_score[crowd[src]] *= 0.5

    # False positives: about 0.6 per image, and 21-40 detections on ~5 % of the images.
    extra = rng.poisson(0.6, len(image_ids))
    extra[rng.random(len(image_ids)) < 0.055] += rng.integers(21, 40)
    fp_img = np.repeat(image_ids, extra)
    m = len(fp_img)
    fx = rng.uniform(0, IMAGE_W, (m, 1)) + rng.normal(0, 40, (m, k))
    fy = rng.uniform(0, IMAGE_H, (m, 1)) + rng.normal(0, 80, (m, k))

    xs = np.concatenate([dx, fx]).astype(np.float32)
    ys = np.concatenate([dy, fy]).astype(np.float32)
    scores = rng.uniform(0.02, 1, xs.shape).astype(np.float32)
    zero = rng.random(len(xs)) < 0.006
    scores[zero] = 0
    # A joint left unfilled at (0, 0), as the reference's records can hold (reference §5.2).
    unfilled = np.flatnonzero(rng.random(len(xs)) < 0.02)
    joint = rng.integers(0, k, len(unfilled))
    xs[unfilled, joint] = ys[unfilled, joint] = scores[unfilled, joint] = 0
    person_score = np.concatenate([det_score, rng.uniform(0, 0.8, m)]).astype(np.float32)
    images = np.concatenate([det_img, fp_img])
    # Written as mmpose writes them: float32 values as Python floats, in no particular order.
    order = rng.permutation(len(xs))
    records = []
    for i in order:
        x, y, s = xs[i].astype(float), ys[i].astype(float), scores[i].astype(float)
        flat = np.stack([x, y, s], axis=1).reshape(-1).tolist()
        x_min, y_min = float(x.min()), float(y.min())
        records.append({
            "image_id": int(images[i]),
            "category_id": 1,
            "keypoints": flat,
            "score": float(person_score[i]),
            "bbox": [x_min, y_min, float(x.max()) - x_min, float(y.max()) - y_min],
        })
    return records


def write_set(folder: Path, dataset: str, images: int, seed: int) -> tuple[Path, Path]:
    """Generate a set into ``folder`` (gt.json, results.json) unless it is already there."""
    folder.mkdir(parents=True, exist_ok=True)
    gt_path, results_path = folder / "gt.json", folder / "results.json"
    stamp = folder / "set.json"
    wanted = {"dataset": dataset, "images": images, "seed": seed}
    if stamp.exists() and json.loads(stamp.read_text()) == wanted and results_path.exists():
        return gt_path, results_path
    gt, results = generate(dataset, images, seed)
    gt_path.write_text(json.dumps(gt))
    results_path.write_text(json.dumps(results))
    stamp.write_text(json.dumps(wanted))
    return gt_path, results_path
