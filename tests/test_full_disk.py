"""Full disks: every file written atomically, one line naming it, the older file intact.

A full disk is made real in a child process by a file-size limit (``RLIMIT_FSIZE``: writes
past it fail with EFBIG, "File too large", as they fail with ENOSPC on a full disk, with
SIGXFSZ ignored as a shell would), so the libraries' own writers (OpenCV, torch) meet it.
Training, too slow for a child process, meets it in-process through a file that fills up.
"""

from __future__ import annotations

import errno
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from aepose.config import apply_overrides, get_preset
from aepose.engine.train import TrainOptions, train
from aepose.errors import AeposeError
from aepose.models import checkpoint as checkpoint_module
from aepose.models.checkpoint import read_training_state
from aepose.synth import generate_dataset

SRC = Path(__file__).resolve().parents[1] / "src"

# ``python -c _FULL LIMIT CODE...``: CODE run where no file may grow past LIMIT bytes.
_FULL = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
exec(sys.argv[2])
"""

_CLI = """
from aepose.apps.cli import main
sys.exit(main(sys.argv[3:]))
"""


def _run(limit: int, code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _FULL, str(limit), code, *args],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(SRC)})


def test_synth_on_a_full_disk_leaves_only_whole_files(tmp_path: Path) -> None:
    """The disk fills while image 1 is written: one line naming it, and no truncated JPEG
    under a final name (one was left, and the line named no file)."""
    whole = tmp_path / "whole"
    generate_dataset(whole, "crowdpose", train_images=5, val_images=1, seed=0, size=256)
    sizes = {p.name: p.stat().st_size for p in (whole / "images").iterdir()}
    limit = min(sizes.values()) - 1  # no image fits
    out = tmp_path / "full"
    done = _run(limit, _CLI, "synth", str(out), "--images", "6", "--size", "256")
    assert done.returncode == 1
    assert done.stderr == (f"aepose: error: cannot write image {out / 'images' / '1.jpg'}: "
                           "File too large\n")
    assert [p.name for p in (out / "images").iterdir()] == []  # not even hidden temporaries


def test_synth_keeps_the_images_written_before_the_disk_filled(tmp_path: Path) -> None:
    whole = tmp_path / "whole"
    generate_dataset(whole, "crowdpose", train_images=5, val_images=1, seed=0, size=256)
    images = sorted((whole / "images").iterdir(), key=lambda p: int(p.stem))
    limit = max(p.stat().st_size for p in images[:2])  # images 1 and 2 fit; not all others
    assert any(p.stat().st_size > limit for p in images[2:])
    out = tmp_path / "full"
    done = _run(limit, _CLI, "synth", str(out), "--images", "6", "--size", "256")
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"aepose: error: cannot write image {out / 'images'}/")
    written = {p.name: p.read_bytes() for p in (out / "images").iterdir()}
    assert {"1.jpg", "2.jpg"} <= set(written) and len(written) < len(images)
    for name, data in written.items():  # each one whole: the bytes of the complete run
        assert data == (whole / "images" / name).read_bytes(), name


_SAVE = """
import torch
from aepose.errors import AeposeError
from aepose.models.checkpoint import write_checkpoint
try:
    write_checkpoint(sys.argv[3], {"model": {"w": torch.ones(100_000)}})
except AeposeError as error:
    print(error)
"""


def test_a_checkpoint_on_a_full_disk_is_one_line_and_the_old_one_stays(tmp_path: Path) -> None:
    """torch's writer once ended in two chained tracebacks ("unexpected pos ...")."""
    path = tmp_path / "last.pth"
    torch.save({"model": {"w": torch.zeros(10)}}, path)
    before = path.read_bytes()
    done = _run(100_000, _SAVE, str(path))
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert done.stdout == f"cannot write checkpoint {path}: File too large\n"
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.pth"]


class _FillingFile(io.FileIO):
    """A file on a disk with ``room`` bytes left."""

    room = 10_000

    def write(self, data: bytes) -> int:  # type: ignore[override]
        if self.tell() + len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.name)
        return super().write(data)


def test_training_on_a_full_disk_names_the_checkpoint_that_stays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk fills at the second epoch's checkpoint: one line naming it and the newest
    checkpoint, which holds the first epoch, whole."""
    data = tmp_path / "data"
    generate_dataset(data, "crowdpose", train_images=4, val_images=1, seed=3, size=(96, 128))
    cfg = apply_overrides(get_preset("higherhrnet_tiny_crowdpose_128"), [
        "train.batch_size=4", "train.epochs=2", "train.checkpoint_interval=1"])
    run = tmp_path / "run"
    opened: list[str] = []

    def open_(file: Path, mode: str = "r") -> io.FileIO:
        opened.append(mode)
        # The third checkpoint (epoch_001.pth, last.pth, then epoch_002.pth) finds it full.
        return _FillingFile(file, "w") if len(opened) == 3 else io.FileIO(file, "w")

    monkeypatch.setattr(checkpoint_module, "open", open_, raising=False)
    with pytest.raises(AeposeError) as error:
        train(cfg, TrainOptions(data_root=data, out=run, device="cpu", progress=False,
                                validate=False))
    assert str(error.value) == (
        f"cannot write checkpoint {run / 'epoch_002.pth'}: No space left on device; the "
        f"newest checkpoint, {run / 'last.pth'}, is intact (--resume it)")
    assert error.value.__cause__ is None and error.value.__suppress_context__
    assert sorted(p.name for p in run.glob("*.pth")) == ["epoch_001.pth", "last.pth"]
    assert not list(run.glob(".aepose-*"))
    _, raw = read_training_state(run / "last.pth")
    assert raw["epoch"] == 1


def test_a_clip_on_a_full_disk_names_the_video_not_its_temporary_file(tmp_path: Path) -> None:
    """The disk fills while the clip is closed (the muxer's last writes): the line named the
    hidden ``.aepose-XXXXXXXX.tmp.mp4`` the frames went to, which the user never sees."""
    out = tmp_path / "clips"
    done = _run(12_000, _CLI, "synth", str(out), "--video", "--frames", "20", "--frame-size",
                "160x128", "--people", "2")  # the clip is 25 KB
    assert done.returncode == 1
    assert done.stderr == (f"aepose: error: cannot write video {out / 'clip_0000.mp4'}: File "
                           "too large\n")
    assert list(out.iterdir()) == []  # no temporary file either (the truth comes after)


_NOISE_VIDEO = """
import numpy as np
from aepose.errors import AeposeError
from aepose.video.writer import VideoWriter
rng = np.random.default_rng(0)
writer = VideoWriter(sys.argv[3], fps=25, width=320, height=240)
try:
    with writer:
        for _ in range(100):  # noise: the encoder's packets fill the disk as frames go in
            writer.write(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8))
except AeposeError as error:
    print(writer.frames_written, error)
"""


def test_a_video_that_fills_the_disk_while_frames_go_in_is_one_line(tmp_path: Path) -> None:
    """A write that fails between frames was the muxer's raw OSError naming the temporary
    file (a traceback from the CLI); now one line naming the video, which stays as it was."""
    path = tmp_path / "overlay.mp4"
    path.write_bytes(b"an earlier run's overlay")
    done = _run(50_000, _NOISE_VIDEO, str(path))
    assert done.stderr == "", done.stderr
    written, line = done.stdout.rstrip("\n").split(" ", 1)
    assert 0 < int(written) < 100  # it failed while frames went in, not at the end
    assert line == f"cannot write video {path}: File too large"
    assert path.read_bytes() == b"an earlier run's overlay"
    assert [p.name for p in tmp_path.iterdir()] == ["overlay.mp4"]
