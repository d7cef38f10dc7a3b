"""Network precision: the one spelling (``fp32``, ``bf16``, ``fp16``) that ``train``,
``test``, ``predict`` and ``benchmark`` all take as ``--dtype``.

Lower precisions run the network under ``torch.autocast``; losses, aggregation and decoding
stay float32 whatever the network's precision.
"""

from __future__ import annotations

import torch

from aepose.choices import PRECISIONS
from aepose.errors import AeposeError

__all__ = ["PRECISIONS", "autocast", "check_precision"]

# fp32: no autocast (the published numbers); training adds gradient scaling to fp16.
_DTYPES: dict[str, torch.dtype | None] = dict(
    zip(PRECISIONS, (None, torch.bfloat16, torch.float16), strict=True))



def check_precision(name: str) -> str:
    """``name`` if it is one of :data:`PRECISIONS`; otherwise a one-line AeposeError."""
    if name not in _DTYPES:
        raise AeposeError(f"unknown dtype {name!r} (choices: {', '.join(PRECISIONS)})")
    return name


def autocast(device_type: str, precision: str) -> torch.autocast:
    """The autocast context for ``precision`` on ``device_type`` (disabled for fp32)."""
    dtype = _DTYPES[check_precision(precision)]
    return torch.autocast(device_type, dtype=dtype or torch.float32, enabled=dtype is not None)
