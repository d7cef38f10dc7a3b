"""torchrun integration: the launcher's environment, and what every rank must agree on.

``torchrun`` sets RANK, WORLD_SIZE and LOCAL_RANK (and the rendezvous address); a plain
``python -m aepose`` run has none of them and is rank 0 of 1. NCCL is used on CUDA, gloo
on the CPU. Rank 0 decides (a run folder's name, its claim) and the others learn its verdict.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from aepose.device import resolve_device
from aepose.errors import AeposeError
from aepose.io import claim_run_folder

__all__ = ["DistInfo", "all_gather_objects", "broadcast_object", "claim_run_folder_on_all_ranks",
           "init_distributed", "shutdown"]


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


def init_distributed(device: str | None = None) -> DistInfo:
    """Join the process group torchrun describes (if any) and pick this rank's device.

    ``device`` is ``"cpu"``, ``"cuda"`` or None (CUDA when available), checked by
    :func:`aepose.device.resolve_device`. Under torchrun each rank takes ``cuda:LOCAL_RANK``.
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


@contextmanager
def claim_run_folder_on_all_ranks(folder: str | Path, info: DistInfo,
                                  refuse: Callable[[Path], None] | None = None
                                  ) -> Iterator[Path]:
    """:func:`aepose.io.claim_run_folder` for a run on every rank: rank 0 claims ``folder``
    (and holds it until the block ends); when it is refused, every rank raises the same
    one-line AeposeError, so all stop together before any work."""
    with ExitStack() as claim:
        problem = None
        if info.is_main:
            try:
                claim.enter_context(claim_run_folder(folder, refuse))
            except AeposeError as error:
                problem = str(error)
        problem = broadcast_object(problem, info)
        if problem is not None:
            raise AeposeError(problem)
        yield Path(folder)
