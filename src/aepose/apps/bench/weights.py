"""Random networks that behave like trained ones, for timing and precision checks.

Weights are random, but with He-initialised convolutions and BatchNorm statistics taken from
one training-mode pass on random input (:func:`realistic_weights`): activations then have a
trained network's unit scale. mmpose's own N(0, 0.001) initialisation shrinks activations
layer after layer into float denormals, which slow CPUs down and make precision comparisons
meaningless. Random maps would make decoding meaningless too (every pixel a candidate, every
candidate its own person: hundreds of "people" per image), so for the pipeline rows the
output layers are adjusted (:func:`mimic_trained_maps`) to give about
:data:`CANDIDATES_PER_JOINT` candidates per joint with tags that mostly group: a crowd's
decoding load.

Legend: B batch, K keypoints, N images.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import Tensor, nn

from aepose.apps.bench.job import Job
from aepose.codec.aggregate import aggregate_maps
from aepose.codec.candidates import nms_heatmaps
from aepose.config import Config
from aepose.errors import AeposeError
from aepose.keypoints import get_spec
from aepose.models import build_model

__all__ = [
    "CANDIDATES_PER_JOINT",
    "TAG_STD",
    "bench_model",
    "compiled",
    "mimic_trained_maps",
    "realistic_weights",
    "reset_compiler",
]

# Maps of mimic_trained_maps: candidates above the detection threshold per joint, as in a
# crowd of ~20 people, and the spread of the random tags (tag threshold: 1).
CANDIDATES_PER_JOINT = 20
TAG_STD = 0.2


def realistic_weights(model: nn.Module, size: int = 128, seed: int = 0) -> nn.Module:
    """Give ``model`` random weights with a trained network's activation scale, in place.

    Convolutions get He-normal weights (fan out, ReLU gain); every BatchNorm's running
    statistics become those of one training-mode pass over a random normal batch
    [2, 3, size, size] on the model's device. Seeds torch's global generator with ``seed``
    (same weights every call). Returns the model in eval mode.
    """
    torch.manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average: one pass gives exactly its statistics
    device = next(model.parameters()).device
    model.train()
    with torch.no_grad():
        model(torch.randn(2, 3, size, size, device=device))
    for norm, momentum in zip(norms, momenta, strict=True):
        norm.momentum = momentum
    return model.eval()


def _output_layers(model: nn.Module, images: Tensor) -> tuple[list[nn.Conv2d], list[Tensor]]:
    """The convolution that produces each of the network's outputs, and the outputs."""
    producer: dict[int, nn.Conv2d] = {}

    def remember(module: nn.Module, _: Any, output: Tensor) -> None:
        producer[id(output)] = cast(nn.Conv2d, module)

    hooks = [m.register_forward_hook(remember) for m in model.modules()
             if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            outputs = model(images)
    finally:
        for hook in hooks:
            hook.remove()
    if any(id(out) not in producer or producer[id(out)].bias is None for out in outputs):
        raise AeposeError("mimic_trained_maps needs outputs made directly by a conv with a bias")
    return [producer[id(out)] for out in outputs], outputs


def _peak_levels(heatmaps: Tensor, kernel: int, count: int) -> Tensor:
    """[K]: per joint, a level with ``count`` NMS peaks per image above it on average over
    the B images of heatmaps [B, K, H, W] (midway between the B*count-th and the next
    highest peak of all images pooled)."""
    b, k, h, w = heatmaps.shape
    low = heatmaps.min()  # NMS zeroes non-peaks: make every value positive first
    peaks = nms_heatmaps((heatmaps - low).reshape(b * k, h, w).float(), kernel)
    pooled = peaks.reshape(b, k, h * w).transpose(0, 1).reshape(k, b * h * w)
    top = pooled.topk(b * count + 1, dim=1).values
    return (top[:, -2] + top[:, -1]) / 2 + low


def mimic_trained_maps(
    model: nn.Module,
    cfg: Config,
    images: Tensor,
    *,
    candidates: int = CANDIDATES_PER_JOINT,
    tag_std: float = TAG_STD,
    flip: bool = True,
) -> None:
    """Adjust the output convolutions of a random network, in place, so that its maps of
    ``images`` (normalised [N, 3, H, W] on the model's device, eval mode) load the decoder
    like a trained network's maps of a crowd.

    Tags: the tag channels' weights and biases are scaled so that the aggregated tags have
    standard deviation ``tag_std``: random tags then mostly lie within the tag threshold of
    each other and candidates join groups (unit-scale random tags would open a group for
    nearly every candidate). Heatmaps: every output's heatmap biases move so that about
    ``candidates`` NMS peaks per joint of the aggregated maps (flip and output averaging
    as in the test pipeline) exceed the detection threshold. Moving every output by the
    same amount moves their average by it; a second round corrects for outputs that read
    earlier ones (HigherHRNet).
    """
    k, test = cfg.model.num_keypoints, cfg.test
    flip_index = get_spec(cfg.data.dataset).flip_index if flip else None
    base = (int(images.shape[3]), int(images.shape[2]))
    layers, _ = _output_layers(model, images)
    with torch.no_grad():
        _, tags = aggregate_maps(model, [images], (1.0,), base, cfg.model, flip_index=flip_index)
        scale = tag_std / float(tags.float().std())
        for layer in (layer for layer in layers if layer.out_channels == 2 * k):
            layer.weight[k:] *= scale
            cast(Tensor, layer.bias)[k:] *= scale
        for _ in range(2):
            heat, _ = aggregate_maps(model, [images], (1.0,), base, cfg.model,
                                     flip_index=flip_index)
            shift = _peak_levels(heat, test.nms_kernel, candidates) - test.detection_threshold
            for layer in layers:
                bias = cast(Tensor, layer.bias)
                bias[:k] -= shift.to(bias.dtype)


def bench_model(
    job: Job, training: bool, mimic_on: Tensor | None = None
) -> tuple[nn.Module, nn.Module]:
    """(model, what to call): the preset's network on the device with realistic weights
    (and trained-like maps of ``mimic_on`` images), in channels_last and/or compiled."""
    model = build_model(job.cfg).to(job.device)
    realistic_weights(model, min(job.input_size, 256))
    if mimic_on is not None:
        mimic_trained_maps(model, job.cfg, mimic_on, flip=job.flip)
    model.train(training)
    if job.channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return model, compiled(model, job.compile) if job.compile else model


def compiled(model: nn.Module, mode: str) -> nn.Module:
    """``torch.compile(model, mode=mode)`` with dynamo's caches cleared first."""
    reset_compiler()
    return cast(nn.Module, torch.compile(model, mode=mode))


def reset_compiler() -> None:
    """Clear dynamo's caches. Compiled code is cached per code object: without a reset,
    successive models would pile up recompilations until dynamo's cache limit silently
    falls back to eager."""
    import torch._dynamo  # here, not at the top: it takes a second to import

    torch._dynamo.reset()

