"""Poses from images in Python: :class:`Predictor`, :func:`predict_images`, :func:`preprocess`.

They run the one test-time pipeline of :mod:`aepose.pipeline.engine` (mmpose 0.x
``AssociativeEmbedding.forward_test``, reference.md §4): test sizes, resize and
normalisation; the network with the flip test; flip, head-output and scale aggregation;
grouping; back-projection to original-image pixel indices. The test settings are a
:class:`~aepose.config.TestConfig` (the Config's ``test`` section, or ``test=``) with
keyword overrides applied once, by :func:`~aepose.config.with_test_settings`.

Channel order: a NumPy image given to this module's public functions is BGR unless
``channel_order="rgb"`` says otherwise, as in mmpose 0.x's inference API and ultralytics
(``cv2.imread`` returns BGR); the pipeline inside works in RGB. A path is read as a file.

Legend: K keypoints, P people, L tag dims (one per flip direction: 2 with flip test).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from aepose.codec.pose_nms import oks_nms
from aepose.config import Config, TestConfig, get_preset, with_test_settings
from aepose.data.coco import read_image
from aepose.device import default_device
from aepose.errors import AeposeError
from aepose.hub import resolve_weights
from aepose.image import check_channel_order, to_rgb
from aepose.models.checkpoint import load_with_config
from aepose.pipeline.engine import Result, stream
from aepose.pipeline.onnx_network import OnnxNetwork, is_onnx_file, providers_for
from aepose.pipeline.pose import Pose
from aepose.pipeline.stages import Prepared, Stages, prepare
from aepose.threads import use_threads

__all__ = [
    "ImageInput",
    "Predictor",
    "load_rgb",
    "predict_images",
    "preprocess",
]

ImageInput = np.ndarray | str | Path
"""An image: a uint8 array [H, W, 3] in the given channel order, or a file path."""

# ---------------------------------------------------------------------------------------
# Images in, poses out


def load_rgb(image: ImageInput, channel_order: str = "bgr") -> np.ndarray:
    """RGB uint8 [H, W, 3] of an image file (a str or Path) or of a uint8 array [H, W, 3]
    whose channels are in ``channel_order`` (:func:`aepose.image.to_rgb`). Anything else is
    a one-line AeposeError."""
    if isinstance(image, str | Path):
        check_channel_order(channel_order)
        return read_image(image)
    return to_rgb(image, channel_order, or_path=True)


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
        :class:`~aepose.pipeline.stages.Prepared`: ``inputs``, one float32 [3, h_s, w_s] per
        test scale (largest first): the image resized with its aspect kept so that the short
        side is the input size and both sides are multiples of 64, black-padded, then
        ``(rgb / 255 - mean) / std`` with ImageNet's RGB mean and std; ``sizes``
        (:class:`~aepose.data.TestSizes`) maps a point in the scale-1 input back to the
        image (:func:`aepose.data.back_project`); ``height`` and ``width`` of the image.
    """
    cfg = with_test_settings(get_preset(config) if isinstance(config, str) else config,
                             scales=scales)
    return prepare(load_rgb(image, channel_order), cfg.data.input_size, cfg.test.scales)


def predict_images(
    model: nn.Module,
    config: Config,
    images: Sequence[ImageInput],
    *,
    test: TestConfig | None = None,
    max_batch: int | None = None,
    channel_order: str = "bgr",
    **overrides: Any,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Poses of every image (the functional form of :class:`Predictor`).

    Args:
        model: network in eval mode; its parameters' device is where maps are computed
            and decoded (CPU for a network without parameters).
        config: ``config.model`` describes the outputs, ``config.data`` gives the dataset
            and input size, ``config.test`` the test settings.
        images: uint8 arrays [H, W, 3] in ``channel_order`` ("bgr" by default, as
            ``cv2.imread`` gives), any sizes, or image file paths.
        test, overrides: test settings in place of ``config.test`` and fields of it
            (``scales=``, ``flip=``, ``stage_average=`` ...) overridden; None keeps it.
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
    config = with_test_settings(config, test, **overrides)
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

    Test settings are ``test`` (a :class:`~aepose.config.TestConfig`; default
    ``config.test``, the preset's: flip, scales, thresholds), with any of its fields given
    as a keyword overriding it (``scales=(2, 1)``, ``flip=False``,
    ``detection_threshold=0.2``, ``max_people=50``, ``refine=False``...). ``pose_nms`` is an
    OKS threshold (mmpose's demo uses :data:`~aepose.codec.pose_nms.DEMO_OKS_THRESHOLD`) or
    ``None`` for no pose NMS (the evaluation setting). The model is put in eval mode and, if
    ``device`` is given, moved there; otherwise it stays on its device. ``config`` may be a
    preset name. ``forward_lock``: see :class:`~aepose.pipeline.stages.Stages`.
    """

    def __init__(
        self,
        model: nn.Module,
        config: Config | str,
        *,
        test: TestConfig | None = None,
        device: str | torch.device | None = None,
        pose_nms: float | None = None,
        channel_order: str = "bgr",
        forward_lock: threading.Lock | None = None,
        **overrides: Any,
    ):
        self.channel_order = check_channel_order(channel_order)
        use_threads()  # before the first forward pass (aepose.threads)
        if device is not None:
            model = model.to(device)
        self.model = model.eval()
        cfg = get_preset(config) if isinstance(config, str) else config
        self.config = with_test_settings(cfg, test, **overrides)
        self.stages = Stages(self.model, self.config, forward_lock=forward_lock)
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
        test: TestConfig | None = None,
        pose_nms: float | None = None,
        channel_order: str = "bgr",
        **overrides: Any,
    ) -> Predictor:
        """Predictor for weights (mmpose 0.x, bare state_dict or aepose checkpoint, or an
        ONNX file written by ``aepose export``): a file, or a preset name, release file name
        or URL fetched into the cache (:mod:`aepose.hub`).

        The Config is ``preset``'s when given, else the file's own (an aepose checkpoint's
        embedded config, an ONNX file's metadata), else the preset recognised from the
        weights; its test settings apply unless ``test`` or keyword ``overrides`` replace
        them (see the class). ``device`` defaults to :func:`aepose.device.default_device`.

        A name ending in ``.onnx`` runs in ONNX Runtime
        (:class:`~aepose.pipeline.onnx_network.OnnxNetwork`, the ``export`` extra): on the
        CPU, or through its CUDA execution provider when ``device`` is a CUDA device;
        pre- and post-processing are the same code as for PyTorch weights.
        """
        if is_onnx_file(path):
            network = OnnxNetwork.load(resolve_weights(path), providers_for(device))
            return cls(network, network.resolve_config(preset), test=test, pose_nms=pose_nms,
                       channel_order=channel_order, **overrides)
        model, config = load_with_config(path, preset=preset,
                                         device=device or default_device())
        return cls(model, config, test=test, pose_nms=pose_nms, channel_order=channel_order,
                   **overrides)

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
