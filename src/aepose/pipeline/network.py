"""The network as the pipeline runs it on a GPU: :class:`FastNetwork` (channels_last,
autocast, ``torch.compile``)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from aepose.choices import COMPILE_MODES
from aepose.errors import AeposeError
from aepose.precision import autocast, check_precision

__all__ = ["COMPILE_MODES", "FastNetwork", "check_compile_mode"]


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
        # What the channels mean travels with the network (aepose.keypoints.spec_of).
        self.keypoint_spec = getattr(model, "keypoint_spec", None)

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
