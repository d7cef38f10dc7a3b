"""aepose: bottom-up multi-person pose estimation with Associative Embedding.

HRNet and HigherHRNet networks whose weights are mmpose 0.x's, loaded as they are.

>>> import aepose
>>> model = aepose.build_model("hrnet_w32_aic_512")          # random weights
>>> model = aepose.load_model("hrnet_w32_aic_512x512-77e2a98a_20210131.pth")  # doctest: +SKIP

The public names are imported on first use (PEP 562), so that ``import aepose`` and the
command line's ``--help`` do not pay for torch (about 1.5 s) until something needs it.
"""

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("aepose")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0+unknown"

# public name -> module that defines it
_LAZY: dict[str, str] = {
    "AeposeError": "aepose.errors",
    "Config": "aepose.config",
    "Pose": "aepose.pipeline.pose",
    "Prediction": "aepose.pipeline.prediction",
    "Predictor": "aepose.pipeline.predictor",
    "build_model": "aepose.models",
    "compute_loss": "aepose.engine.losses",
    "decode_poses": "aepose.codec.decode",
    "evaluate_keypoints": "aepose.engine.evaluation",
    "get_preset": "aepose.config",
    "list_presets": "aepose.config",
    "load_model": "aepose.models.checkpoint",
    "predict": "aepose.pipeline.api",
    "predict_images": "aepose.pipeline.predictor",
    "preprocess": "aepose.pipeline.predictor",
}

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time __getattr__ imports
    from aepose.codec.decode import decode_poses
    from aepose.config import Config, get_preset, list_presets
    from aepose.engine.evaluation import evaluate_keypoints
    from aepose.engine.losses import compute_loss
    from aepose.errors import AeposeError
    from aepose.models import build_model
    from aepose.models.checkpoint import load_model
    from aepose.pipeline.api import predict
    from aepose.pipeline.pose import Pose
    from aepose.pipeline.prediction import Prediction
    from aepose.pipeline.predictor import Predictor, predict_images, preprocess


def __getattr__(name: str) -> Any:
    """Import a public name's module on first access and cache the name here."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'aepose' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "AeposeError",
    "Config",
    "Pose",
    "Prediction",
    "Predictor",
    "__version__",
    "build_model",
    "compute_loss",
    "decode_poses",
    "evaluate_keypoints",
    "get_preset",
    "list_presets",
    "load_model",
    "predict",
    "predict_images",
    "preprocess",
]
