"""``aepose.predict()``: the Python API over the one driver (:func:`aepose.pipeline.run.run`).

:func:`predict` takes every option of ``aepose predict`` as a keyword of the same name,
builds (or reuses) the :class:`~aepose.pipeline.predictor.Predictor`, refuses live sources
and keeps every result; :func:`tracker_config` and :func:`offline_config` turn the tracking
options (the command line's too) into the trackers' configs.
"""

from __future__ import annotations

import contextlib
import inspect
from pathlib import Path
from typing import Any

import torch
from torch import nn

from aepose.choices import (
    KEYPOINT_THRESHOLD,
    PREDICT_MIN_SCORE,
    PREDICT_POSE_NMS,
    SMOOTH_BETA,
    SMOOTH_MIN_CUTOFF,
    TRACK_MAX_AGE,
    TRACK_MIN_SCORE,
    TRACK_MIN_SIMILARITY,
    TRACK_MODES,
)
from aepose.config import TestConfig, did_you_mean
from aepose.device import default_device
from aepose.errors import AeposeError
from aepose.image import check_channel_order
from aepose.models.checkpoint import load_with_config
from aepose.pipeline.engine import READ_AHEAD_BYTES
from aepose.pipeline.inputs import Source, expand_inputs
from aepose.pipeline.network import FastNetwork
from aepose.pipeline.prediction import Prediction
from aepose.pipeline.predictor import Predictor
from aepose.pipeline.run import RunOptions, run
from aepose.tracking.offline import OfflineConfig
from aepose.tracking.one_euro import OneEuroConfig
from aepose.tracking.tracker import TrackerConfig

__all__ = ["offline_config", "predict", "tracker_config"]


def predict(
    source: Source,
    weights: str | Path | Predictor,
    *,
    preset: str | None = None,
    device: str | torch.device | None = None,
    channel_order: str | None = None,
    batch_size: int = 8,
    recursive: bool = False,
    min_score: float = PREDICT_MIN_SCORE,
    pose_nms: float | None = PREDICT_POSE_NMS,
    threshold: float = KEYPOINT_THRESHOLD,
    workers: int = 2,
    decode_workers: int | None = None,
    keep_images: bool = False,
    read_ahead_bytes: int = READ_AHEAD_BYTES,
    track: bool | str | TrackerConfig | OfflineConfig = True,
    track_max_age: int | None = None,
    track_min_similarity: float | None = None,
    track_min_score: float | None = None,
    smooth: bool | None = None,
    smooth_min_cutoff: float | None = None,
    smooth_beta: float | None = None,
    max_frames: int | None = None,
    duration: float | None = None,
    dtype: str = "fp32",
    channels_last: bool = False,
    compile: bool = False,
    compile_mode: str | None = None,
    **settings: Any,
) -> list[Prediction]:
    """Poses of every image of ``source``, in order: one :class:`Prediction` per image or
    video frame (``list(run(...))`` with the first error raised).

    Every option of ``aepose predict`` is a keyword of the same name (``--min-score`` is
    ``min_score``; ``--no-flip``, ``--no-track`` are ``flip=False``, ``track=False``); the
    options that write files (``--out``, ``--no-draw``, ``--overwrite``) have
    :meth:`Prediction.save` instead. An unknown keyword is one line with a did-you-mean.

    Args:
        source: an image file, a folder (its images, sorted), a glob pattern
            (``"shots/*.jpg"``), a video file or video URL (every frame), an image
            sequence (``"frames/%05d.png"``), a uint8 array [H, W, 3] in
            ``channel_order``, or a list of any of these. Live sources (cameras,
            ``rtsp://``) are refused: they never end, and every result is kept.
        weights: a weights file, a preset name with released weights, an mmpose release file
            name or a URL (fetched once into the cache, :mod:`aepose.hub`), or a
            :class:`~aepose.pipeline.predictor.Predictor` to reuse (then no test settings,
            ``preset``, ``device`` or network options).
        preset, device: as :meth:`Predictor.from_checkpoint` (default: recognised from the
            weights; CUDA when available).
        channel_order: "bgr" (the default, as ``cv2.imread`` returns) or "rgb": the order of
            the arrays' channels (default: a given Predictor's own); files are decoded
            correctly either way.
        batch_size: most images per forward pass; workers: reading threads;
            decode_workers: decoding workers (see :class:`RunOptions`).
        recursive: also take images from the subfolders of a folder.
        min_score, pose_nms, threshold: which people and keypoints (:class:`RunOptions`'
            ``min_score``, ``pose_nms``, ``keypoint_threshold``); ``min_score=0,
            pose_nms=None, threshold=0`` gives every person the decoder grouped, with every
            keypoint's own score, as ``aepose test`` scores them.
        keep_images: keep each image (RGB) in its Prediction, for :meth:`Prediction.plot`
            of video frames (images are read again from their files; arrays are kept).
        read_ahead_bytes: the memory budget of reading ahead (:class:`RunOptions`).
        track: videos: give each person a ``track_id`` that persists across frames, one
            :class:`~aepose.tracking.tracker.PoseTracker` per video, as ``aepose predict``
            does: True or "online" (configured by ``track_max_age``,
            ``track_min_similarity``, ``track_min_score``, ``smooth``,
            ``smooth_min_cutoff``, ``smooth_beta``: see :func:`tracker_config`), or a
            TrackerConfig; "offline" (the same keywords; ``smooth`` is then on unless
            False) or an :class:`~aepose.tracking.offline.OfflineConfig`: each video's
            poses are tracked once all are known (:mod:`aepose.tracking.offline`: tracks
            re-linked across gaps, gaps filled with people marked ``interpolated``,
            smoothing forwards and backwards); False: no ``track_id``.
        max_frames, duration: stop each video after this many frames / seconds.
        dtype, channels_last, compile, compile_mode: the network's fast paths
            (:class:`~aepose.pipeline.network.FastNetwork`).
        settings: the Predictor's ``test=`` (a :class:`~aepose.config.TestConfig`) and test
            settings overriding the preset's: ``scales``, ``flip``, ``stage_average``,
            ``detection_threshold``... (see :class:`~aepose.pipeline.predictor.Predictor`).

    A source that yields nothing (missing file, empty folder, unsupported type) or an image
    that cannot be read raises a one-line :class:`~aepose.errors.AeposeError` naming it.
    """
    _check_keywords(settings)
    if not (isinstance(track, bool | TrackerConfig | OfflineConfig) or track in TRACK_MODES):
        raise TypeError(f"predict: track must be True, False or a TrackerConfig, or one of "
                        f"{', '.join(map(repr, TRACK_MODES))} or an OfflineConfig, got "
                        f"{track!r}")
    tracking = {"track_max_age": track_max_age, "track_min_similarity": track_min_similarity,
                "track_min_score": track_min_score, "smooth": smooth,
                "smooth_min_cutoff": smooth_min_cutoff, "smooth_beta": smooth_beta}
    given: dict[str, Any] = {name: value for name, value in tracking.items()
                             if value is not None}
    if given and not (track is True or isinstance(track, str)):
        raise AeposeError(f"{next(iter(given))} would be ignored with track={track!r}: give it "
                          "in the TrackerConfig, or drop track=False")
    network = {"dtype": dtype, "channels_last": channels_last,
               "compile_mode": compile_mode or ("default" if compile else None)}
    predictor = _predictor(weights, preset, device, channel_order or "bgr", network, settings)
    order = predictor.channel_order if channel_order is None else check_channel_order(
        channel_order)
    inputs = expand_inputs(source, recursive=recursive, channel_order=order)
    if inputs.problems:
        raise AeposeError(inputs.problems[0])
    if not inputs.items:
        raise AeposeError("no images to predict on (empty source list)")
    live = next((i for i in inputs.items if i.video is not None and i.video.live), None)
    if live is not None:
        raise AeposeError(
            f"{live.name}: a live source (camera or stream) never ends, and predict() keeps "
            "every frame's poses in memory; use 'aepose predict', or aepose.pipeline.run.run")
    options = RunOptions(
        batch_size=batch_size, read_workers=workers, decode_workers=decode_workers,
        keep_images=keep_images, min_score=min_score, pose_nms=pose_nms,
        keypoint_threshold=threshold, max_frames=max_frames, duration_s=duration, drop=False,
        read_ahead_bytes=read_ahead_bytes,
        tracker=_tracking(track, given))
    out = []
    with contextlib.closing(run(inputs, predictor, options)) as results:
        for result in results:
            if result.error is not None:
                raise AeposeError(result.error)
            out.append(result)
    return out


def _tracking(track: bool | str | TrackerConfig | OfflineConfig, given: dict[str, Any]
              ) -> TrackerConfig | OfflineConfig | None:
    """:func:`predict`'s ``track`` and tracking keywords as :class:`RunOptions`' tracker."""
    if track is False:
        return None
    if isinstance(track, TrackerConfig | OfflineConfig):
        return track
    if track == "offline":
        return offline_config(**given)
    return tracker_config(**given)


def offline_config(*, smooth: bool | None = None, smooth_min_cutoff: float | None = None,
                   smooth_beta: float | None = None, **online: Any) -> OfflineConfig:
    """The :class:`~aepose.tracking.offline.OfflineConfig` of ``aepose predict --track
    offline``: the online tracking options as in :func:`tracker_config`; smoothing (both
    ways) on unless ``smooth`` is False."""
    smoothing = smooth is not False
    if not smoothing and (smooth_min_cutoff is not None or smooth_beta is not None):
        raise AeposeError("smooth_min_cutoff and smooth_beta would be ignored with "
                          "smooth=False")
    euro = OneEuroConfig(
        min_cutoff=SMOOTH_MIN_CUTOFF if smooth_min_cutoff is None else smooth_min_cutoff,
        beta=SMOOTH_BETA if smooth_beta is None else smooth_beta)
    return OfflineConfig(online=tracker_config(**online), smooth=smoothing, one_euro=euro)


def tracker_config(*, track_max_age: int = TRACK_MAX_AGE,
                   track_min_similarity: float = TRACK_MIN_SIMILARITY,
                   track_min_score: float = TRACK_MIN_SCORE, smooth: bool = False,
                   smooth_min_cutoff: float | None = None,
                   smooth_beta: float | None = None) -> TrackerConfig:
    """The :class:`~aepose.tracking.tracker.TrackerConfig` of ``aepose predict``'s tracking
    options, by their names there (``--track-max-age`` ...). The smoothing's two settings
    act only with ``smooth``: given without it they are refused (they would be ignored)."""
    if not smooth and (smooth_min_cutoff is not None or smooth_beta is not None):
        raise AeposeError("smooth_min_cutoff and smooth_beta would be ignored without smooth")
    euro = OneEuroConfig(
        min_cutoff=SMOOTH_MIN_CUTOFF if smooth_min_cutoff is None else smooth_min_cutoff,
        beta=SMOOTH_BETA if smooth_beta is None else smooth_beta)
    return TrackerConfig(max_age=track_max_age, smooth=smooth, one_euro=euro,
                         min_similarity=track_min_similarity, min_score=track_min_score)


# ``aepose predict`` options with no keyword of that name here, and what to write instead.
_OTHER_SPELLINGS = {
    "conf": "min_score (ultralytics' conf)",
    "no_flip": "flip=False",
    "no_track": "track=False",
    "kpt_thr": "threshold",
    "keypoint_threshold": "threshold",
    "read_workers": "workers",
    "duration_s": "duration",
    "set": "the test settings as keywords (detection_threshold=0.2)",
    "overrides": "the test settings as keywords (detection_threshold=0.2)",
    "out": "result.save(path) for each result: predict() writes no files",
    "no_draw": "nothing: predict() draws only on result.plot() or result.save(path)",
    "overwrite": "nothing: predict() writes no files (result.save(path) replaces path)",
    "no_drop": "nothing: predict() reads every frame of files and refuses live sources",
    "backend": "weights='model.onnx': an ONNX file runs in ONNX Runtime by itself",
}


def _check_keywords(settings: dict[str, Any]) -> None:
    """Refuse a keyword that is neither :func:`predict`'s own nor a test setting, in one
    line with what was probably meant."""
    known = {"test", *TestConfig.__dataclass_fields__}
    for name in settings:
        if name in known:
            continue
        if name in _OTHER_SPELLINGS:
            raise AeposeError(f"predict() got the keyword {name!r}; use "
                              f"{_OTHER_SPELLINGS[name]}")
        own = [p for p in inspect.signature(predict).parameters if p not in ("source",
                                                                           "settings")]
        raise AeposeError(f"predict() got an unknown keyword {name!r}"
                          f"{did_you_mean(name, [*own, *sorted(known)])}")


def _predictor(weights: str | Path | Predictor, preset: str | None,
               device: str | torch.device | None, order: str, network: dict[str, Any],
               settings: dict[str, Any]) -> Predictor:
    fast = network["dtype"] != "fp32" or network["channels_last"] or network["compile_mode"]
    if isinstance(weights, Predictor):
        if settings or preset is not None or device is not None or fast:
            raise AeposeError("give test settings, preset, device and network options to the "
                              "Predictor itself, not to predict() with a Predictor")
        return weights
    model: nn.Module
    model, config = load_with_config(weights, preset=preset, device=device or default_device())
    if fast:
        model = FastNetwork(model, dtype=network["dtype"],
                            channels_last=network["channels_last"],
                            compile=network["compile_mode"]).eval()
    return Predictor(model, config, channel_order=order, **settings)
