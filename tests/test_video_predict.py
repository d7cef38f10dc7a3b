"""``aepose predict`` on videos and streams: track IDs, smoothing, overlays, sources (issue 15).

The network is a tiny random one (it runs, so reading, the pipeline and the writers are the
real ones); where IDs are asserted, the people each frame "detects" are the generated clip's
ground truth with jitter (``_people`` patched), so the assertions do not depend on what an
untrained network happens to find. Streams are served from 127.0.0.1 by a thread; live
reading is tested with a fake capture. No test touches the network or a camera.
"""

from __future__ import annotations

import http.server
import importlib
import json
import os
import re
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from helpers import lively

from aepose.apps.predict import PredictOptions, run_predict
from aepose.apps.predictions import OVERLAYS_NAME
from aepose.config import get_preset
from aepose.errors import AeposeError
from aepose.keypoints import get_spec
from aepose.pipeline.draw import draw_poses, person_color, save_image, track_color
from aepose.pipeline.pose import Pose
from aepose.pipeline.predictor import Predictor
from aepose.synth.video import sequence_truth, write_sequence
from aepose.tracking.tracker import TrackerConfig
from aepose.video.readers import LatestFrames, open_video
from aepose.video.sources import expand_sources

predict_module = importlib.import_module("aepose.apps.predict")
run_module = importlib.import_module("aepose.pipeline.run")

TINY = "higherhrnet_tiny_crowdpose_128"
SIZE = (160, 128)  # W, H
FRAMES = 40  # long enough for walking speeds of a few pixels a frame
SEED = 0  # a clip whose people cross (boxes overlap in 36 pairs of people over the frames)


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor(lively(TINY, seed=1).eval(), get_preset(TINY), flip=False)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("clip")
    video, _ = write_sequence(folder, "crowdpose", frames=FRAMES, people=3, size=SIZE,
                              seed=SEED, name="clip")
    return video


def _options(**kw: Any) -> PredictOptions:
    return PredictOptions(read_workers=0, decode_workers=0, progress=False, **kw)


def _run(sources: list[str], predictor: Predictor, out: Path, **kw: Any) -> dict[str, Any]:
    summary = run_predict(sources, predictor, out, _options(**kw))
    assert summary.json_path is not None, summary.problems
    doc: dict[str, Any] = json.loads(summary.json_path.read_text())
    return doc


def _truth_detections(jitter: float = 0.0) -> tuple[dict[str, Any], list[list[Pose]]]:
    """The clip's truth, and per frame its people as detections (visible joints score 0.9,
    people 0.9), with Gaussian jitter in pixels."""
    truth = sequence_truth("crowdpose", frames=FRAMES, people=3, size=SIZE, seed=SEED)
    rng = np.random.default_rng(0)
    detections = []
    for frame in truth["frames"]:
        poses = []
        for person in frame["people"]:
            kpts = np.asarray(person["keypoints"], np.float32).reshape(-1, 3)
            kpts[:, 2] = np.where(kpts[:, 2] > 0, 0.9, 0.0)
            kpts[:, :2] += rng.normal(0, jitter, kpts[:, :2].shape) if jitter else 0.0
            if (kpts[:, 2] > 0).sum() >= 3:
                poses.append(Pose(kpts, 0.9))
        detections.append(poses)
    return truth, detections


def _truth_people(monkeypatch: pytest.MonkeyPatch, jitter: float = 0.0) -> dict[str, Any]:
    """Make every frame's detections the clip's truth (:func:`_truth_detections`); returns
    the truth."""
    truth, detections = _truth_detections(jitter)

    def people(driver: Any, result: Any) -> list[Pose]:
        return list(detections[result.item[0]])

    monkeypatch.setattr(run_module._Driver, "_people", people)
    return truth


def _frames_of(doc: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [entry for entry in doc["images"] if entry["file_name"].endswith(name)]


def _read_mp4(path: Path) -> tuple[str, int, tuple[int, int]]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
        return stream.codec_context.name, len(frames), (frames[0].width, frames[0].height)


# ---------------------------------------------------------------------------------------
# Tracking end to end


def test_tracked_video_ids_follow_people_and_only_increase(
    predictor: Predictor, clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    truth = _truth_people(monkeypatch, jitter=1.0)
    doc = _run([str(clip)], predictor, tmp_path / "out")
    frames = _frames_of(doc, "clip.mp4")
    assert [f["frame"] for f in frames] == list(range(FRAMES))
    first = frames[0]
    assert set(first) == {"id", "file_name", "frame", "timestamp_ms", "width", "height",
                          "people"}
    assert (first["width"], first["height"]) == SIZE
    settings = doc["tracker"]  # the tracker's settings, recorded in the header
    assert (settings["max_age"], settings["min_score"], settings["one_euro"]["beta"]) == (
        30, 0.2, 10.0) and "fps" not in settings
    assert frames[3]["timestamp_ms"] == pytest.approx(3 * 1000 / 25)
    # Each true person keeps one ID (detections listed in truth order, minus weak ones).
    ids_of: dict[int, set[int]] = {}
    seen_order: list[int] = []
    for entry, record in zip(frames, truth["frames"], strict=True):
        listed = [p for p in record["people"]
                  if (np.asarray(p["keypoints"])[2::3] > 0).sum() >= 3]
        assert len(entry["people"]) == len(listed)
        for person, true in zip(entry["people"], listed, strict=True):
            assert set(person) == {"keypoints", "score", "bbox", "track_id"}
            ids_of.setdefault(true["track_id"], set()).add(person["track_id"])
            if person["track_id"] not in seen_order:
                seen_order.append(person["track_id"])
    assert all(len(ids) == 1 for ids in ids_of.values()), ids_of
    assert len({next(iter(ids)) for ids in ids_of.values()}) == len(ids_of)
    assert seen_order == sorted(seen_order) and min(seen_order) >= 0  # new IDs only increase
    codec, count, size = _read_mp4(tmp_path / "out" / "clip.mp4")
    assert (codec, count, size) == ("h264", FRAMES, SIZE)


def test_predict_function_tracks_each_video(
    predictor: Predictor, clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import aepose

    truth, detections = _truth_detections(jitter=1.0)

    def run(**kw: Any) -> list[list[int | None]]:
        frames = iter(detections + detections)  # the clip twice: two videos
        monkeypatch.setattr(predictor, "poses", lambda *_: list(next(frames)))
        got = aepose.predict([clip, clip], predictor, **kw)
        assert [p.frame for p in got] == list(range(FRAMES)) * 2
        return [[pose.track_id for pose in p.poses] for p in got]

    ids = run()
    # Each true person keeps one ID; the second video starts again from ID 0.
    for video in (ids[:FRAMES], ids[FRAMES:]):
        ids_of: dict[int, set[int | None]] = {}
        for frame_ids, record in zip(video, truth["frames"], strict=True):
            listed = [p["track_id"] for p in record["people"]
                      if (np.asarray(p["keypoints"])[2::3] > 0).sum() >= 3]
            for track_id, true_id in zip(frame_ids, listed, strict=True):
                ids_of.setdefault(true_id, set()).add(track_id)
        assert sorted(i for v in ids_of.values() for i in v) == list(range(len(ids_of)))
    assert ids[FRAMES:] == ids[:FRAMES]
    assert all(i is None for frame in run(track=False) for i in frame)
    strict = TrackerConfig(min_score=0.95)  # above every person's 0.9: nobody is tracked
    assert all(i == -1 for frame in run(track=strict) for i in frame)
    for wrong in ("yes", {"max_age": 5}, None):
        with pytest.raises(TypeError, match="track must be True, False or a TrackerConfig"):
            aepose.predict(clip, predictor, track=wrong)  # type: ignore[arg-type]


def test_predict_function_restarts_tracks_when_a_video_starts_past_frame_0(
    predictor: Predictor, clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import aepose
    import aepose.pipeline.run

    _, detections = _truth_detections(jitter=1.0)
    frames = iter(detections + detections[1:])
    monkeypatch.setattr(predictor, "poses", lambda *_: list(next(frames)))
    opened = []
    real = aepose.pipeline.run.open_video

    class LosesFrame0:
        def __init__(self, reader: Any) -> None:
            self.reader = reader
            self.dropped, self.problem = 0, None

        def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
            return self

        def __next__(self) -> tuple[int, np.ndarray]:
            index, frame = next(self.reader)
            return next(self.reader) if index == 0 else (index, frame)

        def close(self) -> None:
            self.reader.close()

    def second_loses_frame_0(media: Any, drop: bool) -> tuple[Any, Any]:
        opened.append(media)
        info, reader = real(media, drop=drop)
        # Each video is opened once, when it is read: the 2nd is the second video.
        return info, (LosesFrame0(reader) if len(opened) == 2 else reader)

    monkeypatch.setattr(aepose.pipeline.run, "open_video", second_loses_frame_0)
    got = aepose.predict([clip, clip], predictor)
    assert [p.frame for p in got] == list(range(FRAMES)) + list(range(1, FRAMES))
    ids = [[pose.track_id for pose in p.poses] for p in got]
    # The second video is tracked afresh from its first decoded frame: the first video's
    # tracks do not carry over, so its IDs are the first video's from frame 1 on.
    assert ids[FRAMES:] == ids[1:FRAMES]


def test_smoothing_changes_keypoints_but_not_ids(
    predictor: Predictor, clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _truth_people(monkeypatch, jitter=2.0)
    raw = _run([str(clip)], predictor, tmp_path / "raw", draw=False)
    smooth = _run([str(clip)], predictor, tmp_path / "smooth", draw=False,
                  tracker=TrackerConfig(smooth=True))
    ids = [[p["track_id"] for p in f["people"]] for f in raw["images"]]
    assert ids == [[p["track_id"] for p in f["people"]] for f in smooth["images"]]
    moved = []
    for a, b in zip(raw["images"], smooth["images"], strict=True):
        for p, q in zip(a["people"], b["people"], strict=True):
            moved.append(np.abs(np.subtract(p["keypoints"], q["keypoints"])).max())
    assert moved[0] == 0.0  # a track's first frame passes unchanged (nothing held back)
    # Smoothed, not replaced: within a few jitter widths of the raw detection.
    assert 0.0 < max(moved) < 20.0


@pytest.mark.parametrize("stop", [KeyboardInterrupt, AeposeError])
def test_a_video_stopped_midway_keeps_the_overlay_of_its_finished_frames(
    predictor: Predictor, clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    stop: type[BaseException],
) -> None:
    _, detections = _truth_detections()

    def people(driver: Any, result: Any) -> list[Pose]:
        if result.item[0] == 25:  # Ctrl-C, or the video breaking off, at frame 25
            raise stop("stopped")
        return list(detections[result.item[0]])

    monkeypatch.setattr(run_module._Driver, "_people", people)
    summary = run_predict([str(clip)], predictor, tmp_path / "out", _options())
    assert summary.interrupted == (stop is KeyboardInterrupt)
    assert summary.problems == ([] if stop is KeyboardInterrupt else ["stopped"])
    assert summary.json_path is not None
    doc = json.loads(summary.json_path.read_text())
    assert [entry["frame"] for entry in doc["images"]] == list(range(25))
    assert _read_mp4(tmp_path / "out" / "clip.mp4") == ("h264", 25, SIZE)


def test_ctrl_c_while_a_frame_is_encoded_loses_no_frame(
    predictor: Predictor, clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import signal

    _truth_people(monkeypatch)
    real = av.VideoFrame
    made = []

    class Frame:  # av.VideoFrame, with Ctrl-C arriving as frame 10 is being encoded
        @staticmethod
        def from_ndarray(*args: Any, **kw: Any) -> av.VideoFrame:
            if len(made) == 10:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.02)
            made.append(True)
            return real.from_ndarray(*args, **kw)

    monkeypatch.setattr(av, "VideoFrame", Frame)
    summary = run_predict([str(clip)], predictor, tmp_path / "out", _options())
    assert summary.interrupted and summary.json_path is not None
    doc = json.loads(summary.json_path.read_text())
    assert [entry["frame"] for entry in doc["images"]] == list(range(11))
    with av.open(str(tmp_path / "out" / "clip.mp4")) as container:
        pts = [frame.pts for frame in container.decode(video=0)]
    assert len(pts) == 11 and pts == sorted(pts) and len(set(pts)) == 11


def test_ctrl_c_while_results_are_merged_still_writes_this_runs_results(
    predictor: Predictor, clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import signal

    _truth_people(monkeypatch)
    out = tmp_path / "out"
    _run([str(clip)], predictor, out, max_frames=3, draw=False)  # an earlier run's results
    real = predict_module.merge_predictions

    def merge(*args: Any) -> Path:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.02)
        return real(*args)

    monkeypatch.setattr(predict_module, "merge_predictions", merge)
    summary = run_predict([str(clip)], predictor, out, _options(overwrite=True, draw=False))
    assert summary.interrupted and summary.json_path == out / "predictions.json"
    assert len(json.loads(summary.json_path.read_text())["images"]) == FRAMES
    assert len(json.loads((out / "results.json").read_text())) > 3 * 3


def test_overwrite_removes_the_earlier_results_before_work_starts(
    predictor: Predictor, clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _truth_people(monkeypatch)
    out = tmp_path / "out"
    _run([str(clip)], predictor, out, max_frames=3, draw=False)

    def dies(*args: Any) -> None:
        assert not (out / "predictions.json").exists() and not (out / "results.json").exists()
        raise MemoryError("killed")

    monkeypatch.setattr(predict_module, "_run_all", dies)
    with pytest.raises(MemoryError):
        run_predict([str(clip)], predictor, out, _options(overwrite=True))
    assert not (out / "predictions.json").exists() and not (out / "results.json").exists()


def test_no_track_gives_no_track_id_and_max_frames_stops(
    predictor: Predictor, clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _truth_people(monkeypatch)
    doc = _run([str(clip)], predictor, tmp_path / "out", track=False, max_frames=4)
    assert [f["frame"] for f in doc["images"]] == [0, 1, 2, 3]
    people = [p for f in doc["images"] for p in f["people"]]
    assert people and all("track_id" not in p for p in people)
    assert doc["tracker"] is None
    assert _read_mp4(tmp_path / "out" / "clip.mp4")[1] == 4
    assert (tmp_path / "out" / OVERLAYS_NAME).read_text() == "clip.mp4\n"  # for --overwrite
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results and all("track_id" not in r for r in results)


def test_duration_stops_at_stream_time(predictor: Predictor, clip: Path, tmp_path: Path
                                       ) -> None:
    doc = _run([str(clip)], predictor, tmp_path / "out", duration_s=0.2, draw=False)
    assert [f["frame"] for f in doc["images"]] == [0, 1, 2, 3, 4]  # 25 fps: t < 200 ms


def test_duration_counts_from_the_first_frame_read() -> None:
    # A live reader whose first frame is frame 8 (the camera ran while the model loaded),
    # dropping every other frame after it: 0.2 s at 25 fps is frames 8 to 12.
    reader = iter([(i, np.zeros((2, 2, 3), np.uint8)) for i in range(8, 30, 2)])
    taken = run_module._limited(reader, 25.0, _options(duration_s=0.2).run_options())
    assert [index for index, _ in taken] == [8, 10, 12]


def test_frames_without_people_still_age_tracks(
    predictor: Predictor, clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    figure = np.zeros((14, 3), np.float32)
    figure[:, 0], figure[:, 1], figure[:, 2] = np.linspace(40, 60, 14), np.linspace(20, 100, 14), 1

    def people(driver: Any, result: Any) -> list[Pose]:
        # The person is there in frames 0-1, gone for 3 frames, back from frame 5.
        return [] if 2 <= result.item[0] <= 4 else [Pose(figure.copy(), 0.9)]

    monkeypatch.setattr(run_module._Driver, "_people", people)
    kept = _run([str(clip)], predictor, tmp_path / "a", draw=False, max_frames=7)
    lost = _run([str(clip)], predictor, tmp_path / "b", draw=False, max_frames=7,
                tracker=TrackerConfig(max_age=1))
    assert [p["track_id"] for f in kept["images"] for p in f["people"]] == [0] * 4
    assert [p["track_id"] for f in lost["images"] for p in f["people"]] == [0, 0, 1, 1]


# ---------------------------------------------------------------------------------------
# Sources


def test_folder_with_a_video_is_processed(predictor: Predictor, clip: Path, tmp_path: Path
                                          ) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "clip.mp4").write_bytes(clip.read_bytes())
    save_image(folder / "still.png", np.zeros((SIZE[1], SIZE[0], 3), np.uint8))
    found = expand_sources([str(folder)])
    assert [(i.path.name, i.kind) for i in found.items] == [("clip.mp4", "video"),
                                                            ("still.png", "image")]
    doc = _run([str(folder)], predictor, tmp_path / "out", max_frames=3)
    assert len(_frames_of(doc, "clip.mp4")) == 3 and len(_frames_of(doc, "still.png")) == 1
    assert (tmp_path / "out" / "clip.mp4").is_file() and (tmp_path / "out" / "still.png").is_file()


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with byte ranges (FFmpeg seeks to an MP4's index with them)."""

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def send_head(self) -> Any:
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        path = Path(self.translate_path(self.path))
        if not match or not path.is_file():
            return super().send_head()
        data = path.read_bytes()
        start = int(match.group(1))
        end = int(match.group(2)) if match.group(2) else len(data) - 1
        body = data[start:end + 1]
        self.send_response(206)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Range", f"bytes {start}-{start + len(body) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        import io

        return io.BytesIO(body)


@pytest.fixture
def server(clip: Path) -> Iterator[str]:
    handler = partial(_RangeHandler, directory=str(clip.parent))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_http_video_url_is_predicted_frame_by_frame(
    predictor: Predictor, server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _truth_people(monkeypatch)
    url = f"{server}/clip.mp4"
    item = expand_sources([url]).items[0]
    assert (item.url, item.live, item.path.name) == (url, False, "clip")
    doc = _run([url], predictor, tmp_path / "out")
    assert [f["file_name"] for f in doc["images"]] == [url] * FRAMES  # a file: none dropped
    assert [f["frame"] for f in doc["images"]] == list(range(FRAMES))
    assert all("track_id" in p for f in doc["images"] for p in f["people"])
    assert _read_mp4(tmp_path / "out" / "clip.mp4")[1:] == (FRAMES, SIZE)


def test_unreachable_stream_is_reported_in_one_line(predictor: Predictor, tmp_path: Path
                                                    ) -> None:
    url = "http://127.0.0.1:9/missing.mp4"  # the discard port: nothing listens
    summary = run_predict([url], predictor, tmp_path / "out", _options())
    assert summary.images == 0
    assert summary.problems == [f"stream {url} cannot be opened (unreachable, refused, or "
                                "not a video)"]


def test_image_sequence_pattern_is_one_tracked_video(
    predictor: Predictor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frames = tmp_path / "frames"
    for i in range(1, 5):
        save_image(frames / f"{i:05d}.png", np.full((SIZE[1], SIZE[0], 3), 40 * i, np.uint8))
    pattern = str(frames / "%05d.png")
    item = expand_sources([pattern]).items[0]
    assert (item.url, item.live, item.path.name) == (pattern, False, "frames")
    doc = _run([pattern], predictor, tmp_path / "out")
    assert [f["frame"] for f in doc["images"]] == [0, 1, 2, 3]
    assert (tmp_path / "out" / "frames.mp4").is_file()
    monkeypatch.chdir(frames)  # a pattern in the current folder is named after the folder
    assert [i.path.name for i in expand_sources(["%05d.png", "./%05d.png"]).items] == [
        "frames", "frames"]


def test_predict_function_reads_video_urls_and_sequences_and_refuses_live_sources(
    predictor: Predictor, server: str, tmp_path: Path
) -> None:
    import aepose

    frames = tmp_path / "frames"
    for i in range(3):
        save_image(frames / f"{i:05d}.png", np.full((SIZE[1], SIZE[0], 3), 40 * i, np.uint8))
    url, pattern = f"{server}/clip.mp4", str(frames / "%05d.png")
    got = aepose.predict([url, pattern], predictor)
    assert [(p.name, p.frame) for p in got] == ([(url, i) for i in range(FRAMES)]
                                                + [(pattern, i) for i in range(3)])
    assert all((p.width, p.height) == SIZE for p in got)
    for live in ("0", 0, "rtsp://127.0.0.1:9/cam"):  # never opened: refused as named
        with pytest.raises(AeposeError, match=f"^{re.escape(str(live))}: a live source"):
            aepose.predict(live, predictor)  # type: ignore[arg-type]


def test_stream_arguments_are_recognised_and_bad_ones_reported(tmp_path: Path) -> None:
    found = expand_sources(["0", "rtsp://cam/live", "https://host/path/video.MP4",
                            "http://cam/mjpg?x=1", "http://host/shots/%05d.png",
                            "ftp://host/a.mp4", str(tmp_path / "none_%04d.png"), "0"])
    assert [(i.name, i.path.name, i.live) for i in found.items] == [
        ("0", "webcam0", True), ("rtsp://cam/live", "live", True),
        ("https://host/path/video.MP4", "video", False), ("http://cam/mjpg?x=1", "mjpg", True),
        ("http://host/shots/%05d.png", "shots", False)]  # a remote sequence: files, not live
    assert found.problems == (
        "ftp://host/a.mp4: unsupported URL scheme 'ftp' (streams: http, https, rtmp, rtsp, "
        "rtsps, srt, tcp, udp)",
        f"{tmp_path / 'none_%04d.png'}: image-sequence pattern matches no files")


# ---------------------------------------------------------------------------------------
# Live reading


class _FakeCamera:
    """A capture delivering ``frames`` frames, one every ``period`` seconds."""

    def __init__(self, frames: int, period: float) -> None:
        self.left, self.period, self.released = frames, period, False

    def read(self) -> tuple[bool, np.ndarray | None]:
        time.sleep(self.period)
        if self.left == 0:
            return False, None
        self.left -= 1
        return True, np.full((4, 6, 3), self.left % 256, np.uint8)

    def get(self, prop: int) -> float:
        return 0.0

    def release(self) -> None:
        self.released = True


def test_live_reader_drops_frames_when_the_consumer_is_slow() -> None:
    camera = _FakeCamera(frames=60, period=0.002)
    reader = LatestFrames(camera, "fake", max_failures=3)
    taken = []
    for index, frame in reader:
        assert reader.pending <= 1 and frame.shape == (4, 6, 3)
        taken.append(index)
        time.sleep(0.015)  # 7x slower than the camera
    reader.close()
    assert camera.released
    assert taken == sorted(taken) and len(set(taken)) == len(taken)
    assert reader.read == 60 and reader.dropped == 60 - len(taken) > 30
    assert reader.problem is not None and f"{reader.dropped} of 60 frames dropped" in reader.problem


class _PacedCamera(_FakeCamera):
    """A :class:`_FakeCamera` that reads each frame only with a turn (``turns``: one to
    start): a test that gives a turn after each frame it takes is a consumer faster than the
    camera however loaded the machine is (a timed consumer once fell behind on a busy one)."""

    def __init__(self, frames: int, period: float) -> None:
        super().__init__(frames, period)
        self.turns = threading.Semaphore(1)

    def read(self) -> tuple[bool, np.ndarray | None]:
        if self.left > 0:
            assert self.turns.acquire(timeout=10)
        return super().read()


def test_live_reader_keeps_every_frame_for_a_fast_consumer_and_stops_on_close() -> None:
    camera = _PacedCamera(frames=10, period=0.001)
    reader = LatestFrames(camera, "fake", max_failures=3)
    taken = []
    for index, _ in reader:
        taken.append(index)
        camera.turns.release()
    assert taken == list(range(10))
    assert reader.dropped == 0 and reader.problem is None
    endless = _PacedCamera(frames=10**9, period=0.001)
    reader = LatestFrames(endless, "endless")
    next(reader)
    endless.turns.release(1000)
    deadline = time.monotonic() + 10
    while endless.left > 10**9 - 3:  # the thread reads on, replacing its pending frame
        assert time.monotonic() < deadline
        time.sleep(0.005)
    reader.close()
    assert endless.released
    # Frames read after the last one taken were past the stop, not dropped.
    assert (reader.read, reader.dropped, reader.problem) == (1, 0, None)


def test_duration_of_a_live_source_is_wall_clock_time_waiting_included() -> None:
    """A camera that delivers a frame every 0.4 s and states 25 fps: 1 s of stream time is
    25 frames, 10 s here; a live source stops after 1 s of wall-clock time from its first
    frame, also while it waits for the next frame."""
    camera = _FakeCamera(frames=1000, period=0.4)
    reader = LatestFrames(camera, "slow")
    taken, start = [], None
    for index, _ in run_module._limited(reader, 25.0, _options(duration_s=1.0).run_options(),
                                        live=True):
        start = start or time.monotonic()
        taken.append(index)
    stopped = time.monotonic() - start
    reader.close()
    closed = time.monotonic() - start
    assert taken[:2] == [0, 1] and len(taken) <= 4  # frames at 0.4 s spacing within 1 s
    assert 0.9 <= stopped <= 1.5, stopped  # the deadline, not the next frame (at 1.2 s)
    assert closed - stopped <= 0.9  # close() does not wait out a read in progress
    assert (reader.read, reader.dropped, reader.problem) == (len(taken), 0, None)


def test_live_reader_without_dropping_keeps_every_frame_for_a_slow_consumer() -> None:
    """``--no-drop`` on a live source: every frame, in order, one pending at most."""
    camera = _FakeCamera(frames=12, period=0.001)
    reader = LatestFrames(camera, "fake", max_failures=3, drop=False)
    taken = []
    for index, _ in reader:
        assert reader.pending <= 1
        taken.append(index)
        time.sleep(0.01)  # 10x slower than the camera
    reader.close()
    assert taken == list(range(12)) and camera.released
    assert (reader.read, reader.dropped, reader.problem) == (12, 0, None)


def test_live_reader_without_any_frame_raises_naming_the_source() -> None:
    reader = LatestFrames(_FakeCamera(frames=0, period=0.0), "rtsp://cam/x", max_failures=2)
    with pytest.raises(AeposeError, match="stream rtsp://cam/x delivered no frames"):
        next(reader)


def test_open_video_drops_only_when_asked_for_files(clip: Path) -> None:
    info, frames = open_video(clip)
    assert (info.width, info.height, info.frames) == (*SIZE, FRAMES)
    assert sum(1 for _ in frames) == FRAMES and frames.dropped == 0
    _, live = open_video(expand_sources([str(clip)]).items[0], drop=True)
    assert isinstance(live, LatestFrames)
    live.close()


# ---------------------------------------------------------------------------------------
# Drawing and the Pose record


def test_track_colours_are_stable_and_labels_replace_scores() -> None:
    spec = get_spec("crowdpose")
    image = np.zeros((120, 160, 3), np.uint8)
    person = np.zeros((14, 3))
    person[:, 0], person[:, 1], person[:, 2] = 80, np.linspace(20, 100, 14), 1.0
    drawn = draw_poses(image, person[None], [0.5], spec, colors=[track_color(5)],
                       labels=["#5"], thickness=3, radius=1)
    assert track_color(5) == person_color(5) and track_color(-1) == track_color(None)
    assert tuple(drawn[60, 80]) == person_color(5) or tuple(drawn[61, 80]) == person_color(5)
    plain = draw_poses(image, person[None], [0.5], spec, thickness=3, radius=1)
    assert not np.array_equal(plain, drawn)  # other colour and label
    with pytest.raises(AeposeError, match="1 people but 2 colors"):
        draw_poses(image, person[None], [0.5], spec, colors=[(1, 2, 3)] * 2)


def test_pose_record_carries_its_track_id() -> None:
    pose = Pose(np.ones((14, 3), np.float32), 0.5, track_id=7)
    record = pose.to_dict()
    assert record["track_id"] == 7 and Pose.from_dict(record).track_id == 7
    assert pose.to_coco(3)["track_id"] == 7
    assert "track_id" not in Pose(np.ones((14, 3), np.float32), 0.5).to_dict()


def test_cli_video_options_reach_the_run(clip: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    import dataclasses

    import torch
    from helpers import run_cli

    from aepose.apps.cli import _predict_options, build_parser

    torch.save({"model": lively(TINY, seed=1).eval().state_dict(),
                "config": dataclasses.asdict(get_preset(TINY))}, tmp_path / "w.pth")
    code, _, err = run_cli(capsys, "predict", str(clip), "--weights", str(tmp_path / "w.pth"),
                           "--device", "cpu", "--out", str(tmp_path / "out"), "--no-track",
                           "--max-frames", "2", "--no-draw", "--workers", "0",
                           "--decode-workers", "0")
    assert code == 0, err
    doc = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert [f["frame"] for f in doc["images"]] == [0, 1]
    assert all("track_id" not in p for f in doc["images"] for p in f["people"])
    args = build_parser()[0].parse_args(
        ["predict", "0", "--weights", "w.pth", "--smooth", "--smooth-beta", "2",
         "--track-max-age", "5", "--track-min-score", "0.3", "--duration", "1.5",
         "--no-drop"])
    options = _predict_options(args)
    assert options.track and options.drop is False and options.duration_s == 1.5
    tracker = options.tracker
    assert (tracker.smooth, tracker.one_euro.beta, tracker.max_age) == (True, 2.0, 5)
    assert tracker.min_score == 0.3
