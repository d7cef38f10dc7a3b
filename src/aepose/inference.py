"""Poses from images in Python: :class:`Predictor`, :class:`Pose`, :func:`predict_images`.

They run the one test-time pipeline of :mod:`aepose.pipeline` (mmpose 0.x
``AssociativeEmbedding.forward_test``, reference.md §4): test sizes, resize and
normalisation; the network with the flip test; flip, head-output and scale aggregation;
grouping; back-projection to original-image pixel indices. The test settings are the
Config's ``test`` section; keyword overrides are applied to it once, here.

Also here: :class:`FastNetwork` (channels_last, autocast, ``torch.compile``) and
:func:`oks_nms` (mmpose's demo pose NMS).

Legend: K keypoints, P people, L tag dims (one per flip direction: 2 with flip test).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from aepose.checkpoint import load_with_config
from aepose.config import Config
from aepose.errors import AeposeError
from aepose.keypoints import KeypointSpec, get_spec
from aepose.pipeline import Result, Stages, check_scales, stream
from aepose.precision import autocast, check_precision
from aepose.visualize import draw_poses

__all__ = [
    "COMPILE_MODES",
    "DEMO_OKS_THRESHOLD",
    "FastNetwork",
    "Pose",
    "Predictor",
    "check_compile_mode",
    "oks_nms",
    "predict_images",
    "with_test_settings",
]

DEMO_OKS_THRESHOLD = 0.9
"""The OKS threshold of mmpose's demo pose NMS (``inference_bottom_up_pose_model``)."""

COCO_PERSON = 1  # category_id of 'person' in every COCO-format keypoint file


@dataclass(frozen=True, eq=False)
class Pose:
    """One detected person.

    keypoints: float32 [K, 3]: x, y in original-image pixel indices and the heatmap value.
    score: the person score (mean heatmap value over all K joints before refinement).
    tags: float32 [K, L] embedding values of the grouped joints (0 for refined ones).
    """

    keypoints: np.ndarray
    score: float
    tags: np.ndarray | None = None

    def to_coco(self, image_id: int) -> dict[str, Any]:
        """The COCO results record (reference §5.2): category 1, flat ``x, y, v`` list, score,
        and ``bbox = [min x, min y, max x - min x, max y - min y]`` over ALL K keypoints."""
        xy = self.keypoints[:, :2].astype(np.float64)
        low, high = xy.min(axis=0), xy.max(axis=0)
        return {
            "image_id": image_id,
            "category_id": COCO_PERSON,
            "keypoints": self.keypoints.astype(np.float64).reshape(-1).tolist(),
            "score": float(self.score),
            "bbox": [float(low[0]), float(low[1]), *(float(v) for v in high - low)],
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``keypoints`` [[x, y, score], ...] (K of them), ``score`` and
        ``bbox`` [x, y, w, h] over all keypoints, as in ``predictions.json``."""
        coco = self.to_coco(0)
        return {"keypoints": self.keypoints.astype(np.float64).tolist(), "score": coco["score"],
                "bbox": coco["bbox"]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Pose:
        """The Pose of a :meth:`to_dict` record (no tags)."""
        return cls(np.asarray(data["keypoints"], dtype=np.float32).reshape(-1, 3),
                   float(data["score"]))

    def draw(self, image: np.ndarray, spec: KeypointSpec | str,
             keypoint_threshold: float = 0.3) -> np.ndarray:
        """A copy of ``image`` (RGB uint8 [H, W, 3]) with this person's skeleton drawn
        (``spec``: the keypoint definition, or its name such as ``"crowdpose"``)."""
        spec = get_spec(spec) if isinstance(spec, str) else spec
        return draw_poses(image, self.keypoints[None], np.array([self.score], np.float32), spec,
                          keypoint_threshold=keypoint_threshold)


COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")
"""``torch.compile`` modes. "reduce-overhead" replays CUDA graphs, one capture per input
shape, which removes the kernel-launch cost of small batches; on the CPU it is "default"."""


class FastNetwork(nn.Module):
    """A network run with the GPU fast paths: NHWC memory format, autocast to bf16 or fp16,
    ``torch.compile``. Outputs come back as float32 so aggregation and decoding are the same
    code; use it wherever a network goes (``Predictor``, ``predict_images``).

    The outputs differ from fp32's by the dtype's rounding (relative L2 about 3e-2 for bf16,
    1e-6 for channels_last, 3e-7 for compile on the tiny presets: tests/test_benchmark.py).
    ``compile`` is one of :data:`COMPILE_MODES`, or None to run eagerly.
    """

    def __init__(self, model: nn.Module, *, dtype: str = "fp32", channels_last: bool = False,
                 compile: str | None = None) -> None:
        super().__init__()
        check_compile_mode(compile)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.model = model
        self.dtype = check_precision(dtype)
        self.channels_last = channels_last
        self.run = torch.compile(self.model, mode=compile) if compile else self.model

    def forward(self, images: Tensor) -> list[Tensor]:
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast(images.device.type, self.dtype):
            outputs = self.run(images)
        return [o.float().contiguous() for o in outputs]


def check_compile_mode(mode: str | None) -> None:
    """Raise AeposeError unless ``mode`` is None or one of :data:`COMPILE_MODES`."""
    if mode is not None and mode not in COMPILE_MODES:
        raise AeposeError(f"unknown compile mode {mode!r} (choices: {', '.join(COMPILE_MODES)})")


# ---------------------------------------------------------------------------------------
# Pose NMS (mmpose demo, reference §4.8)


def oks_nms(
    keypoints: np.ndarray, scores: np.ndarray, sigmas: Sequence[float], threshold: float
) -> np.ndarray:
    """Indices of the poses kept by greedy OKS NMS, as mmpose 0.x's ``oks_nms``.

    Args:
        keypoints: [P, K, >=3] x, y (image pixels), value; only x and y enter the OKS.
        scores: [P] person scores; the highest-scored remaining pose is kept first.
        sigmas: K OKS sigmas of the dataset (variances (2 sigma)^2).
        threshold: a pose is dropped when its OKS with a kept pose is > this.

    Every pose's area is its keypoint extent (max x - min x) * (max y - min y); the OKS of
    two poses uses the mean of their areas. Returns int64 indices in the order kept
    (descending score; equal scores: later index first, as mmpose's reversed argsort).
    """
    points = np.asarray(keypoints, dtype=np.float32)[:, :, :2]
    if len(points) == 0:
        return np.zeros(0, dtype=np.int64)
    extent = points.max(axis=1) - points.min(axis=1)
    areas = extent[:, 0] * extent[:, 1]
    variances = (np.asarray(sigmas, dtype=np.float64) * 2) ** 2
    squared = ((points[:, None] - points[None]) ** 2).sum(axis=-1)  # [P, P, K]
    mean_area = (areas[:, None] + areas[None]) / 2 + np.spacing(1)
    e = squared / variances / mean_area[..., None] / 2
    # mmpose stores the OKS in a float32 array before comparing it with the threshold.
    oks = np.exp(-e).mean(axis=-1).astype(np.float32)
    order = np.argsort(np.asarray(scores), kind="stable")[::-1]
    keep = []
    while len(order):
        best, rest = order[0], order[1:]
        keep.append(best)
        order = rest[oks[best, rest] <= threshold]
    return np.asarray(keep, dtype=np.int64)




# ---------------------------------------------------------------------------------------
# Settings and Predictor


def with_test_settings(config: Config, **overrides: Any) -> Config:
    """``config`` with the given ``test`` fields replaced (None values are ignored): the
    one place keyword and command-line overrides of the test settings are applied."""
    given = {k: v for k, v in overrides.items() if v is not None}
    if "scales" in given:
        given["scales"] = check_scales(given["scales"])
    try:
        test = dataclasses.replace(config.test, **given)
    except TypeError as error:  # an unknown field name
        raise AeposeError(f"unknown test setting: {error}") from None
    return dataclasses.replace(config, test=test)


def predict_images(
    model: nn.Module,
    config: Config,
    images: Sequence[np.ndarray],
    *,
    scales: Sequence[float] | None = None,
    flip: bool | None = None,
    stage_average: str | None = None,
    max_batch: int | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Poses of every image (the functional form of :class:`Predictor`).

    Args:
        model: network in eval mode; its parameters' device is where maps are computed
            and decoded (CPU for a network without parameters).
        config: ``config.model`` describes the outputs, ``config.data`` gives the dataset
            and input size, ``config.test`` the test settings.
        images: RGB uint8 arrays [H, W, 3], any sizes.
        scales, flip, stage_average: overrides of ``config.test`` (None: keep it).
        max_batch: most images per forward pass (a batch holds 2x that with flip);
            ``None``: all images of equal test-input size at once.

    Returns:
        per image (in order): poses float32 [P, K, 3 + L] (x, y in original-image pixel
        indices, heatmap value, L tag values), people in the grouping's order; scores
        float32 [P].
    """
    if model.training:
        raise AeposeError("predict_images needs the network in eval mode (call model.eval())")
    config = with_test_settings(config, scales=scales, flip=flip, stage_average=stage_average)
    if max_batch is not None and max_batch < 1:
        raise AeposeError(f"max_batch must be at least 1, got {max_batch}")
    results = _run(Stages(model, config), images, max_batch)
    return [(r.poses, r.scores) for r in results]


def _run(stages: Stages, images: Sequence[np.ndarray], max_batch: int | None
         ) -> list[Result[int]]:
    """All images through the pipeline in the calling thread; the first bad one raises."""
    count = max(1, len(images))
    results = list(stream(stages, range(len(images)), images.__getitem__,
                          batch_size=max_batch or count, window=count, read_workers=0))
    for r in results:
        if r.error is not None:
            raise AeposeError(f"image {r.index}: {r.error}")
    return results


class Predictor:
    """Callable pose estimator: ``Predictor.from_checkpoint(path)(rgb_image) -> list[Pose]``.

    Test settings are ``config.test``'s; ``scales``, ``flip`` and ``stage_average`` override
    them. ``pose_nms`` is an OKS threshold (mmpose's demo uses :data:`DEMO_OKS_THRESHOLD`) or
    ``None`` for no pose NMS (the evaluation setting). The model is put in eval mode and, if
    ``device`` is given, moved there; otherwise it stays on its device.
    """

    def __init__(
        self,
        model: nn.Module,
        config: Config,
        *,
        scales: Sequence[float] | None = None,
        flip: bool | None = None,
        stage_average: str | None = None,
        device: str | torch.device | None = None,
        pose_nms: float | None = None,
    ):
        if device is not None:
            model = model.to(device)
        self.model = model.eval()
        self.config = with_test_settings(config, scales=scales, flip=flip,
                                         stage_average=stage_average)
        self.stages = Stages(self.model, self.config)
        if pose_nms is not None and not 0 <= pose_nms <= 1:
            raise AeposeError(f"pose_nms is an OKS threshold in [0, 1], got {pose_nms}")
        self.pose_nms = pose_nms
        self.spec = self.stages.spec

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        preset: str | None = None,
        device: str | torch.device | None = None,
        *,
        scales: Sequence[float] | None = None,
        flip: bool | None = None,
        pose_nms: float | None = None,
    ) -> Predictor:
        """Predictor for a weights file (mmpose 0.x, bare state_dict or aepose checkpoint).

        The Config is ``preset``'s when given, else an aepose file's own embedded config,
        else the preset recognised from the weights; its test settings apply unless
        ``scales``/``flip`` override them. ``device`` defaults to CUDA when available.
        """
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        model, config = load_with_config(path, preset=preset, device=device)
        return cls(model, config, scales=scales, flip=flip, pose_nms=pose_nms)

    @property
    def scales(self) -> tuple[float, ...]:
        return self.stages.scales

    @property
    def flip(self) -> bool:
        return self.config.test.flip

    @property
    def device(self) -> torch.device:
        """Where the network runs and the maps are decoded."""
        return self.stages.device

    def __call__(self, image: np.ndarray) -> list[Pose]:
        """Poses of one RGB uint8 image [H, W, 3], coordinates in its pixel indices."""
        return self.predict_batch([image])[0]

    def predict_batch(self, images: Sequence[np.ndarray]) -> list[list[Pose]]:
        """Poses of each image; images with equal test-input sizes share a forward pass and
        give the same poses as one-by-one calls."""
        return [self.poses(r.poses, r.scores) for r in _run(self.stages, images, None)]

    def poses(self, poses: np.ndarray, scores: np.ndarray) -> list[Pose]:
        """:class:`Pose` objects of one image's decoded arrays, after the pose NMS."""
        order: Sequence[int] = range(len(poses))
        if self.pose_nms is not None:
            order = oks_nms(poses, scores, self.spec.sigmas, self.pose_nms).tolist()
        return [Pose(poses[p, :, :3].copy(), float(scores[p]), poses[p, :, 3:].copy())
                for p in order]
