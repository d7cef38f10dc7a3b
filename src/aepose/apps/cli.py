"""``aepose`` command line: one subcommand per job, worked examples in every ``--help``.

This module parses and dispatches: the parser (:mod:`aepose.apps.arguments`, built on
:mod:`aepose.apps.parser`) and one ``_cmd_x`` per command that turns the parsed namespace
into the options of the app module that runs it (:mod:`aepose.apps.test`,
:mod:`aepose.apps.train`, ...). Every ending is one stderr line and an exit status
(:func:`main`).

Start-up is kept short: the parser imports only the configuration (plain dataclasses); each
command imports its app module, and with it torch, inside its function, so ``aepose --help``
and ``aepose models`` never load torch.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from aepose.apps.arguments import build_parser, refuse_ignored
from aepose.errors import AeposeError, Interrupted, one_line
from aepose.io import terminate_as_interrupt, terminated
from aepose.threads import prepare_command_line

if TYPE_CHECKING:  # the command imports it when it runs
    from aepose.apps.predict import PredictOptions

# Commands that run networks over images: they get glibc's keep-freed-memory setting.
_IMAGE_COMMANDS = frozenset({"train", "test", "predict", "benchmark", "demo", "serve"})

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
        out_dir=Path(args.out_dir), spec=args.spec, keypoints=args.keypoints,
        images=args.images, seed=args.seed,
        size=args.size, overwrite=args.overwrite, video=args.video, frames=args.frames,
        people=args.people, frame_size=args.frame_size, fps=args.fps))


def _cmd_train(args: argparse.Namespace) -> None:
    from aepose.apps.train import TrainFiles, run_train
    from aepose.engine.train import TrainOptions

    options = TrainOptions(
        data_root=Path(args.data_root or "."), out=Path(args.out) if args.out else None,
        resume=Path(args.resume) if args.resume else None, dtype=args.dtype,
        channels_last=args.channels_last,
        pretrained=Path(args.pretrained) if args.pretrained else None, device=args.device,
        seed=args.seed, deterministic=args.deterministic, log_interval=args.log_interval,
        stop_after=args.stop_after, init=args.init,
    )
    files = TrainFiles(ann=args.ann, images=args.images, val_ann=args.val_ann,
                       val_images=args.val_images, spec=args.spec,
                       data_root=args.data_root is not None)
    run_train(args.preset, args.overrides, options, files)


def _compile_mode(args: argparse.Namespace) -> str | None:
    """The torch.compile mode asked for by --compile / --compile-mode, or None (eager)."""
    return args.compile_mode or ("default" if args.compile else None)


def _test_overrides(args: argparse.Namespace) -> tuple[str, ...]:
    """``--set test.x=y`` items, then ``--scales``, ``--no-flip`` and ``--stage-average`` as
    the same kind of item (applied later, so they win): the test settings travel as one list
    to the config, which checks them."""
    flags = []
    if args.scales:
        flags.append("test.scales=" + ",".join(repr(float(s)) for s in args.scales))
    if args.no_flip:
        flags.append("test.flip=false")
    if args.stage_average:
        flags.append(f"test.stage_average={args.stage_average}")
    return (*args.overrides, *flags)


def _cmd_test(args: argparse.Namespace) -> None:
    if args.results:  # re-scoring runs no network: its module needs no torch
        from aepose.apps.rescore import RescoreOptions, rescore

        rescore(RescoreOptions(
            results=Path(args.results), ann=Path(args.ann) if args.ann else None,
            data_root=Path(args.data_root) if args.data_root else None, preset=args.preset,
            spec=args.spec, out=Path(args.out) if args.out else None,
            overwrite=args.overwrite))
        return
    from aepose.apps.test import TestOptions, run_test

    run_test(TestOptions(
        weights=args.weights, preset=args.preset,
        data_root=Path(args.data_root) if args.data_root else None,
        ann=Path(args.ann) if args.ann else None,
        images=Path(args.images) if args.images else None,
        out=Path(args.out) if args.out else None, overwrite=args.overwrite,
        overrides=_test_overrides(args), dtype=args.dtype, channels_last=args.channels_last,
        compile_mode=_compile_mode(args), device=args.device, batch_size=args.batch_size,
        workers=args.workers, decode_workers=args.decode_workers,
        progress=sys.stderr.isatty()))


def _cmd_predict(args: argparse.Namespace) -> None:
    from aepose.apps.predict import PredictCommand, predict_command

    predict_command(PredictCommand(
        sources=tuple(args.sources), weights=str(args.weights),
        out=Path(args.out) if args.out else None, preset=args.preset, backend=args.backend,
        device=args.device, overrides=_test_overrides(args),
        dtype=args.dtype, channels_last=args.channels_last, compile_mode=_compile_mode(args),
        options=_predict_options(args)))


def _predict_options(args: argparse.Namespace) -> PredictOptions:
    """``predict``'s run options, video and tracking ones included."""
    from aepose.apps.predict import PredictOptions
    from aepose.pipeline.api import offline_config, tracker_config

    # refuse_ignored has refused the smoothing settings without smoothing.
    offline = args.track == "offline"
    smoothing = args.smooth or (offline and args.smooth is None)
    tracker = (offline_config if offline else tracker_config)(
        track_max_age=args.track_max_age, track_min_similarity=args.track_min_similarity,
        track_min_score=args.track_min_score, smooth=bool(smoothing),
        smooth_min_cutoff=args.smooth_min_cutoff if smoothing else None,
        smooth_beta=args.smooth_beta if smoothing else None)
    return PredictOptions(
        batch_size=args.batch_size, read_workers=args.workers,
        decode_workers=args.decode_workers, draw=not args.no_draw,
        keypoint_threshold=args.threshold, min_score=args.min_score, pose_nms=args.pose_nms,
        weights=str(args.weights), overwrite=args.overwrite, progress=sys.stderr.isatty(),
        track=args.track is not None, tracker=tracker, max_frames=args.max_frames,
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
    from aepose.apps.demo_budget import process_age

    settings = DemoSettings(out=Path(args.out), minutes=args.minutes, device=args.device,
                            seed=args.seed, epochs=args.epochs, overrides=tuple(args.overrides),
                            threads=args.threads, spent=process_age())
    run_demo(settings)


def _cmd_serve(args: argparse.Namespace) -> None:
    from aepose.apps.serve import ServeCommand, serve_command
    from aepose.pipeline.api import tracker_config
    from aepose.serve.limits import ServeLimits
    from aepose.serve.service import ServeSettings

    serve_command(ServeCommand(
        weights=str(args.weights), preset=args.preset, device=args.device,
        overrides=_test_overrides(args), host=args.host, port=args.port,
        limits=ServeLimits(
            max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, queue=args.queue,
            queue_mb=args.queue_mb, max_body_mb=args.max_body_mb,
            max_megapixels=args.max_megapixels, max_streams=args.max_streams,
            max_fps=args.max_fps, max_connections=args.max_connections),
        settings=ServeSettings(
            min_score=args.min_score, pose_nms=args.pose_nms,
            keypoint_threshold=args.threshold, tracker=tracker_config(smooth=args.smooth),
            token=args.token, weights=str(args.weights))))


COMMANDS: dict[str, Callable[[argparse.Namespace], None]] = {
    "models": _cmd_models,
    "info": _cmd_info,
    "download": _cmd_download,
    "synth": _cmd_synth,
    "train": _cmd_train,
    "test": _cmd_test,
    "predict": _cmd_predict,
    "benchmark": _cmd_benchmark,
    "export": _cmd_export,
    "demo": _cmd_demo,
    "serve": _cmd_serve,
}
"""What runs each command (its arguments and help are in :mod:`aepose.apps.arguments`)."""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``aepose`` console script; returns the exit status.

    Every ending is one stderr line: ``aepose: error: ...`` (1), a malformed command line (2),
    ``aepose: interrupted...`` after Ctrl-C (130, the shell's convention for SIGINT) and
    ``aepose: terminated...`` after SIGTERM (143), which every command handles as Ctrl-C:
    what finished is kept.
    """
    _log_to_stderr()
    if threading.current_thread() is threading.main_thread():
        terminate_as_interrupt()
    message = ""
    try:
        return _run(argv)
    except Interrupted as stop:
        message = f"; {stop}"
    except KeyboardInterrupt:
        pass
    if terminated():
        print(f"aepose: terminated{message}", file=sys.stderr)
        return 143
    print(f"aepose: interrupted{message}", file=sys.stderr)
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


def _run(argv: Sequence[str] | None) -> int:
    parser, subparsers = build_parser()
    args, extras = parser.parse_known_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if extras:
        subparsers[args.command].reject_extras(extras)
    refuse_ignored(args, subparsers[args.command])
    try:
        # Before any command loads torch: one torch thread, OpenMP's idle threads asleep;
        # a bad AEPOSE_THREADS is one line here (aepose.threads).
        prepare_command_line()
        if args.command in _IMAGE_COMMANDS and not getattr(args, "results", None):
            # (test --results runs no network: no torch, no per-image maps to keep memory for)
            from aepose.pipeline.workers import keep_freed_memory

            keep_freed_memory()
        COMMANDS[args.command](args)
    except AeposeError as error:
        print(f"aepose: error: {error}", file=sys.stderr)
        return 1
    except OSError as error:  # a failure no command foresaw still costs one line
        print(f"aepose: error: {one_line(error)}", file=sys.stderr)
        return 1
    except MemoryError as error:  # outside what the commands turn into their own lines
        detail = one_line(error)
        print(f"aepose: error: out of memory{f' ({detail})' if detail else ''}",
              file=sys.stderr)
        return 1
    return 0
