"""The pipeline's stages for one network and Config (see :mod:`aepose.pipeline.engine` for
how they are streamed):

``preprocess``    :func:`prepare` (:meth:`Stages.preprocess`): test sizes, resize, ImageNet
                  normalisation;
``network``       :meth:`Stages.network_outputs`: one forward pass per test scale over a batch of
                  images whose inputs have equal sizes (with the flip test: 2B rows);
``aggregate``     :func:`~aepose.codec.aggregate.aggregate_outputs` of one image's rows;
``decode``        a :class:`~aepose.codec.decode.Decoder` bound to the preset's test settings;
``back-project``  :func:`~aepose.data.transforms.back_project` to original-image pixels.

The last three run per image in :class:`PostProcess`, a picklable object: inline, in a pool
of forked worker processes (CPU networks: each image's raw outputs cross once, as arrays, and
its maps are computed in the worker), or in threads beside the network's GPU (the maps never
leave the device; only the [K, M] candidates cross for the matching).

Legend: B batch, K keypoints, P people, L tag dims (2 with flip), h1 x w1 the base size.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from aepose.codec.aggregate import (
    ScaleOutputs,
    aggregate_outputs,
    image_outputs,
    run_scales,
)
from aepose.codec.decode import Decoder, MapValueError
from aepose.config import Config, ModelConfig
from aepose.data.dataset import normalize_image
from aepose.data.transforms import TestSizes, back_project, resize_align, test_sizes
from aepose.errors import AeposeError
from aepose.image import check_rgb
from aepose.keypoints import spec_of
from aepose.pipeline.timer import Laps

__all__ = ["MAX_INPUT_PIXELS", "Decoded", "PostProcess", "Prepared", "Stages", "prepare"]

MAX_INPUT_PIXELS = 1 << 22
"""Most pixels of one network input (the largest test scale): 4.2 M, e.g. 2048 x 2048 or
1024 x 4096. The short side of an image is scaled to the input size and the long side
follows, so a 1 x 2000 strip would ask for a 512 x 1,024,000 input (6 GB): such images are
refused, one line each, instead of exhausting memory."""

@dataclass(frozen=True, eq=False)
class Prepared:
    """One image ready for the network: its test geometry and, per test scale, the
    normalised input float32 [3, h_s, w_s]."""

    sizes: TestSizes
    inputs: tuple[Tensor, ...]
    height: int
    width: int


@dataclass(frozen=True, eq=False)
class Decoded:
    """Poses of one image: poses float32 [P, K, 3 + L] (x, y in original-image pixel
    indices, heatmap value, L tag values), people in the grouping's order; scores [P];
    seconds of the stages run for it."""

    poses: np.ndarray
    scores: np.ndarray
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class PostProcess:
    """aggregate -> decode -> back-project for one image's network outputs; picklable, so
    it can run in worker processes. Settings are bound at construction.

    Outputs holding NaN or infinities are refused in one line naming the output, and so are
    aggregated maps holding them or magnitudes beyond the decoder's
    :data:`~aepose.codec.decode.MAX_MAGNITUDE` (huge finite outputs that overflow when
    averaged, or that would overflow the scores)."""

    layout: ModelConfig
    flip_index: tuple[int, ...] | None
    stage_average: str
    decoder: Decoder

    def __call__(self, outputs: ScaleOutputs, sizes: TestSizes) -> Decoded:
        """``outputs``: this image's rows of every scale's head outputs [F, C, h, w]."""
        clock = Laps()
        outputs = [[torch.as_tensor(out) for out in scale] for scale in outputs]
        _check_finite(outputs)
        heatmaps, tags = aggregate_outputs(
            outputs, sizes.scales, sizes.base_size, self.layout, flip_index=self.flip_index,
            stage_average=self.stage_average)
        clock.lap("aggregate", heatmaps.device)
        try:
            poses, scores = self.decoder(heatmaps[0], tags[0])
        except MapValueError as error:
            # The decoder checks the aggregated maps: finite raw outputs (checked above) can
            # still overflow when flip and scale averaging add them up.
            raise AeposeError(f"the network's {error.maps} after aggregation {error.problem} "
                              "(broken weights or an overflow in reduced precision)") from None
        clock.lap("decode", heatmaps.device)
        poses[..., :2] = back_project(poses[..., :2], sizes)
        clock.lap("back-project", heatmaps.device)
        return Decoded(poses, scores, clock.seconds)


def _check_finite(outputs: ScaleOutputs) -> None:
    for scale, scale_outputs in enumerate(outputs):
        for o, out in enumerate(scale_outputs):
            if not bool(torch.isfinite(out).all()):
                where = f"output {o}" + (f" at test scale index {scale}" if len(outputs) > 1
                                         else "")
                raise AeposeError(f"the network's {where} holds NaN or infinite values "
                                  "(broken weights or an overflow in reduced precision)")


class Stages:
    """The pipeline's stages for one network and :class:`~aepose.config.Config`.

    ``network(images) -> list of head outputs`` in eval mode (a torch module, a
    :class:`~aepose.pipeline.network.FastNetwork`, or the ONNX Runtime wrapper). The test settings
    (scales, flip, thresholds, stage averaging) are ``config.test``'s: apply overrides to the
    Config (``dataclasses.replace``) before building the stages. ``forward_lock``: held
    during each forward pass, when several threads drive one network and must take turns
    (one batch's activations at a time, while the others prepare and decode theirs).
    """

    def __init__(self, network: nn.Module, config: Config,
                 device: torch.device | None = None,
                 forward_lock: threading.Lock | None = None) -> None:
        test = config.test
        if test.project2image is not True:
            raise AeposeError("test.project2image=False is not supported (maps are "
                              "aggregated at the input size, as every mmpose AE config does)")
        self.network = network
        self.config = config
        self.spec = spec_of(network, config.data.dataset)
        if self.spec.num_keypoints != config.model.num_keypoints:
            raise AeposeError(f"the {self.spec.name} keypoints are {self.spec.num_keypoints}; "
                              f"{config.name}'s network has {config.model.num_keypoints}")
        if test.flip and not self.spec.flip_pairs:
            raise AeposeError(f"test.flip: the {self.spec.name} keypoints have no left/right "
                              "pairs, so a flipped image cannot be mapped back; set "
                              "test.flip=false")
        self.scales = test.scales
        self.device = device or _module_device(network)
        self._turn: contextlib.AbstractContextManager[Any] = (
            forward_lock if forward_lock is not None else contextlib.nullcontext())
        self.post = PostProcess(
            layout=config.model,
            flip_index=tuple(self.spec.flip_index) if test.flip else None,
            stage_average=test.stage_average,
            decoder=Decoder.from_config(test, self.spec),
        )

    def preprocess(self, image: np.ndarray) -> Prepared:
        """RGB uint8 [H, W, 3] -> :class:`Prepared` (CPU tensors)."""
        return prepare(image, self.config.data.input_size, self.scales)

    def network_outputs(self, batch: Sequence[Prepared]) -> ScaleOutputs:
        """The network over images whose inputs have equal sizes: per scale, per head
        output [F*B, C, h, w] on the network's device."""
        inputs = [torch.stack([p.inputs[i] for p in batch]).to(self.device, non_blocking=True)
                  for i in range(len(batch[0].inputs))]
        with self._turn, torch.inference_mode():
            return run_scales(self.network, inputs, self.config.model,
                              self.post.flip_index is not None)

    def image_rows(self, outputs: ScaleOutputs, index: int, batch: int) -> ScaleOutputs:
        """Image ``index``'s rows of a batch's outputs (see :meth:`network_outputs`)."""
        return image_outputs(outputs, index, batch, self.post.flip_index is not None)


def prepare(image: np.ndarray, input_size: int | tuple[int, int],
            scales: Sequence[float]) -> Prepared:
    """The ``preprocess`` stage: RGB uint8 [H, W, 3] -> :class:`Prepared` (CPU tensors).

    Per test scale (largest first): the image resized with its aspect kept so that the short
    side of the scale-1 input is ``input_size`` and both sides are multiples of 64 (black
    padding, :func:`~aepose.data.transforms.test_sizes`), then normalised with the ImageNet
    mean and std (:func:`~aepose.data.dataset.normalize_image`): float32 [3, h_s, w_s].
    ``scales`` are a :class:`~aepose.config.TestConfig`'s (checked there).
    """
    height, width = check_rgb(image).shape[:2]
    sizes = test_sizes(width, height, input_size, scales)
    w, h = sizes.input_sizes[0]  # the largest scale comes first
    if w * h > MAX_INPUT_PIXELS:
        raise AeposeError(
            f"a {width}x{height} image needs a {w}x{h} network input, more than "
            f"{MAX_INPUT_PIXELS:,} pixels (aspect ratio or test scale too large)")
    inputs = tuple(normalize_image(resize_align(image, sizes, i))
                   for i in range(len(sizes.scales)))
    return Prepared(sizes, inputs, height, width)


def _module_device(module: nn.Module) -> torch.device:
    parameter = next(module.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")
