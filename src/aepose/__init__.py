"""aepose: bottom-up multi-person pose estimation with Associative Embedding.

HRNet and HigherHRNet networks whose weights are mmpose 0.x's, loaded as they are.

>>> import aepose
>>> model = aepose.build_model("hrnet_w32_aic_512")          # random weights
>>> model = aepose.load_model("hrnet_w32_aic_512x512-77e2a98a_20210131.pth")  # doctest: +SKIP
"""

import os
from importlib.metadata import PackageNotFoundError, version

# Decoding runs in worker processes beside the network; OpenMP's default spin-waiting
# after each parallel region burns the cores they need (measured: 6.8 -> 7.6 images/s on
# 2 cores). Only effective when aepose is imported before torch starts OpenMP; a value
# set by the user wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from aepose.checkpoint import load_model
from aepose.config import Config, get_preset, list_presets
from aepose.errors import AeposeError
from aepose.evaluation import evaluate_keypoints
from aepose.grouping import decode_poses
from aepose.inference import Pose, Predictor, predict_images
from aepose.losses import compute_loss
from aepose.models import build_model

try:
    __version__ = version("aepose")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0+unknown"

__all__ = [
    "AeposeError",
    "Config",
    "Pose",
    "Predictor",
    "__version__",
    "build_model",
    "compute_loss",
    "decode_poses",
    "evaluate_keypoints",
    "get_preset",
    "list_presets",
    "load_model",
    "predict_images",
]
