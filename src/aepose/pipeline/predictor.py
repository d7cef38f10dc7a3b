"""Poses from images in Python: :class:`Predictor`, :class:`Pose`, :func:`predict_images`,
:func:`preprocess`.

They run the one test-time pipeline of :mod:`aepose.pipeline.engine` (mmpose 0.x
``AssociativeEmbedding.forward_test``, reference.md §4): test sizes, resize and
normalisation; the network with the flip test; flip, head-output and scale aggregation;
grouping; back-projection to original-image pixel indices. The test settings are the
Config's ``test`` section; keyword overrides are applied to it once, here.

Also here: :class:`FastNetwork` (channels_last, autocast, ``torch.compile``).

Channel order: a NumPy image given to this module's public functions is BGR unless
``channel_order="rgb"`` says otherwise, as in mmpose 0.x's inference API and ultralytics
(``cv2.imread`` returns BGR); the pipeline inside works in RGB. A path is read as a file.

Legend: K keypoints, P people, L tag dims (one per flip direction: 2 with flip test).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from aepose.choices import COMPILE_MODES
from aepose.codec.pose_nms import oks_nms
from aepose.config import Config, get_preset
from aepose.data.coco import read_image
from aepose.errors import AeposeError
from aepose.keypoints import KeypointSpec, get_spec
from aepose.models.checkpoint import load_with_config
from aepose.pipeline.draw import draw_poses
from aepose.pipeline.engine import Prepared, Result, Stages, check_scales, prepare, stream
from aepose.precision import autocast, check_precision

if TYPE_CHECKING:  # the tracker is imported by those that track, not by every predictor
    from aepose.tracking.tracker import PoseTracker

__all__ = [
    "CHANNEL_ORDERS",
    "COMPILE_MODES",
    "ChannelOrder",
    "FastNetwork",
    "ImageInput",
    "Pose",
    "Predictor",
    "check_channel_order",
    "check_compile_mode",
    "load_rgb",
    "predict_images",
    "preprocess",
    "track_poses",
    "with_test_settings",
]

ChannelOrder = Literal["bgr", "rgb"]
"""The order of an array's colour channels: ``"bgr"`` (OpenCV's ``cv2.imread``, mmpose 0.x's
and ultralytics' convention for arrays: the default) or ``"rgb"`` (PIL, imageio, matplotlib,
``aepose.data.read_image``)."""

CHANNEL_ORDERS: tuple[str, ...] = ("bgr", "rgb")

ImageInput = np.ndarray | str | Path
"""An image: a uint8 array [H, W, 3] in the given channel order, or a file path."""

COCO_PERSON = 1  # category_id of 'person' in every COCO-format keypoint file


@dataclass(frozen=True, eq=False)
class Pose:
    """One detected person.

    keypoints: float32 [K, 3]: x, y in original-image pixel indices and the heatmap value.
    score: the person score (mean heatmap value over all K joints before refinement).
    tags: float32 [K, L] embedding values of the grouped joints (0 for refined ones).
    track_id: the person's track in a video (:class:`aepose.tracking.tracker.PoseTracker`; -1: too
        weak to start a track); None when not tracked.
    """

    keypoints: np.ndarray
    score: float
    tags: np.ndarray | None = None
    track_id: int | None = None

    def to_coco(self, image_id: int) -> dict[str, Any]:
        """The COCO results record (reference §5.2): category 1, flat ``x, y, v`` list, score,
        and ``bbox = [min x, min y, max x - min x, max y - min y]`` over ALL K keypoints;
        plus ``track_id`` (PoseTrack's key; COCO evaluation ignores it) when tracked."""
        xy = self.keypoints[:, :2].astype(np.float64)
        low, high = xy.min(axis=0), xy.max(axis=0)
        record: dict[str, Any] = {
            "image_id": image_id,
            "category_id": COCO_PERSON,
            "keypoints": self.keypoints.astype(np.float64).reshape(-1).tolist(),
            "score": float(self.score),
            "bbox": [float(low[0]), float(low[1]), *(float(v) for v in high - low)],
        }
        if self.track_id is not None:
            record["track_id"] = self.track_id
        return record

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``keypoints`` [[x, y, score], ...] (K of them), ``score`` and
        ``bbox`` [x, y, w, h] over all keypoints, as in ``predictions.json``."""
        coco = self.to_coco(0)
        record: dict[str, Any] = {"keypoints": self.keypoints.astype(np.float64).tolist(),
                                  "score": coco["score"], "bbox": coco["bbox"]}
        if self.track_id is not None:  # only tracked video frames carry the key
            record["track_id"] = self.track_id
        return record

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Pose:
        """The Pose of a :meth:`to_dict` record (no tags; its ``track_id`` if any)."""
        track = data.get("track_id")
        return cls(np.asarray(data["keypoints"], dtype=np.float32).reshape(-1, 3),
                   float(data["score"]), track_id=None if track is None else int(track))

    def draw(self, image: np.ndarray, spec: KeypointSpec | str,
             keypoint_threshold: float = 0.3, *, channel_order: str = "bgr") -> np.ndarray:
        """A copy of ``image`` (uint8 [H, W, 3] in ``channel_order``, BGR by default as
        :class:`Predictor` takes it) with this person's skeleton, keypoints scoring at least
        ``keypoint_threshold`` and score drawn (``spec``: the keypoint definition, e.g.
        ``predictor.spec``, or its name such as ``"crowdpose"``)."""
        spec = get_spec(spec) if isinstance(spec, str) else spec
        rgb = load_rgb(image, channel_order)  # the drawing colours are RGB
        drawn = draw_poses(rgb, self.keypoints[None], np.array([self.score], np.float32), spec,
                           keypoint_threshold=keypoint_threshold)
        return np.ascontiguousarray(drawn[..., ::-1]) if channel_order == "bgr" else drawn


def track_poses(tracker: PoseTracker, poses: Sequence[Pose], timestamp_ms: float
                ) -> list[Pose]:
    """``poses`` (one video frame's) with their ``track_id`` from ``tracker``, and its
    smoothed keypoints when the tracker smooths."""
    tracked = tracker.update_poses(poses, timestamp_ms)
    return [dataclasses.replace(pose, keypoints=t.keypoints, track_id=t.track_id)
            for pose, t in zip(poses, tracked, strict=True)]



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


def check_channel_order(channel_order: str) -> ChannelOrder:
    """``channel_order`` if it is one of :data:`CHANNEL_ORDERS`, else a one-line AeposeError."""
    if channel_order == "bgr":
        return "bgr"
    if channel_order == "rgb":
        return "rgb"
    raise AeposeError(f"channel_order must be 'bgr' or 'rgb', got {channel_order!r}")


def load_rgb(image: ImageInput, channel_order: str = "bgr") -> np.ndarray:
    """RGB uint8 [H, W, 3] of an image file (a str or Path) or of a uint8 array [H, W, 3]
    whose channels are in ``channel_order`` (a BGR array is reversed; an RGB one is
    returned as it is). Anything else is a one-line AeposeError."""
    order = check_channel_order(channel_order)
    if isinstance(image, str | Path):
        return read_image(image)
    if (not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3
            or image.shape[2] != 3 or image.shape[0] == 0 or image.shape[1] == 0):
        what = (f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray)
                else type(image).__name__)
        raise AeposeError(f"expected an image path or a {order.upper()} uint8 array "
                          f"[H, W, 3], got {what}")
    # Contiguous: OpenCV's resize refuses the negative strides of a reversed view.
    return np.ascontiguousarray(image[..., ::-1]) if order == "bgr" else image


def preprocess(
    image: ImageInput,
    config: Config | str,
    *,
    channel_order: str = "bgr",
    scales: Sequence[float] | None = None,
) -> Prepared:
    """What the network takes for one image at test time: the pipeline's preprocess stage.

    Args:
        image: a path, or a uint8 array [H, W, 3] in ``channel_order`` ("bgr" by default).
        config: a Config or a preset name: gives the input size (and the test scales).
        scales: test scales (default ``config.test.scales``).

    Returns:
        :class:`~aepose.pipeline.engine.Prepared`: ``inputs``, one float32 [3, h_s, w_s] per test
        scale (largest first): the image resized with its aspect kept so that the short side
        is the input size and both sides are multiples of 64, black-padded, then
        ``(rgb / 255 - mean) / std`` with ImageNet's RGB mean and std; ``sizes``
        (:class:`~aepose.data.TestSizes`) maps a point in the scale-1 input back to the
        image (:func:`aepose.data.back_project`); ``height`` and ``width`` of the image.
    """
    cfg = get_preset(config) if isinstance(config, str) else config
    chosen = cfg.test.scales if scales is None else scales
    return prepare(load_rgb(image, channel_order), cfg.data.input_size, chosen)


def predict_images(
    model: nn.Module,
    config: Config,
    images: Sequence[ImageInput],
    *,
    scales: Sequence[float] | None = None,
    flip: bool | None = None,
    stage_average: str | None = None,
    max_batch: int | None = None,
    channel_order: str = "bgr",
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Poses of every image (the functional form of :class:`Predictor`).

    Args:
        model: network in eval mode; its parameters' device is where maps are computed
            and decoded (CPU for a network without parameters).
        config: ``config.model`` describes the outputs, ``config.data`` gives the dataset
            and input size, ``config.test`` the test settings.
        images: uint8 arrays [H, W, 3] in ``channel_order`` ("bgr" by default, as
            ``cv2.imread`` gives), any sizes, or image file paths.
        scales, flip, stage_average: overrides of ``config.test`` (None: keep it).
        max_batch: most images per forward pass (a batch holds 2x that with flip);
            ``None``: all images of equal test-input size at once.
        channel_order: "bgr" or "rgb", the order of the arrays' channels.

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
    order = check_channel_order(channel_order)
    results = _run(Stages(model, config), images, max_batch, order)
    return [(r.poses, r.scores) for r in results]


def _run(stages: Stages, images: Sequence[ImageInput], max_batch: int | None,
         channel_order: str) -> list[Result[int]]:
    """All images through the pipeline in the calling thread; the first bad one raises."""
    count = max(1, len(images))
    results = list(stream(stages, range(len(images)),
                          lambda i: load_rgb(images[i], channel_order),
                          batch_size=max_batch or count, window=count, read_workers=0))
    for r in results:
        if r.error is not None:
            raise AeposeError(f"image {r.index}: {r.error}")
    return results


class Predictor:
    """Callable pose estimator: ``Predictor.from_checkpoint(weights)(image) -> list[Pose]``.

    An image is a file path, or a uint8 array [H, W, 3] whose channels are in
    ``channel_order``: ``"bgr"`` by default, as ``cv2.imread`` returns and as mmpose 0.x's
    inference API and ultralytics assume; pass ``channel_order="rgb"`` for PIL, imageio or
    :func:`aepose.data.read_image` arrays. Paths are decoded with the colours right either way.

    Test settings are ``config.test``'s (the preset's: flip, scales, thresholds);
    ``scales``, ``flip``, ``stage_average`` and any other field of
    :class:`~aepose.config.TestConfig` given as a keyword (``detection_threshold=0.2``,
    ``max_people=50``, ``refine=False``...) override them. ``pose_nms`` is an OKS threshold
    (mmpose's demo uses :data:`~aepose.codec.pose_nms.DEMO_OKS_THRESHOLD`) or ``None`` for
    no pose NMS (the evaluation setting). The model is put in eval mode and, if ``device``
    is given, moved there; otherwise it stays on its device. ``config`` may be a preset name.
    """

    def __init__(
        self,
        model: nn.Module,
        config: Config | str,
        *,
        scales: Sequence[float] | None = None,
        flip: bool | None = None,
        stage_average: str | None = None,
        device: str | torch.device | None = None,
        pose_nms: float | None = None,
        channel_order: str = "bgr",
        **test_settings: Any,
    ):
        self.channel_order = check_channel_order(channel_order)
        if device is not None:
            model = model.to(device)
        self.model = model.eval()
        cfg = get_preset(config) if isinstance(config, str) else config
        self.config = with_test_settings(cfg, scales=scales, flip=flip,
                                         stage_average=stage_average, **test_settings)
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
        channel_order: str = "bgr",
        **test_settings: Any,
    ) -> Predictor:
        """Predictor for weights (mmpose 0.x, bare state_dict or aepose checkpoint): a file,
        or a preset name, release file name or URL fetched into the cache (:mod:`aepose.hub`).

        The Config is ``preset``'s when given, else an aepose file's own embedded config,
        else the preset recognised from the weights; its test settings apply unless
        ``scales``, ``flip`` or other ``test_settings`` override them (see the class).
        ``device`` defaults to CUDA when available.
        """
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        model, config = load_with_config(path, preset=preset, device=device)
        return cls(model, config, scales=scales, flip=flip, pose_nms=pose_nms,
                   channel_order=channel_order, **test_settings)

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

    def __call__(self, image: ImageInput) -> list[Pose]:
        """Poses of one image (a path, or uint8 [H, W, 3] in :attr:`channel_order`),
        coordinates in its pixel indices."""
        return self.predict_batch([image])[0]

    def predict_batch(self, images: Sequence[ImageInput]) -> list[list[Pose]]:
        """Poses of each image (paths or arrays, as :meth:`__call__`); images with equal
        test-input sizes share a forward pass and give the same poses as one-by-one calls."""
        results = _run(self.stages, images, None, self.channel_order)
        return [self.poses(r.poses, r.scores) for r in results]

    def poses(self, poses: np.ndarray, scores: np.ndarray) -> list[Pose]:
        """:class:`Pose` objects of one image's decoded arrays, after the pose NMS."""
        order: Sequence[int] = range(len(poses))
        if self.pose_nms is not None:
            order = oks_nms(poses, scores, self.spec.sigmas, self.pose_nms).tolist()
        return [Pose(poses[p, :, :3].copy(), float(scores[p]), poses[p, :, 3:].copy())
                for p in order]
