"""What each ``aepose`` command takes: its summary, worked examples, arguments and the
options that only act together (:func:`build_parser`, :func:`refuse_ignored`)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

import aepose
from aepose.apps.parser import (
    SET_SECTIONS,
    Parser,
    batch_size_int,
    float_in,
    fraction,
    frame_size,
    input_size_int,
    int_in,
    non_negative_int,
    onnx_opset,
    positive_int,
    seed_int,
    test_scale,
    workers_int,
)
from aepose.choices import (
    BENCHMARK_STAGES,
    CLIP_MAX_FRAMES,
    COMPILE_MODES,
    DEMO_EPOCHS,
    DEMO_MINUTES,
    KEYPOINT_THRESHOLD,
    PRECISIONS,
    PREDICT_MIN_SCORE,
    PREDICT_POSE_NMS,
    SMOOTH_BETA,
    SMOOTH_MIN_CUTOFF,
    STAGE_AVERAGES,
    TRACK_MAX_AGE,
    TRACK_MIN_SCORE,
    TRACK_MIN_SIMILARITY,
    TRACK_MODES,
)
from aepose.config import MAX_TEST_SCALE, MIN_TEST_SCALE
from aepose.keypoints import KEYPOINT_SPECS

HELP: dict[str, tuple[str, str]] = {
    # command: (one-line summary, worked examples for its --help)
    "models": ("list the presets (keypoints, dataset, size, params, GFLOPs, "
               "released weights and whether they are cached)",
               "examples:\n  aepose models\n  aepose models --no-flops   # without GFLOPs"),
    "info": ("tell what a weights file is, whether its hash checks out and which "
             "preset fits it",
             "examples:\n"
             "  aepose info hrnet_w32_aic_512          # the released weights (downloads them)\n"
             "  aepose info hrnet_w32_aic_512x512-77e2a98a_20210131.pth   # the same, by file\n"
             "  aepose demo                            # writes runs/demo/train/last.pth\n"
             "  aepose info runs/demo/train/last.pth"),
    "download": ("fetch released weights into the cache and print where they are",
                 "examples:\n  aepose download hrnet_w32_aic_512 higherhrnet_w32_crowdpose_512\n"
                 "  aepose download higher_hrnet32_crowdpose_512x512-1aa4a132_20201017.pth\n"
                 "  aepose download all\n"
                 "  AEPOSE_HOME=/data/aepose aepose download all   # into /data/aepose/weights"),
    "synth": ("generate a crowd dataset (images + COCO-format JSON) offline",
              "examples:\n  aepose synth data/synth --spec crowdpose --images 500 --seed 0\n"
              "  aepose synth data/synth_aic --spec aic --images 200 --size 256..512\n"
              "  aepose synth data/feet --keypoints coco+hands+toes --images 300"
              "   # 21 keypoints\n"
              "  aepose synth data/clips --video --images 5 --frames 150 --people 6"),
    "train": ("train a preset on a COCO-format dataset (one GPU, torchrun, or CPU)",
              "examples:\n"
              "  aepose train --preset higherhrnet_w32_crowdpose_512 --data-root data/crowdpose\n"
              "  torchrun --nproc-per-node 8 -m aepose train --preset hrnet_w32_aic_512 \\\n"
              "      --data-root data/aic --dtype bf16 --channels-last\n"
              "  aepose synth data/synth --images 500   # writes data/synth/ (CrowdPose layout)\n"
              "  aepose train --preset higherhrnet_tiny_crowdpose_128 --data-root data/synth \\\n"
              "      --set train.epochs=3 train.lr=1e-3 --out runs/tiny\n"
              "  aepose train --resume runs/tiny/last.pth --data-root data/synth\n"
              "  aepose train --preset higherhrnet_tiny_crowdpose_128 --data-root data/synth \\\n"
              "      --init runs/tiny/last.pth --set train.freeze_backbone_epochs=1 "
              "--out runs/tuned"),
    "test": ("evaluate weights on a COCO-format set: AP table, metrics.json, results",
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
    "predict": ("poses for images, folders, globs or videos: JSON + overlays",
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
                "  aepose predict data/clips/clip_0000.mp4 --weights runs/demo/train/last.pth "
                "--track offline   # IDs from the whole clip\n"
                "  aepose predict 'runs/demo/data/images/%d.jpg' --weights "
                "runs/demo/train/last.pth   # numbered images, read as one video\n"
                "  aepose predict 0 --weights hrnet_w32_aic_512 --duration 30   # webcam 0, 30 s\n"
                "  aepose predict rtsp://cam/stream --weights hrnet_w32_aic_512 --max-frames 500"),
    "benchmark": ("time the network, decoding, the whole pipeline or training",
                  "examples:\n"
                  "  aepose benchmark --preset hrnet_w32_aic_512 --stage forward e2e\n"
                  "  aepose benchmark --preset higherhrnet_small_crowdpose_128 --stage "
                  "pipeline --batch-size 4 --images 32\n"
                  "  aepose benchmark --preset hrnet_w32_aic_512 --device cuda --dtype bf16 "
                  "--channels-last --compile --batch-size 64\n"
                  "  aepose benchmark --preset higherhrnet_w32_crowdpose_512 --stage train "
                  "--device cuda --dtype bf16 --batch-size 24"),
    "export": ("export the network to ONNX (dynamic batch, height and width)",
               "examples:\n"
               "  aepose export --weights hrnet_w32_aic_512x512-77e2a98a_20210131.pth "
               "--output hrnet_aic.onnx\n"
               "  aepose demo                       # writes runs/demo/train/last.pth\n"
               "  aepose export --weights runs/demo/train/last.pth --output demo.onnx --static"),
    "serve": ("poses over HTTP and WebSocket: batched requests, tracked streams, a page",
              "examples:\n"
              "  aepose demo                      # writes runs/demo/train/last.pth, "
              "runs/demo/data/images/\n"
              "  aepose serve --weights runs/demo/train/last.pth   # http://127.0.0.1:8000/\n"
              "  curl -s -H 'Content-Type: image/jpeg' --data-binary "
              "@runs/demo/data/images/1.jpg \\\n"
              "      'http://127.0.0.1:8000/predict?min_score=0.3'\n"
              "  aepose serve --weights hrnet_w32_aic_512 --max-batch 16 --token s3cret\n"
              "  AEPOSE_SERVE_TOKEN=s3cret aepose serve --weights hrnet_w32_aic_512 "
              "--host 0.0.0.0"),
    "demo": ("the main job, offline: generate crowds, train, evaluate, draw",
             "examples:\n  aepose demo                       # 8 minutes in all, on any machine\n"
             "  aepose demo --minutes 3 --out runs/quick\n"
             "  aepose demo --minutes 30 --threads 1   # the whole recipe on a busy CPU\n"
             "  aepose demo --device cuda --epochs 200 --minutes 30"),
}


def _add_train_arguments(p: Parser) -> None:
    p.add_argument("--preset", help="recipe to train (see 'aepose models')")
    p.add_argument("--data-root",
                   help="dataset root in the preset dataset's layout (see README, Data)")
    p.add_argument("--ann", help="training annotation file (COCO format; instead of "
                   "--data-root): its categories' keypoints and skeleton are the network's")
    p.add_argument("--images", help="image folder of --ann")
    p.add_argument("--val-ann", help="validation annotation file (same keypoints as --ann)")
    p.add_argument("--val-images", help="image folder of --val-ann (default: --images)")
    p.add_argument("--spec", metavar="NAME|FILE",
                   help="keypoints of --ann: a built-in name, or a JSON spec file overriding "
                   "what is inferred (README, Your own keypoints); default: the file's own")
    p.add_argument("--init", metavar="WEIGHTS",
                   help="start from these weights (file, preset or URL): every tensor whose "
                   "name and shape match; layers sized by the keypoint count start fresh")
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


def _add_pipeline_arguments(p: Parser) -> None:
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


def _add_speed_arguments(p: Parser) -> None:
    p.add_argument("--dtype", choices=PRECISIONS, default="fp32",
                   help="network precision (autocast; default fp32, as the published numbers)")
    p.add_argument("--channels-last", action="store_true", help="NHWC memory format")
    p.add_argument("--compile", action="store_true", help="torch.compile the network")
    p.add_argument("--compile-mode", choices=COMPILE_MODES,
                   help="torch.compile mode, implies --compile (reduce-overhead: CUDA graphs)")


def _add_test_arguments(p: Parser) -> None:
    p.add_argument("--weights", help="checkpoint (mmpose 0.x or aepose), .onnx file (from "
                   "'aepose export': runs in ONNX Runtime), preset name, release name or URL")
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
                   "runs/PRESET-test-TIMESTAMP; with --results, metrics-STEM.json beside "
                   "the results file STEM.json)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace metrics.json / results.json of an earlier run in --out")
    p.add_argument("--results", help="re-score a saved results.json (no network run)")
    p.add_argument("--spec", metavar="NAME|FILE",
                   help="keypoints of --results: a built-in name (" + ", ".join(
                       sorted(KEYPOINT_SPECS)) + ") or a JSON spec file over --ann's own "
                   "skeleton (default: the preset's, or what the files decide: 17 keypoints "
                   "are coco; 14, the annotation file's keypoint names; another count, its "
                   "own skeleton)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--batch-size", type=batch_size_int, default=8,
                   help="images per forward pass when their test sizes agree (default 8)")
    _add_pipeline_arguments(p)


def _add_predict_arguments(p: Parser) -> None:
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
    p.add_argument("--min-score", type=fraction, default=PREDICT_MIN_SCORE, metavar="S",
                   help="leave out people scoring below S, everywhere (default "
                   f"{PREDICT_MIN_SCORE:g}; 0: every person the grouping gives, as 'aepose "
                   "test' scores them)")
    p.add_argument("--conf", dest="min_score", type=fraction, default=argparse.SUPPRESS,
                   metavar="S", help="--min-score by ultralytics' name")
    p.add_argument("--pose-nms", type=_oks_or_none, default=PREDICT_POSE_NMS, metavar="OKS",
                   help="then drop people overlapping a better one by more than this OKS "
                   f"(default {PREDICT_POSE_NMS:g}, as mmpose's demo; none: keep them)")
    p.add_argument("--threshold", type=fraction, default=KEYPOINT_THRESHOLD, metavar="T",
                   help="keypoints scoring below T are undetected: score 0 in the JSON, not "
                   f"drawn, outside the bbox (default {KEYPOINT_THRESHOLD:g}; 0: every "
                   "keypoint keeps its score)")
    p.add_argument("--no-draw", action="store_true", help="JSON only, no overlays")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the outputs of an earlier run in --out")
    _add_video_arguments(p)
    _add_pipeline_arguments(p)
    p.add_argument("--backend", choices=["torch", "onnxruntime"], default="torch",
                   help="run the network in PyTorch (default) or ONNX Runtime (the default "
                   "for --weights NAME.onnx, a file from 'aepose export')")


def _oks_or_none(text: str) -> float | None:
    """An argparse type: an OKS threshold in [0, 1], or "none" (no pose NMS)."""
    if text == "none":
        return None
    try:
        return fraction(text)
    except argparse.ArgumentTypeError as error:
        raise argparse.ArgumentTypeError(f"{error}, or none") from None


def _add_video_arguments(p: Parser) -> None:
    """Tracking, smoothing and frame-source options of ``aepose predict`` (videos, streams)."""
    video = p.add_argument_group("videos and streams")
    video.add_argument("--track", nargs="?", choices=TRACK_MODES, const="online",
                       default="online", metavar="MODE",
                       help="give every person a track_id that persists across frames: "
                       "'online' frame by frame (the default), or 'offline' for video files: "
                       "the whole video's poses first, then tracks re-linked across gaps, "
                       "gaps of up to 30 frames filled with people marked interpolated, "
                       "smoothing both ways (more right IDs; nothing is output before the "
                       "video ends)")
    video.add_argument("--no-track", dest="track", action="store_const", const=None,
                       help="per-frame poses only, no track_id")
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
                       f"(default {TRACK_MIN_SCORE}; 0: everyone --min-score keeps)")
    video.add_argument("--smooth", action=argparse.BooleanOptionalAction, default=None,
                       help="smooth each track's keypoints with a One-Euro filter (online: "
                       "causal, no frame is delayed, default off; offline: forwards and "
                       "backwards, default on)")
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
                       "it from its first frame read (frame index / frame rate; a live "
                       "source also after SECONDS of wall-clock time)")
    video.add_argument("--no-drop", action="store_true",
                       help="live sources (webcam, rtsp://, http:// naming neither a video "
                       "file nor an image sequence): process every frame, even if processing "
                       "falls behind (default: keep only the newest frame and count the "
                       "dropped ones; files never drop)")


def _add_serve_arguments(p: Parser) -> None:
    p.add_argument("--weights", required=True, help="checkpoint (mmpose 0.x or aepose), "
                   ".onnx file, preset name, release name or URL")
    p.add_argument("--preset", help="recipe (default: the file's own, or recognised from keys)")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: every CUDA device, one "
                   "batch worker each; else the CPU)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int_in(1, 65535), default=8000, help="default 8000")
    p.add_argument("--token", help="require 'Authorization: Bearer TOKEN' (or ?token=) on "
                   "every endpoint but /healthz and /readyz (default: $AEPOSE_SERVE_TOKEN)")
    limits = p.add_argument_group("limits")
    limits.add_argument("--max-batch", type=int_in(1, 1024), default=8,
                        help="most images per batch (default 8; 1: no batching)")
    limits.add_argument("--max-wait-ms", type=float_in(0, 10_000), default=10.0,
                        help="how long a batch's first request waits for others while the "
                        "device is busy (an idle one runs it at once) (default 10)")
    limits.add_argument("--queue", type=int_in(1, 1_000_000), default=64,
                        help="most requests waiting; past it 503 + Retry-After (default 64)")
    limits.add_argument("--queue-mb", type=float_in(0, 1e6, low_open=True), default=512.0,
                        help="most MB of decoded images waiting or running (default 512)")
    limits.add_argument("--max-body-mb", type=float_in(0, 4096, low_open=True), default=20.0,
                        help="largest request body or stream frame (default 20)")
    limits.add_argument("--max-megapixels", type=float_in(0, 1024, low_open=True),
                        default=40.0, help="largest image, width x height (default 40)")
    limits.add_argument("--max-streams", type=int_in(0, 10_000), default=4,
                        help="concurrent WebSocket streams (default 4)")
    limits.add_argument("--max-fps", type=float_in(0, 1000, low_open=True), default=30.0,
                        help="frames processed per second per stream; faster ones are "
                        "dropped (default 30)")
    limits.add_argument("--max-connections", type=int_in(1, 1_000_000), default=256,
                        help="requests in progress and open streams, all together (health "
                        "checks excepted); past it 503 with Retry-After (a stream: closed, "
                        "code 1013) (default 256)")
    p.add_argument("--scales", type=test_scale, nargs="+",
                   help=f"test scales in [{MIN_TEST_SCALE:g}, {MAX_TEST_SCALE:g}], e.g. 2 1")
    p.add_argument("--no-flip", action="store_true",
                   help="no flip test by default (a request may ask flip=true)")
    p.add_argument("--stage-average", choices=STAGE_AVERAGES,
                   help="HigherHRNet output averaging (default the preset's)")
    p.add_argument("--set", dest="overrides", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override test settings, e.g. test.detection_threshold=0.2")
    p.add_argument("--min-score", type=fraction, default=PREDICT_MIN_SCORE, metavar="S",
                   help="leave out people scoring below S unless a request says otherwise "
                   f"(default {PREDICT_MIN_SCORE:g})")
    p.add_argument("--pose-nms", type=_oks_or_none, default=PREDICT_POSE_NMS, metavar="OKS",
                   help=f"as predict's (default {PREDICT_POSE_NMS:g}; none: keep everyone)")
    p.add_argument("--threshold", type=fraction, default=KEYPOINT_THRESHOLD, metavar="T",
                   help=f"keypoints scoring below T get score 0 (default {KEYPOINT_THRESHOLD:g})")
    p.add_argument("--smooth", action="store_true",
                   help="streams: smooth each track's keypoints (One-Euro filter)")


def _add_benchmark_arguments(p: Parser) -> None:
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
    p.add_argument("--repeats", type=positive_int,
                   help="timed iterations, reported by their median (default: as many as fit "
                   "in about 10 s, 3 to 20)")
    p.add_argument("--warmup", type=non_negative_int,
                   help="untimed iterations first (default 1; 3 with --compile)")
    p.add_argument("--input-size", type=input_size_int,
                   help="square input side (default preset's)")
    p.add_argument("--no-flip", action="store_true", help="e2e without the flip test")
    p.add_argument("--images", type=positive_int,
                   help="pipeline: generated images streamed per iteration (default 32; 8 for "
                   "a network over 10 GFLOPs on the CPU)")
    p.add_argument("--decode-workers", type=workers_int, metavar="N",
                   help="pipeline: decode workers (default: one per spare CPU core, at most 4)")
    p.add_argument("--json", help="also write the rows to this JSON file (checked before "
                   "timing, written whole or not at all)")


def build_parser() -> tuple[Parser, dict[str, Parser]]:
    """The top-level parser and each subcommand's parser."""
    parser = Parser(
        prog="aepose",
        description="Bottom-up pose estimation with Associative Embedding (HRNet, HigherHRNet).",
        epilog="examples:\n  aepose models\n  aepose demo                            # writes "
               "runs/demo/train/last.pth\n  aepose info runs/demo/train/last.pth",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"aepose {aepose.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    subparsers: dict[str, Parser] = {}
    for name, (summary, examples) in HELP.items():
        subparsers[name] = sub.add_parser(
            name, help=summary, description=summary, epilog=examples,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
    subparsers["models"].add_argument(
        "--no-flops", dest="flops", action="store_false", help="leave out the GFLOPs column")
    subparsers["info"].add_argument(
        "weights", help="checkpoint file (mmpose or aepose), ONNX file (from 'aepose export'), "
        "preset name, release name or URL")
    subparsers["download"].add_argument(
        "names", nargs="+", metavar="NAME",
        help="preset name, mmpose release file name or http(s) URL; 'all': every release")
    synth = subparsers["synth"]
    synth.add_argument("out_dir", help="folder to write (the dataset's own layout)")
    synth.add_argument("--spec", choices=sorted(KEYPOINT_SPECS), default="crowdpose",
                       help="keypoint definition and folder layout (default crowdpose)")
    synth.add_argument("--keypoints", metavar="SET",
                       help="a skeleton of your own instead of --spec, written in COCO's format "
                            "as train.json, train/, val.json, val/: named sets (coco, aic, "
                            "crowdpose, face, hands, toes, body9, all) and point names (neck, "
                            "head_top, head_centre, left_hand, left_toe, ...) joined by + or , "
                            "e.g. coco+hands+toes (21 points)")
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
    # Bounded here, as every other range: an argparse error (exit 2) before any work.
    synth.add_argument("--frames", type=int_in(1, CLIP_MAX_FRAMES), default=100,
                       help=f"frames per clip, 1..{CLIP_MAX_FRAMES} (default 100)")
    synth.add_argument("--people", type=int_in(1, 20), default=None,
                       help="distinct people per clip, 1..20 (default: drawn from 1..12)")
    synth.add_argument("--frame-size", type=frame_size, default=(640, 480),
                       metavar="WIDTHxHEIGHT", help="clip frame size (default 640x480)")
    synth.add_argument("--fps", type=float_in(0, 1000, low_open=True), default=25.0,
                       help="clip frame rate (default 25)")
    for name, sections in SET_SECTIONS.items():
        subparsers[name].set_sections = sections
    _add_train_arguments(subparsers["train"])
    _add_test_arguments(subparsers["test"])
    _add_predict_arguments(subparsers["predict"])
    _add_benchmark_arguments(subparsers["benchmark"])
    _add_serve_arguments(subparsers["serve"])
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
                      help="the whole demo's time budget: training gets what the other steps "
                      "leave, the schedule compressed to the steps that fit (default 8)")
    demo.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    demo.add_argument("--seed", type=seed_int, default=0,
                      help="data and training seed (default 0)")
    demo.add_argument("--epochs", type=positive_int, default=DEMO_EPOCHS,
                      help=f"the recipe's length when the budget allows (default {DEMO_EPOCHS})")
    demo.add_argument("--threads", type=positive_int,
                      help="torch threads on the CPU (default: AEPOSE_THREADS when set, else the "
                      "fastest, re-measured while training, since a busy machine can make "
                      "fewer threads faster)")
    demo.add_argument("--set", dest="overrides", nargs="+", default=[], metavar="KEY=VALUE",
                      help="override config values of the demo recipe")
    return parser, subparsers


# Options that act only with another setting: (options, whether the setting is on, what to
# do). Given without it they would be ignored silently, so the command line is refused.
NEEDS: dict[str, list[tuple[tuple[str, ...], Callable[[argparse.Namespace], bool], str]]] = {
    "predict": [(("--smooth", "--smooth-min-cutoff", "--smooth-beta", "--track-max-age",
                  "--track-min-similarity", "--track-min-score"), lambda a: a.track,
                 "without tracking: drop --no-track"),
                (("--smooth-min-cutoff", "--smooth-beta"),
                 lambda a: a.smooth or (a.smooth is None and a.track == "offline"),
                 "without --smooth")],
    "train": [(("--images", "--val-ann", "--val-images", "--spec"), lambda a: bool(a.ann),
               "without --ann")],
    "synth": [(("--frames", "--people", "--frame-size", "--fps"), lambda a: a.video,
               "without --video (clips only)"),
              (("--spec",), lambda a: a.keypoints is None, "with --keypoints"),
              (("--size",), lambda a: not a.video, "with --video: clips take --frame-size")],
}


def refuse_ignored(args: argparse.Namespace, parser: Parser) -> None:
    for options, on, advice in NEEDS.get(args.command, []):
        named = [option for option in options if parser.given(option)]
        if named and not on(args):
            parser.error(f"{', '.join(named)} would be ignored {advice}")


