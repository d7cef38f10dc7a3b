"""Geometry of training augmentation and test-time resizing, as mmpose 0.x does it (non-UDP).

Every image <-> input <-> heatmap mapping of the project lives here, each one returning (or
built from) the 2x3 matrix it uses, so that it can be inverted and tested.

Pixel convention (reference.md §3.3, §4.6): points are pixel INDICES, x = column, y = row; an
affine matrix maps source indices to destination indices and ``cv2.warpAffine`` samples with
the same convention. No +-0.5 pixel-centre correction is applied anywhere, which is why the
1/4 heatmap frame equals the input frame divided by 4 in index terms (input 256 <->
heatmap 64). Checkpoint parity depends on keeping this bias.

Legend: P people, K keypoints, H x W source image, I input side (512), o output (heatmap)
side (128, 256).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

__all__ = [
    "AffineParams",
    "AffineResult",
    "TestSizes",
    "apply_affine",
    "back_project",
    "bottom_up_affine",
    "draw_affine_params",
    "draw_flip",
    "flip_bottom_up",
    "get_affine_transform",
    "resize_align",
    "resize_matrix",
    "test_sizes",
]

Array = npt.NDArray[np.generic]
FloatArray = npt.NDArray[np.floating]
Rng = np.random.Generator | np.random.RandomState

PIXEL_STD = 200.0  # mmpose expresses "scale" in units of 200 pixels
BASE_LENGTH = 64  # test-time input sides are multiples of this


# --------------------------------------------------------------------------------------------
# The affine matrix


def _third_point(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """``a`` rotated by 90 degrees about ``b``, computed in float32 like the reference."""
    d = a - b
    return b + np.array([-d[1], d[0]], dtype=np.float32)


def get_affine_transform(
    center: npt.ArrayLike,
    scale: npt.ArrayLike,
    rotation_deg: float,
    output_size: tuple[int, int] | Sequence[int],
) -> npt.NDArray[np.float64]:
    """2x3 matrix taking a rotated window of the source to an output of size (ow, oh).

    Args:
        center: (x, y) window centre in source pixel indices.
        scale: (sx, sy) window size in units of 200 px. Only ``sx`` is used: the window is
            ``S = sx * 200`` pixels wide and its height follows the output's aspect. A float32
            scale is kept float32 through ``* 200`` (as the training path does).
        rotation_deg: rotation in degrees (the source window is rotated by this angle).
        output_size: (ow, oh) in pixels.

    Returns:
        float64 [2, 3] mapping source pixel indices to destination pixel indices; the scale
        factor is ow / S on both axes and ``center`` lands on (ow/2, oh/2).
    """
    c = np.asarray(center, dtype=np.float64)
    s = np.asarray(scale)
    if s.dtype.kind != "f":
        s = s.astype(np.float64)
    src_w = (s * PIXEL_STD)[0]
    ow, oh = float(output_size[0]), float(output_size[1])

    # Same operation order as the reference (np.pi * r / 180, np.sin/np.cos) so the matrix
    # is bit-identical, not merely close.
    rot_rad = np.pi * rotation_deg / 180
    sn, cs = np.sin(rot_rad), np.cos(rot_rad)
    half = float(src_w * -0.5)
    src_dir = np.array([0.0 * cs - half * sn, 0.0 * sn + half * cs], dtype=np.float64)

    src = np.zeros((3, 2), dtype=np.float32)
    src[0] = c
    src[1] = c + src_dir
    src[2] = _third_point(src[0], src[1])
    dst = np.zeros((3, 2), dtype=np.float32)
    dst[0] = (ow * 0.5, oh * 0.5)
    dst[1] = np.array([ow * 0.5, oh * 0.5]) + np.array([0.0, ow * -0.5])
    dst[2] = _third_point(dst[0], dst[1])
    return np.asarray(cv2.getAffineTransform(src, dst), dtype=np.float64)


def apply_affine(points: npt.ArrayLike, matrix: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Apply a 2x3 matrix to points [..., 2] (pixel indices); returns float64 [..., 2]."""
    p = np.asarray(points)
    shape = p.shape
    flat = p.reshape(-1, 2)
    homogeneous = np.concatenate([flat, np.ones_like(flat[:, :1])], axis=1)
    out = np.dot(homogeneous, np.asarray(matrix, dtype=np.float64).T)
    return np.asarray(out, dtype=np.float64).reshape(shape)


# --------------------------------------------------------------------------------------------
# Training: random affine (reference.md §3.3) and flip (§3.4)


@dataclass(frozen=True)
class AffineParams:
    """The random draws of one training affine.

    scale: aug_scale in [min_scale, max_scale); rotation_deg in [-max_rotation,
    max_rotation); shift: integer (dx, dy) added to the crop centre, source pixels.
    """

    scale: float
    rotation_deg: float
    shift: tuple[int, int]


def _randint(rng: Rng, low: float, high: float) -> int:
    # NumPy truncates float bounds toward zero; int() does the same, so the stream of a
    # RandomState matches the reference's np.random.randint(float, float) draw for draw.
    lo, hi = int(low), int(high)
    if hi <= lo:
        # The reference raises here (images under ~5 px); a zero shift is the sane answer.
        return 0
    if isinstance(rng, np.random.Generator):
        return int(rng.integers(lo, hi))
    return int(rng.randint(lo, hi))


def draw_affine_params(
    rng: Rng,
    width: int,
    height: int,
    *,
    min_scale: float = 0.75,
    max_scale: float = 1.5,
    max_rotation: float = 30.0,
    trans_factor: float = 40.0,
) -> AffineParams:
    """Draw scale, rotation, dx, dy in the reference's order (§3.3) from ``rng``.

    With ``np.random.RandomState(seed)`` the draws equal mmpose's under ``np.random.seed(seed)``.
    The shift bounds are ``+-trans_factor * (side * scale) / 200`` truncated toward zero, so
    dx lies in [trunc(-0.2 w s), trunc(0.2 w s) - 1] for the defaults.
    """
    aug_scale = float(rng.random()) * (max_scale - min_scale) + min_scale
    # The reference scales a float32 (w, h) in place: float32 arithmetic, kept for the bounds.
    img_scale = np.array([width, height], dtype=np.float32) * np.float32(aug_scale)
    aug_rot = (float(rng.random()) * 2 - 1) * max_rotation
    dx = dy = 0
    if trans_factor > 0:
        sw, sh = float(img_scale[0]), float(img_scale[1])
        dx = _randint(rng, -trans_factor * sw / PIXEL_STD, trans_factor * sw / PIXEL_STD)
        dy = _randint(rng, -trans_factor * sh / PIXEL_STD, trans_factor * sh / PIXEL_STD)
    return AffineParams(scale=aug_scale, rotation_deg=aug_rot, shift=(dx, dy))


def draw_flip(rng: Rng, prob: float = 0.5) -> bool:
    """The flip draw that follows the affine draws (one ``random()`` < prob)."""
    return bool(rng.random() < prob)


@dataclass(frozen=True, eq=False)
class AffineResult:
    """Output of :func:`bottom_up_affine`.

    image: [I, I, C] (same dtype as the input image), black outside the source.
    masks: per output resolution, float32 [o, o] in {0, 1}; 1 = pixel counts in the loss,
        0 = ignored (crowd/unlabelled regions and padding outside the source image).
    joints: per output resolution, float32 [P, K, 3]: (x, y) in that heatmap's pixel indices,
        visibility unchanged (points outside the map keep it; the encoder drops them).
    input_matrix: float64 [2, 3] source -> input. output_matrices: per resolution, source ->
        heatmap.
    """

    image: Array
    masks: tuple[npt.NDArray[np.float32], ...]
    joints: tuple[npt.NDArray[np.float32], ...]
    input_matrix: npt.NDArray[np.float64]
    output_matrices: tuple[npt.NDArray[np.float64], ...]


def _crop_window(img_scale: npt.NDArray[np.float32], out_w: int, out_h: int) -> FloatArray:
    """Source window (w, h) for the 'short' scale type, float32 like the reference.

    The window has the output's aspect and its short side equals the scaled image's short side:
    the short side maps onto the output and the long side is cropped.
    """
    w, h = float(img_scale[0]), float(img_scale[1])
    if w / out_w < h / out_h:  # relatively portrait: the width is the short side
        return np.array((w, w / out_w * out_h), dtype=np.float32)
    return np.array((h / out_h * out_w, h), dtype=np.float32)


def _pair(size: int | tuple[int, int] | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int | np.integer):
        return int(size), int(size)
    w, h = size
    return int(w), int(h)


def bottom_up_affine(
    image: Array,
    mask: npt.ArrayLike | None,
    joints: npt.ArrayLike,
    *,
    scale: float,
    rotation_deg: float,
    shift: tuple[int, int] | Sequence[float],
    input_size: int | tuple[int, int],
    output_sizes: Sequence[int],
) -> AffineResult:
    """Deterministic training warp (reference §3.3) from already-drawn parameters.

    Args:
        image: [H, W, C] or [H, W] source image.
        mask: [H, W] valid mask (1 = use in the loss), float or bool; ``None`` = all valid.
        joints: [P, K, 3] (x, y, v) in source pixel indices (computed in float32 like the
            reference).
        scale: aug_scale; the crop window's short side is the scaled image's short side.
        rotation_deg: rotation in degrees.
        shift: (dx, dy) source pixels added to the crop centre (w/2, h/2).
        input_size: I (or (w, h)) of the network input.
        output_sizes: o per output resolution (square heatmaps), e.g. (128,) or (128, 256).

    Each resolution gets its own matrix from the same parameters (joints are never rescaled
    from one map to another), so every frame puts the crop centre at its own middle.
    """
    img = np.asarray(image)
    height, width = img.shape[:2]
    src_mask = np.ones((height, width), np.float32) if mask is None else np.asarray(mask)
    if src_mask.shape[:2] != (height, width):
        raise ValueError(f"mask shape {src_mask.shape} does not match image {img.shape[:2]}")
    pts = np.array(joints, dtype=np.float32)  # reference joints are float32
    if pts.ndim != 3 or pts.shape[2] < 3:
        raise ValueError(f"joints must have shape [P, K, 3], got {pts.shape}")

    center = np.array((width / 2, height / 2)) + np.array(
        (float(shift[0]), float(shift[1])), dtype=np.float64
    )
    img_scale = np.array([width, height], dtype=np.float32) * np.float32(scale)
    mask_u8 = (src_mask.astype(np.float32) * 255).astype(np.uint8)

    masks: list[npt.NDArray[np.float32]] = []
    warped_joints: list[npt.NDArray[np.float32]] = []
    matrices: list[npt.NDArray[np.float64]] = []
    for o in output_sizes:
        o = int(o)
        window = _crop_window(img_scale, o, o)
        mat = get_affine_transform(center, window / np.float32(PIXEL_STD), rotation_deg, (o, o))
        warped = cv2.warpAffine(mask_u8, mat, (o, o))
        # uint8 round trip then > 0.5 (i.e. >= 128): border pixels become 0 = ignored.
        masks.append((warped.astype(np.float32) / 255 > 0.5).astype(np.float32))
        out = pts.copy()
        if out.size:
            out[:, :, 0:2] = apply_affine(pts[:, :, 0:2], mat)
        warped_joints.append(out)
        matrices.append(mat)

    in_w, in_h = _pair(input_size)
    window = _crop_window(img_scale, in_w, in_h)
    mat_in = get_affine_transform(
        center, window / np.float32(PIXEL_STD), rotation_deg, (in_w, in_h)
    )
    out_image = np.asarray(cv2.warpAffine(np.asarray(img), mat_in, (in_w, in_h)))
    return AffineResult(
        image=out_image,
        masks=tuple(masks),
        joints=tuple(warped_joints),
        input_matrix=mat_in,
        output_matrices=tuple(matrices),
    )


def flip_bottom_up(
    image: Array,
    masks: Sequence[npt.NDArray[np.float32]],
    joints_list: Sequence[npt.NDArray[np.float32]],
    flip_index: Sequence[int],
) -> tuple[Array, tuple[npt.NDArray[np.float32], ...], tuple[npt.NDArray[np.float32], ...]]:
    """Horizontal flip of one training sample after the affine (reference §3.4).

    Args:
        image: [I, I, C] input image; its columns are reversed.
        masks: per resolution [o, o]; columns reversed.
        joints_list: per resolution [P, K, 3] in that map's pixel indices; joint slots are
            permuted by ``flip_index`` (left <-> right) and x becomes o - x - 1, with o the
            width of the matching mask.
        flip_index: K ids, e.g. ``KeypointSpec.flip_index``.

    Returns new arrays (image, masks, joints); the inputs are not modified.
    """
    if len(masks) != len(joints_list):
        raise ValueError("one mask per joints array is required")
    index = np.asarray(flip_index, dtype=np.intp)
    out_image = np.ascontiguousarray(np.asarray(image)[:, ::-1])
    out_masks = tuple(np.ascontiguousarray(m[:, ::-1]) for m in masks)
    out_joints = []
    for m, j in zip(masks, joints_list, strict=True):
        o = int(m.shape[1])
        flipped = np.array(j[:, index], copy=True)
        # Pixel-index mirror (column c <-> o - 1 - c), matching the image's column reversal.
        flipped[:, :, 0] = o - flipped[:, :, 0] - 1
        out_joints.append(flipped)
    return out_image, out_masks, tuple(out_joints)


# --------------------------------------------------------------------------------------------
# Test time: sizing (reference.md §4.1), resize, back-projection (§4.6)


@dataclass(frozen=True)
class TestSizes:
    """Test-time geometry of one image.

    base_size: (w, h) of the scale-1 input; heatmaps are aggregated at this size.
    center: (x, y) integers, Python round (half-to-even) of (w/2, h/2).
    scale: (sx, sy) of the scale-1 window in units of 200 px (used by back-projection).
    scales: the test scale factors in DESCENDING order (the order the inputs are run in).
    input_sizes: (w_s, h_s) per entry of ``scales``.
    input_scales: (sx, sy) per entry of ``scales`` (equal to ``scale`` up to truncation).
    """

    base_size: tuple[int, int]
    center: tuple[int, int]
    scale: tuple[float, float]
    scales: tuple[float, ...]
    input_sizes: tuple[tuple[int, int], ...]
    input_scales: tuple[tuple[float, float], ...]


def _ceil_to(value: float, base: int = BASE_LENGTH) -> int:
    return math.ceil(value / base) * base


def _multi_scale_size(
    width: int, height: int, input_wh: tuple[int, int], s: float, s_min: float
) -> tuple[tuple[int, int], tuple[float, float]]:
    # Operation order follows the reference so the float scale values are bit-identical.
    min_w = _ceil_to(s_min * input_wh[0])
    min_h = _ceil_to(s_min * input_wh[1])
    if width < height:
        w_s = int(min_w * s / s_min)
        h_s = int(_ceil_to(min_w / width * height) * s / s_min)
        scale = (width / PIXEL_STD, h_s / w_s * width / PIXEL_STD)
    else:
        h_s = int(min_h * s / s_min)
        w_s = int(_ceil_to(min_h / height * width) * s / s_min)
        scale = (w_s / h_s * height / PIXEL_STD, height / PIXEL_STD)
    return (w_s, h_s), scale


def test_sizes(
    width: int,
    height: int,
    input_size: int | tuple[int, int] = 512,
    scales: Sequence[float] = (1,),
) -> TestSizes:
    """Input sizes, centre and scale of a ``width`` x ``height`` image at test time.

    The short side of the scale-1 input is ``input_size``; the long side keeps the aspect and
    is rounded UP to a multiple of 64 computed at the SMALLEST scale, so single- and
    multi-scale runs may use different base sizes (640x425: 832x512 with (1,), 896x512 with
    (2, 1, 0.5)).
    """
    if not scales:
        raise ValueError("at least one test scale is required")
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    input_wh = _pair(input_size)
    s_min = min(scales)
    ordered = tuple(sorted(scales, reverse=True))
    base_size, base_scale = _multi_scale_size(width, height, input_wh, 1, s_min)
    per_scale = [_multi_scale_size(width, height, input_wh, s, s_min) for s in ordered]
    return TestSizes(
        base_size=base_size,
        center=(round(width / 2.0), round(height / 2.0)),
        scale=base_scale,
        scales=ordered,
        input_sizes=tuple(size for size, _ in per_scale),
        input_scales=tuple(sc for _, sc in per_scale),
    )


def resize_matrix(sizes: TestSizes, scale_index: int = 0) -> npt.NDArray[np.float64]:
    """2x3 matrix image -> input of ``sizes.scales[scale_index]``: uniform scaling by
    h_s/h (landscape) or w_s/w (portrait), centred, padding split on both sides."""
    w_s, h_s = sizes.input_sizes[scale_index]
    center = np.array(sizes.center)  # integer centre, as the reference stores it
    scale = np.array(sizes.input_scales[scale_index], dtype=np.float64)
    return get_affine_transform(center, scale, 0.0, (w_s, h_s))


def resize_align(image: Array, sizes: TestSizes, scale_index: int = 0) -> Array:
    """The image warped to the input of ``sizes.scales[scale_index]``: [h_s, w_s, C], same dtype,
    black padding (cv2 bilinear, constant border)."""
    w_s, h_s = sizes.input_sizes[scale_index]
    matrix = resize_matrix(sizes, scale_index)
    return np.asarray(cv2.warpAffine(np.asarray(image), matrix, (w_s, h_s)))


def back_project(
    points_xy: npt.ArrayLike, sizes: TestSizes, *, scale_index: int | None = None
) -> FloatArray:
    """Map input-frame points [..., 2] back to original-image pixel indices (reference §4.6).

    By default the points are in the base-size (scale-1) frame, where the decoder works:
    x_img = x * (S_x / W) + c_x - S_x / 2 (same for y with S_y / H), S = scale * 200. With
    ``scale_index`` they are in that scale's input frame instead. This is the exact inverse of
    :func:`resize_matrix` in pixel-index coordinates. Computed in float64; returned in the
    input's float dtype (float32 in, float32 out, as the reference stores it).
    """
    p = np.asarray(points_xy)
    out_dtype = p.dtype if p.dtype.kind == "f" else np.dtype(np.float64)
    if scale_index is None:
        (w, h), (sx, sy) = sizes.base_size, sizes.scale
    else:
        (w, h), (sx, sy) = sizes.input_sizes[scale_index], sizes.input_scales[scale_index]
    big_x, big_y = sx * PIXEL_STD, sy * PIXEL_STD
    x = p[..., 0].astype(np.float64)
    y = p[..., 1].astype(np.float64)
    out = np.empty(p.shape, dtype=np.float64)
    out[..., 0] = x * (big_x / w) + sizes.center[0] - big_x * 0.5
    out[..., 1] = y * (big_y / h) + sizes.center[1] - big_y * 0.5
    return out.astype(out_dtype)
