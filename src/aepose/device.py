"""Which device a network runs on: the one default-device rule, and device names checked.

Below the pipeline and the training engine, so that every layer that places a network
(``Predictor.from_checkpoint``, ``aepose.predict``, training, evaluation, the commands) picks
the same device when none is named.
"""

from __future__ import annotations

import torch

from aepose.errors import AeposeError

__all__ = ["default_device", "resolve_device"]


def default_device() -> torch.device:
    """CUDA when this machine has it, else the CPU (the one default-device rule of aepose)."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(name: str | torch.device | None = None) -> torch.device:
    """The device ``name`` asks for, checked to exist here; ``None`` or ``""``:
    :func:`default_device`.

    Accepts ``cpu``, ``cuda``, ``cuda:N`` and ``mps``, as names or ``torch.device``. A
    malformed name, a device type aepose does not run on, or a device this machine lacks
    raises one line saying so. The one check of every device name that enters aepose: the
    commands' ``--device`` and the API's ``device=`` (through
    :func:`aepose.models.checkpoint.load_with_config`).
    """
    if name is None or name == "":
        return default_device()
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        raise AeposeError(f"device {str(name)!r} is not a device name; use cpu, cuda or "
                          "cuda:N") from None
    name = str(name)
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise AeposeError(f"device {name!r}: CUDA is not available on this machine (torch "
                              f"{torch.__version__}); use --device cpu")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise AeposeError(f"device {name!r}: this machine has {count} CUDA device(s), "
                              f"cuda:0 to cuda:{count - 1}")
        return device
    if device.type == "mps" and torch.backends.mps.is_available():
        return device
    raise AeposeError(f"device {name!r} is not available here; use cpu or cuda")
