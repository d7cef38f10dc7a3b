"""``aepose serve`` with an exported ONNX file: the batch worker's threads run it in ONNX
Runtime through the same forward lock, and every reply is what ``aepose.predict`` gives
for the same file."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from serve_helpers import TINY, jpeg, post_image, serving, tiny_predictor

import aepose
from aepose.apps.bench import crowd_images
from aepose.data.coco import decode_image
from aepose.pipeline.predictor import Predictor
from aepose.serve.limits import ServeLimits

pytest.importorskip("starlette", reason="pip install 'aepose[serve]'")


@pytest.fixture(scope="module")
def onnx_predictor(tmp_path_factory: pytest.TempPathFactory) -> Predictor:
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")
    from aepose.apps.export import export_onnx

    torch_predictor = tiny_predictor()
    path = export_onnx(torch_predictor.model, tmp_path_factory.mktemp("onnx") / "tiny.onnx",
                       config=torch_predictor.config, input_size=128)
    return Predictor.from_checkpoint(path, channel_order="rgb")


@pytest.mark.slow
def test_an_onnx_file_serves_concurrent_requests_as_predict_runs_it(
        onnx_predictor: Predictor) -> None:
    assert onnx_predictor.config.name == TINY
    images = [jpeg(image) for image in crowd_images(6, (200, 150), seed=21)]
    with (serving(onnx_predictor, ServeLimits(max_batch=4, max_wait_ms=50)) as server,
          ThreadPoolExecutor(6) as clients):
        replies = list(clients.map(lambda data: post_image(server.url, data, "?min_score=0"),
                                   images))
    expected = aepose.predict([decode_image(data, "test") for data in images], onnx_predictor,
                              channel_order="rgb", min_score=0)
    found = 0
    for (status, reply), own in zip(replies, expected, strict=True):
        assert status == 200, reply
        assert len(reply["people"]) == len(own.poses)
        for got, want in zip(reply["people"], own.poses, strict=True):
            np.testing.assert_allclose(np.asarray(got["keypoints"])[:, :2],
                                       want.keypoints[:, :2], atol=1e-3)
            assert got["score"] == pytest.approx(want.score, abs=1e-5)
        found += len(own.poses)
    assert found > 0
