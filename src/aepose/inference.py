"""Test-time pipeline: resize, network, flip and multi-scale aggregation, grouping, poses.

One image goes through the steps of mmpose 0.x ``AssociativeEmbedding.forward_test``
(reference.md §4):

1. :func:`~aepose.data.transforms.test_sizes` and ``resize_align`` per test scale
   (descending), ImageNet normalisation;
2. the network on the input and, for the flip test, on the input mirrored along its width
   (one forward pass over a batch of 2B: original images, then mirrored ones);
3. :func:`aggregate_maps`: flipped maps mirrored back with their left/right channels swapped,
   stages averaged at the base (scale-1 input) size, flips averaged, scales averaged; tags
   from scale 1 only, one tag dimension per flip;
4. :func:`~aepose.grouping.decode_poses` on the maps' device, then back-projection of x, y
   from the base-size frame to original-image pixel indices (§4.6).

Images whose test inputs have the same size share one batch (:func:`predict_images`);
:class:`Predictor` wraps it with the settings of a :class:`~aepose.config.Config`.

Legend: B batch, K keypoints, H x W map (h1 x w1: the base size), P people, L tag dims
(one per flip direction: 2 with flip test, 1 without).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aepose.checkpoint import load_with_config
from aepose.config import Config, ModelConfig
from aepose.data.dataset import normalize_image
from aepose.data.transforms import TestSizes, back_project, resize_align, test_sizes
from aepose.errors import AeposeError
from aepose.grouping import decode_poses
from aepose.keypoints import get_spec

__all__ = [
    "COMPILE_MODES",
    "DEMO_OKS_THRESHOLD",
    "FastNetwork",
    "Pose",
    "Predictor",
    "StageAverage",
    "aggregate_maps",
    "check_compile_mode",
    "oks_nms",
    "predict_images",
]

StageAverage = Literal["v0.29", "legacy"]
"""How the outputs of a multi-resolution head are combined (reference §4.3, §8.1).

``"v0.29"``: every output is resized (bilinear, align_corners False) straight to the base
size and the heatmaps are averaged there (mmpose >= 0.19). ``"legacy"``: every output is
first resized to the LAST output's size (the 1/2 map of HigherHRNet), heatmaps are averaged
there and the average and the tags are then resized to the base size (mmpose < 0.19 and the
original HigherHRNet; the released CrowdPose/AIC numbers were produced this way). For a
single-output head (HRNet) both are the same.
"""

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


_AUTOCAST: dict[str, torch.dtype | None] = {
    "fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}

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
        if dtype not in _AUTOCAST:
            raise AeposeError(f"unknown dtype {dtype!r} (choices: {', '.join(_AUTOCAST)})")
        check_compile_mode(compile)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.model = model
        self.dtype = _AUTOCAST[dtype]
        self.channels_last = channels_last
        self.run = torch.compile(self.model, mode=compile) if compile else self.model

    def forward(self, images: Tensor) -> list[Tensor]:
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(images.device.type, dtype=self.dtype or torch.float32,
                            enabled=self.dtype is not None):
            outputs = self.run(images)
        return [o.float().contiguous() for o in outputs]


def check_compile_mode(mode: str | None) -> None:
    """Raise AeposeError unless ``mode`` is None or one of :data:`COMPILE_MODES`."""
    if mode is not None and mode not in COMPILE_MODES:
        raise AeposeError(f"unknown compile mode {mode!r} (choices: {', '.join(COMPILE_MODES)})")


# ---------------------------------------------------------------------------------------
# Flip and stage / scale aggregation (reference §4.2-4.4, §8.1)


def aggregate_maps(
    model: nn.Module,
    inputs: Sequence[Tensor],
    scales: Sequence[float],
    base_size: tuple[int, int],
    layout: ModelConfig,
    *,
    flip_index: Sequence[int] | None,
    stage_average: StageAverage = "v0.29",
) -> tuple[Tensor, Tensor]:
    """Heatmaps and tags of a batch, aggregated over flip, head outputs and test scales.

    Args:
        model: the network in eval mode; ``model(x)`` returns one tensor per head output,
            each with K heatmap channels followed, where ``layout.with_ae[o]``, by K tag
            channels.
        inputs: per scale, normalised images [B, 3, h_s, w_s] on the model's device.
        scales: the test scales of ``inputs`` (descending, as ``TestSizes.scales``).
        base_size: (w1, h1), the scale-1 input size: every map is resized to it.
        layout: ``num_keypoints`` and ``with_ae`` of the network's outputs.
        flip_index: left/right permutation for the flip test, or ``None`` for no flip test.
        stage_average: see :data:`StageAverage`.

    Returns:
        heatmaps [B, K, h1, w1], the mean over scales of (original + flipped) / 2;
        tags [B, K, h1, w1, L] from scale 1 (or the only scale): L = number of tag outputs
        times 2 with flip (original maps first, flipped second) or times 1 without.
        Both in the base-size input frame, on the inputs' device.
    """
    if len(inputs) != len(scales):
        raise AeposeError(f"{len(inputs)} inputs for {len(scales)} test scales")
    heatmaps: list[Tensor] = []
    tags: list[Tensor] = []
    for scale, images in zip(scales, inputs, strict=True):
        scale_heatmaps, scale_tags = _scale_maps(
            model, images, base_size, layout, flip_index, stage_average
        )
        heatmaps.append(scale_heatmaps)
        # Multi-scale testing averages heatmaps but never adds tag dimensions (§4.4).
        if scale == 1 or len(scales) == 1:
            tags = scale_tags
    if not tags:
        raise AeposeError(f"test scales {tuple(scales)} need 1 among them (tags come from it)")
    return _mean(heatmaps), torch.stack(tags, dim=-1)


def _scale_maps(
    model: nn.Module,
    images: Tensor,
    base_size: tuple[int, int],
    layout: ModelConfig,
    flip_index: Sequence[int] | None,
    stage_average: StageAverage,
) -> tuple[Tensor, list[Tensor]]:
    """One scale: heatmaps [B, K, h1, w1] and the tag maps, each [B, K, h1, w1]."""
    batch = len(images)
    if flip_index is not None:
        # The whole padded input is mirrored (§4.2); eval-mode BN makes one 2B pass equal
        # to two B passes.
        images = torch.cat([images, images.flip(3)])
    outputs = _checked(model(images), layout)
    if flip_index is not None:
        outputs = [_unflip(out, batch, flip_index, layout.num_keypoints) for out in outputs]
    size = (base_size[1], base_size[0])
    if stage_average == "v0.29":
        heatmaps, tags = _average_at_base(outputs, layout, size)
    elif stage_average == "legacy":
        heatmaps, tags = _average_at_last_stage(outputs, layout, size)
    else:
        raise AeposeError(f"unknown stage_average {stage_average!r} (choices: v0.29, legacy)")
    if flip_index is None:
        return heatmaps, tags
    # Heatmaps: flips averaged with no one-pixel shift; tags: kept apart, original first.
    averaged = (heatmaps[:batch] + heatmaps[batch:]) / 2.0
    return averaged, [t[:batch] for t in tags] + [t[batch:] for t in tags]


def _checked(outputs: Sequence[Tensor], layout: ModelConfig) -> list[Tensor]:
    """The outputs as a list, after checking their count and channels against ``layout``."""
    if len(outputs) != len(layout.with_ae):
        raise AeposeError(f"network returned {len(outputs)} outputs; its config says "
                          f"{len(layout.with_ae)} (with_ae={layout.with_ae})")
    for o, (out, ae) in enumerate(zip(outputs, layout.with_ae, strict=True)):
        expected = layout.num_keypoints * (2 if ae else 1)
        if out.dim() != 4 or out.shape[1] != expected:
            raise AeposeError(f"network output {o} has shape {tuple(out.shape)}; expected "
                              f"{expected} channels for {layout.num_keypoints} keypoints")
    return list(outputs)


def _unflip(output: Tensor, batch: int, flip_index: Sequence[int], num_keypoints: int) -> Tensor:
    """Mirror the flipped half (rows ``batch:``) of an output back and swap left/right
    channels; tag channels are permuted like heatmaps (one tag per joint), not negated."""
    index = list(flip_index)
    if output.shape[1] == 2 * num_keypoints:
        index += [num_keypoints + k for k in flip_index]
    flipped = output[batch:].flip(3)[:, index]
    return torch.cat([output[:batch], flipped])


def _resize(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """[N, C, h, w] -> [N, C, *size] bilinear, align_corners False; unchanged if equal."""
    if tuple(maps.shape[-2:]) == size:
        return maps
    return F.interpolate(maps, size=size, mode="bilinear", align_corners=False)


def _split(
    outputs: Sequence[Tensor], layout: ModelConfig
) -> tuple[list[Tensor], list[Tensor]]:
    """Heatmap part of every output and tag part of the tag-carrying ones."""
    k = layout.num_keypoints
    heatmaps = [out[:, :k] for out in outputs]
    tags = [out[:, k:] for out, ae in zip(outputs, layout.with_ae, strict=True) if ae]
    return heatmaps, tags


def _mean(maps: Sequence[Tensor]) -> Tensor:
    return sum(maps) / len(maps)  # type: ignore[return-value]


def _average_at_base(
    outputs: Sequence[Tensor], layout: ModelConfig, size: tuple[int, int]
) -> tuple[Tensor, list[Tensor]]:
    """mmpose v0.29: each output resized straight to ``size`` (h1, w1), heatmaps averaged."""
    heatmaps, tags = _split([_resize(out, size) for out in outputs], layout)
    return _mean(heatmaps), tags


def _average_at_last_stage(
    outputs: Sequence[Tensor], layout: ModelConfig, size: tuple[int, int]
) -> tuple[Tensor, list[Tensor]]:
    """mmpose < 0.19: outputs resized to the last output's size, heatmaps averaged there,
    then the average and the tags resized to ``size`` (two resizes for the 1/4 map)."""
    last = (int(outputs[-1].shape[2]), int(outputs[-1].shape[3]))
    heatmaps, tags = _split([_resize(out, last) for out in outputs], layout)
    return _resize(_mean(heatmaps), size), [_resize(t, size) for t in tags]


# ---------------------------------------------------------------------------------------
# Whole images -> poses


def predict_images(
    model: nn.Module,
    config: Config,
    images: Sequence[np.ndarray],
    *,
    scales: Sequence[float] | None = None,
    flip: bool | None = None,
    stage_average: StageAverage = "v0.29",
    max_batch: int | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Poses of every image, images with equal test-input sizes run as one batch.

    Args:
        model: network in eval mode; its parameters' device is where maps are computed
            and decoded (CPU for a network without parameters).
        config: ``config.model`` describes the outputs, ``config.data`` gives the dataset
            (flip permutation, grouping order) and input size, ``config.test`` the grouping
            thresholds and the default scales and flip.
        images: RGB uint8 arrays [H, W, 3], any sizes.
        scales, flip: test scales (1 must be among several) and flip test; ``None`` takes
            ``config.test``'s.
        stage_average: how multi-resolution outputs are combined, see :data:`StageAverage`.
        max_batch: most images per forward pass (a batch holds 2x that with flip);
            ``None``: a whole group of equal-size images at once.

    Returns:
        per image (in order): poses float32 [P, K, 3 + L] (x, y in original-image pixel
        indices, heatmap value, L tag values), people in the grouping's order; scores
        float32 [P].
    """
    if model.training:
        raise AeposeError("predict_images needs the network in eval mode (call model.eval())")
    if config.test.project2image is not True:
        raise AeposeError("test.project2image=False is not supported (maps are aggregated at "
                          "the input size, as every mmpose AE config does)")
    chosen = _checked_scales(config.test.scales if scales is None else scales)
    use_flip = config.test.flip if flip is None else flip
    sizes = [
        test_sizes(image.shape[1], image.shape[0], config.data.input_size, chosen)
        for image in (_checked_image(image, i) for i, image in enumerate(images))
    ]
    results: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    with torch.inference_mode():
        for indices in _batches(sizes, max_batch):
            batch = _predict_batch(
                model, config, [images[i] for i in indices], [sizes[i] for i in indices],
                use_flip, stage_average,
            )
            results.update(zip(indices, batch, strict=True))
    return [results[i] for i in range(len(images))]


def _checked_image(image: Any, index: int) -> np.ndarray:
    if (
        not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3
        or image.shape[2] != 3 or image.shape[0] == 0 or image.shape[1] == 0
    ):
        what = (f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray)
                else type(image).__name__)
        raise AeposeError(f"image {index}: expected an RGB uint8 array [H, W, 3], got {what}")
    return image


def _checked_scales(scales: Sequence[float]) -> tuple[float, ...]:
    chosen = tuple(float(s) for s in scales)
    if not chosen or min(chosen) <= 0 or len(set(chosen)) != len(chosen):
        raise AeposeError(f"test scales must be distinct and positive, got {scales}")
    if len(chosen) > 1 and 1.0 not in chosen:
        raise AeposeError(f"test scales {chosen} need 1 among them (tags come from scale 1)")
    return chosen


def _batches(sizes: Sequence[TestSizes], max_batch: int | None) -> Iterator[list[int]]:
    """Image indices grouped by identical network input sizes, in first-seen order."""
    if max_batch is not None and max_batch < 1:
        raise AeposeError(f"max_batch must be at least 1, got {max_batch}")
    groups: dict[tuple[tuple[int, int], ...], list[int]] = {}
    for i, s in enumerate(sizes):
        groups.setdefault(s.input_sizes, []).append(i)
    for indices in groups.values():
        step = max_batch or len(indices)
        for start in range(0, len(indices), step):
            yield indices[start : start + step]


def _model_device(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def _predict_batch(
    model: nn.Module,
    config: Config,
    images: Sequence[np.ndarray],
    sizes: Sequence[TestSizes],
    flip: bool,
    stage_average: StageAverage,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Images whose inputs all have ``sizes[0].input_sizes``; each keeps its own centre and
    scale for resizing and back-projection."""
    spec = get_spec(config.data.dataset)
    device = _model_device(model)
    pairs = list(zip(images, sizes, strict=True))
    inputs = [
        torch.stack([normalize_image(resize_align(im, s, i)) for im, s in pairs]).to(device)
        for i in range(len(sizes[0].scales))
    ]
    heatmaps, tags = aggregate_maps(
        model, inputs, sizes[0].scales, sizes[0].base_size, config.model,
        flip_index=spec.flip_index if flip else None, stage_average=stage_average,
    )
    test = config.test
    results = []
    for b, image_sizes in enumerate(sizes):
        poses, scores = decode_poses(
            heatmaps[b], tags[b],
            detection_threshold=test.detection_threshold, tag_threshold=test.tag_threshold,
            max_people=test.max_people, nms_kernel=test.nms_kernel, adjust=test.adjust,
            refine=test.refine, joint_order=spec.grouping_order,
        )
        poses[..., :2] = back_project(poses[..., :2], image_sizes)
        results.append((poses, scores))
    return results


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
# Predictor


class Predictor:
    """Callable pose estimator: ``Predictor.from_checkpoint(path)(rgb_image) -> list[Pose]``.

    Settings not given are taken from ``config.test``. ``pose_nms`` is an OKS threshold
    (mmpose's demo uses :data:`DEMO_OKS_THRESHOLD`) or ``None`` for no pose NMS (the
    evaluation setting). The model is put in eval mode and, if ``device`` is given, moved
    there; otherwise it stays on its device.
    """

    def __init__(
        self,
        model: nn.Module,
        config: Config,
        *,
        scales: Sequence[float] | None = None,
        flip: bool | None = None,
        device: str | torch.device | None = None,
        pose_nms: float | None = None,
        stage_average: StageAverage = "v0.29",
    ):
        if device is not None:
            model = model.to(device)
        self.model = model.eval()
        self.config = config
        self.scales = _checked_scales(config.test.scales if scales is None else scales)
        self.flip = config.test.flip if flip is None else flip
        self.pose_nms = pose_nms
        self.stage_average: StageAverage = stage_average
        self.spec = get_spec(config.data.dataset)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        preset: str | None = None,
        device: str | torch.device | None = None,
        *,
        scales: Sequence[float] = (1,),
        flip: bool = True,
        pose_nms: float | None = None,
    ) -> Predictor:
        """Predictor for a weights file (mmpose 0.x, bare state_dict or aepose checkpoint).

        The Config is ``preset``'s when given, else an aepose file's own embedded config,
        else the preset recognised from the weights. ``device`` defaults to CUDA when
        available, else CPU.
        """
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        model, config = load_with_config(path, preset=preset, device=device)
        return cls(model, config, scales=scales, flip=flip, pose_nms=pose_nms)

    @property
    def device(self) -> torch.device:
        """Where the network runs and the maps are decoded."""
        return _model_device(self.model)

    def __call__(self, image: np.ndarray) -> list[Pose]:
        """Poses of one RGB uint8 image [H, W, 3], coordinates in its pixel indices."""
        return self.predict_batch([image])[0]

    def predict_batch(self, images: Sequence[np.ndarray]) -> list[list[Pose]]:
        """Poses of each image; images with equal test-input sizes share a forward pass and
        give the same poses as one-by-one calls."""
        predictions = predict_images(
            self.model, self.config, images, scales=self.scales, flip=self.flip,
            stage_average=self.stage_average,
        )
        return [self._poses(poses, scores) for poses, scores in predictions]

    def _poses(self, poses: np.ndarray, scores: np.ndarray) -> list[Pose]:
        order: Sequence[int] = range(len(poses))
        if self.pose_nms is not None:
            order = oks_nms(poses, scores, self.spec.sigmas, self.pose_nms).tolist()
        return [Pose(poses[p, :, :3].copy(), float(scores[p]), poses[p, :, 3:].copy())
                for p in order]
