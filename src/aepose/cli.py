"""``aepose`` command line: one subcommand per job, worked examples in every ``--help``."""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

import aepose
from aepose.checkpoint import detect_architecture, matching_presets, read_checkpoint, resolve_config
from aepose.config import PRESETS, apply_overrides, did_you_mean, get_preset
from aepose.data.synthetic import generate_dataset, parse_size, split_counts
from aepose.distributed import shutdown
from aepose.errors import AeposeError
from aepose.keypoints import KEYPOINT_SPECS
from aepose.models import build_model
from aepose.profile import model_cost
from aepose.train import TrainOptions, train

SEEDS = ("hrnet_w32_aic_512", "higherhrnet_w32_crowdpose_512")


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
        super().error(message)

    def reject_extras(self, extras: list[str]) -> None:
        """Unknown options, each with the closest option this (sub)command has."""
        known = [o for action in self._actions for o in action.option_strings]
        hints = [f"{e}{did_you_mean(e.split('=')[0], known)}" for e in extras]
        self.error("unrecognized arguments: " + " ".join(hints))


def _cmd_models(args: argparse.Namespace) -> None:
    header = f"{'preset':32} {'data':10} {'K':>3} {'input':>5} {'outputs':>9} {'params':>8}"
    header += f" {'GFLOPs':>7}  released weights"
    print(header)
    print("-" * len(header))
    for name, cfg in PRESETS.items():
        params, gflops = model_cost(cfg) if args.flops else (
            sum(p.numel() for p in build_model(cfg).parameters()), float("nan"))
        outputs = "/".join(str(s) for s in cfg.data.heatmap_sizes)
        print(f"{name:32} {cfg.data.dataset:10} {cfg.model.num_keypoints:>3} "
              f"{cfg.data.input_size:>5} {outputs:>9} {params / 1e6:>7.2f}M {gflops:>7.2f}  "
              f"{cfg.checkpoint or '-'}")
    print("\nGFLOPs: one image at the preset's input size, multiply-add = 2 FLOPs.")


def _cmd_info(args: argparse.Namespace) -> None:
    ckpt = read_checkpoint(args.weights)
    arch = detect_architecture(ckpt.state_dict, ckpt.path)
    params = sum(v.numel() for k, v in ckpt.state_dict.items()
                 if v.is_floating_point() and not k.endswith(("running_mean", "running_var")))
    print(f"file:          {ckpt.path}")
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


def _cmd_synth(args: argparse.Namespace) -> None:
    train, val = split_counts(args.images)
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
        amp=args.amp, channels_last=args.channels_last,
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


def _cmd_demo(args: argparse.Namespace) -> None:
    # Until training and decoding exist this is the most complete real job: the preset
    # table and a forward pass of each seed network at its full input size.
    _cmd_models(argparse.Namespace(flops=True))
    print(f"\nForward pass of each seed network (random weights, fp32, {args.device}):")
    torch.manual_seed(0)
    for name in SEEDS:
        cfg = PRESETS[name]
        model = build_model(name).eval().to(args.device)
        size = cfg.data.input_size
        image = torch.randn(1, 3, size, size, device=args.device)
        with torch.inference_mode():
            start = time.perf_counter()
            outputs = model(image)
            seconds = time.perf_counter() - start
        shapes = ", ".join(str(list(o.shape)) for o in outputs)
        print(f"  {name:32} input [1, 3, {size}, {size}] -> {shapes}  ({seconds:.2f} s)")


COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], None], str, str]] = {
    "models": (_cmd_models, "list the presets (keypoints, dataset, size, params, GFLOPs)",
               "examples:\n  aepose models\n  aepose models --no-flops   # faster"),
    "info": (_cmd_info, "tell what a weights file is and which preset fits it",
             "examples:\n  aepose info hrnet_w32_aic_512x512-77e2a98a_20210131.pth\n"
             "  aepose info runs/demo/checkpoint.pth"),
    "synth": (_cmd_synth, "generate a crowd dataset (images + COCO-format JSON) offline",
              "examples:\n  aepose synth data/synth --spec crowdpose --images 500 --seed 0\n"
              "  aepose synth data/synth_aic --spec aic --images 200 --size 256..512"),
    "train": (_cmd_train, "train a preset on a COCO-format dataset (one GPU, torchrun, or CPU)",
              "examples:\n"
              "  aepose train --preset higherhrnet_w32_crowdpose_512 --data-root data/crowdpose\n"
              "  torchrun --nproc-per-node 8 -m aepose train --preset hrnet_w32_aic_512 \\\n"
              "      --data-root data/aic --amp bf16 --channels-last\n"
              "  aepose train --preset higherhrnet_tiny_crowdpose_128 --data-root data/synth \\\n"
              "      --set train.epochs=3 train.lr=1e-3 --out runs/tiny\n"
              "  aepose train --resume runs/tiny/last.pth --data-root data/synth"),
    "demo": (_cmd_demo, "the main job, offline: presets and a forward pass of each seed network",
             "examples:\n  aepose demo\n  aepose demo --device cuda"),
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
    p.add_argument("--amp", choices=["none", "bf16", "fp16"], default="none",
                   help="mixed precision (fp16 adds gradient scaling; default none)")
    p.add_argument("--channels-last", action="store_true",
                   help="NHWC memory format (faster convolutions on recent GPUs)")
    p.add_argument("--pretrained", metavar="WEIGHTS",
                   help="initialise the backbone from these weights (e.g. ImageNet HRNet)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--seed", type=int, default=0, help="weights, shuffling, augmentation")
    p.add_argument("--deterministic", action="store_true",
                   help="deterministic kernels (slower; bit-exact reruns and resumes)")
    p.add_argument("--log-interval", type=int, default=20,
                   help="iterations between loss checks and log lines (default 20)")
    p.add_argument("--stop-after", type=int, metavar="ITERATIONS",
                   help="stop with a checkpoint after this many iterations (smoke tests)")


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
        "--no-flops", dest="flops", action="store_false", help="skip the FLOP count")
    subparsers["info"].add_argument("weights", help="checkpoint file (mmpose or aepose)")
    synth = subparsers["synth"]
    synth.add_argument("out_dir", help="folder to write (the dataset's own layout)")
    synth.add_argument("--spec", choices=sorted(KEYPOINT_SPECS), default="crowdpose",
                       help="keypoint definition and folder layout (default crowdpose)")
    synth.add_argument("--images", type=int, default=200,
                       help="images in total; a fifth (at least 1) go to val (default 200)")
    synth.add_argument("--seed", type=int, default=0, help="same seed, same bytes (default 0)")
    synth.add_argument("--size", default="256..640",
                       help="image side in pixels: N or MIN..MAX (default 256..640)")
    synth.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    _add_train_arguments(subparsers["train"])
    subparsers["demo"].add_argument("--device", default="cpu", help="cpu or cuda")
    return parser, subparsers


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``aepose`` console script; returns the exit status."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
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
