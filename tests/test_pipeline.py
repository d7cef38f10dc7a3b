"""The streamed test-time pipeline (aepose.pipeline.engine): where the work runs never changes the
poses, bit for bit, and they come in input order; batches depend on the input alone, not
on timing; bad items become one-line errors without stopping the others; memory is
bounded by the window.

The reference is the same stream run inline (no threads, no workers). The variants differ
only in where work runs: read threads, decode in worker processes (the CPU path) or in
threads on the network's device (the GPU path, whose code runs on the CPU here). A
convolution's float result may depend on the batch it runs in, so comparisons keep the
batch size and window; against one image at a time they agree to float rounding.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import Tensor, nn

from aepose.apps.bench import crowd_images, mimic_trained_maps, realistic_weights
from aepose.codec.aggregate import ScaleOutputs
from aepose.config import Config, TestConfig, get_preset, with_test_settings
from aepose.data.dataset import normalize_image
from aepose.data.transforms import TestSizes
from aepose.errors import AeposeError
from aepose.models import build_model
from aepose.pipeline.engine import stream
from aepose.pipeline.predictor import predict_images
from aepose.pipeline.stages import MAX_INPUT_PIXELS, Decoded, PostProcess, Stages
from aepose.pipeline.timer import StageTimer

HIGHER = "higherhrnet_tiny_crowdpose_128"


@pytest.fixture(scope="module")
def crowd() -> tuple[nn.Module, Config, list[np.ndarray]]:
    """A tiny HigherHRNet whose maps decode like a crowd's, and 7 images of 3 sizes."""
    cfg = get_preset(HIGHER)
    model = realistic_weights(build_model(cfg), seed=3).eval()
    sample = crowd_images(1, (128, 128), seed=4)[0]
    mimic_trained_maps(model, cfg, torch.stack([normalize_image(sample)]))
    images = (crowd_images(3, (200, 150), seed=5) + crowd_images(2, (150, 200), seed=6)
              + crowd_images(2, (256, 128), seed=7))
    order = [0, 3, 5, 1, 6, 4, 2]  # sizes interleaved: batching must regroup them
    return model, cfg, [images[i] for i in order]


def _inline(model: nn.Module, cfg: Config, images: list[np.ndarray], batch_size: int,
            window: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    results = stream(Stages(model, cfg), images, lambda image: image, batch_size=batch_size,
                     window=window, read_workers=0, decode_workers=0)
    return [(r.poses, r.scores) for r in results]


def _assert_identical(results: list, expected: list[tuple[np.ndarray, np.ndarray]]) -> None:
    assert [r.index for r in results] == list(range(len(expected)))
    assert sum(len(p) for p, _ in expected) > 20  # a crowd's decoding load, not a few people
    for result, (poses, scores) in zip(results, expected, strict=True):
        assert result.error is None
        np.testing.assert_array_equal(result.poses, poses)
        np.testing.assert_array_equal(result.scores, scores)


@pytest.mark.parametrize("flip", [True, False])
def test_decode_worker_processes_give_the_inline_poses_bit_for_bit(crowd, flip: bool) -> None:
    model, cfg, images = crowd
    cfg = with_test_settings(cfg, flip=flip)
    expected = _inline(model, cfg, images, 2, 4)
    timer = StageTimer()
    results = list(stream(Stages(model, cfg), images, lambda image: image, batch_size=2,
                          window=4, read_workers=2, decode_workers=1, timer=timer))
    _assert_identical(results, expected)
    assert set(timer.images) == {"read", "preprocess", "network", "aggregate", "decode",
                                 "back-project"}
    assert timer.images["network"] == timer.images["decode"] == len(images)


def test_decode_threads_on_the_maps_device_give_the_same_poses(crowd) -> None:
    """The GPU path: post-processing in threads beside the network, maps never copied to
    another process. Run on the CPU, it must equal the inline result exactly."""
    model, cfg, images = crowd
    cfg = with_test_settings(cfg, scales=(2, 1))
    expected = _inline(model, cfg, images, 3)
    with ThreadPoolExecutor(2) as threads:
        results = list(stream(Stages(model, cfg), images, lambda image: image, batch_size=3,
                              decoders=threads))
    _assert_identical(results, expected)


def test_legacy_stage_average_streams_identically(crowd) -> None:
    model, cfg, images = crowd
    cfg = with_test_settings(cfg, stage_average="legacy")
    expected = _inline(model, cfg, images, 3)
    results = list(stream(Stages(model, cfg), images, lambda image: image, batch_size=3,
                          decode_workers=1))
    _assert_identical(results, expected)


def test_streamed_poses_equal_one_image_at_a_time_to_float_rounding(crowd) -> None:
    model, cfg, images = crowd
    alone = [predict_images(model, cfg, [image], channel_order="rgb")[0] for image in images]
    batched = _inline(model, cfg, images, 4)
    for (poses, scores), (want, want_scores) in zip(batched, alone, strict=True):
        assert poses.shape == want.shape
        np.testing.assert_allclose(poses, want, rtol=0, atol=1e-4)
        np.testing.assert_allclose(scores, want_scores, rtol=0, atol=1e-5)


class _Recording(nn.Module):
    """Records which images (by their first input pixel) each forward pass held."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.batches: list[tuple[float, ...]] = []

    def forward(self, images: Tensor) -> list[Tensor]:
        self.batches.append(tuple(images[:, 0, 0, 0].tolist()))
        return list(self.inner(images))


def test_batches_depend_on_the_input_not_on_timing(crowd) -> None:
    model, cfg, images = crowd
    cfg = with_test_settings(cfg, flip=False)
    rng = np.random.default_rng(0)
    items = [image.copy() for image in images * 2]
    for i, image in enumerate(items):
        image[0, 0] = i  # tells the images apart in the network's input
    runs = []
    for _ in range(3):
        net = _Recording(model)
        delays = rng.uniform(0, 0.02, len(items))

        def read(i: int, delays: np.ndarray = delays) -> np.ndarray:
            time.sleep(delays[i])  # reads finish in a different order every run
            return items[i]

        list(stream(Stages(net, cfg), range(len(items)), read, batch_size=3, window=6,
                    read_workers=3))
        runs.append(net.batches)
    assert runs[0] == runs[1] == runs[2]
    assert max(len(b) for b in runs[0]) == 3 and len(runs[0]) < len(items)


def test_bad_items_become_one_line_errors_and_the_rest_finish(crowd) -> None:
    model, cfg, images = crowd
    expected = [predict_images(model, cfg, [image], channel_order="rgb")[0]
                for image in images[:3]]
    items: list[object] = [images[0], "missing.png", images[1], np.zeros((4, 4), np.uint8),
                           images[2]]

    def read(item: object) -> np.ndarray:
        if isinstance(item, str):
            raise AeposeError(f"image file {item} not found")
        return item  # type: ignore[return-value]

    results = list(stream(Stages(model, cfg), items, read, batch_size=1, read_workers=2))
    assert [r.error is None for r in results] == [True, False, True, False, True]
    assert results[1].error == "image file missing.png not found"
    assert "expected an RGB uint8 array" in (results[3].error or "")
    good = [r for r in results if r.error is None]
    for r, (poses, _) in zip(good, expected, strict=True):
        np.testing.assert_array_equal(r.poses, poses)


def test_items_are_pulled_at_most_twice_the_window_ahead_of_the_output(crowd) -> None:
    model, cfg, images = crowd
    pulled = 0

    def source() -> Iterator[np.ndarray]:
        nonlocal pulled
        for i in range(40):
            pulled += 1
            yield images[i % len(images)]

    ahead = []
    for n, _ in enumerate(stream(Stages(model, cfg), source(), lambda image: image,
                                 batch_size=2, window=5, read_workers=2), start=1):
        ahead.append(pulled - n)
    assert len(ahead) == 40 and max(ahead) <= 2 * 5


class _NanNet(nn.Module):
    """The tiny network with NaN in its second output (a broken HigherHRNet stage)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, images: Tensor) -> list[Tensor]:
        outputs = list(self.inner(images))
        outputs[1] = outputs[1] * float("nan")
        return outputs


def test_non_finite_network_output_is_named(crowd) -> None:
    model, cfg, images = crowd
    results = list(stream(Stages(_NanNet(model), cfg), images[:2], lambda image: image))
    assert all(r.error == "the network's output 1 holds NaN or infinite values (broken "
               "weights or an overflow in reduced precision)" for r in results)


@pytest.mark.parametrize("width", [2000, 10**6])
def test_a_thin_strip_is_refused_before_any_allocation(crowd, width: int) -> None:
    model, cfg, _ = crowd
    strip = np.zeros((1, width, 3), np.uint8)
    with pytest.raises(AeposeError, match=rf"a {width}x1 image needs a \d+x\d+ network input, "
                       rf"more than {MAX_INPUT_PIXELS:,} pixels"):
        Stages(model, cfg).preprocess(strip)


@pytest.mark.parametrize("scales", [(float("nan"),), (float("inf"),), (0.0,), (100.0,),
                                    (1e-4, 1.0), (1.0, 1.0)])
def test_bad_test_scales_are_refused_in_one_line(scales: tuple[float, ...]) -> None:
    # TestConfig is the one place test settings are checked.
    with pytest.raises(AeposeError, match=r"^test\.scales = .*: expected ") as info:
        TestConfig(scales=scales)
    assert "\n" not in str(info.value)
    with pytest.raises(AeposeError):
        Stages(nn.Identity(), dataclasses.replace(
            get_preset(HIGHER), test=dataclasses.replace(get_preset(HIGHER).test,
                                                         scales=scales)))


def test_predict_on_a_1xn_image_stays_small(tmp_path: Path) -> None:
    """An 86-byte 1 x 20000 PNG once asked for a 512 x 10,240,000 input: the whole command
    must now refuse it with bounded memory (measured in a child process)."""
    weights = tmp_path / "w.pth"
    torch.save({"state_dict": build_model(HIGHER).state_dict(), "meta": {}}, weights)
    cv2.imwrite(str(tmp_path / "strip.png"), np.zeros((1, 20000, 3), np.uint8))
    # A wrapper process reports the command's own peak: this process's RUSAGE_CHILDREN
    # also holds the peaks of children earlier tests ran in the same worker.
    wrapper = ("import resource, subprocess, sys; done = subprocess.run(sys.argv[1:]); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, "
               "file=sys.stderr); sys.exit(done.returncode)")
    done = subprocess.run(
        [sys.executable, "-c", wrapper, sys.executable, "-m", "aepose", "predict",
         str(tmp_path / "strip.png"), "--weights", str(weights), "--preset", HIGHER, "--out",
         str(tmp_path / "out"), "--device", "cpu", "--decode-workers", "0"],
        capture_output=True, text=True, timeout=300)
    peak_mib = int(done.stderr.split()[-1]) / 1024
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "skipped: " in done.stderr and "network input" in done.stderr
    assert peak_mib < 1500, f"peak RSS {peak_mib:.0f} MiB"


@dataclasses.dataclass(frozen=True)
class _DyingPost(PostProcess):
    """Post-processing that kills its worker process at the first 256 x 128 image."""

    def __call__(self, outputs: ScaleOutputs, sizes: TestSizes) -> Decoded:
        if sizes.base_size == (256, 128):
            os._exit(1)  # as the kernel's OOM killer would end it
        return super().__call__(outputs, sizes)


def test_a_killed_decode_worker_stops_the_stream_in_one_line(crowd) -> None:
    model, cfg, images = crowd
    stages = Stages(model, cfg)
    stages.post = _DyingPost(**{f.name: getattr(stages.post, f.name)
                                for f in dataclasses.fields(PostProcess)})
    wide = [im for im in images if im.shape[:2] == (128, 256)]
    others = [im for im in images if im.shape[:2] != (128, 256)]
    got = []
    with pytest.raises(AeposeError, match=r"^a decode worker process died \(killed, or out of "
                       r"memory\); decode_workers=0"):
        # One worker decodes in input order: the images before the wide one are finished
        # before it dies.
        for result in stream(stages, [*others, wide[0]], lambda image: image, batch_size=1,
                             decode_workers=1):
            got.append(result)
    expected = _inline(model, cfg, others, 1)
    assert len(got) == len(others)
    for result, (poses, _) in zip(got, expected, strict=True):
        np.testing.assert_array_equal(result.poses, poses)


_ORPHANED_POOL = """
import multiprocessing, time
import torch
from aepose.pipeline.workers import decode_pool
pool = decode_pool(torch.device("cpu"), 2)  # its workers have all started when it returns
print(*[worker.pid for worker in multiprocessing.active_children()], flush=True)
time.sleep(300)
"""


def _running(pid: int) -> bool:
    """Whether a process runs; a zombie (exited, not yet reaped by its new parent) does not."""
    try:
        os.kill(pid, 0)
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except ProcessLookupError:
        return False
    except FileNotFoundError:  # reaped meanwhile, or no /proc (macOS): os.kill's answer
        return not Path("/proc").is_dir()
    return state != "Z"


def test_decode_workers_exit_when_their_parent_is_killed(tmp_path: Path) -> None:
    """`kill -9` of `aepose predict` once left its decode workers running for good, holding
    its stdout: a caller's subprocess.run(..., capture_output=True) never returned."""
    with open(tmp_path / "stderr", "w") as stderr:
        # A session of its own: its process group is every process it started, so the
        # finally below ends any survivor without a chance of hitting an unrelated PID.
        parent = subprocess.Popen([sys.executable, "-c", _ORPHANED_POOL],
                                  stdout=subprocess.PIPE, stderr=stderr, start_new_session=True)
    assert parent.stdout is not None
    try:
        ready, _, _ = select.select([parent.stdout], [], [], 120)
        line = parent.stdout.readline() if ready else b""
        workers = [int(pid) for pid in line.split()]
        assert len(workers) == 2, (tmp_path / "stderr").read_text()
        parent.kill()  # SIGKILL: no atexit, no executor shutdown
        parent.wait(10)
        deadline = time.monotonic() + 5
        while any(map(_running, workers)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [pid for pid in workers if _running(pid)], "orphaned workers still run"
        # Nothing holds the pipe any more: a reader sees its end.
        assert select.select([parent.stdout], [], [], 1)[0]
        assert os.read(parent.stdout.fileno(), 1) == b""
    finally:
        parent.kill()
        parent.wait()
        parent.stdout.close()
        with contextlib.suppress(ProcessLookupError):  # the group is gone: none survived
            os.killpg(parent.pid, signal.SIGKILL)
