"""torchrun integration: read the launcher's environment, nothing else.

``torchrun`` sets RANK, WORLD_SIZE and LOCAL_RANK (and the rendezvous address); a plain
``python -m aepose`` run has none of them and is rank 0 of 1. NCCL is used on CUDA, gloo
on the CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from aepose.errors import AeposeError

__all__ = ["DistInfo", "all_gather_objects", "broadcast_object", "init_distributed",
           "resolve_device", "shutdown"]


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: its rank, how many there are, and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, writes files and gathers results."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when a process group with more than one rank is running."""
        return self.world_size > 1


def resolve_device(name: str | None = None) -> torch.device:
    """The device ``name`` asks for, checked to exist here; ``None`` or ``""``: CUDA when
    available, else the CPU (the one default-device rule of aepose).

    Accepts ``cpu``, ``cuda``, ``cuda:N`` and ``mps``. A malformed name, a device type aepose
    does not run on, or a device this machine lacks raises one line saying so.
    """
    if not name:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        raise AeposeError(f"device {name!r} is not a device name; use cpu, cuda or cuda:N"
                          ) from None
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


def init_distributed(device: str | None = None) -> DistInfo:
    """Join the process group torchrun describes (if any) and pick this rank's device.

    ``device`` is ``"cpu"``, ``"cuda"`` or None (CUDA when available), checked by
    :func:`resolve_device`. Under torchrun each rank takes ``cuda:LOCAL_RANK``.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    chosen = resolve_device(device)
    if chosen.type == "cuda" and chosen.index is None:
        # A bare "cuda" means "this rank's GPU"; an explicit "cuda:N" is taken as given.
        chosen = resolve_device(f"cuda:{local_rank}")
    if chosen.type == "cuda":
        torch.cuda.set_device(chosen)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if chosen.type == "cuda" else "gloo"
        dist.init_process_group(backend, device_id=chosen if chosen.type == "cuda" else None)
    return DistInfo(rank, world_size, local_rank, chosen)


def shutdown() -> None:
    """Leave the process group (no-op for a single process)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def broadcast_object(value: Any, info: DistInfo) -> Any:
    """Rank 0's ``value`` on every rank (e.g. a run folder named after rank 0's clock)."""
    if not info.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather_objects(value: Any, info: DistInfo) -> list[Any]:
    """Every rank's ``value``, in rank order, on every rank."""
    if not info.distributed:
        return [value]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, value)
    return out
