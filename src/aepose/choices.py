"""Choices and defaults that the command line shows and their owners use: one definition.

This module imports nothing, so building the parser (``aepose --help``) loads no torch;
the modules that run them (aggregation, precision, the predictor, the tracker, the demo,
the benchmark, the clip generator) import their values from here.
"""

STAGE_AVERAGES = ("v0.29", "legacy")
"""How HigherHRNet's two outputs are combined: mmpose >= 0.19 (the published numbers) or
mmpose < 0.19 (:func:`aepose.codec.aggregate.aggregate_maps`)."""

PRECISIONS = ("fp32", "bf16", "fp16")
"""Network precisions (:mod:`aepose.precision`)."""

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")
"""``torch.compile`` modes. "reduce-overhead" replays CUDA graphs, one capture per input
shape, which removes the kernel-launch cost of small batches; on the CPU it is "default"."""

BENCHMARK_STAGES = ("decode", "e2e", "forward", "pipeline", "train")
"""What ``aepose benchmark --stage`` times (:mod:`aepose.apps.bench`)."""

PREDICT_MIN_SCORE = 0.25
PREDICT_POSE_NMS = 0.9
KEYPOINT_THRESHOLD = 0.2
"""Defaults of ``aepose predict``, ``aepose.predict`` and their overlays
(:class:`~aepose.pipeline.run.RunOptions`): people scoring below PREDICT_MIN_SCORE are left
out (grouping splits off fragments of one or two joints that score about 0.01), poses
overlapping a better one by more than OKS PREDICT_POSE_NMS are dropped, and keypoints scoring
below KEYPOINT_THRESHOLD are undetected (score 0, not drawn, outside the bbox). Chosen on
``benchmarks/predict_defaults.py`` (BENCHMARKS.md, "Prediction defaults"). ``aepose test``
keeps the reference's: every person, no pose NMS, every keypoint's own score."""

TRACK_MODES = ("online", "offline")
"""``aepose predict --track MODE`` and ``aepose.predict(track=MODE)``: frame by frame as
they come (the default), or a whole video file at once (:mod:`aepose.tracking.offline`)."""

TRACK_MAX_AGE = 30
TRACK_MIN_SIMILARITY = 0.2
TRACK_MIN_SCORE = 0.2
"""Defaults of :class:`~aepose.tracking.tracker.TrackerConfig` (chosen on
``benchmarks/tracking.py``)."""

SMOOTH_MIN_CUTOFF = 1.0
SMOOTH_BETA = 10.0
"""Defaults of :class:`~aepose.tracking.one_euro.OneEuroConfig`."""

DEMO_MINUTES = 8.0
DEMO_EPOCHS = 48
"""Defaults of :class:`~aepose.apps.demo.DemoSettings`."""

FRAME_SIDES = (32, 4096)
"""Frame sides in pixels that ``aepose synth --video`` accepts."""

CLIP_MAX_FRAMES = 10_000
"""The longest clip ``aepose synth --video --frames`` writes (6 min 40 s at 25 fps): a
clip's ground truth is built in memory before its frames are rendered."""
