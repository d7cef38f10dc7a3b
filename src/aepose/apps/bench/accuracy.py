"""What a precision, memory format or compile mode costs in accuracy.

On CUDA, "fp32" is torch's default: cuDNN convolutions may use TF32
(``torch.backends.cudnn.allow_tf32``); :func:`outputs_match` measures what that costs too,
against strict IEEE float32.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterator

import torch
from torch import nn

from aepose.apps.bench.job import check_dtype, device_of
from aepose.apps.bench.weights import compiled, realistic_weights
from aepose.config import get_preset
from aepose.models import build_model
from aepose.pipeline.network import check_compile_mode
from aepose.precision import autocast

__all__ = ["outputs_match"]


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
    torch_device = device_of(device)
    check_dtype(dtype, torch_device)
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
        variant = compiled(variant, compile)
    with torch.inference_mode(), autocast(torch_device.type, dtype):
        outputs = variant(images)
    error = sum(float((o.float() - r).pow(2).sum()) for o, r in zip(outputs, reference,
                                                                     strict=True))
    norm = sum(float(r.pow(2).sum()) for r in reference)
    return math.sqrt(error / norm)


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
