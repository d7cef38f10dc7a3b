"""Data: augmentation geometry, training targets and test-time sizing (reference.md §3-4)."""

from aepose.data.targets import encode_targets, gaussian_kernel
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
    "TestSizes",
    "apply_affine",
    "back_project",
    "bottom_up_affine",
    "draw_affine_params",
    "draw_flip",
    "encode_targets",
    "flip_bottom_up",
    "gaussian_kernel",
    "get_affine_transform",
    "resize_align",
    "resize_matrix",
    "test_sizes",
]
