"""Training dataset and batching of bottom-up associative embedding (reference.md §1.4, §3).

Per item: decode the image, build the ignore mask and the joints of the kept people, draw the
random affine and flip, warp, normalise, and encode heatmap and joint-index targets for every
output resolution. Random draws come from a generator seeded by (seed, epoch, index) only, so
an item is the same whichever DataLoader worker or DistributedSampler rank produces it.

A bad item (missing, unreadable or truncated image; undecodable segmentation) yields ``None``
instead of raising inside a worker; :func:`collate` drops it and counts it in
``Batch.skipped``, and the dataset warns once per file.

Legend: B batch, K keypoints, M max people (rows of the joint-index target), o output
(heatmap) side, I input side, P people.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from torch.utils.data import Dataset

from aepose.codec.targets import encode_targets
from aepose.config import DataConfig
from aepose.data.coco import CocoKeypoints, load_split, read_image
from aepose.data.transforms import bottom_up_affine, draw_affine_params, draw_flip, flip_bottom_up
from aepose.errors import AeposeError
from aepose.image import check_rgb
from aepose.keypoints import CUSTOM, KeypointSpec

__all__ = [
    "Batch",
    "BottomUpDataset",
    "EvalImage",
    "TrainSample",
    "collate",
    "eval_images",
    "item_rng",
    "normalize_image",
]

# ImageNet statistics in RGB order (reference §1.4, §3.5).
_MEAN = torch.tensor([0.485, 0.456, 0.406], dtype=torch.float32).view(3, 1, 1)
_STD = torch.tensor([0.229, 0.224, 0.225], dtype=torch.float32).view(3, 1, 1)


def normalize_image(image: npt.NDArray[np.generic]) -> torch.Tensor:
    """RGB uint8 [H, W, 3] -> float32 [3, H, W] = (image / 255 - mean) / std.

    The same float32 operations as torchvision's ToTensor + Normalize, so the values match the
    reference bit for bit; black padding becomes -mean / std.
    """
    chw = torch.from_numpy(np.ascontiguousarray(check_rgb(image).transpose(2, 0, 1)))
    return (chw.to(torch.float32).div(255) - _MEAN) / _STD


def item_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator that draws item ``index``'s augmentation in ``epoch``."""
    return np.random.default_rng([seed, epoch, index])


@dataclass(frozen=True, eq=False)
class TrainSample:
    """One augmented training image with its targets, one entry per output resolution.

    image: float32 [3, I, I] normalised RGB. heatmaps: float32 [K, o, o]. masks: float32
    [o, o], 1 = pixel counts in the heatmap loss. joints: int32 [M, K, 2] packed
    (flat index k*o*o + y*o + x, 1) entries per person.
    """

    image: torch.Tensor
    heatmaps: tuple[torch.Tensor, ...]
    masks: tuple[torch.Tensor, ...]
    joints: tuple[torch.Tensor, ...]


@dataclass(frozen=True, eq=False)
class Batch:
    """Collated samples in the reference's layout (§3.8), plus the count of dropped items.

    images: float32 [B, 3, I, I]. heatmaps: per resolution float32 [B, K, o, o]. masks: per
    resolution float32 [B, o, o]. joints: per resolution int32 [B, M, K, 2]. skipped: items of
    this batch dropped as bad. A batch whose items were all bad has B = 0, ``images`` of shape
    [0, 3, 0, 0] and no resolutions.
    """

    images: torch.Tensor
    heatmaps: tuple[torch.Tensor, ...]
    masks: tuple[torch.Tensor, ...]
    joints: tuple[torch.Tensor, ...]
    skipped: int = 0

    @property
    def size(self) -> int:
        """B, the number of images."""
        return int(self.images.shape[0])

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """The batch on ``device`` (joint indices stay int32; the AE loss gathers with them)."""

        def move(ts: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
            return tuple(t.to(device, non_blocking=non_blocking) for t in ts)

        return Batch(
            images=self.images.to(device, non_blocking=non_blocking),
            heatmaps=move(self.heatmaps),
            masks=move(self.masks),
            joints=move(self.joints),
            skipped=self.skipped,
        )

    def pin_memory(self) -> Batch:
        """Page-locked copy; DataLoader(pin_memory=True) calls this on custom batch types."""
        return Batch(
            images=self.images.pin_memory(),
            heatmaps=tuple(t.pin_memory() for t in self.heatmaps),
            masks=tuple(t.pin_memory() for t in self.masks),
            joints=tuple(t.pin_memory() for t in self.joints),
            skipped=self.skipped,
        )


def collate(items: Sequence[TrainSample | None]) -> Batch:
    """Stack samples into a :class:`Batch`, dropping ``None`` (bad items) and counting them.

    Use as ``DataLoader(dataset, collate_fn=collate)``; it runs inside the workers.
    """
    good = [item for item in items if item is not None]
    skipped = len(items) - len(good)
    if not good:
        return Batch(torch.empty((0, 3, 0, 0)), (), (), (), skipped=skipped)
    resolutions = range(len(good[0].heatmaps))
    return Batch(
        images=torch.stack([s.image for s in good]),
        heatmaps=tuple(torch.stack([s.heatmaps[r] for s in good]) for r in resolutions),
        masks=tuple(torch.stack([s.masks[r] for s in good]) for r in resolutions),
        joints=tuple(torch.stack([s.joints[r] for s in good]) for r in resolutions),
        skipped=skipped,
    )


class BottomUpDataset(Dataset[TrainSample | None]):
    """Training images of one annotation file with the reference's augmentation and targets.

    Item ``i`` of epoch ``e`` draws scale, rotation, shift and flip, in the reference's order,
    from :func:`item_rng` (seed, e, i). Call :meth:`set_epoch` at the start of every epoch,
    before iterating the DataLoader (as with ``DistributedSampler.set_epoch``); the epoch lives
    in shared memory, so persistent workers see it too.

    A bad item returns ``None`` (see :func:`collate`), counts in :attr:`skipped` and warns
    once per file. Both are per process: with DataLoader workers each worker warns for itself
    and the main process should sum ``Batch.skipped``.
    """

    def __init__(self, annotations: CocoKeypoints, data: DataConfig, *, seed: int = 0) -> None:
        if data.dataset != CUSTOM and annotations.spec.name != data.dataset:
            raise ValueError(
                f"annotations use the {annotations.spec.name} keypoints but the data config "
                f"is for {data.dataset}"
            )
        if not float(data.sigma).is_integer():
            raise AeposeError(f"data.sigma must be a whole number of pixels, got {data.sigma}")
        self.annotations = annotations
        self.data = data
        self.seed = seed
        self.skipped = 0
        self._sigma = int(data.sigma)
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self._warned: set[str] = set()

    @classmethod
    def from_data_root(
        cls, data_root: str | Path, data: DataConfig, *, seed: int = 0,
        spec: KeypointSpec | None = None,
    ) -> BottomUpDataset:
        """The training split found under ``data_root`` at ``data``'s relative paths, read
        with ``spec`` (default: the one ``data.dataset`` names)."""
        return cls(load_split(data_root, data, "train", spec), data, seed=seed)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draws of ``epoch``."""
        self._epoch.fill_(epoch)

    @property
    def epoch(self) -> int:
        """The epoch whose draws items currently use."""
        return int(self._epoch.item())

    def __len__(self) -> int:
        return len(self.annotations.images)

    def missing_images(self) -> list[Path]:
        """The image files of the annotations that do not exist, in annotation order (one
        ``stat`` each). They stay items (skipped and counted when read, so the epochs keep
        their order), but are taken as reported: the caller names them in one line, and
        reading one later warns no more."""
        paths = [self.annotations.image_path(record) for record in self.annotations.images]
        missing = [path for path in paths if not path.is_file()]
        self._warned.update(str(path) for path in missing)
        return missing

    def __getitem__(self, index: int) -> TrainSample | None:
        """Item ``index`` of the current epoch, or None when its image or mask is unreadable."""
        record = self.annotations.images[index]
        path = self.annotations.image_path(record)
        try:
            image = read_image(path)
            valid = self.annotations.valid_mask(record)
        except AeposeError as err:
            self._skip(str(path), err)
            return None
        valid = _fit_mask(valid, image.shape[0], image.shape[1])
        return self._augment(image, valid, record.joints, item_rng(self.seed, self.epoch, index))

    def _skip(self, path: str, err: AeposeError) -> None:
        self.skipped += 1
        if path not in self._warned:
            self._warned.add(path)
            warnings.warn(f"skipping a training image: {err}", RuntimeWarning, stacklevel=3)

    def _augment(
        self,
        image: npt.NDArray[np.uint8],
        valid: npt.NDArray[np.bool_],
        joints: npt.NDArray[np.float32],
        rng: np.random.Generator,
    ) -> TrainSample:
        """Affine, flip, normalisation and targets (reference §3.3-3.7) of one image.

        image: RGB [H, W, 3]; valid: [H, W]; joints: [P, K, 3] in image pixels.
        """
        d = self.data
        height, width = image.shape[:2]
        params = draw_affine_params(
            rng,
            width,
            height,
            min_scale=d.scale_range[0],
            max_scale=d.scale_range[1],
            max_rotation=d.rotation_deg,
            trans_factor=d.translation,
        )
        warped = bottom_up_affine(
            image,
            valid,
            joints,
            scale=params.scale,
            rotation_deg=params.rotation_deg,
            shift=params.shift,
            input_size=d.input_size,
            output_sizes=d.heatmap_sizes,
        )
        out_image, masks, out_joints = warped.image, warped.masks, warped.joints
        # A skeleton without left/right pairs has no mirror image to learn: no flip (and no
        # draw, so built-in skeletons keep their random sequence).
        if self.annotations.spec.flip_pairs and draw_flip(rng, d.flip_prob):
            flip_index = self.annotations.spec.flip_index
            out_image, masks, out_joints = flip_bottom_up(out_image, masks, out_joints, flip_index)
        targets = [
            encode_targets(j, o, sigma=self._sigma, max_people=d.max_people)
            for j, o in zip(out_joints, d.heatmap_sizes, strict=True)
        ]
        return TrainSample(
            image=normalize_image(out_image),
            heatmaps=tuple(torch.from_numpy(hm) for hm, _ in targets),
            masks=tuple(torch.from_numpy(m) for m in masks),
            joints=tuple(torch.from_numpy(ji) for _, ji in targets),
        )


def _fit_mask(valid: npt.NDArray[np.bool_], height: int, width: int) -> npt.NDArray[np.bool_]:
    """The record-sized mask cropped or padded (invalid) at the bottom/right to the image size.

    The reference warps the record-sized mask with the image's matrix and a zero border, which
    is exactly this when the file's width/height disagree with the image (e.g. the CrowdPose
    sizes mmpose corrected in 2020).
    """
    if valid.shape == (height, width):
        return valid
    fitted = np.zeros((height, width), dtype=bool)
    h, w = min(height, valid.shape[0]), min(width, valid.shape[1])
    fitted[:h, :w] = valid[:h, :w]
    return fitted


# --------------------------------------------------------------------------------------------
# Evaluation


@dataclass(frozen=True)
class EvalImage:
    """One evaluation image: its id in the annotation file, file and size from the file."""

    image_id: int
    path: Path
    width: int
    height: int


def eval_images(annotations: CocoKeypoints) -> list[EvalImage]:
    """Every image of ``annotations`` (load with ``test_mode=True`` or split ``"val"``)."""
    return [
        EvalImage(r.image_id, annotations.image_path(r), r.width, r.height)
        for r in annotations.images
    ]
