"""Memory bounded in bytes (aepose.pipeline.engine): the read-ahead holds at most its byte
budget whatever the frame size, a forward pass at most batch_size megapixels of network
input whatever the test scales, and an allocation failure costs one line for that image
while the others finish.

Large frames are ``np.zeros`` arrays: the operating system maps their pages only when they
are written, so they count in full against the budget (and an address-space limit) while
costing the test machine nothing. The allocation failure is real: a child process under an
address-space limit (``RLIMIT_AS``) runs an image whose first activation cannot fit.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from aepose.config import get_preset, with_test_settings
from aepose.errors import AeposeError
from aepose.models import build_model
from aepose.pipeline.engine import BATCH_PIXELS_PER_IMAGE, READ_AHEAD_BYTES, stream
from aepose.pipeline.stages import Stages

TINY = "higherhrnet_tiny_crowdpose_128"
SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(scope="module")
def tiny() -> nn.Module:
    torch.manual_seed(0)
    return build_model(get_preset(TINY)).eval()


def test_read_ahead_holds_at_most_its_byte_budget_of_frames(tiny: nn.Module) -> None:
    """48 frames of 37 MB (1.77 GB) with overlays kept: the stream once pulled all 48 ahead
    of its output (64 allowed: twice a window of 4 batches of 8)."""
    height, width = 3000, 4096
    frame_bytes = height * width * 3
    count = 48
    assert count * frame_bytes > READ_AHEAD_BYTES + 8 * frame_bytes
    pulled = 0

    def frames() -> Iterator[tuple[int, np.ndarray]]:
        nonlocal pulled
        for index in range(count):
            pulled += 1
            yield index, np.zeros((height, width, 3), np.uint8)

    held = []
    results = stream(Stages(tiny, get_preset(TINY)), frames(), lambda frame: frame[1],
                     keep_images=True, read_workers=2, decode_workers=0)
    for done, result in enumerate(results, start=1):
        assert result.error is None and result.image is not None
        held.append((pulled - done) * frame_bytes)  # frames pulled and not yet given back
    assert len(held) == count
    assert max(held) <= READ_AHEAD_BYTES + frame_bytes, f"{max(held) / 2**30:.2f} GiB ahead"
    assert max(held) >= READ_AHEAD_BYTES // 2  # the budget is used, not one frame at a time


class _Zeros(nn.Module):
    """A HigherHRNet's outputs, all zero, for any input; records each pass's rows."""

    def __init__(self, keypoints: int) -> None:
        super().__init__()
        self.keypoints = keypoints
        self.rows: list[int] = []

    def forward(self, images: Tensor) -> list[Tensor]:
        rows, _, height, width = images.shape
        self.rows.append(rows)
        return [torch.zeros(rows, 2 * self.keypoints, height // 4, width // 4),
                torch.zeros(rows, self.keypoints, height // 2, width // 2)]


def test_large_network_inputs_run_in_smaller_batches() -> None:
    """At test scales 8 and 1 a 64 x 128 image is a 2048 x 1024 input (2 Mpx): a batch of
    8 holds 4 of them (8 x 1 Mpx), the rest the next pass."""
    cfg = with_test_settings(get_preset(TINY), scales=(8.0, 1.0), flip=False)
    net = _Zeros(cfg.model.num_keypoints)
    images = [np.zeros((64, 128, 3), np.uint8) for _ in range(6)]
    results = list(stream(Stages(net, cfg), images, lambda image: image, batch_size=8,
                          read_workers=0, decode_workers=0))
    assert [r.error for r in results] == [None] * 6
    per_image = 2048 * 1024
    assert 8 * BATCH_PIXELS_PER_IMAGE // per_image == 4
    assert net.rows == [4, 4, 2, 2]  # per pass: scale 8, then scale 1

    # Inputs of 1 Mpx or less keep the whole batch.
    net.rows.clear()
    small = [np.zeros((64, 64, 3), np.uint8) for _ in range(6)]  # 1024 x 1024 at scale 8
    list(stream(Stages(net, cfg), small, lambda image: image, batch_size=8, read_workers=0,
                decode_workers=0))
    assert net.rows == [6, 6]


_CPU_ALLOCATOR = ("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't "
                  "allocate memory: you tried to allocate 4294967296 bytes. Error code 12 "
                  "(Cannot allocate memory)")


class _Cramped(nn.Module):
    """The network on a machine where only one image fits at a time, and an image with
    white pixels never does: the allocator's own error, as torch raises it."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, images: Tensor) -> list[Tensor]:
        white = (1.0 - 0.485) / 0.229  # red 255, normalised
        if len(images) > 2 or bool((images[:, 0] > white - 0.01).any()):  # 2: flip rows
            raise RuntimeError(_CPU_ALLOCATOR)
        return list(self.inner(images))


def test_a_batch_out_of_memory_runs_again_image_by_image(tiny: nn.Module) -> None:
    cfg = get_preset(TINY)
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 200, (96, 128, 3), dtype=np.uint8) for _ in range(5)]
    images[3][40:50, 60:70] = 255
    got = list(stream(Stages(_Cramped(tiny), cfg), images, lambda image: image, batch_size=4,
                      read_workers=0, decode_workers=0))
    assert [r.error for r in got] == [None, None, None, (
        "out of memory running the network on its 192x128 input (an allocation of 4.00 GiB "
        "failed)"), None]
    assert (got[3].width, got[3].height) == (128, 96)
    for n in (0, 1, 2, 4):
        alone = next(stream(Stages(tiny, cfg), [images[n]], lambda image: image,
                            read_workers=0, decode_workers=0))
        np.testing.assert_array_equal(got[n].poses, alone.poses)


_UNDER_A_LIMIT = """
import json, resource, sys
import numpy as np
import torch
from aepose.config import get_preset
from aepose.models import build_model
from aepose.pipeline.engine import stream
from aepose.pipeline.stages import Stages

torch.set_num_threads(1)  # no thread is started once the limit is set
torch.manual_seed(0)
cfg = get_preset(sys.argv[1])
stages = Stages(build_model(cfg).eval(), cfg)
small = np.full((96, 128, 3), 90, np.uint8)
# 64 x 16384: a 128 x 32768 input (4.19 M pixels, allowed), whose 64-channel stem output
# for the two flip rows is 537 MB.
strip = np.full((64, 16384, 3), 90, np.uint8)

def run(images):
    return list(stream(stages, images, lambda image: image, read_workers=0,
                       decode_workers=0))

run([small])  # warm: every lazy allocation of a small image's pass is made
pages = int(open("/proc/self/statm").read().split()[0])
limit = pages * resource.getpagesize() + (256 << 20)
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
results = run([small, strip, small])
print(json.dumps([[r.error, len(r.poses), r.width, r.height] for r in results]))
"""


def test_an_image_that_cannot_fit_is_one_line_under_an_address_space_limit(
    tmp_path: Path,
) -> None:
    """A real allocation failure (not a simulated one) in the network: that image gets one
    error line, the images around it their poses."""
    done = subprocess.run([sys.executable, "-c", _UNDER_A_LIMIT, TINY], capture_output=True,
                          text=True, timeout=300, env={"PYTHONPATH": str(SRC),
                                                       "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    first, strip, last = json.loads(done.stdout)
    assert first[0] is None and last[0] is None and first[1:] == last[1:]
    error, people, width, height = strip
    assert (people, width, height) == (0, 16384, 64)
    assert error.startswith("out of memory running the network on its 32768x128 input "
                            "(an allocation of "), error
    assert "\n" not in error


def test_the_read_ahead_budget_is_checked() -> None:
    with pytest.raises(AeposeError, match="read-ahead budget must be at least 1 byte, got 0"):
        next(stream(Stages(_Zeros(14), get_preset(TINY)), [], lambda image: image,
                    read_ahead_bytes=0))


def test_a_small_budget_still_lets_one_item_through(tiny: nn.Module) -> None:
    """A budget smaller than one frame: frames go one at a time, every one finishes."""
    cfg = get_preset(TINY)
    frames = [np.zeros((96, 128, 3), np.uint8) for _ in range(5)]
    pulled = 0

    def source() -> Iterator[np.ndarray]:
        nonlocal pulled
        for frame in frames:
            pulled += 1
            yield frame

    ahead = []
    for n, result in enumerate(stream(Stages(tiny, cfg), source(), lambda image: image,
                                      read_ahead_bytes=1, decode_workers=0), start=1):
        assert result.error is None
        ahead.append(pulled - n)
    assert len(ahead) == 5 and max(ahead) <= 1


def test_run_takes_a_read_ahead_budget(tiny: nn.Module, monkeypatch: pytest.MonkeyPatch
                                       ) -> None:
    """``RunOptions.read_ahead_bytes`` (``aepose.predict(read_ahead_bytes=...)``) reaches the
    stream: a budget of one byte reads one image at a time; the default reads ahead."""
    from aepose.pipeline import run as run_module
    from aepose.pipeline.predictor import Predictor

    predictor = Predictor(tiny, get_preset(TINY), flip=False)
    images = [np.zeros((96, 128, 3), np.uint8) for _ in range(6)]
    read = 0
    load = run_module.load_rgb

    def counted(*args: object) -> np.ndarray:
        nonlocal read
        read += 1
        return load(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(run_module, "load_rgb", counted)

    def most_ahead(**budget: int) -> int:
        nonlocal read
        read, ahead = 0, []
        chosen = run_module.RunOptions(decode_workers=0, read_workers=1, **budget)
        for done, result in enumerate(run_module.run(run_module.expand_inputs(images),
                                                     predictor, chosen), start=1):
            assert result.error is None
            ahead.append(read - done)
        assert len(ahead) == len(images)
        return max(ahead)

    assert most_ahead(read_ahead_bytes=1) == 0
    assert most_ahead() > 1


@pytest.mark.parametrize("budget", [0, -5, 1.5, True, "1GB", None])
def test_a_nonsense_read_ahead_budget_is_one_line(tiny: nn.Module, budget: object) -> None:
    import aepose
    from aepose.pipeline.predictor import Predictor
    from aepose.pipeline.run import RunOptions

    line = f"RunOptions.read_ahead_bytes = {budget!r}: expected an integer >= 1"
    with pytest.raises(AeposeError) as error:
        RunOptions(read_ahead_bytes=budget)  # type: ignore[arg-type]
    assert str(error.value) == line
    predictor = Predictor(tiny, get_preset(TINY))
    with pytest.raises(AeposeError) as error:
        aepose.predict(np.zeros((96, 128, 3), np.uint8), predictor,
                       read_ahead_bytes=budget)  # type: ignore[arg-type]
    assert str(error.value) == line
