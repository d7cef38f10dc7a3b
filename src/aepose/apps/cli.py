"""``aepose`` command line: one subcommand per job, worked examples in every ``--help``.

This module parses and dispatches: the parser and its value checks, and one ``_cmd_x`` per
command that turns the parsed namespace into the options of the app module that runs it
(:mod:`aepose.apps.test`, :mod:`aepose.apps.train`, ...). Every ending is one stderr line
and an exit status (:func:`main`).

Start-up is kept short: this module imports only the configuration (plain dataclasses) at
module level; each command imports its app module, and with it torch, inside its function,
so ``aepose --help`` and ``aepose models`` never load torch.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aepose
from aepose.choices import (
    BENCHMARK_STAGES,
    COMPILE_MODES,
    DEMO_EPOCHS,
    DEMO_MINUTES,
    FRAME_SIDES,
    OVERLAY_MIN_SCORE,
    PRECISIONS,
    SMOOTH_BETA,
    SMOOTH_MIN_CUTOFF,
    STAGE_AVERAGES,
    TRACK_MAX_AGE,
    TRACK_MIN_SCORE,
    TRACK_MIN_SIMILARITY,
)
from aepose.config import (
    MAX_INPUT_SIZE,
    MAX_TEST_SCALE,
    MIN_TEST_SCALE,
    PRESETS,
    did_you_mean,
    override_keys,
)
from aepose.errors import AeposeError, Interrupted, one_line
from aepose.keypoints import KEYPOINT_SPECS

if TYPE_CHECKING:  # the command imports it when it runs
    from aepose.apps.predict import PredictOptions

# Commands that run networks over images: they get glibc's keep-freed-memory setting.
_IMAGE_COMMANDS = frozenset({"train", "test", "predict", "benchmark", "demo"})
_STREAMING_COMMANDS = frozenset({"test", "predict"})  # decode workers beside the network
# --set sections an unknown ``--name VALUE`` may belong to, in the order they are suggested.
_SET_SECTIONS = {"train": ("train", "model", "data", "test"),
                 "demo": ("train", "model", "data", "test"),
                 "test": ("test",), "predict": ("test",)}
_NUMBER = re.compile(r"^-\d+$|^-\d*\.\d+$")  # argparse's own test for negative numbers


class _Parser(argparse.ArgumentParser):
    """argparse with a did-you-mean hint for unknown subcommands and options.

    Abbreviated options are refused: a typo should get a hint, not a silent match. An
    unknown option is reported before a missing required one, since the unknown one is
    usually the required one misspelt (``--wieghts``).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self.argv: list[str] = []
        self.set_sections: tuple[str, ...] = ()  # where ``--name`` may be a --set key

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        # Kept for error(): argparse checks required options before it returns the extras.
        self.argv = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> None:  # type: ignore[override]
        choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if choice:
            options = re.findall(r"'?([\w-]+)'?", choice.group(2))
            message += did_you_mean(choice.group(1), options)
        elif message.startswith("the following arguments are required"):
            unknown = self._unknown(self.argv)
            if unknown:
                message = self._unrecognized(unknown)
        # One line, like every other error (the usage is one --help away).
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def given(self, option: str) -> bool:
        """Whether the command line named ``option`` (``--x V`` or ``--x=V``)."""
        tokens = self.argv[:self.argv.index("--")] if "--" in self.argv else self.argv
        return any(t == option or t.startswith(option + "=") for t in tokens)

    def reject_extras(self, extras: list[str]) -> None:
        """Unknown options, each with the closest option this (sub)command has."""
        self.error(self._unrecognized(extras))

    def _known(self) -> list[str]:
        return [o for action in self._actions for o in action.option_strings]

    def _unknown(self, argv: list[str]) -> list[str]:
        """The tokens of ``argv`` that look like options this parser lacks, with the value
        that follows each (if any)."""
        known = set(self._known())
        unknown: list[str] = []
        for i, token in enumerate(argv):
            if token == "--":
                break
            if token.startswith("-") and not _NUMBER.match(token) \
                    and token.split("=")[0] not in known:
                unknown.append(token)
                following = argv[i + 1] if i + 1 < len(argv) else ""
                if "=" not in token and following and not following.startswith("-"):
                    unknown.append(following)
        return unknown

    def _unrecognized(self, extras: list[str]) -> str:
        hints: list[str] = []
        i = 0
        while i < len(extras):
            token = extras[i]
            value = extras[i + 1] if i + 1 < len(extras) and "=" not in token \
                and not extras[i + 1].startswith("-") else None
            hint = self._hint(token, value) if token.startswith("-") else token
            if value is not None and "--set " in hint:
                i += 1  # the value is part of the suggestion
            hints.append(hint)
            i += 1
        return "unrecognized arguments: " + " ".join(hints)

    def _hint(self, token: str, value: str | None) -> str:
        """``token`` with a suggestion: a config field as ``--set section.field=VALUE`` when
        its name is one, else the closest option."""
        name, _, inline = token.partition("=")
        key = _config_key(name.lstrip("-").replace("-", "_"), self.set_sections)
        if key is not None:
            shown = inline or value or "VALUE"
            return f"{token}{' ' + value if value and not inline else ''}; did you mean " \
                f"--set {key}={shown}?"
        return token + did_you_mean(name, self._known())


def _config_key(field: str, sections: Sequence[str]) -> str | None:
    """``section.field`` for the first of ``sections`` that has ``field``, else None."""
    keys = set(override_keys(next(iter(PRESETS.values()))))
    return next((f"{s}.{field}" for s in sections if f"{s}.{field}" in keys), None)


# argparse ``type=`` functions: a numeric option is range-checked where it enters, and a bad
# value is one line naming the option and the allowed range (``argument --batch-size: 0 is
# not an integer in [1, 4096]``). Every subcommand's numeric options use these.


def int_in(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer in [low, high]."""
    allowed = f"an integer in [{low}, {high}]"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {allowed}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not {allowed}")
        return value

    return parse


def float_in(low: float, high: float, *, low_open: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number in [low, high], or (low, high] with ``low_open``."""
    allowed = f"a finite number in {'(' if low_open else '['}{low:g}, {high:g}]"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {allowed}") from None
        inside = (low < value if low_open else low <= value) and value <= high
        if not (math.isfinite(value) and inside):
            raise argparse.ArgumentTypeError(f"{value:g} is not {allowed}")
        return value

    return parse


def frame_size(text: str) -> tuple[int, int]:
    """An argparse type: ``WIDTHxHEIGHT``, each side in :data:`FRAME_SIDES`."""
    low, high = FRAME_SIDES
    width, x, height = text.lower().partition("x")
    try:
        size = (int(width), int(height)) if x else None
    except ValueError:
        size = None
    if size is None or not all(low <= side <= high for side in size):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not WIDTHxHEIGHT with sides in [{low}, {high}]")
    return size


MAX_COUNT = 10**9  # iterations, epochs, images: large enough for any real run
positive_int = int_in(1, MAX_COUNT)
non_negative_int = int_in(0, MAX_COUNT)
seed_int = int_in(0, 2**31 - 1)  # NumPy and torch both take it as it is
batch_size_int = int_in(1, 4096)
workers_int = int_in(0, 256)
# Multiples of 32 only (HRNet's stride) are refused later with their own message.
input_size_int = int_in(32, MAX_INPUT_SIZE)
fraction = float_in(0.0, 1.0)  # thresholds, OKS, scores
# The config's own range for test scales: below it an image shrinks to a few heatmap pixels,
# above it one image asks for gigabytes.
test_scale = float_in(MIN_TEST_SCALE, MAX_TEST_SCALE)


def onnx_opset(text: str) -> int:
    """An argparse type: an ONNX opset the installed exporter writes as asked.

    Measured with torch 2.13: the dynamo exporter writes opset 18 and converts it down with
    onnx's version converter; below 16 the conversion fails and it writes 18 instead, and
    above the newest opset the onnx package knows, too. Those are refused here.
    """
    try:
        import onnx  # the export extra; only needed when --opset is given
    except ImportError:
        raise argparse.ArgumentTypeError("needs pip install 'aepose[export]'") from None
    return int_in(_MIN_ONNX_OPSET, onnx.defs.onnx_opset_version())(text)


_MIN_ONNX_OPSET = 16


# One _cmd_x per command: the namespace becomes the options of the app module that runs the
# command, imported here so that the parser and --help need none of them.


def _cmd_models(args: argparse.Namespace) -> None:
    from aepose.apps.models import print_models

    print_models(flops=args.flops)


def _cmd_info(args: argparse.Namespace) -> None:
    from aepose.apps.info import describe_weights

    describe_weights(args.weights)


def _cmd_download(args: argparse.Namespace) -> None:
    from aepose.apps.models import download_weights

    download_weights(args.names)


def _cmd_synth(args: argparse.Namespace) -> None:
    from aepose.apps.synth import SynthOptions, run_synth

    run_synth(SynthOptions(
        out_dir=Path(args.out_dir), spec=args.spec, images=args.images, seed=args.seed,
        size=args.size, overwrite=args.overwrite, video=args.video, frames=args.frames,
        people=args.people, frame_size=args.frame_size, fps=args.fps))


def _cmd_train(args: argparse.Namespace) -> None:
    from aepose.apps.train import run_train
    from aepose.engine.train import TrainOptions

    options = TrainOptions(
        data_root=Path(args.data_root), out=Path(args.out) if args.out else None,
        resume=Path(args.resume) if args.resume else None, dtype=args.dtype,
        channels_last=args.channels_last,
        pretrained=Path(args.pretrained) if args.pretrained else None, device=args.device,
        seed=args.seed, deterministic=args.deterministic, log_interval=args.log_interval,
        stop_after=args.stop_after,
    )
    run_train(args.preset, args.overrides, options)


def _compile_mode(args: argparse.Namespace) -> str | None:
    """The torch.compile mode asked for by --compile / --compile-mode, or None (eager)."""
    return args.compile_mode or ("default" if args.compile else None)


def _cmd_test(args: argparse.Namespace) -> None:
    from aepose.apps.test import TestOptions, run_test

    run_test(TestOptions(
        weights=args.weights, preset=args.preset,
        data_root=Path(args.data_root) if args.data_root else None,
        ann=Path(args.ann) if args.ann else None,
        images=Path(args.images) if args.images else None, results=args.results,
        spec=args.spec, out=Path(args.out) if args.out else None, overwrite=args.overwrite,
        overrides=tuple(args.overrides), scales=tuple(args.scales) if args.scales else None,
        flip=False if args.no_flip else None, stage_average=args.stage_average,
        dtype=args.dtype, channels_last=args.channels_last, compile_mode=_compile_mode(args),
        device=args.device, batch_size=args.batch_size, workers=args.workers,
        decode_workers=args.decode_workers, progress=sys.stderr.isatty()))


def _cmd_predict(args: argparse.Namespace) -> None:
    from aepose.apps.predict import PredictCommand, predict_command

    predict_command(PredictCommand(
        sources=tuple(args.sources), weights=str(args.weights),
        out=Path(args.out) if args.out else None, preset=args.preset, backend=args.backend,
        device=args.device, pose_nms=args.pose_nms, overrides=tuple(args.overrides),
        scales=tuple(args.scales) if args.scales else None,
        flip=False if args.no_flip else None, stage_average=args.stage_average,
        dtype=args.dtype, channels_last=args.channels_last, compile_mode=_compile_mode(args),
        options=_predict_options(args)))


def _predict_options(args: argparse.Namespace) -> PredictOptions:
    """``predict``'s run options, video and tracking ones included."""
    from aepose.apps.predict import PredictOptions
    from aepose.tracking.one_euro import OneEuroConfig
    from aepose.tracking.tracker import TrackerConfig

    euro = OneEuroConfig(min_cutoff=args.smooth_min_cutoff, beta=args.smooth_beta)
    tracker = TrackerConfig(max_age=args.track_max_age, smooth=args.smooth, one_euro=euro,
                            min_similarity=args.track_min_similarity,
                            min_score=args.track_min_score)
    return PredictOptions(
        batch_size=args.batch_size, read_workers=args.workers,
        decode_workers=args.decode_workers, draw=not args.no_draw,
        keypoint_threshold=args.threshold, min_score=args.min_score,
        weights=str(args.weights), overwrite=args.overwrite, progress=sys.stderr.isatty(),
        track=args.track, tracker=tracker, max_frames=args.max_frames,
        duration_s=args.duration, drop=False if args.no_drop else None)


def _cmd_benchmark(args: argparse.Namespace) -> None:
    from aepose.apps.bench.command import BenchmarkOptions, run_benchmarks

    run_benchmarks(BenchmarkOptions(
        preset=args.preset, stages=tuple(args.stage), device=args.device,
        batch_size=args.batch_size, dtype=args.dtype, compile_mode=_compile_mode(args),
        channels_last=args.channels_last, repeats=args.repeats, warmup=args.warmup,
        input_size=args.input_size, flip=not args.no_flip, images=args.images,
        decode_workers=args.decode_workers, json=Path(args.json) if args.json else None))


def _cmd_export(args: argparse.Namespace) -> None:
    from aepose.apps.export import export_weights

    export_weights(args.weights, args.output, preset=args.preset, input_size=args.input_size,
                   dynamic=not args.static, opset=args.opset)


def _cmd_demo(args: argparse.Namespace) -> None:
    from aepose.apps.demo import DemoSettings, run_demo

    settings = DemoSettings(out=Path(args.out), minutes=args.minutes, device=args.device,
                            seed=args.seed, epochs=args.epochs, overrides=tuple(args.overrides))
    run_demo(settings)


COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], None], str, str]] = {
    "models": (_cmd_models, "list the presets (keypoints, dataset, size, params, GFLOPs, "
               "released weights and whether they are cached)",
               "examples:\n  aepose models\n  aepose models --no-flops   # without GFLOPs"),
    "info": (_cmd_info, "tell what a weights file is, whether its hash checks out and which "
             "preset fits it",
             "examples:\n"
             "  aepose info hrnet_w32_aic_512          # the released weights (downloads them)\n"
             "  aepose info hrnet_w32_aic_512x512-77e2a98a_20210131.pth   # the same, by file\n"
             "  aepose demo                            # writes runs/demo/train/last.pth\n"
             "  aepose info runs/demo/train/last.pth"),
    "download": (_cmd_download, "fetch released weights into the cache and print where they are",
                 "examples:\n  aepose download hrnet_w32_aic_512 higherhrnet_w32_crowdpose_512\n"
                 "  aepose download higher_hrnet32_crowdpose_512x512-1aa4a132_20201017.pth\n"
                 "  aepose download all\n"
                 "  AEPOSE_HOME=/data/aepose aepose download all   # into /data/aepose/weights"),
    "synth": (_cmd_synth, "generate a crowd dataset (images + COCO-format JSON) offline",
              "examples:\n  aepose synth data/synth --spec crowdpose --images 500 --seed 0\n"
              "  aepose synth data/synth_aic --spec aic --images 200 --size 256..512\n"
              "  aepose synth data/clips --video --images 5 --frames 150 --people 6"),
    "train": (_cmd_train, "train a preset on a COCO-format dataset (one GPU, torchrun, or CPU)",
              "examples:\n"
              "  aepose train --preset higherhrnet_w32_crowdpose_512 --data-root data/crowdpose\n"
              "  torchrun --nproc-per-node 8 -m aepose train --preset hrnet_w32_aic_512 \\\n"
              "      --data-root data/aic --dtype bf16 --channels-last\n"
              "  aepose synth data/synth --images 500   # writes data/synth/ (CrowdPose layout)\n"
              "  aepose train --preset higherhrnet_tiny_crowdpose_128 --data-root data/synth \\\n"
              "      --set train.epochs=3 train.lr=1e-3 --out runs/tiny\n"
              "  aepose train --resume runs/tiny/last.pth --data-root data/synth"),
    "test": (_cmd_test, "evaluate weights on a COCO-format set: AP table, metrics.json, results",
             "examples:\n"
             "  aepose test --weights hrnet_w32_aic_512x512-77e2a98a_20210131.pth "
             "--data-root data/aic\n"
             "  aepose test --preset higherhrnet_w32_crowdpose_512 \\\n"
             "      --weights higher_hrnet32_crowdpose_512x512-1aa4a132_20201017.pth \\\n"
             "      --data-root data/crowdpose --scales 2 1\n"
             "  torchrun --nproc-per-node 8 -m aepose test --weights hrnet_w32_aic_512 \\\n"
             "      --data-root data/aic --out runs/aic-test   # metrics.json, results.json\n"
             "  aepose test --results runs/aic-test/results.json \\\n"
             "      --ann data/aic/annotations/aic_val.json --spec aic   # re-score, no network\n"
             "  aepose demo                # writes runs/demo/train/last.pth and runs/demo/data/\n"
             "  aepose test --weights runs/demo/train/last.pth --ann "
             "runs/demo/data/annotations/mmpose_crowdpose_test.json"),
    "predict": (_cmd_predict, "poses for images, folders, globs or videos: JSON + overlays",
                "examples:\n"
                "  aepose demo                      # writes runs/demo/train/last.pth, "
                "runs/demo/data/images/\n"
                "  aepose predict runs/demo/data/images/1.jpg --weights hrnet_w32_aic_512"
                "   # released weights, by name\n"
                "  aepose predict runs/demo/data/images --weights runs/demo/train/last.pth "
                "--out runs/pred\n"
                "  aepose synth data/clips --video --frames 50   # writes "
                "data/clips/clip_0000.mp4\n"
                "  aepose predict 'runs/demo/data/images/*.jpg' data/clips/clip_0000.mp4 \\\n"
                "      --weights runs/demo/train/last.pth --device cuda --batch-size 16\n"
                "  aepose predict data/clips/clip_0000.mp4 --weights runs/demo/train/last.pth "
                "--smooth   # tracked\n"
                "  aepose predict 'runs/demo/data/images/%d.jpg' --weights "
                "runs/demo/train/last.pth   # numbered images, read as one video\n"
                "  aepose predict 0 --weights hrnet_w32_aic_512 --duration 30   # webcam 0, 30 s\n"
                "  aepose predict rtsp://cam/stream --weights hrnet_w32_aic_512 --max-frames 500"),
    "benchmark": (_cmd_benchmark, "time the network, decoding, the whole pipeline or training",
                  "examples:\n"
                  "  aepose benchmark --preset hrnet_w32_aic_512 --stage forward e2e\n"
                  "  aepose benchmark --preset higherhrnet_small_crowdpose_128 --stage "
                  "pipeline --batch-size 4 --images 32\n"
                  "  aepose benchmark --preset hrnet_w32_aic_512 --device cuda --dtype bf16 "
                  "--channels-last --compile --batch-size 64\n"
                  "  aepose benchmark --preset higherhrnet_w32_crowdpose_512 --stage train "
                  "--device cuda --dtype bf16 --batch-size 24"),
    "export": (_cmd_export, "export the network to ONNX (dynamic batch, height and width)",
               "examples:\n"
               "  aepose export --weights hrnet_w32_aic_512x512-77e2a98a_20210131.pth "
               "--output hrnet_aic.onnx\n"
               "  aepose demo                       # writes runs/demo/train/last.pth\n"
               "  aepose export --weights runs/demo/train/last.pth --output demo.onnx --static"),
    "demo": (_cmd_demo, "the main job, offline: generate crowds, train, evaluate, draw",
             "examples:\n  aepose demo                       # about 10 minutes on 2 CPU cores\n"
             "  aepose demo --minutes 3 --out runs/quick\n"
             "  aepose demo --device cuda --epochs 200"),
}


def _add_train_arguments(p: _Parser) -> None:
    p.add_argument("--preset", help="recipe to train (see 'aepose models')")
    p.add_argument("--data-root", required=True,
                   help="dataset root in the dataset's own layout (see README, Data)")
    p.add_argument("--out", help="run folder for logs and checkpoints "
                   "(default runs/PRESET-TIMESTAMP, or the resumed run's folder)")
    p.add_argument("--set", dest="overrides", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override config values, e.g. train.epochs=3 train.lr=1e-3")
    p.add_argument("--resume", metavar="CHECKPOINT",
                   help="continue a run exactly from its last.pth (or any epoch_NNN.pth)")
    p.add_argument("--dtype", choices=PRECISIONS, default="fp32",
                   help="mixed precision (fp16 adds gradient scaling; default fp32)")
    p.add_argument("--channels-last", action="store_true",
                   help="NHWC memory format (faster convolutions on recent GPUs)")
    p.add_argument("--pretrained", metavar="WEIGHTS",
                   help="initialise the backbone from these weights (e.g. ImageNet HRNet)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--seed", type=seed_int, default=0, help="weights, shuffling, augmentation")
    p.add_argument("--deterministic", action="store_true",
                   help="deterministic kernels (slower; bit-exact reruns and resumes)")
    p.add_argument("--log-interval", type=positive_int, default=20,
                   help="iterations between loss checks and log lines (default 20)")
    p.add_argument("--stop-after", type=positive_int, metavar="ITERATIONS",
                   help="stop with a checkpoint after this many iterations (smoke tests)")


def _add_pipeline_arguments(p: _Parser) -> None:
    """Options of the streamed test-time pipeline shared by test and predict."""
    p.add_argument("--set", dest="overrides", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override test settings, e.g. test.detection_threshold=0.2 "
                   "test.max_people=50")
    p.add_argument("--workers", type=workers_int, default=2,
                   help="threads reading and resizing images (default 2)")
    p.add_argument("--decode-workers", type=workers_int, metavar="N",
                   help="processes (CPU) or threads (GPU) decoding while the network runs "
                   "(default: one per spare CPU core, at most 4; 0: decode in between)")
    _add_speed_arguments(p)


def _add_speed_arguments(p: _Parser) -> None:
    p.add_argument("--dtype", choices=PRECISIONS, default="fp32",
                   help="network precision (autocast; default fp32, as the published numbers)")
    p.add_argument("--channels-last", action="store_true", help="NHWC memory format")
    p.add_argument("--compile", action="store_true", help="torch.compile the network")
    p.add_argument("--compile-mode", choices=COMPILE_MODES,
                   help="torch.compile mode, implies --compile (reduce-overhead: CUDA graphs)")


def _add_test_arguments(p: _Parser) -> None:
    p.add_argument("--weights", help="checkpoint (mmpose 0.x or aepose)")
    p.add_argument("--preset", help="recipe (default: the file's own, or recognised from keys)")
    p.add_argument("--data-root", help="dataset root; the preset's val/test split is used")
    p.add_argument("--ann", help="annotation file (instead of the preset's under --data-root)")
    p.add_argument("--images", help="image folder for --ann (default: the preset's val "
                   "folder under the dataset root holding --ann, ROOT/annotations/x.json)")
    p.add_argument("--scales", type=test_scale, nargs="+",
                   help=f"test scales in [{MIN_TEST_SCALE:g}, {MAX_TEST_SCALE:g}], e.g. 2 1 0.5")
    p.add_argument("--no-flip", action="store_true", help="no flip test")
    p.add_argument("--stage-average", choices=STAGE_AVERAGES,
                   help="HigherHRNet output averaging (default the preset's: v0.29, as the "
                   "published numbers)")
    p.add_argument("--out", help="folder for metrics.json and results.json (default "
                   "runs/PRESET-test-TIMESTAMP; with --results, metrics-rescored.json beside "
                   "the results file)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace metrics.json / results.json of an earlier run in --out")
    p.add_argument("--results", help="re-score a saved results.json (no network run)")
    p.add_argument("--spec", choices=sorted(KEYPOINT_SPECS), help="keypoints of --results")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--batch-size", type=batch_size_int, default=8,
                   help="images per forward pass when their test sizes agree (default 8)")
    _add_pipeline_arguments(p)


def _add_predict_arguments(p: _Parser) -> None:
    p.add_argument("sources", nargs="+", metavar="SOURCE",
                   help="image, folder (its images and videos), glob (quoted), video file, "
                   "webcam index (0), stream URL (rtsp://, http(s)://, rtmp://, udp://) or "
                   "image sequence as a printf pattern (quoted: 'frames/%%05d.png')")
    p.add_argument("--weights", required=True, help="checkpoint (mmpose 0.x or aepose)")
    p.add_argument("--preset", help="recipe (default: the file's own, or recognised from keys)")
    p.add_argument("--out", help="output folder (default runs/predict-TIMESTAMP)")
    p.add_argument("--scales", type=test_scale, nargs="+",
                   help=f"test scales in [{MIN_TEST_SCALE:g}, {MAX_TEST_SCALE:g}], e.g. 2 1")
    p.add_argument("--no-flip", action="store_true", help="no flip test (faster)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--stage-average", choices=STAGE_AVERAGES,
                   help="HigherHRNet output averaging (default the preset's)")
    p.add_argument("--batch-size", type=batch_size_int, default=8,
                   help="images per batch (default 8)")
    p.add_argument("--pose-nms", type=fraction, metavar="OKS",
                   help="drop poses overlapping a better one by this OKS (mmpose demo: 0.9)")
    p.add_argument("--min-score", type=fraction, default=0.0,
                   help="leave out people scoring below this (default 0: keep all; overlays "
                   f"always leave out those under {OVERLAY_MIN_SCORE})")
    p.add_argument("--threshold", type=fraction, default=0.3,
                   help="keypoint score needed to draw it (default 0.3)")
    p.add_argument("--no-draw", action="store_true", help="JSON only, no overlays")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the outputs of an earlier run in --out")
    _add_video_arguments(p)
    _add_pipeline_arguments(p)
    p.add_argument("--backend", choices=["torch", "onnxruntime"], default="torch",
                   help="run the network in PyTorch (default) or ONNX Runtime (--weights is "
                   "then a file from 'aepose export')")


def _add_video_arguments(p: _Parser) -> None:
    """Tracking, smoothing and frame-source options of ``aepose predict`` (videos, streams)."""
    video = p.add_argument_group("videos and streams")
    video.add_argument("--track", action=argparse.BooleanOptionalAction, default=True,
                       help="give every person a track_id that persists across frames "
                       "(default on; --no-track: per-frame poses only)")
    video.add_argument("--track-max-age", type=non_negative_int, default=TRACK_MAX_AGE,
                       metavar="FRAMES", help="frames a lost track waits for its person to "
                       f"reappear with the same ID (default {TRACK_MAX_AGE})")
    video.add_argument("--track-min-similarity", type=fraction,
                       default=TRACK_MIN_SIMILARITY, metavar="S",
                       help="a track and a person less similar than this (0.9 OKS with the "
                       "track's predicted pose + 0.1 box IoU) are never paired (default "
                       f"{TRACK_MIN_SIMILARITY})")
    video.add_argument("--track-min-score", type=fraction, default=TRACK_MIN_SCORE,
                       metavar="S", help="people scoring below S are not tracked (track_id "
                       "-1): a bottom-up decoder's leftovers would start tracks and take IDs "
                       f"(default {TRACK_MIN_SCORE}, the overlays' threshold; 0: everyone)")
    video.add_argument("--smooth", action="store_true",
                       help="smooth each track's keypoints with a One-Euro filter (causal: "
                       "no frame is delayed)")
    video.add_argument("--smooth-min-cutoff", type=float_in(0.0, 1e3, low_open=True),
                       default=SMOOTH_MIN_CUTOFF, metavar="HZ",
                       help="One-Euro cutoff when still: lower removes more jitter, lags "
                       f"more (default {SMOOTH_MIN_CUTOFF:g} Hz)")
    video.add_argument("--smooth-beta", type=float_in(0.0, 1e6), default=SMOOTH_BETA,
                       metavar="BETA", help="cutoff increase per person size per second of "
                       "speed: higher lags less on fast motion (default "
                       f"{SMOOTH_BETA:g}; lag < 1/(2 pi beta) person sizes)")
    video.add_argument("--max-frames", type=positive_int, metavar="N",
                       help="stop each video or stream after N frames")
    video.add_argument("--duration", type=float_in(0.0, 1e9, low_open=True),
                       metavar="SECONDS", help="stop each video or stream after SECONDS of "
                       "it from its first frame read (frame index / frame rate)")
    video.add_argument("--no-drop", action="store_true",
                       help="live sources (webcam, rtsp://, http:// naming neither a video "
                       "file nor an image sequence): process every frame, even if processing "
                       "falls behind (default: keep only the newest frame and count the "
                       "dropped ones; files never drop)")


def _add_benchmark_arguments(p: _Parser) -> None:
    p.add_argument("--preset", required=True, help="network to time (see 'aepose models')")
    p.add_argument("--stage", nargs="+", choices=BENCHMARK_STAGES, default=["forward"],
                   help="what to time (default forward)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--batch-size", type=batch_size_int, default=1,
                   help="images per batch (default 1)")
    p.add_argument("--dtype", choices=PRECISIONS, default="fp32", help="default fp32")
    p.add_argument("--compile", action="store_true", help="torch.compile the network")
    p.add_argument("--compile-mode", choices=COMPILE_MODES,
                   help="torch.compile mode, implies --compile (reduce-overhead: CUDA graphs)")
    p.add_argument("--channels-last", action="store_true", help="NHWC memory format")
    p.add_argument("--repeats", type=positive_int, default=20, help="timed iterations (median)")
    p.add_argument("--warmup", type=non_negative_int, default=5, help="untimed iterations first")
    p.add_argument("--input-size", type=input_size_int,
                   help="square input side (default preset's)")
    p.add_argument("--no-flip", action="store_true", help="e2e without the flip test")
    p.add_argument("--images", type=positive_int,
                   help="pipeline: generated images streamed per iteration (default 32)")
    p.add_argument("--decode-workers", type=workers_int, metavar="N",
                   help="pipeline: decode workers (default: one per spare CPU core, at most 4)")
    p.add_argument("--json", help="also write the rows to this JSON file (checked before "
                   "timing, written whole or not at all)")


def build_parser() -> tuple[_Parser, dict[str, _Parser]]:
    """The top-level parser and each subcommand's parser."""
    parser = _Parser(
        prog="aepose",
        description="Bottom-up pose estimation with Associative Embedding (HRNet, HigherHRNet).",
        epilog="examples:\n  aepose models\n  aepose demo                            # writes "
               "runs/demo/train/last.pth\n  aepose info runs/demo/train/last.pth",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"aepose {aepose.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subparsers: dict[str, _Parser] = {}
    for name, (_, summary, examples) in COMMANDS.items():
        subparsers[name] = sub.add_parser(
            name, help=summary, description=summary, epilog=examples,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
    subparsers["models"].add_argument(
        "--no-flops", dest="flops", action="store_false", help="leave out the GFLOPs column")
    subparsers["info"].add_argument(
        "weights", help="checkpoint file (mmpose or aepose), preset name, release name or URL")
    subparsers["download"].add_argument(
        "names", nargs="+", metavar="NAME",
        help="preset name, mmpose release file name or http(s) URL; 'all': every release")
    synth = subparsers["synth"]
    synth.add_argument("out_dir", help="folder to write (the dataset's own layout)")
    synth.add_argument("--spec", choices=sorted(KEYPOINT_SPECS), default="crowdpose",
                       help="keypoint definition and folder layout (default crowdpose)")
    synth.add_argument("--images", type=positive_int, default=None,
                       help="images in total; a fifth (at least 1) go to val (default 200); "
                            "with --video, clips (default 1)")
    synth.add_argument("--seed", type=seed_int, default=0,
                       help="same seed, same bytes (default 0)")
    synth.add_argument("--size", default="256..640",
                       help="image side in pixels: N or MIN..MAX (default 256..640)")
    synth.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    synth.add_argument("--video", action="store_true",
                       help="write clips of people walking (clip_NNNN.mp4, H.264) with "
                            "PoseTrack-like truth (clip_NNNN.json: track ids, keypoints, boxes)")
    synth.add_argument("--frames", type=positive_int, default=100,
                       help="frames per clip (default 100)")
    synth.add_argument("--people", type=int_in(1, 20), default=None,
                       help="distinct people per clip, 1..20 (default: drawn from 1..12)")
    synth.add_argument("--frame-size", type=frame_size, default=(640, 480),
                       metavar="WIDTHxHEIGHT", help="clip frame size (default 640x480)")
    synth.add_argument("--fps", type=float_in(0, 1000, low_open=True), default=25.0,
                       help="clip frame rate (default 25)")
    for name, sections in _SET_SECTIONS.items():
        subparsers[name].set_sections = sections
    _add_train_arguments(subparsers["train"])
    _add_test_arguments(subparsers["test"])
    _add_predict_arguments(subparsers["predict"])
    _add_benchmark_arguments(subparsers["benchmark"])
    export = subparsers["export"]
    export.add_argument("--weights", required=True, help="checkpoint (mmpose 0.x or aepose)")
    export.add_argument("--preset", help="recipe (default: the file's own, or recognised)")
    export.add_argument("--output", required=True, help="the .onnx file to write")
    export.add_argument("--input-size", type=input_size_int,
                        help="example input side (default preset's)")
    export.add_argument("--static", action="store_true", help="fixed batch 1 and input size")
    export.add_argument("--opset", type=onnx_opset,
                        help="ONNX opset, 16 or later (default: the exporter's)")
    demo = subparsers["demo"]
    demo.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    demo.add_argument("--minutes", type=float_in(0, 10**6, low_open=True),
                      default=DEMO_MINUTES,
                      help="training time budget; the schedule shrinks to fit (default 8)")
    demo.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    demo.add_argument("--seed", type=seed_int, default=0,
                      help="data and training seed (default 0)")
    demo.add_argument("--epochs", type=positive_int, default=DEMO_EPOCHS,
                      help=f"epochs when the budget allows (default {DEMO_EPOCHS})")
    demo.add_argument("--set", dest="overrides", nargs="+", default=[], metavar="KEY=VALUE",
                      help="override config values of the demo recipe")
    return parser, subparsers


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``aepose`` console script; returns the exit status.

    Every ending is one stderr line: ``aepose: error: ...`` (1), a malformed command line (2),
    ``aepose: interrupted...`` after Ctrl-C (130, the shell's convention for SIGINT).
    """
    _log_to_stderr()
    try:
        return _run(argv)
    except Interrupted as stop:
        print(f"aepose: interrupted; {stop}", file=sys.stderr)
    except KeyboardInterrupt:
        print("aepose: interrupted", file=sys.stderr)
    return 130


class _StderrHandler(logging.StreamHandler):
    """Log lines to ``sys.stderr`` as it is when each line is written, so that a caller or a
    test that swaps ``sys.stderr`` sees them where it sees the error lines."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def _log_to_stderr() -> None:
    """The ``aepose`` logger's lines (a skipped input, training progress) as plain lines on
    stderr. They are the one report of a skipped input: the commands do not repeat them."""
    logger = logging.getLogger("aepose")
    logger.setLevel(logging.INFO)
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)


# Options that act only with another setting: (options, whether the setting is on, what to
# do). Given without it they would be ignored silently, so the command line is refused.
_NEEDS: dict[str, list[tuple[tuple[str, ...], Callable[[argparse.Namespace], bool], str]]] = {
    "predict": [(("--smooth", "--smooth-min-cutoff", "--smooth-beta", "--track-max-age",
                  "--track-min-similarity", "--track-min-score"), lambda a: a.track,
                 "without tracking: drop --no-track"),
                (("--smooth-min-cutoff", "--smooth-beta"), lambda a: a.smooth,
                 "without --smooth")],
    "synth": [(("--frames", "--people", "--frame-size", "--fps"), lambda a: a.video,
               "without --video (clips only)"),
              (("--size",), lambda a: not a.video, "with --video: clips take --frame-size")],
}


def _refuse_ignored(args: argparse.Namespace, parser: _Parser) -> None:
    for options, on, advice in _NEEDS.get(args.command, []):
        named = [option for option in options if parser.given(option)]
        if named and not on(args):
            parser.error(f"{', '.join(named)} would be ignored {advice}")


def _run(argv: Sequence[str] | None) -> int:
    parser, subparsers = build_parser()
    args, extras = parser.parse_known_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if extras:
        subparsers[args.command].reject_extras(extras)
    _refuse_ignored(args, subparsers[args.command])
    if args.command in _STREAMING_COMMANDS:
        # Decoding runs in worker processes beside the network; OpenMP's default
        # spin-waiting after each parallel region burns the cores they need (6.8 -> 7.6
        # images/s on 2 cores; training, with no such workers, loses 7 % by it). libgomp
        # reads this when torch loads, which happens below; a value the user set wins.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if args.command in _IMAGE_COMMANDS:
        from aepose.pipeline.workers import keep_freed_memory

        keep_freed_memory()
    try:
        COMMANDS[args.command][0](args)
    except AeposeError as error:
        print(f"aepose: error: {error}", file=sys.stderr)
        return 1
    except OSError as error:  # a failure no command foresaw still costs one line
        print(f"aepose: error: {one_line(error)}", file=sys.stderr)
        return 1
    return 0
