"""Helpers shared by several test files (imported as a plain module, like keyspec.py)."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

import cv2
import pytest
import torch
from torch import nn

from aepose.apps.cli import main
from aepose.models import build_model


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``aepose ARGV`` in-process: (exit status, stdout, stderr)."""
    try:
        code = main(list(argv))
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def read_back(video: Path) -> tuple[str, list[tuple[int, ...]]]:
    """(FourCC, shape of every frame) of a video as OpenCV's FFmpeg backend decodes it."""
    capture = cv2.VideoCapture(str(video), cv2.CAP_FFMPEG)
    code = int(capture.get(cv2.CAP_PROP_FOURCC))
    shapes = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        shapes.append(frame.shape)
    capture.release()
    return "".join(chr((code >> (8 * i)) & 0xFF) for i in range(4)), shapes


def lively(preset: str, seed: int = 0, *, bn_statistics: bool = False) -> nn.Module:
    """A tiny network whose outputs are O(0.1-1) and vary over the image (mmpose's init
    gives ~1e-3 maps, too flat to test anything against a tolerance), in train mode.

    ``bn_statistics`` also gives BatchNorm running statistics unlike a fresh BN's (0, 1),
    so whether eval mode was used is visible in the outputs.
    """
    torch.manual_seed(seed)
    return liven(build_model(preset), bn_statistics=bn_statistics)


def liven(model: nn.Module, *, bn_statistics: bool = False) -> nn.Module:
    """:func:`lively`'s weights drawn into any network (a custom skeleton's), in place from
    torch's global generator; returns ``model``."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            if module.bias is not None:
                nn.init.uniform_(module.bias, -0.1, 0.1)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.uniform_(module.weight, 0.3, 0.6)
            nn.init.uniform_(module.bias, -0.1, 0.1)
            if bn_statistics:
                nn.init.uniform_(module.running_mean, -0.2, 0.2)
                nn.init.uniform_(module.running_var, 0.5, 2.0)
    return model


class Hang(Exception):  # noqa: N818  (a test failure, not an error of the code)
    """A call that did not return in time (raised by :func:`within`)."""


@contextmanager
def within(seconds: float) -> Iterator[None]:
    """Fail with :class:`Hang` if the block runs longer than ``seconds`` (main thread only):
    a call that loops forever fails its test instead of hanging the suite. SIGALRM
    interrupts Python code between bytecodes, which is where aepose's loops spin."""

    def expire(signum: int, frame: FrameType | None) -> None:
        raise Hang(f"no return within {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def detecting_network(preset: str) -> nn.Module:
    """``preset``'s network in eval mode, with realistic weights and output layers adjusted
    (``mimic_trained_maps``) so that its maps load the decoder like a trained network's:
    people are found."""
    from aepose.apps.bench import crowd_images, mimic_trained_maps, realistic_weights
    from aepose.config import get_preset
    from aepose.data.dataset import normalize_image

    cfg = get_preset(preset)
    torch.manual_seed(0)
    model = realistic_weights(build_model(cfg), seed=0).eval()
    probe = torch.stack([normalize_image(crowd_images(1, (128, 128), seed=1)[0])])
    mimic_trained_maps(model, cfg, probe)
    return model

