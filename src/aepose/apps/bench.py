"""Throughput of the network, the training step, decoding and the whole test pipeline.

:func:`run_benchmark` measures one setting and returns a :class:`BenchRow`;
:func:`format_rows` prints rows as a fixed-width table (``aepose benchmark`` and
``benchmarks/gpu_suite.py`` use both). Stages (:data:`STAGES`):

``forward``
    the network alone, eval mode, on random normal input [B, 3, S, S].
``train``
    one optimiser step as :mod:`aepose.engine.train` takes it (autocast forward, float32 loss,
    ``zero_grad``, backward, Adam step; gradient scaling for fp16) on random inputs and
    targets already on the device. The data pipeline is NOT included: it is measured by
    ``benchmarks/data_pipeline.py``.
``decode``
    :func:`~aepose.codec.decode.decode_poses` on generated maps of a crowd
    (:func:`crowd_maps`) at the input resolution, one image after the other.
``e2e``
    generated RGB images (:func:`crowd_images`) through the one test-time pipeline
    (:mod:`aepose.pipeline.engine`) with its stages run one after the other, each timed by the
    pipeline's own :class:`~aepose.pipeline.engine.StageTimer` (:data:`PARTS`).
``pipeline``
    the same images through the streamed pipeline (read thread, network, decode worker
    processes overlapped); its facts give each stage's own rate (from a serial run), the
    serial rate and the overlap efficiency (pipeline rate / slowest stage's rate).

Timing: ``warmup`` untimed iterations (they absorb ``torch.compile``'s compilation, cuDNN's
autotuning and allocator growth), then ``repeats`` timed iterations, each ended by
``torch.cuda.synchronize`` so the wall clock covers the GPU's work. A row reports the
lower-median iteration: a real iteration, so its parts never add up to more than its total.
Peak memory is ``torch.cuda.max_memory_allocated`` over the timed iterations (model,
optimiser state and inputs included); ``None`` on the CPU.

Weights are random, but with He-initialised convolutions and BatchNorm statistics taken from
one training-mode pass on random input (:func:`realistic_weights`): activations then have a
trained network's unit scale. mmpose's own N(0, 0.001) initialisation shrinks activations
layer after layer into float denormals, which slow CPUs down and make precision comparisons
meaningless. Random maps would make ``e2e``'s decode part meaningless too (every pixel a
candidate, every candidate its own person: hundreds of "people" per image), so for ``e2e``
the output layers are adjusted (:func:`mimic_trained_maps`) to give about
:data:`CANDIDATES_PER_JOINT` candidates per joint with tags that mostly group: a crowd's
decoding load (``facts["people_per_image"]`` says how many people were decoded).

On CUDA, "fp32" is torch's default: cuDNN convolutions may use TF32
(``torch.backends.cudnn.allow_tf32``); :func:`outputs_match` measures what that costs.

Legend: B batch, S square input side, K keypoints, P people, L tag dims.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import math
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aepose.apps.profile import model_cost
from aepose.codec.aggregate import aggregate_maps
from aepose.codec.candidates import nms_heatmaps
from aepose.codec.decode import Decoder
from aepose.config import Config, get_preset, with_test_settings
from aepose.data.dataset import normalize_image
from aepose.data.transforms import resize_align, test_sizes
from aepose.engine.losses import compute_loss
from aepose.errors import AeposeError
from aepose.keypoints import get_spec
from aepose.models import build_model
from aepose.pipeline.engine import (
    Result,
    Stages,
    StageTimer,
    decode_pool,
    default_decode_workers,
    stream,
)
from aepose.pipeline.network import FastNetwork, check_compile_mode
from aepose.precision import PRECISIONS, autocast
from aepose.synth import SceneParams, render_scene, sample_scene

__all__ = [
    "PARTS",
    "STAGES",
    "BenchRow",
    "crowd_images",
    "crowd_maps",
    "format_rows",
    "mimic_trained_maps",
    "outputs_match",
    "realistic_weights",
    "run_benchmark",
]

PARTS = ("preprocess", "network", "aggregate", "decode", "back-project")
"""The pipeline's stages timed by the e2e and pipeline rows (images are in memory: no read)."""
TRAIN_PEOPLE = 10  # valid people per image in the train stage's joint targets
CROWD_SCENES = SceneParams(people=(8, 20), people_skew=1.0)  # e2e images: crowds, not singles
# e2e maps (see mimic_trained_maps): candidates above the detection threshold per joint, as
# in a crowd of ~20 people, and the spread of the random tags (tag threshold: 1).
CANDIDATES_PER_JOINT = 20
TAG_STD = 0.2


@dataclass(frozen=True)
class BenchRow:
    """One measured setting.

    ``images_per_s`` = 1000 / ``ms_per_image`` (both from the same, lower-median iteration);
    ``parts``: ms per image of ``"pre"``, ``"network"``, ``"decode"``, ``"post"`` (e2e only;
    empty otherwise); ``tflops``: achieved model TFLOP/s = GFLOPs per image x images/s / 1000
    (x3 for train: forward + backward), ``None`` where not meaningful (decode, e2e);
    ``peak_mem_mb``: CUDA peak allocated MiB, ``None`` on the CPU; ``facts``: stage-specific
    numbers that show what was computed (forward/train: ``gflops_per_image``; train:
    ``loss_first``, ``loss_last``, ``weight_change``; decode: ``people_drawn``,
    ``people_per_image``; e2e: ``images_out``, ``people_per_image``, ``network_input_w``,
    ``network_input_h``); ``note``: what the numbers include or exclude.
    """

    stage: str
    preset: str
    device: str
    dtype: str
    batch: int
    compile: str | None  # torch.compile mode, None when eager
    channels_last: bool
    input: str
    images_per_s: float
    ms_per_image: float
    parts: dict[str, float]
    peak_mem_mb: float | None
    tflops: float | None
    repeats: int
    facts: dict[str, float] = dataclasses.field(default_factory=dict)
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class _Job:
    """A validated request."""

    cfg: Config
    stage: str
    device: torch.device
    dtype: str
    batch: int
    compile: str | None
    channels_last: bool
    repeats: int
    warmup: int
    input_size: int
    image_size: tuple[int, int]
    flip: bool
    people: int
    images: int  # e2e and pipeline: generated images per iteration
    decode_workers: int  # pipeline: post-processing workers


@dataclass(frozen=True)
class _Timing:
    """The reported iteration: total seconds, seconds per part, CUDA peak MiB."""

    total: float
    parts: dict[str, float]
    peak_mb: float | None


@dataclass(frozen=True)
class _Outcome:
    """What a stage function measured; :func:`_row` turns it into a BenchRow."""

    timing: _Timing
    input: str
    flop_factor: float | None = None  # model FLOPs per image multiple, None: no TFLOP/s
    uses_network: bool = True
    facts: dict[str, float] = dataclasses.field(default_factory=dict)
    note: str = ""
    images: int | None = None  # images per iteration when not the batch size


# ---------------------------------------------------------------------------------------
# Devices, precision, timing


def _sync(device: torch.device) -> None:
    # CUDA kernels run asynchronously: the clock may only be read once they are done.
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_mb(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20


def _autocast(device: torch.device, dtype: str) -> torch.autocast:
    return autocast(device.type, dtype)


@contextlib.contextmanager
def _cudnn_autotune(device: torch.device) -> Iterator[None]:
    """cuDNN picks the fastest kernels for each shape (during the warm-up), as training does."""
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = device.type == "cuda"
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous


@contextlib.contextmanager
def _strict_fp32() -> Iterator[None]:
    """IEEE float32 convolutions and matmuls (no TF32) for a reference computation."""
    flags = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = flags


class _Clock:
    """Laps of a pipeline: each lap waits for the device, then reads the clock."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        _sync(self.device)
        now = time.perf_counter()
        self.seconds[name] = now - self._last
        self._last = now


Step = Callable[[], dict[str, float]]  # one iteration; returns seconds per part (may be {})


def _measure(step: Step, device: torch.device, repeats: int, warmup: int) -> _Timing:
    """Warm up, then time ``repeats`` synchronised iterations; report the lower median."""
    for _ in range(warmup):
        step()
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    runs: list[tuple[float, dict[str, float]]] = []
    for _ in range(repeats):
        start = time.perf_counter()
        parts = step()
        _sync(device)
        runs.append((time.perf_counter() - start, parts))
    runs.sort(key=lambda run: run[0])
    total, parts = runs[(len(runs) - 1) // 2]
    return _Timing(total, parts, _peak_mb(device))


# ---------------------------------------------------------------------------------------
# Validation


def _device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise AeposeError(f"unknown device {name!r} (choices: cpu, cuda, cuda:N)") from None
    if device.type not in ("cpu", "cuda"):
        raise AeposeError(f"unsupported device {name!r} (choices: cpu, cuda, cuda:N)")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise AeposeError(f"device {name!r} requested but torch finds no CUDA GPU "
                          f"(torch {torch.__version__})")
    return device


@functools.cache
def _cpu_bf16_error() -> str | None:
    """Why bfloat16 autocast fails on this CPU, or None when a small conv runs."""
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            nn.Conv2d(3, 4, 3)(torch.randn(1, 3, 8, 8)).float().sum().item()
    except RuntimeError as err:
        return str(err).splitlines()[0]
    return None


def _check_dtype(dtype: str, device: torch.device) -> None:
    if dtype not in PRECISIONS:
        raise AeposeError(f"unknown dtype {dtype!r} (choices: {', '.join(PRECISIONS)})")
    if dtype == "fp16" and device.type == "cpu":
        raise AeposeError("dtype fp16 needs a CUDA device (on the CPU: fp32 or bf16)")
    if dtype == "bf16" and device.type == "cpu" and _cpu_bf16_error() is not None:
        raise AeposeError(f"dtype bf16 does not run on this CPU: {_cpu_bf16_error()}")
    if dtype == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise AeposeError(f"dtype bf16 is not supported by {torch.cuda.get_device_name(device)}")


def _positive(name: str, value: int, least: int = 1) -> int:
    if not isinstance(value, int) or value < least:
        raise AeposeError(f"{name} must be an integer >= {least}, got {value!r}")
    return value


def _input_size(cfg: Config, input_size: int | None) -> int:
    size = cfg.data.input_size if input_size is None else input_size
    # HRNet's lowest branch has stride 32; its fuse layers need exact halvings.
    if not isinstance(size, int) or size < 32 or size % 32:
        raise AeposeError(f"input_size must be a positive multiple of 32, got {size!r}")
    return size


def _image_size(size: Sequence[int]) -> tuple[int, int]:
    if len(size) != 2 or any(not isinstance(s, int) or s < 1 for s in size):
        raise AeposeError(f"image_size must be (width, height) positive integers, got {size!r}")
    return int(size[0]), int(size[1])


# ---------------------------------------------------------------------------------------
# Models and generated inputs


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


def _prepared(
    job: _Job, training: bool, mimic_on: Tensor | None = None
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
    return model, _compiled(model, job.compile) if job.compile else model


def _compiled(model: nn.Module, mode: str) -> nn.Module:
    """``torch.compile(model, mode=mode)`` with dynamo's caches cleared first."""
    _reset_compiler()
    return cast(nn.Module, torch.compile(model, mode=mode))


def _reset_compiler() -> None:
    """Clear dynamo's caches. Compiled code is cached per code object: without a reset,
    successive models would pile up recompilations until dynamo's cache limit silently
    falls back to eager."""
    import torch._dynamo  # here, not at the top: it takes a second to import

    torch._dynamo.reset()


def _images(job: _Job) -> Tensor:
    """Random normal input [B, 3, S, S] on the device (channels_last if asked)."""
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(job.batch, 3, job.input_size, job.input_size, generator=generator)
    images = images.to(job.device)
    if job.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images


def crowd_maps(
    num_people: int,
    size: int,
    num_joints: int = 14,
    *,
    seed: int = 0,
    stride: int = 4,
    tag_dims: int = 2,
    sigma: float = 2.0,
) -> tuple[Tensor, Tensor]:
    """Heatmaps [K, S, S] and tags [K, S, S, L] of ``num_people`` well-separated people.

    Drawn at the network resolution n = S / ``stride`` and resized to S bilinearly
    (align_corners False), as the test pipeline resizes network outputs to the input size.
    Person p gets its own cell of a ceil(sqrt P) x ceil(sqrt P) grid and K joints within
    +-0.3 cell of its centre, drawn as Gaussians (``sigma``, peak in [0.3, 1]) merged by
    max, plus uniform noise in [0, 0.02) where the maps are below 0.01. Joint 0 is always
    visible, the others with probability 0.85 (so refine has joints to fill). Tags: each
    person a distinct value 1.5 apart; the tag map of joint k holds, per pixel, the tag of
    the person strongest there plus N(0, 0.05) noise, drawn again for each of the L dims.

    Decoding with the default thresholds and a joint order starting at 0 (every preset's)
    finds exactly P people: all groups open at joint 0. (A person first seen at a later
    joint must take a wrong group in the reference's assignment, whose rounded tag costs
    often tie, and the grouping can then split people.)
    """
    if num_people < 1 or size < stride or size % stride:
        raise AeposeError(f"crowd_maps needs >= 1 person and a size divisible by {stride}; "
                          f"got {num_people} people at {size}")
    rng = np.random.default_rng(seed)
    n, grid = size // stride, math.ceil(math.sqrt(num_people))
    cell = n / grid
    slot = rng.permutation(grid * grid)[:num_people]
    centre = np.stack([slot % grid + 0.5, slot // grid + 0.5], axis=1) * cell  # [P, 2] x, y
    joints = centre[:, None] + rng.uniform(-0.3 * cell, 0.3 * cell, (num_people, num_joints, 2))
    peaks = rng.uniform(0.3, 1.0, (num_people, num_joints))
    peaks[:, 1:] *= rng.random((num_people, num_joints - 1)) < 0.85
    axis = np.arange(n, dtype=np.float64)
    gauss_x = np.exp(-((axis - joints[..., :1]) ** 2) / (2 * sigma**2))  # [P, K, n]
    gauss_y = np.exp(-((axis - joints[..., 1:]) ** 2) / (2 * sigma**2))
    heat = peaks[..., None, None] * gauss_y[..., :, None] * gauss_x[..., None, :]  # [P,K,n,n]
    owner = heat.argmax(axis=0)  # [K, n, n]
    person_tags = rng.permutation(num_people) * 1.5 - num_people * 0.75
    tags = np.stack([person_tags[owner] + rng.normal(0, 0.05, owner.shape)
                     for _ in range(tag_dims)], axis=-1)
    heatmaps = heat.max(axis=0)
    # Noise on a flat peak can split it into two maxima; keep it to the background.
    heatmaps += rng.uniform(0, 0.02, owner.shape) * (heatmaps < 0.01)
    h = torch.from_numpy(heatmaps.astype(np.float32))[None]
    t = torch.from_numpy(tags.astype(np.float32)).permute(3, 0, 1, 2)
    h = F.interpolate(h, (size, size), mode="bilinear", align_corners=False)[0]
    t = F.interpolate(t, (size, size), mode="bilinear", align_corners=False).permute(1, 2, 3, 0)
    return h.contiguous(), t.contiguous()


def crowd_images(count: int, size: tuple[int, int], seed: int = 0) -> list[np.ndarray]:
    """``count`` generated crowd scenes (8-20 people), RGB uint8 [H, W, 3], (W, H) = size."""
    rng = np.random.default_rng(seed)
    width, height = size
    scenes = [render_scene(sample_scene(rng, width, height, CROWD_SCENES)) for _ in range(count)]
    return [np.ascontiguousarray(s.image[..., ::-1]) for s in scenes]  # BGR -> RGB


# ---------------------------------------------------------------------------------------
# Stages


def _square(job: _Job) -> str:
    return f"{job.input_size}x{job.input_size}"


def _forward(job: _Job) -> _Outcome:
    _, net = _prepared(job, training=False)
    images = _images(job)

    def step() -> dict[str, float]:
        net(images)
        return {}

    with torch.inference_mode(), _autocast(job.device, job.dtype):
        timing = _measure(step, job.device, job.repeats, job.warmup)
    note = f"compiled (mode {job.compile}); compilation in the warm-up" if job.compile else ""
    return _Outcome(timing, _square(job), flop_factor=1.0, note=note)


def _train_targets(job: _Job) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
    """Per output: heatmaps [B, K, o, o] uniform in [0, 1], masks [B, o, o] ones, joints
    [B, M, K, 2] int32 with TRAIN_PEOPLE valid people at random pixels of each joint map."""
    cfg, generator = job.cfg, torch.Generator().manual_seed(2)
    k, m, b = cfg.model.num_keypoints, cfg.data.max_people, job.batch
    people = min(TRAIN_PEOPLE, m)
    sizes = [job.input_size * h // cfg.data.input_size for h in cfg.data.heatmap_sizes]
    heatmaps, masks, joints = [], [], []
    for o in sizes:
        heatmaps.append(torch.rand(b, k, o, o, generator=generator).to(job.device))
        masks.append(torch.ones(b, o, o, device=job.device))
        flat = torch.randint(0, o * o, (b, people, k), generator=generator)
        packed = torch.zeros(b, m, k, 2, dtype=torch.int32)
        packed[:, :people, :, 0] = (flat + torch.arange(k) * o * o).to(torch.int32)
        packed[:, :people, :, 1] = 1
        joints.append(packed.to(job.device))
    return heatmaps, masks, joints


def _relative_change(before: Sequence[Tensor], after: Sequence[Tensor]) -> float:
    change = sum(float((a.float() - b.float()).pow(2).sum()) for a, b in zip(after, before,
                                                                              strict=True))
    size = sum(float(b.float().pow(2).sum()) for b in before)
    return math.sqrt(change / max(size, 1e-30))


def _train(job: _Job) -> _Outcome:
    model, net = _prepared(job, training=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=job.cfg.train.lr)
    scaler = torch.amp.GradScaler(job.device.type, enabled=job.dtype == "fp16")
    images, (heatmaps, masks, joints) = _images(job), _train_targets(job)
    initial = [p.detach().clone() for p in model.parameters()]
    losses: list[Tensor] = []

    def step() -> dict[str, float]:
        with _autocast(job.device, job.dtype):
            outputs = net(images)
        terms = compute_loss(job.cfg, [o.float() for o in outputs], heatmaps, masks, joints)
        total = terms["heatmap_loss"] + terms["push_loss"] + terms["pull_loss"]
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(total).backward()
        scaler.step(optimizer)
        scaler.update()
        losses.append(total.detach())  # read after timing: .item() would wait for the GPU
        return {}

    timing = _measure(step, job.device, job.repeats, job.warmup)
    final = [p.detach() for p in model.parameters()]
    facts = {"loss_first": float(losses[0]), "loss_last": float(losses[-1]),
             "weight_change": _relative_change(initial, final)}
    note = "GPU-side step only: data pipeline excluded (benchmarks/data_pipeline.py)"
    return _Outcome(timing, _square(job), flop_factor=3.0, facts=facts, note=note)


def _decode_stage(job: _Job) -> _Outcome:
    k = job.cfg.model.num_keypoints
    decoder = Decoder.from_config(job.cfg.test, get_spec(job.cfg.data.dataset))
    maps = [tuple(m.to(job.device) for m in crowd_maps(job.people, job.input_size, k, seed=i))
            for i in range(job.batch)]
    found: list[int] = []

    def step() -> dict[str, float]:
        found[:] = [len(decoder(h, t)[0]) for h, t in maps]
        return {}

    with torch.inference_mode():
        timing = _measure(step, job.device, job.repeats, job.warmup)
    facts = {"people_drawn": float(job.people), "people_per_image": statistics.mean(found)}
    note = f"{job.people}-person generated maps, L=2, decoded one image at a time"
    return _Outcome(timing, _square(job), uses_network=False, facts=facts, note=note)


def _pipeline_setup(job: _Job) -> tuple[Stages, list[np.ndarray]]:
    """The one test-time pipeline (single scale, the job's flip, precision, memory format
    and compile mode) on a network adjusted to decode like a crowd, and its images."""
    images = crowd_images(job.images, job.image_size)
    sizes = test_sizes(*job.image_size, job.cfg.data.input_size)
    sample = torch.stack([normalize_image(resize_align(im, sizes)) for im in images[:2]])
    plain = dataclasses.replace(job, compile=None, channels_last=False)
    model, _ = _prepared(plain, training=False, mimic_on=sample.to(job.device))
    if job.compile:
        _reset_compiler()
    network = FastNetwork(model, dtype=job.dtype, channels_last=job.channels_last,
                          compile=job.compile).eval()
    cfg = with_test_settings(job.cfg, scales=(1.0,), flip=job.flip)
    return Stages(network, cfg, job.device), images


def _streamed(stages: Stages, images: list[np.ndarray], job: _Job, timer: StageTimer,
              **options: Any) -> list[Result[int]]:
    return list(stream(stages, range(len(images)), images.__getitem__, batch_size=job.batch,
                       timer=timer, **options))


def _pipeline_facts(job: _Job, stages: Stages, results: list[Result[int]]) -> dict[str, float]:
    width, height = test_sizes(*job.image_size, stages.config.data.input_size).base_size
    return {"images_out": float(len(results)),
            "people_per_image": statistics.mean(len(r.poses) for r in results),
            "network_input_w": float(width), "network_input_h": float(height)}


def _e2e(job: _Job) -> _Outcome:
    stages, images = _pipeline_setup(job)
    last: list[Result[int]] = []

    def step() -> dict[str, float]:
        timer = StageTimer()
        last[:] = _streamed(stages, images, job, timer, read_workers=0)
        return {part: timer.seconds[part] for part in PARTS}

    timing = _measure(step, job.device, job.repeats, job.warmup)
    facts = _pipeline_facts(job, stages, last)
    note = (f"network input {int(facts['network_input_w'])}x{int(facts['network_input_h'])}, "
            f"single scale{', flip (2B per pass)' if job.flip else ''}, stages one after "
            f"the other; random weights, maps adjusted to ~{CANDIDATES_PER_JOINT} candidates "
            "per joint")
    return _Outcome(timing, f"{job.image_size[0]}x{job.image_size[1]}", facts=facts, note=note,
                    images=len(images))


def _pipeline(job: _Job) -> _Outcome:
    """The streamed pipeline (read threads, network, decode workers overlapped) beside the
    same pipeline run stage after stage, whose stage times give each stage's own rate."""
    stages, images = _pipeline_setup(job)
    serial = StageTimer()
    for _ in range(job.warmup + 1):
        serial = StageTimer()
        _streamed(stages, images, job, serial, read_workers=0)
    last: list[Result[int]] = []
    with decode_pool(job.device, job.decode_workers) as pool:

        def step() -> dict[str, float]:
            last[:] = _streamed(stages, images, job, StageTimer(), read_workers=1,
                                decoders=pool)
            return {}

        timing = _measure(step, job.device, job.repeats, job.warmup)
    facts = _pipeline_facts(job, stages, last)
    facts.update(_stage_rates(serial, len(images), job.decode_workers))
    facts["pipeline_images_per_s"] = len(images) / timing.total
    facts["overlap_efficiency"] = facts["pipeline_images_per_s"] / min(
        v for k, v in facts.items() if k.startswith("rate_"))
    note = (f"streamed: 1 read thread, {job.decode_workers} decode worker(s), network "
            f"batch {job.batch}; rate_*: each stage alone (images/s, from a serial run)")
    return _Outcome(timing, f"{job.image_size[0]}x{job.image_size[1]}", facts=facts,
                    note=note, images=len(images))


def _stage_rates(serial: StageTimer, images: int, decode_workers: int) -> dict[str, float]:
    """Images/s each stage gives with its own resources: preprocess in one thread, the
    network, post-processing (aggregate, decode, back-project) in ``decode_workers``."""
    post = sum(serial.seconds[p] for p in ("aggregate", "decode", "back-project"))
    return {"rate_preprocess": images / serial.seconds["preprocess"],
            "rate_network": images / serial.seconds["network"],
            "rate_decode": images * max(1, decode_workers) / post,
            "serial_images_per_s": images / sum(serial.seconds[p] for p in PARTS)}


STAGES: dict[str, Callable[[_Job], _Outcome]] = {
    "forward": _forward,
    "decode": _decode_stage,
    "e2e": _e2e,
    "pipeline": _pipeline,
    "train": _train,
}


def _row(job: _Job, out: _Outcome) -> BenchRow:
    per_iteration = out.images or job.batch
    seconds = out.timing.total / per_iteration
    facts, tflops = dict(out.facts), None
    if out.flop_factor is not None:
        gflops = model_cost(job.cfg, job.input_size)[1]
        facts["gflops_per_image"] = gflops
        tflops = gflops * out.flop_factor / seconds / 1000
    return BenchRow(
        stage=job.stage, preset=job.cfg.name, device=str(job.device),
        dtype=job.dtype if out.uses_network else "fp32",
        batch=job.batch, compile=job.compile if out.uses_network else None,
        channels_last=job.channels_last and out.uses_network, input=out.input,
        images_per_s=1.0 / seconds, ms_per_image=seconds * 1000,
        parts={k: v * 1000 / per_iteration for k, v in out.timing.parts.items()},
        peak_mem_mb=out.timing.peak_mb, tflops=tflops, repeats=job.repeats, facts=facts,
        note=out.note,
    )


def run_benchmark(
    preset: str,
    *,
    stage: str,
    device: str = "cpu",
    batch_size: int = 1,
    dtype: str = "fp32",
    compile: str | None = None,
    channels_last: bool = False,
    repeats: int = 20,
    warmup: int = 5,
    input_size: int | None = None,
    image_size: tuple[int, int] = (640, 480),
    flip: bool = True,
    people: int = 30,
    images: int | None = None,
    decode_workers: int | None = None,
) -> BenchRow:
    """Measure ``stage`` (see :data:`STAGES` and the module docstring) for ``preset``.

    ``batch_size`` images per iteration (decode: maps decoded one after the other; e2e:
    generated images of ``image_size`` (W, H) run as one batch; pipeline: images per
    forward pass, of ``images`` per iteration (default 32) streamed with
    ``decode_workers`` post-processing workers (default :func:`default_decode_workers`));
    ``input_size`` S of the
    square network input for forward/train/decode (default: the preset's; e2e always uses the
    preset's test sizing); ``people``: people drawn in the decode stage's maps. ``dtype``,
    ``compile`` (a mode of :data:`aepose.pipeline.predictor.COMPILE_MODES`, None for eager) and
    ``channels_last`` apply to the network (the decode row records fp32, None, False).
    Raises AeposeError for an unknown stage, dtype, compile mode, preset or device and for
    fp16 on the CPU.
    """
    if stage not in STAGES:
        raise AeposeError(f"unknown stage {stage!r} (choices: {', '.join(STAGES)})")
    torch_device = _device(device)
    _check_dtype(dtype, torch_device)
    check_compile_mode(compile)
    cfg = get_preset(preset)
    job = _Job(
        cfg=cfg, stage=stage, device=torch_device, dtype=dtype,
        batch=_positive("batch_size", batch_size), compile=compile,
        channels_last=bool(channels_last), repeats=_positive("repeats", repeats),
        warmup=_positive("warmup", warmup, least=0), input_size=_input_size(cfg, input_size),
        image_size=_image_size(image_size), flip=bool(flip), people=_positive("people", people),
        images=_positive("images", images or (32 if stage == "pipeline" else batch_size)),
        decode_workers=_positive("decode_workers", default_decode_workers(torch_device)
                                 if decode_workers is None else decode_workers, least=0),
    )
    with _cudnn_autotune(torch_device):
        return _row(job, STAGES[stage](job))


# ---------------------------------------------------------------------------------------
# Precision check and table


def outputs_match(
    preset: str,
    dtype: str = "fp32",
    compile: str | None = None,
    channels_last: bool = False,
    device: str = "cpu",
) -> float:
    """Relative L2 error ||out - ref|| / ||ref|| of the network's outputs (all outputs
    concatenated) under the given settings, against strict-fp32 eager (no TF32) on the same
    realistic random weights and a random normal batch [2, 3, S, S] at the preset's size."""
    torch_device = _device(device)
    _check_dtype(dtype, torch_device)
    check_compile_mode(compile)
    cfg = get_preset(preset)
    size = cfg.data.input_size
    model = realistic_weights(build_model(cfg).to(torch_device), min(size, 256))
    images = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(3))
    images = images.to(torch_device)
    with torch.inference_mode(), _strict_fp32():
        reference = model(images)
    variant: nn.Module = copy.deepcopy(model)
    if channels_last:
        variant = variant.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        images = images.contiguous(memory_format=torch.channels_last)
    if compile:
        variant = _compiled(variant, compile)
    with torch.inference_mode(), _autocast(torch_device, dtype):
        outputs = variant(images)
    error = sum(float((o.float() - r).pow(2).sum()) for o, r in zip(outputs, reference,
                                                                     strict=True))
    norm = sum(float(r.pow(2).sum()) for r in reference)
    return math.sqrt(error / norm)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def _part(name: str) -> Callable[[BenchRow], float | None]:
    return lambda row: row.parts.get(name)


_COLUMNS: dict[str, Callable[[BenchRow], Any]] = {
    "stage": lambda r: r.stage,
    "preset": lambda r: r.preset,
    "device": lambda r: r.device,
    "dtype": lambda r: r.dtype,
    "batch": lambda r: r.batch,
    "compile": lambda r: r.compile or "no",
    "ch_last": lambda r: r.channels_last,
    "input": lambda r: r.input,
    "img/s": lambda r: r.images_per_s,
    "ms/img": lambda r: r.ms_per_image,
    **{f"{part} ms": _part(part) for part in PARTS},
    "peak MiB": lambda r: r.peak_mem_mb,
    "TFLOP/s": lambda r: r.tflops,
    "reps": lambda r: r.repeats,
}


def format_rows(rows: Sequence[BenchRow]) -> str:
    """A fixed-width table: one header line, one line per row; text left-aligned, numbers
    right-aligned; ``-`` where a value does not apply."""
    cells = [[_cell(get(row)) for get in _COLUMNS.values()] for row in rows]
    headers = list(_COLUMNS)
    widths = [max([len(h), *(len(line[i]) for line in cells)]) for i, h in enumerate(headers)]
    numeric = [i >= headers.index("batch") and headers[i] != "input" for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w)
                         for v, w, num in zip(values, widths, numeric, strict=True))

    return "\n".join([line(headers), *(line(c) for c in cells)])
