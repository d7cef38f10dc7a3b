"""Flip, head-output and multi-scale aggregation of network outputs (reference §4.2-4.4, §8.1).

The network runs once per test scale on a batch of 2B images with the flip test (the
originals, then the same inputs mirrored along their width) or B without: :func:`run_scales`.
:func:`aggregate_outputs` then mirrors the flipped maps back with their left/right channels
swapped, averages the head outputs at the base (scale-1 input) size, averages the flips and
the scales, and stacks the tags of scale 1 (one tag dimension per flip direction).
Every step is per image, so the outputs of one image (:func:`image_outputs`) aggregate to
the same values, bit for bit, as the batch they came from: decoding can then run per image,
in worker processes.

Legend: B batch, F = 2 with the flip test (original rows first) or 1, K keypoints, C = K or
2K channels of a head output, h x w its size, h1 x w1 the base size, L tag dims.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aepose.config import ModelConfig
from aepose.errors import AeposeError

__all__ = [
    "ScaleOutputs",
    "StageAverage",
    "aggregate_maps",
    "aggregate_outputs",
    "image_outputs",
    "run_scales",
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


ScaleOutputs = list[list[Tensor]]
"""Per test scale, per head output: [F*B, C, h, w], the B originals then the B mirrored."""


def run_scales(
    model: nn.Module, inputs: Sequence[Tensor], layout: ModelConfig, flip: bool
) -> ScaleOutputs:
    """The network on each scale's normalised batch [B, 3, h_s, w_s] (and its mirror image
    with ``flip``; the whole padded input is mirrored, §4.2, and eval-mode BatchNorm makes
    one 2B pass equal to two B passes). Outputs are checked against ``layout``."""
    outputs = []
    for images in inputs:
        batch = torch.cat([images, images.flip(3)]) if flip else images
        outputs.append(_checked(model(batch), layout))
    return outputs


def image_outputs(outputs: ScaleOutputs, index: int, batch: int, flip: bool) -> ScaleOutputs:
    """The rows of image ``index`` of a B-image batch: per scale and head output [F, C, h, w]."""
    rows = [index, batch + index] if flip else [index]
    return [[out[rows] for out in scale] for scale in outputs]


def aggregate_outputs(
    outputs: ScaleOutputs,
    scales: Sequence[float],
    base_size: tuple[int, int],
    layout: ModelConfig,
    *,
    flip_index: Sequence[int] | None,
    stage_average: str = "v0.29",
) -> tuple[Tensor, Tensor]:
    """Heatmaps and tags of a batch, aggregated over flip, head outputs and test scales.

    Args:
        outputs: :data:`ScaleOutputs` of :func:`run_scales` (or :func:`image_outputs`).
        scales: the test scales of ``outputs`` (descending, as ``TestSizes.scales``; 1
            among several, as :class:`~aepose.config.TestConfig` checks).
        base_size: (w1, h1), the scale-1 input size: every map is resized to it.
        layout: ``num_keypoints`` and ``with_ae`` of the network's outputs.
        flip_index: left/right permutation when the outputs hold flipped rows, else None.
        stage_average: see :data:`StageAverage` (checked by
            :class:`~aepose.config.TestConfig`).

    Returns:
        heatmaps [B, K, h1, w1], the mean over scales of (original + flipped) / 2;
        tags [B, K, h1, w1, L] from scale 1 (or the only scale): L = number of tag outputs
        times 2 with flip (original maps first, flipped second) or times 1 without.
        Both in the base-size input frame, on the outputs' device.
    """
    if len(outputs) != len(scales):
        raise AeposeError(f"{len(outputs)} outputs for {len(scales)} test scales")
    heatmaps: list[Tensor] = []
    tags: list[Tensor] = []
    for scale, scale_outputs in zip(scales, outputs, strict=True):
        scale_heatmaps, scale_tags = _scale_maps(
            scale_outputs, base_size, layout, flip_index, stage_average)
        heatmaps.append(scale_heatmaps)
        # Multi-scale testing averages heatmaps but never adds tag dimensions (§4.4).
        if scale == 1 or len(scales) == 1:
            tags = scale_tags
    # One tag map needs no copy: a trailing axis of size 1 is a view.
    stacked = tags[0].unsqueeze(-1) if len(tags) == 1 else torch.stack(tags, dim=-1)
    return _mean(heatmaps), stacked


def aggregate_maps(
    model: nn.Module,
    inputs: Sequence[Tensor],
    scales: Sequence[float],
    base_size: tuple[int, int],
    layout: ModelConfig,
    *,
    flip_index: Sequence[int] | None,
    stage_average: str = "v0.29",
) -> tuple[Tensor, Tensor]:
    """:func:`run_scales` then :func:`aggregate_outputs` on a batch: per scale, normalised
    images [B, 3, h_s, w_s] in, heatmaps [B, K, h1, w1] and tags [B, K, h1, w1, L] out."""
    if len(inputs) != len(scales):
        raise AeposeError(f"{len(inputs)} inputs for {len(scales)} test scales")
    outputs = run_scales(model, inputs, layout, flip_index is not None)
    return aggregate_outputs(outputs, scales, base_size, layout, flip_index=flip_index,
                             stage_average=stage_average)


def _scale_maps(
    outputs: Sequence[Tensor],
    base_size: tuple[int, int],
    layout: ModelConfig,
    flip_index: Sequence[int] | None,
    stage_average: str,
) -> tuple[Tensor, list[Tensor]]:
    """One scale: heatmaps [B, K, h1, w1] and the tag maps, each [B, K, h1, w1]."""
    batch = len(outputs[0]) // (2 if flip_index is not None else 1)
    if flip_index is not None:
        outputs = [_unflip(out, batch, flip_index, layout.num_keypoints) for out in outputs]
    size = (base_size[1], base_size[0])
    if stage_average == "v0.29":
        heatmaps, tags = _average_at_base(outputs, layout, size)
    else:
        heatmaps, tags = _average_at_last_stage(outputs, layout, size)
    if flip_index is None:
        return heatmaps, tags
    # Heatmaps: flips averaged with no one-pixel shift; tags: kept apart, original first.
    averaged = (heatmaps[:batch] + heatmaps[batch:]).div_(2.0)
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
    """``sum(maps) / len(maps)`` with the same float operations in the same order
    (0 + m0 + m1 + ..., then the division), in one buffer instead of one per step."""
    total = maps[0] + 0  # 0 + m0 as Python's sum starts: -0.0 becomes +0.0
    for m in maps[1:]:
        total += m
    return total.div_(len(maps))


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
