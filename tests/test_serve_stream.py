"""``aepose serve``'s ``WS /stream``: tracked poses per frame, drops instead of a backlog,
bad messages answered without closing, the stream limit and the token."""

from __future__ import annotations

import json
import re
import struct
import threading
import time
from typing import Any

import numpy as np
import pytest
import torch
from serve_helpers import jpeg, request, serving, tiny_predictor
from torch import nn

import aepose
from aepose.apps.bench import crowd_images
from aepose.choices import KEYPOINT_THRESHOLD
from aepose.data.coco import decode_image
from aepose.pipeline.api import tracker_config
from aepose.pipeline.predictor import Predictor
from aepose.pipeline.run import track_poses
from aepose.serve.limits import ServeLimits
from aepose.serve.service import ServeSettings
from aepose.tracking.tracker import PoseTracker, TrackerConfig

pytest.importorskip("websockets", reason="pip install 'aepose[serve]'")
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return tiny_predictor()


@pytest.fixture(scope="module")
def scene() -> np.ndarray:
    return crowd_images(1, (200, 150), seed=3)[0]


def _frame(timestamp_ms: float, image: bytes) -> bytes:
    return struct.pack("<d", timestamp_ms) + image


def _ws(url: str, query: str = "") -> Any:
    return connect(url.replace("http://", "ws://") + "/stream" + query, open_timeout=10)


def test_frames_get_tracked_people_with_stable_ids(predictor: Predictor,
                                                   scene: np.ndarray) -> None:
    # The scene moving 3 pixels right per frame: every person keeps one track.
    frames = [jpeg(np.roll(scene, 3 * k, axis=1)) for k in range(5)]
    replies = []
    with serving(predictor) as server, _ws(server.url) as ws:
        for k, data in enumerate(frames):
            ws.send(_frame(1000.0 + 40 * k, data))
            replies.append(json.loads(ws.recv(timeout=30)))
    # The same frames through the driver, tracked by a tracker of the server's settings at
    # the frames' timestamps, with the keypoint threshold applied last (as run() does).
    expected = aepose.predict([decode_image(d, "frame") for d in frames], predictor,
                              channel_order="rgb", track=False, threshold=0)
    tracker = PoseTracker(predictor.spec, TrackerConfig(fps=30.0))
    for k, reply in enumerate(replies):
        assert set(reply) == {"timestamp_ms", "people", "dropped", "latency_ms"}
        assert reply["timestamp_ms"] == 1000.0 + 40 * k
        assert reply["dropped"] == 0 and reply["latency_ms"] > 0
        tracked = [p.with_keypoint_threshold(KEYPOINT_THRESHOLD) for p in track_poses(
            tracker, expected[k].poses, 1000.0 + 40 * k)]
        assert len(reply["people"]) == len(tracked) > 0
        for person, pose in zip(reply["people"], tracked, strict=True):
            assert set(person) == {"track_id", "keypoints", "score"}
            assert person["track_id"] == pose.track_id
            assert person["score"] == pytest.approx(pose.score, abs=1e-5)
            np.testing.assert_allclose(person["keypoints"], pose.keypoints, atol=1e-4)
    ids = [[p["track_id"] for p in reply["people"]] for reply in replies]
    first = {i for i in ids[0] if i >= 0}
    assert first and all(first & set(later) for later in ids[1:])  # people keep their IDs


class _Slow(nn.Module):
    def __init__(self, inner: nn.Module, seconds: float) -> None:
        super().__init__()
        self.inner, self.seconds = inner, seconds

    def forward(self, images: torch.Tensor) -> Any:
        time.sleep(self.seconds)
        return self.inner(images)


def test_frames_sent_faster_than_the_model_runs_are_dropped_and_counted(
        predictor: Predictor, scene: np.ndarray) -> None:
    slow = Predictor(_Slow(predictor.model, 0.3).eval(), predictor.config,
                     channel_order="rgb")
    data = jpeg(scene)
    sent = 8
    with serving(slow) as server, _ws(server.url) as ws:
        for k in range(sent):
            ws.send(_frame(40.0 * k, data))
        replies: list[dict[str, Any]] = []
        while len(replies) + sum(r["dropped"] for r in replies) < sent:
            replies.append(json.loads(ws.recv(timeout=30)))
        with pytest.raises(TimeoutError):  # nothing else is coming
            ws.recv(timeout=0.8)
        text = request(f"{server.url}/metrics")[2].decode()
    dropped = sum(r["dropped"] for r in replies)
    assert dropped >= 1 and len(replies) < sent
    assert replies[-1]["timestamp_ms"] == 40.0 * (sent - 1)  # the newest frame ran
    assert re.search(rf"^aepose_dropped_frames_total {dropped}$", text, flags=re.M)


def test_bad_messages_are_answered_and_the_stream_goes_on(predictor: Predictor,
                                                         scene: np.ndarray) -> None:
    data = jpeg(scene)
    with serving(predictor) as server, _ws(server.url) as ws:
        bad = ["a text message", b"1234", _frame(float("nan"), data), _frame(1.0, b"junk"),
               _frame(2.0, data[: len(data) // 2])]
        for message in bad:
            ws.send(message)
            reply = json.loads(ws.recv(timeout=30))
            assert list(reply) == ["error"] and "\n" not in reply["error"], message[:20]
        ws.send(_frame(10.0, data))
        assert "people" in json.loads(ws.recv(timeout=30))
        ws.send(_frame(5.0, data))  # earlier than the last frame
        assert "not after" in json.loads(ws.recv(timeout=30))["error"]
        ws.send(_frame(20.0, data))
        assert json.loads(ws.recv(timeout=30))["timestamp_ms"] == 20.0


def test_stream_limit_options_and_token(predictor: Predictor, scene: np.ndarray) -> None:
    settings = ServeSettings(token="s3cret", tracker=tracker_config(smooth=True))
    with serving(predictor, ServeLimits(max_streams=1), settings) as server:
        with pytest.raises(InvalidStatus):
            _ws(server.url)
        with pytest.raises(InvalidStatus):
            _ws(server.url, "?token=wrong")
        with _ws(server.url, "?token=s3cret&min_score=0.05") as first:
            first.send(_frame(0.0, jpeg(scene)))
            assert json.loads(first.recv(timeout=30))["people"]
            with _ws(server.url, "?token=s3cret") as second:
                assert "streams are open" in json.loads(second.recv(timeout=10))["error"]
                with pytest.raises(ConnectionClosed) as closed:
                    second.recv(timeout=10)
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
        with _ws(server.url, "?token=s3cret&flip=maybe") as third:
            assert "true or false" in json.loads(third.recv(timeout=10))["error"]
            with pytest.raises(ConnectionClosed):
                third.recv(timeout=10)


def test_streams_batch_with_each_other(predictor: Predictor, scene: np.ndarray) -> None:
    data = jpeg(scene)
    limits = ServeLimits(max_wait_ms=300, max_streams=3)
    replies: list[dict[str, Any]] = []

    def one_stream() -> None:
        with _ws(server.url) as ws:
            ws.send(_frame(0.0, data))
            replies.append(json.loads(ws.recv(timeout=30)))

    # A slow network keeps the device busy with the first frame while the others arrive
    # (an idle device runs a frame at once).
    slow = Predictor(_Slow(predictor.model, 0.3).eval(), predictor.config,
                     channel_order="rgb")
    with serving(slow, limits) as server:
        threads = [threading.Thread(target=one_stream) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        text = request(f"{server.url}/metrics")[2].decode()
    assert len(replies) == 3 and all(r["people"] for r in replies)
    batches = float(re.search(r"^aepose_batch_size_count (\S+)$", text, flags=re.M)[1])
    assert batches - 1 < 3  # the warm-up, then fewer batches than frames


def test_max_fps_spaces_the_frames_and_counts_what_it_drops(predictor: Predictor,
                                                           scene: np.ndarray) -> None:
    data = jpeg(scene)
    sent = 6
    with serving(predictor, ServeLimits(max_fps=2)) as server, _ws(server.url) as ws:
        ws.send(_frame(0.0, data))
        first = json.loads(ws.recv(timeout=30))
        for k in range(1, sent):  # all within the half second before the next may run
            ws.send(_frame(10.0 * k, data))
            time.sleep(0.05)  # the one waiting is taken, then replaced during the pause
        replies = [first]
        while len(replies) + sum(r["dropped"] for r in replies) < sent:
            replies.append(json.loads(ws.recv(timeout=30)))
        with pytest.raises(TimeoutError):
            ws.recv(timeout=1.0)
    # Every frame was answered or counted as dropped (the loop above ended), frames ran at
    # most twice a second (the sends took about 0.25 s), and the newest one ran.
    assert 2 <= len(replies) <= 3 and sum(r["dropped"] for r in replies) >= sent - 3
    assert replies[-1]["timestamp_ms"] == 10.0 * (sent - 1)
