"""The training data: one rank's share of each epoch (:class:`EpochSampler`) and the loader
that reads it (:func:`build_loader`)."""

from __future__ import annotations

import logging
import math
import signal
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import cv2
import torch
from torch.utils.data import DataLoader, Sampler

from aepose.config import Config
from aepose.data.dataset import BottomUpDataset, collate
from aepose.engine.distributed import DistInfo
from aepose.errors import AeposeError
from aepose.keypoints import KeypointSpec

if TYPE_CHECKING:
    from aepose.engine.train import TrainOptions

__all__ = ["EpochSampler", "build_loader", "check_images"]

logger = logging.getLogger("aepose")


class EpochSampler(Sampler[int]):
    """Indices of one rank's share of an epoch: a permutation drawn from (seed, epoch),
    padded by wrapping to a multiple of the world size and dealt out rank by rank, like
    ``DistributedSampler``. ``skip`` leaves out the first items (resuming mid-epoch)."""

    def __init__(self, size: int, info: DistInfo, seed: int) -> None:
        self.size, self.info, self.seed = size, info, seed
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Select epoch ``epoch``'s permutation, leaving out its first ``skip`` items."""
        self.epoch, self.skip = epoch, skip

    def _indices(self) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.size, generator=generator).tolist()
        per_rank = math.ceil(self.size / self.info.world_size)
        order += order[: per_rank * self.info.world_size - self.size]
        return order[self.info.rank :: self.info.world_size][self.skip :]

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices())

    def __len__(self) -> int:
        return max(0, math.ceil(self.size / self.info.world_size) - self.skip)


def _worker_init(_: int) -> None:
    # One OpenCV/torch thread per worker (reference: opencv_num_threads 0), and Ctrl-C is
    # the main process's to handle: it stops after the current step and saves.
    cv2.setNumThreads(0)
    torch.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def build_loader(
    cfg: Config, options: TrainOptions, info: DistInfo, spec: KeypointSpec | None = None
) -> tuple[DataLoader[Any], BottomUpDataset, EpochSampler]:
    dataset = BottomUpDataset.from_data_root(options.data_root, cfg.data, seed=options.seed,
                                             spec=spec)
    if len(dataset) == 0:
        raise AeposeError(f"{dataset.annotations.ann_file}: no training images with people")
    check_images(dataset, info)
    sampler = EpochSampler(len(dataset), info, options.seed)
    workers = cfg.train.workers
    loader = DataLoader(
        dataset, batch_size=cfg.train.batch_size, sampler=sampler, num_workers=workers,
        collate_fn=collate, pin_memory=info.device.type == "cuda", drop_last=False,
        worker_init_fn=_worker_init, persistent_workers=workers > 0,
    )
    return loader, dataset, sampler


def check_images(dataset: BottomUpDataset, info: DistInfo) -> None:
    """Check that the training images exist, before the first epoch: when none does, stop in
    one line naming how many are missing, the first one and the folder; when some are
    missing, say so in one warning line (rank 0), and they are skipped in every epoch
    (counted in ``skipped_images``) without a warning each."""
    missing = dataset.missing_images()
    if not missing:
        return
    total, folder = len(dataset), dataset.annotations.image_dir
    count = f"all {total}" if len(missing) == total else f"{len(missing)} of {total}"
    what = f"{count} training images are missing (first: {missing[0]})"
    if len(missing) == total:
        raise AeposeError(f"{what}; check the image folder {folder}")
    if info.is_main:
        logger.warning("%s; they are skipped", what)
