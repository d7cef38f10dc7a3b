"""Fixed-weight golden values: seeded tiny networks on generated crowd images must keep
giving the poses recorded in tests/data/golden_predictions.json.

The other tests prove each step against the reference; this one pins the whole chain so an
unintended change anywhere (resize, flip, aggregation, grouping, back-projection) shows.
Regenerate deliberately with ``AEPOSE_WRITE_GOLDEN=1 pytest tests/test_golden.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from aepose.apps.bench import crowd_images, mimic_trained_maps, realistic_weights
from aepose.config import get_preset
from aepose.data.dataset import normalize_image
from aepose.models import build_model
from aepose.pipeline.predictor import Predictor

GOLDEN = Path(__file__).parent / "data" / "golden_predictions.json"
CASES = {
    "higherhrnet_tiny_crowdpose_128/flip": ("higherhrnet_tiny_crowdpose_128", (1.0,), True),
    "higherhrnet_tiny_crowdpose_128/scales_2_1": ("higherhrnet_tiny_crowdpose_128", (2.0, 1.0),
                                                  True),
    "hrnet_tiny_aic_128/noflip": ("hrnet_tiny_aic_128", (1.0,), False),
}


def predict_case(preset: str, scales: tuple[float, ...], flip: bool) -> list[dict]:
    """Per image: the number of people and the first 8 of them (keypoints and score)."""
    cfg = get_preset(preset)
    torch.manual_seed(7)
    model = realistic_weights(build_model(cfg), seed=7).eval()
    images = crowd_images(2, (200, 150), seed=7)
    mimic_trained_maps(model, cfg, torch.stack([normalize_image(crowd_images(1, (128, 128),
                                                                              seed=8)[0])]))
    predictor = Predictor(model, cfg, scales=scales, flip=flip, channel_order="rgb")
    return [{"people": len(poses),
             "first": [{"keypoints": p.keypoints.round(3).tolist(), "score": round(p.score, 6)}
                       for p in poses[:8]]}
            for poses in predictor.predict_batch(images)]


def test_golden_predictions() -> None:
    got = {name: predict_case(*case) for name, case in CASES.items()}
    if os.environ.get("AEPOSE_WRITE_GOLDEN"):
        GOLDEN.write_text(json.dumps(got))
    golden = json.loads(GOLDEN.read_text())
    assert set(golden) == set(CASES)
    for name in CASES:
        assert [img["people"] for img in got[name]] == [img["people"] for img in golden[name]]
        for mine, theirs in zip(got[name], golden[name], strict=True):
            for a, b in zip(mine["first"], theirs["first"], strict=True):
                np.testing.assert_allclose(a["keypoints"], b["keypoints"], atol=2e-3)
                assert a["score"] == pytest.approx(b["score"], abs=1e-5)
    assert all(img["people"] > 0 for case in golden.values() for img in case)
