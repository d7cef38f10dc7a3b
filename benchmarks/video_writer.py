"""Which library writes aepose's H.264 MP4s: PyAV (``av``) or ``imageio-ffmpeg``.

Writes the same 100 frames (default 640x480, a generated crowd scene panned 3 pixels a frame,
so the encoder sees realistic motion) with libx264 (presets medium, the default, and
veryfast) through each library, then reads every file back with OpenCV
(``cv2.VideoCapture``, the reader aepose uses) and prints the write time (best of
``--repeat``), the file size, what OpenCV reads back (frames, size, fourcc) and the
installed size of each package. The OpenCV 'mp4v' writer aepose used before is the baseline.

    .venv/bin/pip install imageio-ffmpeg   # the candidate aepose does not depend on
    .venv/bin/python benchmarks/video_writer.py [--frames 100] [--size 640x480] [--repeat 3]
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from aepose.synth import SceneParams, render_scene, sample_scene

Frames = Sequence[npt.NDArray[np.uint8]]


def make_frames(count: int, width: int, height: int) -> list[npt.NDArray[np.uint8]]:
    """RGB frames: one generated scene twice as wide as the frame, panned left to right."""
    rng = np.random.default_rng(0)
    scene = sample_scene(rng, 2 * width, height, SceneParams(people=(6, 12)))
    rgb = cv2.cvtColor(render_scene(scene).image, cv2.COLOR_BGR2RGB)
    step = max(1, min(3, width // max(1, count)))
    return [np.ascontiguousarray(rgb[:, i * step : i * step + width]) for i in range(count)]


def write_pyav(path: Path, frames: Frames, fps: float, preset: str = "medium") -> None:
    import av

    height, width = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=round(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": preset}
        for rgb in frames:
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def write_imageio_ffmpeg(path: Path, frames: Frames, fps: float, preset: str = "medium") -> None:
    import imageio_ffmpeg

    height, width = frames[0].shape[:2]
    writer = imageio_ffmpeg.write_frames(
        str(path), (width, height), fps=fps, codec="libx264", pix_fmt_out="yuv420p",
        macro_block_size=1, ffmpeg_log_level="error", output_params=["-preset", preset],
    )  # fmt: skip
    writer.send(None)  # starts the ffmpeg process
    for rgb in frames:
        writer.send(rgb)
    writer.close()


def write_opencv_mp4v(path: Path, frames: Frames, fps: float) -> None:
    height, width = frames[0].shape[:2]
    fourcc = cv2.VideoWriter.fourcc(*"mp4v")
    writer = cv2.VideoWriter(str(path), cv2.CAP_FFMPEG, fourcc, fps, (width, height))
    for rgb in frames:
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()


def read_back(path: Path) -> tuple[int, tuple[int, int], str]:
    """(frames decoded, (width, height) of the first frame, fourcc) as OpenCV sees the file."""
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    code = int(capture.get(cv2.CAP_PROP_FOURCC))
    fourcc = "".join(chr((code >> (8 * i)) & 0xFF) for i in range(4))
    count, size = 0, (0, 0)
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        count += 1
        size = (frame.shape[1], frame.shape[0])
    capture.release()
    return count, size, fourcc


def installed_mib(*modules: str) -> float:
    """Size on disk of the packages' folders plus their bundled ``NAME.libs`` folders."""
    total = 0
    for name in modules:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            continue
        folder = Path(spec.origin).parent
        for root in (folder, folder.with_name(f"{name}.libs")):
            total += sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    return total / 2**20


WRITERS: dict[str, tuple[Callable[[Path, Frames, float], None], tuple[str, ...]]] = {
    "PyAV medium": (write_pyav, ("av",)),
    "PyAV veryfast": (functools.partial(write_pyav, preset="veryfast"), ("av",)),
    "imageio-ffmpeg medium": (write_imageio_ffmpeg, ("imageio_ffmpeg",)),
    "imageio-ffmpeg veryfast": (
        functools.partial(write_imageio_ffmpeg, preset="veryfast"),
        ("imageio_ffmpeg",),
    ),
    "OpenCV mp4v (before)": (write_opencv_mp4v, ()),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--size", default="640x480", help="WIDTHxHEIGHT")
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    frames = make_frames(args.frames, width, height)
    print(f"{args.frames} frames {width}x{height} at {args.fps} fps, best of {args.repeat}")
    print(
        f"{'writer':24} {'write s':>8} {'ms/frame':>9} {'KiB':>7}  read back by OpenCV"
        f"{'installed MiB':>28}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        paths = {name: Path(tmp) / f"{i}.mp4" for i, name in enumerate(WRITERS)}
        times: dict[str, list[float]] = {name: [] for name in WRITERS}
        # Round robin, so that a shared machine's load changes hit every writer alike.
        for _ in range(args.repeat):
            for name, (write, _modules) in WRITERS.items():
                start = time.perf_counter()
                write(paths[name], frames, args.fps)
                times[name].append(time.perf_counter() - start)
        for name, (_write, modules) in WRITERS.items():
            path = paths[name]
            count, size, fourcc = read_back(path)
            best = min(times[name])
            size_text = f"{count} frames {size[0]}x{size[1]} fourcc {fourcc!r}"
            mib = f"{installed_mib(*modules):.0f}" if modules else "-"
            print(
                f"{name:24} {best:8.2f} {1000 * best / args.frames:9.1f} "
                f"{path.stat().st_size / 1024:7.0f}  {size_text:34} {mib:>8}"
            )


if __name__ == "__main__":
    main()
