"""Tiny COCO-format datasets of skeletons no preset has, written by the tests themselves:
21 points (COCO-17 plus hands and toes) and 9 points named with ``l_``/``r_``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np

COCO17 = [
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip",
    "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
]  # fmt: skip
BODY21 = [*COCO17, "left_hand", "right_hand", "left_toe", "right_toe"]
# COCO's 1-based links plus wrist-hand and ankle-toe.
BODY21_LINKS = [
    [16, 14], [14, 12], [17, 15], [15, 13], [12, 13], [6, 12], [7, 13], [6, 7], [6, 8],
    [7, 9], [8, 10], [9, 11], [2, 3], [1, 2], [1, 3], [2, 4], [3, 5], [4, 6], [5, 7],
    [10, 18], [11, 19], [16, 20], [17, 21],
]  # fmt: skip
POINTS9 = ["head", "neck", "l_shoulder", "r_shoulder", "l_hand", "r_hand", "pelvis",
           "l_foot", "r_foot"]
POINTS9_LINKS = [[1, 2], [2, 3], [2, 4], [3, 5], [4, 6], [2, 7], [7, 8], [7, 9]]


def coco_file(names: list[str], links: list[list[int]], *, images: int = 2, people: int = 2,
              size: int = 96, seed: int = 0, area: bool = True) -> dict[str, Any]:
    """A COCO keypoint file of ``images`` images with ``people`` random people each."""
    rng = np.random.default_rng(seed)
    k = len(names)
    anns = []
    for i in range(images):
        for _ in range(people):
            cx, cy = rng.uniform(0.3, 0.7, 2) * size
            pts = np.stack([cx + rng.uniform(-15, 15, k), cy + rng.uniform(-25, 25, k),
                            np.full(k, 2.0)], axis=1)
            ann: dict[str, Any] = {
                "id": len(anns) + 1, "image_id": i + 1, "category_id": 1, "iscrowd": 0,
                "keypoints": [round(float(v), 2) for v in pts.ravel()], "num_keypoints": k,
                "bbox": [float(cx - 15), float(cy - 25), 30.0, 50.0]}
            if area:
                ann["area"] = 1500.0
            anns.append(ann)
    return {
        "images": [{"id": i + 1, "file_name": f"{i + 1}.png", "width": size, "height": size}
                   for i in range(images)],
        "annotations": anns,
        "categories": [{"id": 1, "name": "person", "supercategory": "person",
                        "keypoints": names, "skeleton": links}],
    }


def write_dataset(root: Path, names: list[str], links: list[list[int]], *, images: int = 2,
                  size: int = 96, seed: int = 0, name: str = "train.json") -> Path:
    """``root/name`` and its images under ``root/images``: a dot drawn at every joint, so
    the maps have something to find. Returns the annotation file."""
    data = coco_file(names, links, images=images, size=size, seed=seed)
    folder = root / "images"
    folder.mkdir(parents=True, exist_ok=True)
    for image in data["images"]:
        canvas = np.full((size, size, 3), 40, np.uint8)
        for ann in data["annotations"]:
            if ann["image_id"] == image["id"]:
                for x, y, _ in np.reshape(ann["keypoints"], (-1, 3)):
                    cv2.circle(canvas, (int(x), int(y)), 2, (255, 255, 255), -1)
        cv2.imwrite(str(folder / image["file_name"]), canvas)
    path = root / name
    path.write_text(json.dumps(data))
    return path
