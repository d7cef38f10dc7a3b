"""Data: COCO-format datasets, augmentation geometry, targets, test-time sizing (reference §3-4)."""

from aepose.codec.targets import encode_targets, gaussian_kernel
from aepose.data.coco import CocoKeypoints, ImageRecord, load_annotations, load_split, read_image
from aepose.data.dataset import (
    Batch,
    BottomUpDataset,
    EvalImage,
    TrainSample,
    collate,
    eval_images,
    normalize_image,
)
from aepose.data.transforms import (
    AffineParams,
    AffineResult,
    TestSizes,
    apply_affine,
    back_project,
    bottom_up_affine,
    draw_affine_params,
    draw_flip,
    flip_bottom_up,
    get_affine_transform,
    resize_align,
    resize_matrix,
    test_sizes,
)

__all__ = [
    "AffineParams",
    "AffineResult",
    "Batch",
    "BottomUpDataset",
    "CocoKeypoints",
    "EvalImage",
    "ImageRecord",
    "TestSizes",
    "TrainSample",
    "apply_affine",
    "back_project",
    "bottom_up_affine",
    "collate",
    "draw_affine_params",
    "draw_flip",
    "encode_targets",
    "eval_images",
    "flip_bottom_up",
    "gaussian_kernel",
    "get_affine_transform",
    "load_annotations",
    "load_split",
    "normalize_image",
    "read_image",
    "resize_align",
    "resize_matrix",
    "test_sizes",
]
