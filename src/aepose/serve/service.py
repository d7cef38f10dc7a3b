"""What the endpoints share: :class:`Service` (the network per device, the batcher, the
metrics, readiness) and :class:`ServeSettings` (what is fixed at start).

A request's image is checked from its header (:func:`~aepose.serve.limits.image_size`),
admitted or refused by the queue before it is decoded, decoded, queued as a
:class:`~aepose.serve.batching.Job`, and its :class:`~aepose.pipeline.prediction.Prediction`
turned into the reply: one image of ``predictions.json`` (:meth:`Service.reply`).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import anyio
import cv2
import numpy as np

import aepose
from aepose.choices import KEYPOINT_THRESHOLD, PREDICT_MIN_SCORE, PREDICT_POSE_NMS
from aepose.data.coco import decode_image
from aepose.errors import AeposeError
from aepose.pipeline.pose import Pose
from aepose.pipeline.prediction import Prediction
from aepose.pipeline.predictor import Predictor
from aepose.pipeline.workers import decode_pool
from aepose.serve.batching import Batcher, Job, PredictorKey, QueueFull, kept, locked_maker
from aepose.serve.limits import RequestError, RequestOptions, ServeLimits, image_size
from aepose.serve.metrics import Metrics
from aepose.tracking.tracker import TrackerConfig

__all__ = ["OVERLAY_QUALITY", "ServeSettings", "Service"]

OVERLAY_QUALITY = 90
"""JPEG quality of the overlays in replies."""
_WARM_UP_SIZE = (256, 192)  # width, height of the warm-up image
logger = logging.getLogger("aepose")


@dataclass(frozen=True)
class ServeSettings:
    """What ``aepose serve`` fixes at start besides its limits: min_score (a request may give
    its own), pose_nms, keypoint_threshold (as ``aepose predict``'s options); tracker: each
    stream's :class:`~aepose.tracking.tracker.PoseTracker` settings; token: the bearer token
    every endpoint but health requires (None: none); weights: as recorded in replies."""

    min_score: float = PREDICT_MIN_SCORE
    pose_nms: float | None = PREDICT_POSE_NMS
    keypoint_threshold: float = KEYPOINT_THRESHOLD
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    token: str | None = None
    weights: str = ""


class Service:
    """The network(s) behind the endpoints: ``predictors`` holds one Predictor per device
    (the first gives the model's config and keypoints); one batch worker runs on each."""

    def __init__(self, predictors: Sequence[Predictor], limits: ServeLimits | None = None,
                 settings: ServeSettings | None = None) -> None:
        if not predictors:
            raise AeposeError("serve: no network to serve")
        self.predictor = predictors[0]
        self.limits = limits or ServeLimits()
        self.settings = settings or ServeSettings()
        self.metrics = Metrics()
        # The pools start (fork) before the batcher's threads do.
        decoders = [decode_pool(p.device, None) for p in predictors]
        self.batcher = Batcher([locked_maker(p) for p in predictors], self.limits, self.metrics,
                               self.settings.pose_nms, decoders)
        self.ready = threading.Event()
        self.body_bytes = 0  # of the request bodies being read or held (app._Body)

    @property
    def spec(self) -> Any:
        return self.predictor.spec

    def key(self, options: RequestOptions) -> PredictorKey:
        """The network-side settings of a request: its own, else the server's."""
        test = self.predictor.config.test
        return (test.flip if options.flip is None else options.flip,
                test.max_people if options.max_people is None else options.max_people)

    def warm_up(self) -> None:
        """One batch run by every worker on its own network (one per device), then ready
        (``/readyz``); a failure is logged in one line and leaves the server unready."""
        width, height = _WARM_UP_SIZE
        image = np.full((height, width, 3), 127, np.uint8)
        key = self.key(RequestOptions())
        try:
            futures = []
            for worker in range(self.batcher.workers):
                self.batcher.reserve(image.nbytes)
                futures.append(self.batcher.submit(Job(image, key, image.nbytes), worker))
            for future in futures:
                future.result()
        except Exception as error:
            logger.error("aepose serve: the warm-up batch failed, not ready: %s",
                         " ".join(str(error).split()))
            return
        self.ready.set()

    def admit(self, data: bytes) -> int:
        """Check an image's header and reserve its place in the queue, before any decoding
        (a refusal costs no work); returns the bytes reserved, which :meth:`submit` takes
        over or :meth:`release` gives back."""
        if not self.ready.is_set():
            raise QueueFull("the server is warming up")
        width, height = image_size(data, self.limits)
        nbytes = width * height * 3
        self.batcher.reserve(nbytes)
        return nbytes

    def release(self, nbytes: int) -> None:
        self.batcher.release(nbytes)

    def decode(self, data: bytes) -> np.ndarray:
        """RGB uint8 [H, W, 3] of checked image bytes (:meth:`admit`); 400 when they do not
        decode."""
        try:
            return decode_image(data, "the image")
        except AeposeError as error:
            raise RequestError(400, str(error)) from None

    def submit(self, image: np.ndarray, options: RequestOptions, nbytes: int
               ) -> Future[Prediction]:
        """Queue one decoded image in the place :meth:`admit` reserved (``nbytes``)."""
        return self.batcher.submit(Job(image, self.key(options), nbytes))

    async def predict(self, data: bytes, options: RequestOptions) -> Prediction:
        """The Prediction of one image's bytes: checked, admitted, decoded off the event
        loop, then run in a batch."""
        nbytes = self.admit(data)
        try:
            image = await anyio.to_thread.run_sync(self.decode, data)
        except BaseException:
            self.release(nbytes)
            raise
        return await asyncio.wrap_future(self.submit(image, options, nbytes))

    def people(self, prediction: Prediction, options: RequestOptions) -> list[Pose]:
        """The people of a request's Prediction that its min_score keeps (the keypoint
        threshold not yet applied: a stream's tracker sees the decoder's scores)."""
        if prediction.error is not None:
            raise RequestError(400, prediction.error.replace("request 0: ", "", 1))
        low = self.settings.min_score if options.min_score is None else options.min_score
        return kept(prediction.poses, low)

    def marked(self, poses: Sequence[Pose]) -> list[Pose]:
        """``poses`` with keypoints under the keypoint threshold given score 0."""
        return [p.with_keypoint_threshold(self.settings.keypoint_threshold) for p in poses]

    def reply(self, prediction: Prediction, options: RequestOptions) -> dict[str, Any]:
        """``POST /predict``'s JSON: the model and settings, the keypoints' names and
        skeleton, then the image as an entry of ``predictions.json`` (width, height,
        people) and, when asked, ``overlay``: a JPEG data URL of the drawing."""
        people = self.marked(self.people(prediction, options))
        flip, max_people = self.key(options)
        cfg = self.predictor.config
        reply: dict[str, Any] = {
            "aepose": aepose.__version__,
            "model": {"preset": cfg.name, "weights": self.settings.weights},
            "test": {**dataclasses.asdict(cfg.test), "flip": flip, "max_people": max_people,
                     "pose_nms": self.settings.pose_nms,
                     "min_score": (self.settings.min_score if options.min_score is None
                                   else options.min_score),
                     "keypoint_threshold": self.settings.keypoint_threshold},
            "keypoint_names": list(self.spec.keypoint_names),
            "skeleton": [list(link) for link in self.spec.skeleton],
            "width": prediction.width, "height": prediction.height,
            "people": [p.to_dict() for p in people],
        }
        if options.overlay:
            drawn = dataclasses.replace(prediction, poses=people).plot(channel_order="bgr")
            ok, jpeg = cv2.imencode(".jpg", drawn, [cv2.IMWRITE_JPEG_QUALITY, OVERLAY_QUALITY])
            if not ok:
                raise AeposeError("the overlay could not be encoded as JPEG")
            reply["overlay"] = ("data:image/jpeg;base64,"
                                + base64.b64encode(jpeg.tobytes()).decode("ascii"))
        return reply
