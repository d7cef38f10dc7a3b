"""``aepose`` command line: one subcommand per job, worked examples in every ``--help``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

import aepose
from aepose.aggregate import STAGE_AVERAGES
from aepose.benchmark import STAGES, format_rows, run_benchmark
from aepose.checkpoint import (
    detect_architecture,
    load_with_config,
    matching_presets,
    read_checkpoint,
    resolve_config,
)
from aepose.config import (
    MAX_INPUT_SIZE,
    PRESETS,
    Config,
    apply_overrides,
    did_you_mean,
    get_preset,
)
from aepose.demo import DemoSettings, run_demo
from aepose.distributed import broadcast_object, init_distributed, shutdown
from aepose.errors import AeposeError
from aepose.eval_loop import evaluate_model
from aepose.evaluation import evaluate_keypoints, format_table
from aepose.export import export_onnx, onnx_predictor
from aepose.hub import cached_file, download, hash_report
from aepose.inference import COMPILE_MODES, FastNetwork, Predictor, with_test_settings
from aepose.keypoints import KEYPOINT_SPECS
from aepose.pipeline import keep_freed_memory
from aepose.precision import PRECISIONS
from aepose.predict import OVERLAY_MIN_SCORE, PredictOptions, run_predict
from aepose.profile import preset_cost
from aepose.synth import generate_dataset, parse_size, split_counts, write_sequences
from aepose.synth.video import parse_frame_size
from aepose.train import TrainOptions, train


class _Parser(argparse.ArgumentParser):
    """argparse with a did-you-mean hint for unknown subcommands and options.

    Abbreviated options are refused: a typo should get a hint, not a silent match.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if choice:
            options = re.findall(r"'?([\w-]+)'?", choice.group(2))
            message += did_you_mean(choice.group(1), options)
        # One line, like every other error (the usage is one --help away).
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def reject_extras(self, extras: list[str]) -> None:
        """Unknown options, each with the closest option this (sub)command has."""
        known = [o for action in self._actions for o in action.option_strings]
        hints = [f"{e}{did_you_mean(e.split('=')[0], known)}" for e in extras]
        self.error("unrecognized arguments: " + " ".join(hints))


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


MAX_COUNT = 10**9  # iterations, epochs, images: large enough for any real run
positive_int = int_in(1, MAX_COUNT)
non_negative_int = int_in(0, MAX_COUNT)
seed_int = int_in(0, 2**31 - 1)  # NumPy and torch both take it as it is
batch_size_int = int_in(1, 4096)
workers_int = int_in(0, 256)
# Multiples of 32 only (HRNet's stride) are refused later with their own message.
input_size_int = int_in(32, MAX_INPUT_SIZE)
fraction = float_in(0.0, 1.0)  # thresholds, OKS


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


def _cmd_models(args: argparse.Namespace) -> None:
    header = f"{'preset':32} {'data':10} {'K':>3} {'input':>5} {'outputs':>9} {'params':>8}"
    header += f" {'GFLOPs':>7} {'cached':>6}  released weights"
    print(header)
    print("-" * len(header))
    for name, cfg in PRESETS.items():
        params, gflops = preset_cost(cfg)  # stored numbers: no network is built
        flops = f"{gflops:>7.2f}" if args.flops else f"{'-':>7}"
        cached = cached_file(name)
        in_cache = "-" if cached is None else "yes" if cached.is_file() else "no"
        outputs = "/".join(str(s) for s in cfg.data.heatmap_sizes)
        print(f"{name:32} {cfg.data.dataset:10} {cfg.model.num_keypoints:>3} "
              f"{cfg.data.input_size:>5} {outputs:>9} {params / 1e6:>7.2f}M {flops} "
              f"{in_cache:>6}  {cfg.checkpoint or '-'}")
    print("\nGFLOPs: one image at the preset's input size, multiply-add = 2 FLOPs. "
          "cached: released weights in the cache (aepose download NAME).")


def _cmd_info(args: argparse.Namespace) -> None:
    # A damaged file is still described (info is a diagnostic): its hash line says MISMATCH,
    # and loading it anywhere else is refused.
    ckpt = read_checkpoint(args.weights, verify=False)
    print(f"file:          {ckpt.path}")
    print(f"hash:          {hash_report(ckpt.path)}")
    arch = detect_architecture(ckpt.state_dict, ckpt.path)
    params = sum(v.numel() for k, v in ckpt.state_dict.items()
                 if v.is_floating_point() and not k.endswith(("running_mean", "running_var")))
    print(f"layout:        {ckpt.kind} ({len(ckpt.state_dict)} state_dict entries, "
          f"{params:,} parameters)")
    print(f"architecture:  {arch.describe()}")
    print(f"outputs:       {len(arch.with_ae)} (tags on output(s) "
          f"{', '.join(str(i) for i, ae in enumerate(arch.with_ae) if ae)})")
    name, _, how = resolve_config(ckpt)
    print(f"preset:        {name} ({how})")
    others = [n for n in matching_presets(arch) if n != name]
    if others:
        print(f"also fits:     {', '.join(others)}")
    for key in ("epoch", "iter", "iteration", "mmcv_version", "time", "version"):
        if key in ckpt.meta:
            print(f"{key + ':':15}{ckpt.meta[key]}")


def _cmd_download(args: argparse.Namespace) -> None:
    names = [n for n in PRESETS if cached_file(n)] if args.names == ["all"] else args.names
    for name in names:
        print(f"{name}: {download(name)}", flush=True)


def _cmd_synth(args: argparse.Namespace) -> None:
    if args.video:
        clips = write_sequences(
            args.out_dir, args.spec, clips=1 if args.images is None else args.images,
            frames=args.frames, people=args.people, size=parse_frame_size(args.frame_size),
            seed=args.seed, fps=args.fps, overwrite=args.overwrite,
        )
        for clip in clips:
            print(f"{clip.video}  {clip.frames} frames  {clip.people} people  "
                  f"seed {clip.seed}  truth {clip.truth.name}")
        return
    train, val = split_counts(200 if args.images is None else args.images)
    summary = generate_dataset(
        args.out_dir, args.spec, train_images=train, val_images=val, seed=args.seed,
        size=parse_size(args.size), overwrite=args.overwrite,
    )
    for split in summary.splits:
        easy, medium, hard = split.crowd_buckets()
        print(f"{split.name:5} {split.images:6} images {split.people:7} people  "
              f"crowdIndex easy/medium/hard {easy}/{medium}/{hard}  -> {split.annotation_file}")
    print(f"use it as --data-root {summary.root}")


def _cmd_train(args: argparse.Namespace) -> None:
    if args.preset is None and args.resume is None:
        raise AeposeError("train needs --preset (or --resume CHECKPOINT)")
    resume = Path(args.resume) if args.resume else None
    if args.preset is not None:
        cfg = get_preset(args.preset)
    else:
        saved = read_checkpoint(args.resume).config
        if saved is None:
            raise AeposeError(f"{resume}: has no embedded config; pass --preset")
        cfg = saved
    cfg = apply_overrides(cfg, args.overrides)
    options = TrainOptions(
        data_root=Path(args.data_root), out=Path(args.out) if args.out else None, resume=resume,
        dtype=args.dtype, channels_last=args.channels_last,
        pretrained=Path(args.pretrained) if args.pretrained else None, device=args.device,
        seed=args.seed, deterministic=args.deterministic, log_interval=args.log_interval,
        stop_after=args.stop_after,
    )
    try:
        result = train(cfg, options)
    finally:
        shutdown()
    state = "stopped early" if result.interrupted else "finished"
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"{state} after epoch {result.epoch}, iteration {result.iteration}; "
              f"checkpoint {result.checkpoint}")


def _fast(model: torch.nn.Module, args: argparse.Namespace) -> torch.nn.Module:
    """The network with the requested GPU fast paths (unchanged for the fp32 defaults)."""
    mode = _compile_mode(args)
    if args.dtype == "fp32" and not args.channels_last and mode is None:
        return model
    return FastNetwork(model, dtype=args.dtype, channels_last=args.channels_last,
                       compile=mode).eval()


def _compile_mode(args: argparse.Namespace) -> str | None:
    """The torch.compile mode asked for by --compile / --compile-mode, or None (eager)."""
    return args.compile_mode or ("default" if args.compile else None)


def _test_config(cfg: Config, args: argparse.Namespace) -> Config:
    """``cfg`` with the command line's test settings: ``--set test.x=y`` first, then
    ``--scales``, ``--no-flip`` and ``--stage-average`` (the weights fix the rest)."""
    foreign = [o for o in args.overrides if not o.startswith("test.")]
    if foreign:
        raise AeposeError(f"--set here takes test settings only (test.x=y), got {foreign[0]!r}")
    cfg = apply_overrides(cfg, args.overrides)
    return with_test_settings(cfg, scales=args.scales, flip=False if args.no_flip else None,
                              stage_average=args.stage_average)


def _cmd_test(args: argparse.Namespace) -> None:
    if args.results:
        _rescore(args)
        return
    if args.weights is None:
        raise AeposeError("test needs --weights (or --results FILE to re-score saved results)")
    info = init_distributed(args.device)
    try:
        network, cfg = load_with_config(args.weights, preset=args.preset, device=info.device)
        cfg = _test_config(cfg, args)
        model = _fast(network, args)
        ann, images = _test_files(cfg, args)
        out = Path(args.out or f"runs/{cfg.name}-test-{time.strftime('%Y%m%d-%H%M%S')}")
        out = Path(broadcast_object(str(out), info))
        result = evaluate_model(
            model, cfg, ann, images, info, batch_size=args.batch_size, workers=args.workers,
            decode_workers=args.decode_workers, results_file=out / "results.json")
    finally:
        shutdown()
    if info.is_main:
        report = {"preset": cfg.name, "weights": str(args.weights), "ann": str(ann),
                  "scales": list(cfg.test.scales), "flip": cfg.test.flip,
                  "test": dataclasses.asdict(cfg.test), "images": result.images,
                  "people": result.people, "seconds": result.seconds,
                  "skipped": list(result.skipped), "metrics": result.metrics}
        _finish_test(report, cfg.data.dataset, out)


def _test_files(cfg: Config, args: argparse.Namespace) -> tuple[Path, Path]:
    if args.ann is None and args.data_root is None:
        raise AeposeError("test needs --data-root (or --ann FILE --images DIR)")
    root = Path(args.data_root or ".")
    ann = Path(args.ann) if args.ann else root / cfg.data.val_ann
    images = Path(args.images) if args.images else root / cfg.data.val_images
    return ann, images


def _rescore(args: argparse.Namespace) -> None:
    cfg = get_preset(args.preset) if args.preset else None
    if args.ann:
        ann = Path(args.ann)
    elif cfg is not None and args.data_root:
        ann = Path(args.data_root) / cfg.data.val_ann
    else:
        raise AeposeError("--results needs --ann FILE, or --data-root with --preset")
    spec = args.spec or (cfg.data.dataset if cfg else None)
    if spec is None:
        raise AeposeError("--results with --ann needs --spec (aic, crowdpose or coco) or --preset")
    metrics = evaluate_keypoints(ann, args.results, spec)
    out = Path(args.out) if args.out else Path(args.results).parent
    _finish_test({"ann": str(ann), "results": str(args.results), "metrics": metrics}, spec, out)


def _finish_test(report: dict[str, Any], spec: str, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    print(format_table(report["metrics"], spec))
    for problem in report.get("skipped", []):
        print(f"skipped: {problem}", file=sys.stderr)
    if "seconds" in report and report["seconds"] > 0:
        print(f"{report['images']} images in {report['seconds']:.1f} s "
              f"({report['images'] / report['seconds']:.1f} images/s on rank 0's share)")
    print(f"metrics: {out / 'metrics.json'}")


def _predictor(args: argparse.Namespace) -> Predictor:
    """The Predictor of ``aepose predict``'s network, backend and test settings."""
    if args.backend == "onnxruntime":
        # The network runs in ONNX Runtime; pre- and post-processing are the same code.
        providers = ["CUDAExecutionProvider"] if args.device == "cuda" else None
        stored = onnx_predictor(args.weights, args.preset, providers=providers)
        network, cfg = stored.model, stored.config
    else:
        if str(args.weights).endswith(".onnx"):
            raise AeposeError(f"{args.weights} is an ONNX file: add --backend onnxruntime")
        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        loaded, cfg = load_with_config(args.weights, preset=args.preset, device=device)
        network = _fast(loaded, args)
    return Predictor(network, _test_config(cfg, args), pose_nms=args.pose_nms)


def _cmd_predict(args: argparse.Namespace) -> None:
    predictor = _predictor(args)
    out = Path(args.out or f"runs/predict-{time.strftime('%Y%m%d-%H%M%S')}")
    options = PredictOptions(
        batch_size=args.batch_size, read_workers=args.workers,
        decode_workers=args.decode_workers, draw=not args.no_draw,
        keypoint_threshold=args.threshold, min_score=args.min_score,
        weights=str(args.weights), overwrite=args.overwrite)
    summary = run_predict(args.sources, predictor, out, options)
    for problem in summary.problems:
        print(f"skipped: {problem}", file=sys.stderr)
    print(summary.describe())
    print(f"predictions: {summary.json_path}")
    if summary.interrupted:
        raise AeposeError(f"interrupted: the {summary.images} finished images/frames are in "
                          f"{summary.json_path}")
    if summary.images == 0:
        raise AeposeError("nothing could be predicted (see the skipped inputs above)")


def _cmd_benchmark(args: argparse.Namespace) -> None:
    rows = [
        run_benchmark(args.preset, stage=stage, device=args.device, batch_size=args.batch_size,
                      dtype=args.dtype, compile=_compile_mode(args),
                      channels_last=args.channels_last, repeats=args.repeats,
                      warmup=args.warmup, input_size=args.input_size, flip=not args.no_flip,
                      images=args.images, decode_workers=args.decode_workers)
        for stage in args.stage
    ]
    print(format_rows(rows))
    if args.json:
        Path(args.json).write_text(json.dumps([r.to_dict() for r in rows], indent=2) + "\n")


def _cmd_export(args: argparse.Namespace) -> None:
    model, cfg = load_with_config(args.weights, preset=args.preset)
    path = export_onnx(model, args.output, config=cfg,
                       input_size=args.input_size or cfg.data.input_size,
                       dynamic=not args.static, opset=args.opset)
    print(f"wrote {path} (input 'images' [B, 3, H, W]"
          f"{', dynamic batch/height/width' if not args.static else ''}; config {cfg.name})")


def _cmd_demo(args: argparse.Namespace) -> None:
    settings = DemoSettings(out=Path(args.out), minutes=args.minutes, device=args.device,
                            seed=args.seed, epochs=args.epochs, overrides=tuple(args.overrides))
    run_demo(settings)


COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], None], str, str]] = {
    "models": (_cmd_models, "list the presets (keypoints, dataset, size, params, GFLOPs, "
               "released weights and whether they are cached)",
               "examples:\n  aepose models\n  aepose models --no-flops   # without GFLOPs"),
    "info": (_cmd_info, "tell what a weights file is, whether its hash checks out and which "
             "preset fits it",
             "examples:\n  aepose info hrnet_w32_aic_512x512-77e2a98a_20210131.pth\n"
             "  aepose info hrnet_w32_aic_512          # the cached release (downloads it)\n"
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
             "  torchrun --nproc-per-node 8 -m aepose test --weights W.pth --data-root data/aic\n"
             "  aepose test --results runs/x/results.json --ann data/aic/annotations/aic_val.json"
             " --spec aic"),
    "predict": (_cmd_predict, "poses for images, folders, globs or videos: JSON + overlays",
                "examples:\n"
                "  aepose predict photo.jpg --weights hrnet_w32_aic_512x512-77e2a98a_20210131.pth\n"
                "  aepose predict 'shots/*.jpg' clip.mp4 --weights runs/demo/last.pth "
                "--out runs/pred\n"
                "  aepose predict folder/ --weights W.pth --device cuda --batch-size 16"),
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
    p.add_argument("--workers", type=int, default=2,
                   help="threads reading and resizing images (default 2)")
    p.add_argument("--decode-workers", type=int, metavar="N",
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
    p.add_argument("--images", help="image folder for --ann (default: the preset's)")
    p.add_argument("--scales", type=float, nargs="+", help="test scales, e.g. 2 1 0.5")
    p.add_argument("--no-flip", action="store_true", help="no flip test")
    p.add_argument("--stage-average", choices=STAGE_AVERAGES,
                   help="HigherHRNet output averaging (default the preset's: v0.29, as the "
                   "published numbers)")
    p.add_argument("--out", help="folder for metrics.json and results.json")
    p.add_argument("--results", help="re-score a saved results.json (no network run)")
    p.add_argument("--spec", choices=sorted(KEYPOINT_SPECS), help="keypoints of --results")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--batch-size", type=int, default=8,
                   help="images per forward pass when their test sizes agree (default 8)")
    _add_pipeline_arguments(p)


def _add_predict_arguments(p: _Parser) -> None:
    p.add_argument("sources", nargs="+", metavar="SOURCE",
                   help="image, folder, glob (quoted) or video")
    p.add_argument("--weights", required=True, help="checkpoint (mmpose 0.x or aepose)")
    p.add_argument("--preset", help="recipe (default: the file's own, or recognised from keys)")
    p.add_argument("--out", help="output folder (default runs/predict-TIMESTAMP)")
    p.add_argument("--scales", type=float, nargs="+", help="test scales, e.g. 2 1")
    p.add_argument("--no-flip", action="store_true", help="no flip test (faster)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--stage-average", choices=STAGE_AVERAGES,
                   help="HigherHRNet output averaging (default the preset's)")
    p.add_argument("--batch-size", type=int, default=8, help="images per batch (default 8)")
    p.add_argument("--pose-nms", type=float, metavar="OKS",
                   help="drop poses overlapping a better one by this OKS (mmpose demo: 0.9)")
    p.add_argument("--min-score", type=float, default=0.0,
                   help="leave out people scoring below this (default 0: keep all; overlays "
                   f"always leave out those under {OVERLAY_MIN_SCORE})")
    p.add_argument("--threshold", type=float, default=0.3,
                   help="keypoint score needed to draw it (default 0.3)")
    p.add_argument("--no-draw", action="store_true", help="JSON only, no overlays")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the outputs of an earlier run in --out")
    _add_pipeline_arguments(p)
    p.add_argument("--backend", choices=["torch", "onnxruntime"], default="torch",
                   help="run the network in PyTorch (default) or ONNX Runtime (--weights is "
                   "then a file from 'aepose export')")


def _add_benchmark_arguments(p: _Parser) -> None:
    p.add_argument("--preset", required=True, help="network to time (see 'aepose models')")
    p.add_argument("--stage", nargs="+", choices=sorted(STAGES), default=["forward"],
                   help="what to time (default forward)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--batch-size", type=int, default=1, help="images per batch (default 1)")
    p.add_argument("--dtype", choices=PRECISIONS, default="fp32", help="default fp32")
    p.add_argument("--compile", action="store_true", help="torch.compile the network")
    p.add_argument("--compile-mode", choices=COMPILE_MODES,
                   help="torch.compile mode, implies --compile (reduce-overhead: CUDA graphs)")
    p.add_argument("--channels-last", action="store_true", help="NHWC memory format")
    p.add_argument("--repeats", type=int, default=20, help="timed iterations (median)")
    p.add_argument("--warmup", type=int, default=5, help="untimed iterations first")
    p.add_argument("--input-size", type=int, help="square input side (default preset's)")
    p.add_argument("--no-flip", action="store_true", help="e2e without the flip test")
    p.add_argument("--images", type=int,
                   help="pipeline: generated images streamed per iteration (default 32)")
    p.add_argument("--decode-workers", type=int, metavar="N",
                   help="pipeline: decode workers (default: one per spare CPU core, at most 4)")
    p.add_argument("--json", help="also write the rows to this JSON file")


def build_parser() -> tuple[_Parser, dict[str, _Parser]]:
    """The top-level parser and each subcommand's parser."""
    parser = _Parser(
        prog="aepose",
        description="Bottom-up pose estimation with Associative Embedding (HRNet, HigherHRNet).",
        epilog="examples:\n  aepose models\n  aepose info WEIGHTS.pth\n  aepose demo",
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
    synth.add_argument("--frame-size", default="640x480",
                       help="clip frame size WIDTHxHEIGHT (default 640x480)")
    synth.add_argument("--fps", type=float_in(0, 1000, low_open=True), default=25.0,
                       help="clip frame rate (default 25)")
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
                      default=DemoSettings.minutes,
                      help="training time budget; the schedule shrinks to fit (default 8)")
    demo.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    demo.add_argument("--seed", type=seed_int, default=0,
                      help="data and training seed (default 0)")
    demo.add_argument("--epochs", type=positive_int, default=DemoSettings.epochs,
                      help=f"epochs when the budget allows (default {DemoSettings.epochs})")
    demo.add_argument("--set", dest="overrides", nargs="+", default=[], metavar="KEY=VALUE",
                      help="override config values of the demo recipe")
    return parser, subparsers


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``aepose`` console script; returns the exit status."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    keep_freed_memory()
    parser, subparsers = build_parser()
    args, extras = parser.parse_known_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if extras:
        subparsers[args.command].reject_extras(extras)
    try:
        COMMANDS[args.command][0](args)
    except AeposeError as error:
        print(f"aepose: error: {error}", file=sys.stderr)
        return 1
    return 0
