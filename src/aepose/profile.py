"""Static cost of a network: parameters and FLOPs, without allocating real weights."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from aepose.config import Config
from aepose.models import build_model


def model_cost(cfg: Config, input_size: int | None = None) -> tuple[int, float]:
    """``(parameters, GFLOPs)`` of one image at ``input_size`` (default: the preset's).

    FLOPs count a multiply-add as 2 (torch's FlopCounterMode convention), measured on the
    meta device so that no memory is allocated and no arithmetic is done.
    """
    size = input_size or cfg.data.input_size
    with torch.device("meta"):
        model = build_model(cfg)
        image = torch.empty(1, 3, size, size)
    with FlopCounterMode(display=False) as counter:
        model(image)
    return sum(p.numel() for p in model.parameters()), counter.get_total_flops() / 1e9
