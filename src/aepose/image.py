"""What an image array must be, checked in one place: uint8 [H, W, 3], in a stated channel
order. Every stage that takes an array (the predictor's input, the pipeline's preprocess,
drawing, training normalisation) checks it here, so the refusal reads the same everywhere.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from aepose.errors import AeposeError

__all__ = ["CHANNEL_ORDERS", "ChannelOrder", "check_channel_order", "check_rgb", "to_rgb"]

ChannelOrder = Literal["bgr", "rgb"]
"""The order of an array's colour channels: ``"bgr"`` (OpenCV's ``cv2.imread``, mmpose 0.x's
and ultralytics' convention for arrays: the default) or ``"rgb"`` (PIL, imageio, matplotlib,
``aepose.data.read_image``)."""

CHANNEL_ORDERS: tuple[str, ...] = ("bgr", "rgb")


def check_channel_order(channel_order: str) -> ChannelOrder:
    """``channel_order`` if it is one of :data:`CHANNEL_ORDERS`, else a one-line AeposeError."""
    if channel_order == "bgr":
        return "bgr"
    if channel_order == "rgb":
        return "rgb"
    raise AeposeError(f"channel_order must be 'bgr' or 'rgb', got {channel_order!r}")


def check_rgb(image: Any, expected: str = "an RGB uint8 array [H, W, 3]"
              ) -> npt.NDArray[np.uint8]:
    """``image`` if it is a non-empty uint8 array [H, W, 3]; else one AeposeError line
    ``expected <expected>, got <what it is>``."""
    if (not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3
            or image.shape[2] != 3 or image.shape[0] == 0 or image.shape[1] == 0):
        what = (f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray)
                else type(image).__name__)
        raise AeposeError(f"expected {expected}, got {what}")
    return image


def to_rgb(image: Any, channel_order: str = "bgr", *, or_path: bool = False
           ) -> npt.NDArray[np.uint8]:
    """RGB uint8 [H, W, 3] of a uint8 array [H, W, 3] whose channels are in
    ``channel_order`` (a BGR array is reversed, an RGB one returned as it is).
    ``or_path``: the caller also takes a file path, and the refusal says so."""
    order = check_channel_order(channel_order)
    wanted = f"a {order.upper()} uint8 array [H, W, 3]"
    checked = check_rgb(image, f"an image path or {wanted}" if or_path else wanted)
    # Contiguous: OpenCV's resize refuses the negative strides of a reversed view.
    return np.ascontiguousarray(checked[..., ::-1]) if order == "bgr" else checked
