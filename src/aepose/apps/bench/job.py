"""A benchmark request checked once: every setting valid, or one AeposeError line.

Legend: B batch, S square input side.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from aepose.apps.bench.measure import Progress
from aepose.apps.profile import preset_cost
from aepose.config import Config, get_preset
from aepose.errors import AeposeError
from aepose.pipeline.network import check_compile_mode
from aepose.pipeline.workers import default_decode_workers
from aepose.precision import PRECISIONS

__all__ = ["COMPILED_WARMUP", "EAGER_WARMUP", "Job", "check_dtype", "cudnn_autotune",
           "device_of", "make_job", "pipeline_images"]

# Default warm-up iterations: one absorbs cuDNN's autotuning and the allocator's growth;
# torch.compile compiles in the first call and captures CUDA graphs in a later one.
EAGER_WARMUP, COMPILED_WARMUP = 1, 3
# pipeline stage: generated images per iteration by default. 32 fill the stream well; a
# network over HEAVY_GFLOPS per image on the CPU (HRNet-w32: 92) takes ~1 s per image
# there, so 8 keep an iteration near 10 s.
PIPELINE_IMAGES, HEAVY_PIPELINE_IMAGES, HEAVY_GFLOPS = 32, 8, 10.0


@dataclass(frozen=True)
class Job:
    """A validated request."""

    cfg: Config
    stage: str
    device: torch.device
    dtype: str
    batch: int
    compile: str | None
    channels_last: bool
    repeats: int | None  # None: as many as fit in the time budget (aepose.apps.bench.measure)
    warmup: int
    input_size: int
    image_size: tuple[int, int]
    flip: bool
    people: int
    images: int  # e2e and pipeline: generated images per iteration
    decode_workers: int  # pipeline: post-processing workers
    progress: Progress = dataclasses.field(compare=False, repr=False)

    @property
    def square(self) -> str:
        """The network input of forward/train/decode, ``"SxS"``."""
        return f"{self.input_size}x{self.input_size}"

    @property
    def image(self) -> str:
        """The generated images of e2e/pipeline, ``"WxH"``."""
        return f"{self.image_size[0]}x{self.image_size[1]}"


def make_job(
    preset: str,
    *,
    stage: str,
    device: str,
    batch_size: int,
    dtype: str,
    compile: str | None,
    channels_last: bool,
    repeats: int | None,
    warmup: int | None,
    input_size: int | None,
    image_size: tuple[int, int],
    flip: bool,
    people: int,
    images: int | None,
    decode_workers: int | None,
) -> Job:
    """The :class:`Job` of :func:`~aepose.apps.bench.run_benchmark`'s arguments (the stage
    name is the caller's to check). Raises AeposeError for an unknown dtype, compile mode,
    preset or device, fp16 on the CPU and a setting out of range."""
    torch_device = device_of(device)
    check_dtype(dtype, torch_device)
    check_compile_mode(compile)
    cfg = get_preset(preset)
    batch = _positive("batch_size", batch_size)
    if images is None:
        images = pipeline_images(cfg, torch_device) if stage == "pipeline" else batch
    if warmup is None:
        warmup = COMPILED_WARMUP if compile else EAGER_WARMUP
    return Job(
        cfg=cfg, stage=stage, device=torch_device, dtype=dtype, batch=batch, compile=compile,
        channels_last=bool(channels_last),
        repeats=None if repeats is None else _positive("repeats", repeats),
        warmup=_positive("warmup", warmup, least=0), input_size=_input_size(cfg, input_size),
        image_size=_image_size(image_size), flip=bool(flip), people=_positive("people", people),
        images=_positive("images", images),
        decode_workers=_positive("decode_workers", default_decode_workers(torch_device)
                                 if decode_workers is None else decode_workers, least=0),
        progress=Progress(f"{stage} {cfg.name} ({torch_device}, {dtype}, batch {batch})"),
    )


def pipeline_images(cfg: Config, device: torch.device) -> int:
    """The pipeline stage's default images per iteration: :data:`PIPELINE_IMAGES`, or
    :data:`HEAVY_PIPELINE_IMAGES` for a network over :data:`HEAVY_GFLOPS` on the CPU."""
    heavy = device.type == "cpu" and preset_cost(cfg)[1] > HEAVY_GFLOPS
    return HEAVY_PIPELINE_IMAGES if heavy else PIPELINE_IMAGES


def device_of(name: str) -> torch.device:
    """The torch device ``name`` names, if this machine has it."""
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


def check_dtype(dtype: str, device: torch.device) -> None:
    """Raise AeposeError unless the network can run in ``dtype`` on ``device``."""
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


@contextlib.contextmanager
def cudnn_autotune(device: torch.device) -> Iterator[None]:
    """cuDNN picks the fastest kernels for each shape (during the warm-up), as training does."""
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = device.type == "cuda"
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous
