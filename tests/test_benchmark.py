"""aepose.apps.bench: rows are consistent, every stage computes what it claims, precision
settings stay within tolerance of fp32, bad settings fail with one clear line.

All on the CPU with the tiny presets at 128 px, batch 2, 2 timed repeats; nothing here
asserts on a timing value, only on relations between the numbers and on computed facts.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import re
import shutil
from typing import Any

import numpy as np
import pytest
import torch

from aepose.apps.bench import (
    PARTS,
    STAGES,
    BenchRow,
    crowd_images,
    crowd_maps,
    format_rows,
    mimic_trained_maps,
    outputs_match,
    realistic_weights,
    run_benchmark,
)
from aepose.apps.bench.measure import MAX_REPEATS, MIN_REPEATS, TIME_BUDGET_S, keep_timing
from aepose.apps.profile import model_cost
from aepose.codec.aggregate import aggregate_maps
from aepose.codec.candidates import nms_heatmaps
from aepose.codec.decode import decode_poses
from aepose.config import get_preset
from aepose.data.dataset import normalize_image
from aepose.data.transforms import resize_align
from aepose.data.transforms import test_sizes as compute_test_sizes
from aepose.errors import AeposeError
from aepose.keypoints import get_spec
from aepose.models import build_model

SIMPLE = "hrnet_tiny_aic_128"
HIGHER = "higherhrnet_tiny_crowdpose_128"
FAST: dict[str, Any] = {"batch_size": 2, "repeats": 2, "warmup": 1}
SMALL_IMAGE = (160, 120)  # landscape: network input 192 x 128


def assert_consistent(row: BenchRow, stage: str, preset: str) -> None:
    """The relations every row must satisfy, whatever the machine's speed."""
    assert (row.stage, row.preset, row.batch, row.repeats, row.device) == (
        stage, preset, 2, 2, "cpu")
    assert row.ms_per_image > 0 and row.images_per_s > 0
    assert row.images_per_s * row.ms_per_image == pytest.approx(1000, rel=1e-9)
    assert row.peak_mem_mb is None  # CPU: no CUDA allocator statistics
    assert sum(row.parts.values()) <= row.ms_per_image * (1 + 1e-9)
    json.dumps(row.to_dict())  # every field is JSON-ready


def test_forward_tflops_is_model_flops_times_throughput() -> None:
    row = run_benchmark(SIMPLE, stage="forward", **FAST)
    assert_consistent(row, "forward", SIMPLE)
    _, gflops = model_cost(get_preset(SIMPLE), 128)
    assert row.facts["gflops_per_image"] == gflops
    assert row.tflops == pytest.approx(gflops * row.images_per_s / 1000, rel=1e-9)
    assert (row.input, row.dtype, row.compile, row.channels_last, row.parts) == (
        "128x128", "fp32", None, False, {})


def test_forward_records_bf16_channels_last_and_input_size() -> None:
    row = run_benchmark(HIGHER, stage="forward", dtype="bf16", channels_last=True,
                        input_size=64, **FAST)
    assert_consistent(row, "forward", HIGHER)
    assert (row.dtype, row.channels_last, row.input) == ("bf16", True, "64x64")
    # FLOPs follow the requested input size: a quarter of the pixels of 128 x 128.
    assert row.facts["gflops_per_image"] == pytest.approx(
        model_cost(get_preset(HIGHER), 128)[1] / 4, rel=0.02)


def test_train_step_updates_weights_with_finite_losses() -> None:
    row = run_benchmark(HIGHER, stage="train", **FAST)
    assert_consistent(row, "train", HIGHER)
    assert math.isfinite(row.facts["loss_first"]) and math.isfinite(row.facts["loss_last"])
    assert row.facts["weight_change"] > 1e-4  # three Adam steps moved the weights
    assert row.facts["loss_last"] < row.facts["loss_first"]  # same batch: it is fitting it
    assert row.tflops == pytest.approx(3 * row.facts["gflops_per_image"] * row.images_per_s
                                       / 1000, rel=1e-9)
    assert "data pipeline excluded" in row.note


def test_crowd_maps_decode_to_the_people_drawn() -> None:
    heatmaps, tags = crowd_maps(9, 256, 14, seed=5)
    assert heatmaps.shape == (14, 256, 256) and tags.shape == (14, 256, 256, 2)
    assert heatmaps.dtype == tags.dtype == torch.float32
    poses, scores = decode_poses(heatmaps, tags)
    assert len(poses) == len(scores) == 9
    # Each person's joints carry one tag value, and the people's values are distinct.
    person_tags = [np.median(p[p[:, 2] > 0, 3]) for p in poses]
    assert np.diff(np.sort(person_tags)).min() > 1.0


def test_decode_stage_finds_every_person_and_ignores_network_settings() -> None:
    row = run_benchmark(SIMPLE, stage="decode", people=4, dtype="bf16", channels_last=True,
                        **FAST)
    assert_consistent(row, "decode", SIMPLE)
    assert row.facts["people_per_image"] == row.facts["people_drawn"] == 4
    assert (row.dtype, row.compile, row.channels_last, row.tflops) == ("fp32", None, False,
                                                                        None)


def test_e2e_returns_every_image_with_all_parts() -> None:
    row = run_benchmark(HIGHER, stage="e2e", image_size=SMALL_IMAGE, **FAST)
    assert_consistent(row, "e2e", HIGHER)
    assert row.facts["images_out"] == 2 and row.facts["people_per_image"] >= 1
    assert set(row.parts) == set(PARTS) and all(v > 0 for v in row.parts.values())
    assert (row.facts["network_input_w"], row.facts["network_input_h"]) == (192, 128)
    assert row.input == "160x120" and row.tflops is None


def test_pipeline_row_reports_stage_rates_and_overlap() -> None:
    row = run_benchmark(HIGHER, stage="pipeline", image_size=SMALL_IMAGE, images=4,
                        decode_workers=1, **FAST)
    assert row.stage == "pipeline" and row.batch == 2 and row.parts == {}
    facts = row.facts
    assert facts["images_out"] == 4 and facts["people_per_image"] >= 1
    assert row.images_per_s == pytest.approx(facts["pipeline_images_per_s"], rel=1e-9)
    slowest = min(facts[k] for k in ("rate_preprocess", "rate_network", "rate_decode"))
    assert facts["overlap_efficiency"] == pytest.approx(row.images_per_s / slowest, rel=1e-9)
    # The serial rate is the harmonic combination of the stages it runs one after the other.
    assert facts["serial_images_per_s"] < slowest


def test_mimic_trained_maps_gives_the_asked_candidates_and_tag_spread() -> None:
    cfg = get_preset(HIGHER)
    model = realistic_weights(build_model(cfg))
    sizes = compute_test_sizes(*SMALL_IMAGE, cfg.data.input_size)
    batch = torch.stack([normalize_image(resize_align(im, sizes))
                         for im in crowd_images(2, SMALL_IMAGE, seed=1)])
    mimic_trained_maps(model, cfg, batch, candidates=12, tag_std=0.2)
    with torch.inference_mode():
        heat, tags = aggregate_maps(model, [batch], (1.0,), sizes.base_size, cfg.model,
                                    flip_index=get_spec(cfg.data.dataset).flip_index)
    # Tags are linear in the scaled tag channels: their spread is exactly the one asked.
    assert float(tags.std()) == pytest.approx(0.2, rel=1e-3)
    low = heat.min()
    peaks = nms_heatmaps((heat - low).reshape(-1, *heat.shape[2:]), cfg.test.nms_kernel)
    above = (peaks + low > cfg.test.detection_threshold).sum(dim=(1, 2)).float()
    assert 9 <= float(above.mean()) <= 15  # 12 asked; the bias is shared by both images


def test_channels_last_and_bf16_stay_close_to_fp32() -> None:
    assert outputs_match(HIGHER, "fp32", channels_last=True) <= 1e-5
    error = outputs_match(HIGHER, "bf16")
    # Nonzero proves autocast ran in bf16; measured 0.027-0.032 on the tiny presets with
    # realistic weights (8 mantissa bits rounded at each of ~40 layers).
    assert 1e-3 < error <= 5e-2


@pytest.mark.slow
def test_compiled_network_matches_eager() -> None:
    if shutil.which("c++") is None and shutil.which("g++") is None:
        pytest.skip("torch.compile (inductor) needs a C++ compiler; none on PATH")
    try:
        torch.compile(lambda x: x * 2 + 1)(torch.ones(3))
    except Exception as err:  # any failure means compile is unusable here
        pytest.skip(f"torch.compile does not work here: {str(err).splitlines()[0]}")
    assert outputs_match(SIMPLE, "fp32", compile="default") <= 1e-5
    # On the CPU there are no CUDA graphs to capture: the mode must still plumb through.
    assert outputs_match(SIMPLE, "fp32", compile="reduce-overhead") <= 1e-5


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"stage": "backward"}, "unknown stage 'backward' (choices: " + ", ".join(STAGES)),
        ({"stage": "forward", "dtype": "fp8"}, "unknown dtype 'fp8' (choices: fp32, bf16, fp16)"),
        ({"stage": "forward", "dtype": "fp16"}, "fp16 needs a CUDA device"),
        ({"stage": "forward", "device": "tpu"}, "unknown device 'tpu'"),
        ({"stage": "forward", "batch_size": 0}, "batch_size must be an integer >= 1"),
        ({"stage": "forward", "input_size": 100}, "multiple of 32"),
        ({"stage": "forward", "compile": "fast"}, "unknown compile mode 'fast' (choices: "),
    ],
)
def test_bad_settings_raise_one_line(options: dict[str, Any], message: str) -> None:
    with pytest.raises(AeposeError) as info:
        run_benchmark(SIMPLE, **options)
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_cuda_without_gpu_is_a_clear_error() -> None:
    with pytest.raises(AeposeError, match="no CUDA GPU"):
        run_benchmark(SIMPLE, stage="forward", device="cuda")


def test_format_rows_is_an_aligned_table() -> None:
    row = BenchRow(
        stage="e2e", preset=SIMPLE, device="cpu", dtype="fp32", batch=2, compile=None,
        channels_last=True, input="160x120", images_per_s=12.5, ms_per_image=80.0,
        parts={"pre": 1.0, "network": 9.0, "decode": 60.0, "post": 2.0}, peak_mem_mb=None,
        tflops=None, repeats=2,
    )
    lines = format_rows([row, row]).splitlines()
    assert len(lines) == 3 and len({len(line) for line in lines}) == 1
    header, first = lines[0].split(), lines[1].split()
    assert header[:2] == ["stage", "preset"]
    assert first[:8] == ["e2e", SIMPLE, "cpu", "fp32", "2", "no", "yes", "160x120"]
    assert "12.5" in first and "80.0" in first and "60.0" in first
    assert format_rows([]).split()[0] == "stage"


# ---------------------------------------------------------------------------------------
# Defaults that finish in about a minute, and progress lines


def test_keep_timing_fills_the_time_budget_within_its_bounds() -> None:
    def timed(seconds_each: float, repeats: int | None = None) -> int:
        done = 0
        while keep_timing(done, done * seconds_each, repeats):
            done += 1
        return done

    assert timed(0.6) == 16  # 16 x 0.6 = 9.6 s; a 17th would pass 10 s
    assert timed(0.001) == MAX_REPEATS == 20
    assert timed(30.0) == MIN_REPEATS == 3  # a median needs three, however slow
    assert timed(0.6, repeats=2) == 2 and timed(30.0, repeats=7) == 7  # given: exactly
    assert timed(TIME_BUDGET_S / 5) == 5


def test_default_settings_bound_each_stage_near_ten_seconds() -> None:
    """Not a timed test: the defaults of the command line and of run_benchmark, and what
    they plan for iterations of a given length (the old defaults, 5 warm-up and 20 timed
    iterations, ran 25 x 24 s = 10 minutes for an iteration slowed to 24 s)."""
    from aepose.apps.arguments import build_parser
    from aepose.apps.bench.job import make_job, pipeline_images

    args = build_parser()[0].parse_args(["benchmark", "--preset", SIMPLE])
    assert (args.stage, args.repeats, args.warmup, args.images) == (["forward"], None, None,
                                                                    None)
    parameters = inspect.signature(run_benchmark).parameters
    assert parameters["repeats"].default is None and parameters["warmup"].default is None
    job = make_job(SIMPLE, stage="forward", device="cpu", batch_size=1, dtype="fp32",
                   compile=None, channels_last=False, repeats=None, warmup=None,
                   input_size=None, image_size=(640, 480), flip=True, people=30, images=None,
                   decode_workers=None)
    assert (job.repeats, job.warmup) == (None, 1)
    for seconds_each in (0.01, 0.6, 2.0, 5.0):  # tiny .. HRNet-w48 at 512 on 2 cores
        done = 0
        while keep_timing(done, done * seconds_each, job.repeats):
            done += 1
        assert (job.warmup + done) * seconds_each <= TIME_BUDGET_S + 2 * 5.0
    # The pipeline streams 32 images per iteration, 8 for a heavy network on the CPU.
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert pipeline_images(get_preset(HIGHER), cpu) == 32
    assert pipeline_images(get_preset("hrnet_w32_aic_512"), cpu) == 8
    assert pipeline_images(get_preset("hrnet_w32_aic_512"), cuda) == 32


def test_every_stage_says_what_it_is_doing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="aepose"):
        row = run_benchmark(SIMPLE, stage="forward", **FAST)
    label = f"benchmark forward {SIMPLE} (cpu, fp32, batch 2): "
    lines = [r.getMessage() for r in caplog.records]
    assert all(line.startswith(label) for line in lines)
    assert [line.removeprefix(label) for line in lines[:3]] == [
        "preparing", "warm-up, 1 iteration", "timing 2 iterations"]
    assert re.fullmatch(r"done in \d+ s: [0-9.e+-]+ ms per image over 2 timed iterations",
                        lines[-1].removeprefix(label))
    assert row.repeats == 2 and "network alone: 2 random 128x128 input(s) per pass" in row.note


def test_command_prints_progress_on_stderr_and_the_table_on_stdout(
    capsys: pytest.CaptureFixture[str]
) -> None:
    from helpers import run_cli

    code, out, err = run_cli(capsys, "benchmark", "--preset", SIMPLE, "--stage", "decode",
                             "--repeats", "1", "--warmup", "0", "--input-size", "64")
    assert code == 0 and out.splitlines()[0].split()[:2] == ["stage", "preset"]
    lines = err.splitlines()
    assert len(lines) >= 3 and all(
        line.startswith(f"benchmark decode {SIMPLE} (cpu, fp32, batch 1): ") for line in lines)
    assert "preparing" in lines[0] and "done in" in lines[-1]
