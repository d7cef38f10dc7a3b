"""One GPU's benchmark suite: hardware ceilings, forward sweep, training step, end to end,
decode on GPU vs CPU; one table on stdout and every row in OUT/gpu_rows.json.

    PYTHONPATH=src python3 benchmarks/gpu_suite.py --out OUT [--budget-s 480] [--no-compile]
    .venv/bin/python benchmarks/gpu_suite.py --out /tmp/suite --smoke   # tiny, on the CPU

Sections, in order (each measurement is independent: one that fails prints its error, is
recorded under "errors" and the suite goes on; once ``--budget-s`` seconds have passed the
remaining measurements are skipped and recorded as such):

1. ceilings: bf16 matmul 8192^3 TFLOP/s and device-to-device copy GB/s (bytes read +
   bytes written per second), the numbers the model rows are compared with;
2. forward hrnet_w32_aic_512 at batch 32: fp32 / bf16 x channels_last off / on; then the
   fastest of the four over batches 1, 8, 64, 128; then torch.compile of the fastest
   setting, modes default and reduce-overhead (CUDA graphs), at the ``--compile-batches``
   (compilation, about a minute, happens in the warm-up and is not timed);
3. train higherhrnet_w32_crowdpose_512, bf16 + channels_last, batch 24 and the largest of
   64, 48, 32 that fits in memory (GPU-side step: the data pipeline is excluded);
4. e2e hrnet_w32_aic_512 on generated 640x480 crowds, single scale + flip, batches 1, 16,
   64, with the fastest forward setting;
5. decode of one 512x512 30-person image on the GPU and on the CPU.

The JSON file holds {"meta": torch/CUDA/GPU/date, "ceilings": {...}, "rows": [BenchRow
dicts], "errors": [...]} and is rewritten after every measurement, so a run cut short
keeps what it measured.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

import aepose
from aepose.apps.bench import BenchRow, format_rows, run_benchmark
from aepose.pipeline.timer import sync


@dataclass(frozen=True)
class Plan:
    """What the suite measures; ``PLANS["gpu"]`` is the real one, ``"smoke"`` checks the
    script on a CPU in seconds."""

    device: str
    forward_preset: str
    train_preset: str
    probe_batch: int  # batch of the fp32/bf16 x channels_last comparison
    batches: tuple[int, ...]  # forward sweep of the fastest setting
    compile_batches: tuple[int, ...]
    train_batches: tuple[int, ...]  # always measured
    train_try: tuple[int, ...]  # largest first: the first that fits is kept
    e2e_batches: tuple[int, ...]
    image_size: tuple[int, int]
    decode_size: int
    people: int
    repeats: int
    matmul_n: int
    copy_bytes: int
    precisions: tuple[str, ...] = ("fp32", "bf16")


PLANS = {
    "gpu": Plan(
        device="cuda", forward_preset="hrnet_w32_aic_512",
        train_preset="higherhrnet_w32_crowdpose_512", probe_batch=32,
        batches=(1, 8, 32, 64, 128), compile_batches=(1, 32), train_batches=(24,),
        train_try=(64, 48, 32), e2e_batches=(1, 16, 64), image_size=(640, 480),
        decode_size=512, people=30, repeats=20, matmul_n=8192, copy_bytes=1 << 30,
    ),
    "smoke": Plan(
        device="cpu", forward_preset="hrnet_tiny_aic_128",
        train_preset="higherhrnet_tiny_crowdpose_128", probe_batch=2, batches=(1, 2),
        compile_batches=(), train_batches=(2,), train_try=(4, 3), e2e_batches=(1, 2),
        image_size=(160, 120), decode_size=128, people=4, repeats=2, matmul_n=256,
        copy_bytes=1 << 22,
    ),
}


def _seconds_per_call(fn: Callable[[], object], device: torch.device, iters: int) -> float:
    """Mean seconds of ``fn`` over ``iters`` back-to-back calls after 3 warm-up calls."""
    for _ in range(3):
        fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    sync(device)
    return (time.perf_counter() - start) / iters


def matmul_tflops(device: torch.device, n: int, iters: int = 20) -> float:
    """Achieved bf16 TFLOP/s of an n x n x n matmul (2 n^3 FLOPs per call)."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    out = torch.empty(n, n, device=device, dtype=torch.bfloat16)
    seconds = _seconds_per_call(lambda: torch.matmul(a, b, out=out), device, iters)
    return 2 * n**3 / seconds / 1e12


def copy_gbps(device: torch.device, nbytes: int, iters: int = 20) -> float:
    """Device-to-device copy GB/s, counting the bytes read plus the bytes written."""
    src = torch.empty(nbytes, dtype=torch.uint8, device=device).fill_(1)
    dst = torch.empty_like(src)
    seconds = _seconds_per_call(lambda: dst.copy_(src), device, iters)
    return 2 * nbytes / seconds / 1e9


def _tf32_flags() -> dict[str, Any]:
    try:
        return {"cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
                "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32}
    except RuntimeError as err:  # torch versions that refuse mixing old and new flag APIs
        return {"tf32_flags": str(err).splitlines()[0]}


def environment(device: str) -> dict[str, Any]:
    """Versions, GPU and date of this run."""
    meta: dict[str, Any] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(), "torch": torch.__version__,
        "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
        "aepose": aepose.__version__, "device": device,
        "cpu_threads": torch.get_num_threads(), **_tf32_flags(),
    }
    if device == "cuda" and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        meta.update(gpu=props.name, capability=f"{props.major}.{props.minor}",
                    gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    multiprocessors=props.multi_processor_count)
    return meta


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:300]


def _free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class Suite:
    """Runs measurements one by one, keeps rows and errors, writes the JSON after each."""

    def __init__(self, out: Path, plan: Plan, budget_s: float) -> None:
        self.path = out / "gpu_rows.json"
        self.plan, self.budget_s = plan, budget_s
        self.start = time.monotonic()
        self.meta = environment(plan.device)
        self.ceilings: dict[str, float] = {}
        self.rows: list[BenchRow] = []
        self.errors: list[dict[str, str]] = []
        self.last_oom = False

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def say(self, text: str) -> None:
        print(f"[{self.elapsed():6.1f}s] {text}", flush=True)

    def attempt(self, label: str, fn: Callable[[], Any]) -> Any | None:
        """``fn()``'s result, or None after printing and recording why it failed."""
        self.last_oom = False
        if self.elapsed() > self.budget_s:
            self.say(f"SKIP {label}: time budget of {self.budget_s:.0f}s spent")
            self.errors.append({"label": label, "error": "skipped: time budget spent"})
            return None
        self.say(f"{label} ...")
        try:
            return fn()
        except Exception as err:  # one failing combo must not stop the suite
            self.last_oom = isinstance(err, torch.OutOfMemoryError)
            self.say(f"  FAILED {label}: {_first_line(err)}")
            self.errors.append({"label": label, "error": _first_line(err)})
            return None
        finally:
            _free_memory()
            self.save()

    def bench(self, label: str, preset: str, **options: Any) -> BenchRow | None:
        row: BenchRow | None = self.attempt(label, lambda: run_benchmark(preset, **options))
        if row is not None:
            self.rows.append(row)
            self.save()
            mem = f", peak {row.peak_mem_mb:.0f} MiB" if row.peak_mem_mb is not None else ""
            tflops = f", {row.tflops:.3g} TFLOP/s" if row.tflops is not None else ""
            self.say(f"  {row.images_per_s:.1f} img/s, {row.ms_per_image:.3f} ms/img"
                     f"{mem}{tflops}")
        return row

    def save(self) -> None:
        document = {"meta": {**self.meta, "elapsed_s": round(self.elapsed(), 1)},
                    "ceilings": self.ceilings, "rows": [r.to_dict() for r in self.rows],
                    "errors": self.errors}
        self.path.write_text(json.dumps(document, indent=1))


def ceilings(suite: Suite) -> None:
    device, plan = torch.device(suite.plan.device), suite.plan
    tflops = suite.attempt(f"bf16 matmul {plan.matmul_n}^3",
                           lambda: matmul_tflops(device, plan.matmul_n))
    if tflops is not None:
        suite.ceilings["bf16_matmul_tflops"] = tflops
        suite.say(f"  {tflops:.1f} TFLOP/s")
    gbps = suite.attempt(f"copy {plan.copy_bytes / 2**20:.0f} MiB device to device",
                         lambda: copy_gbps(device, plan.copy_bytes))
    if gbps is not None:
        suite.ceilings["d2d_copy_gbps_read_plus_write"] = gbps
        suite.say(f"  {gbps:.0f} GB/s (read + write)")


Setting = tuple[str, bool]  # (dtype, channels_last)


def forward(suite: Suite, compile_batches: tuple[int, ...]) -> Setting:
    """The precision/layout comparison, the batch sweep of the winner, compiled runs;
    returns the fastest eager setting."""
    plan = suite.plan
    common = {"stage": "forward", "device": plan.device, "repeats": plan.repeats}
    probed: dict[Setting, float] = {}
    for dtype in plan.precisions:
        for channels_last in (False, True):
            row = suite.bench(f"forward {dtype} channels_last={channels_last} "
                              f"batch {plan.probe_batch}", plan.forward_preset, **common,
                              batch_size=plan.probe_batch, dtype=dtype,
                              channels_last=channels_last)
            if row is not None:
                probed[(dtype, channels_last)] = row.images_per_s
    best = max(probed, key=lambda s: probed[s]) if probed else ("bf16", True)
    suite.say(f"fastest eager setting: {best[0]}, channels_last={best[1]}")
    for batch in plan.batches:
        if batch != plan.probe_batch:
            suite.bench(f"forward {best[0]} channels_last={best[1]} batch {batch}",
                        plan.forward_preset, **common, batch_size=batch, dtype=best[0],
                        channels_last=best[1])
    # reduce-overhead replays CUDA graphs: it matters most where launches dominate (batch 1).
    for batch in compile_batches:
        for mode in ("default", "reduce-overhead"):
            suite.bench(f"forward compiled ({mode}) {best[0]} channels_last={best[1]} "
                        f"batch {batch}", plan.forward_preset, **common, batch_size=batch,
                        dtype=best[0], channels_last=best[1], compile=mode, warmup=3)
    return best


def train(suite: Suite) -> None:
    plan = suite.plan
    common = {"stage": "train", "device": plan.device, "dtype": "bf16",
              "channels_last": True, "repeats": max(2, plan.repeats // 2), "warmup": 3}
    for batch in plan.train_batches:
        suite.bench(f"train bf16 channels_last batch {batch}", plan.train_preset, **common,
                    batch_size=batch)
    for batch in plan.train_try:
        row = suite.bench(f"train bf16 channels_last batch {batch} (largest that fits?)",
                          plan.train_preset, **common, batch_size=batch)
        if row is not None:
            return
        if not suite.last_oom:
            return  # not a memory problem: a smaller batch would fail the same way
        suite.say(f"  batch {batch} does not fit; trying a smaller one")


def end_to_end(suite: Suite, setting: Setting) -> None:
    plan = suite.plan
    for batch in plan.e2e_batches:
        suite.bench(f"e2e {plan.image_size[0]}x{plan.image_size[1]} flip batch {batch}",
                    plan.forward_preset, stage="e2e", device=plan.device, batch_size=batch,
                    dtype=setting[0], channels_last=setting[1], image_size=plan.image_size,
                    flip=True, repeats=3 if batch > 1 else 10, warmup=1)


def decode(suite: Suite) -> None:
    plan = suite.plan
    devices = [plan.device] + (["cpu"] if plan.device != "cpu" else [])
    for device in devices:
        suite.bench(f"decode {plan.decode_size}x{plan.decode_size} {plan.people} people "
                    f"on {device}", plan.forward_preset, stage="decode", device=device,
                    batch_size=1, input_size=plan.decode_size, people=plan.people,
                    repeats=plan.repeats, warmup=2)


def summary(suite: Suite) -> str:
    """Ceilings and the best forward/train rows as a fraction of the matmul ceiling."""
    lines = [f"{name}: {value:.4g}" for name, value in suite.ceilings.items()]
    ceiling = suite.ceilings.get("bf16_matmul_tflops")
    for stage in ("forward", "train"):
        rows = [r for r in suite.rows if r.stage == stage and r.tflops is not None]
        if rows and ceiling:
            best = max(rows, key=lambda r: r.images_per_s)
            lines.append(f"best {stage}: {best.images_per_s:.0f} img/s at batch {best.batch} "
                         f"({best.dtype}, channels_last={best.channels_last}, compile="
                         f"{best.compile}) = {best.tflops:.3g} TFLOP/s, "
                         f"{100 * (best.tflops or 0) / ceiling:.0f}% of the bf16 matmul ceiling")
    lines.append(f"{len(suite.rows)} rows, {len(suite.errors)} errors/skips, "
                 f"{suite.elapsed():.0f}s")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu_rows.json")
    parser.add_argument("--budget-s", type=float, default=480,
                        help="start no measurement after this many seconds (default 480)")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile rows")
    parser.add_argument("--compile-batches", type=int, nargs="*", default=None,
                        help="batches of the compiled forward rows (default: 1 32)")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny presets on the CPU: checks the script, measures nothing real")
    args = parser.parse_args()
    plan = PLANS["smoke" if args.smoke else "gpu"]
    if plan.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU visible to torch (use --smoke to check the script)")
    if args.smoke:
        torch.set_num_threads(1)  # a shared CPU: a second thread waiting for a core distorts
    args.out.mkdir(parents=True, exist_ok=True)
    suite = Suite(args.out, plan, args.budget_s)
    suite.say(f"meta: {json.dumps(suite.meta)}")
    compile_batches = () if args.no_compile else tuple(
        plan.compile_batches if args.compile_batches is None else args.compile_batches)
    ceilings(suite)
    setting = forward(suite, compile_batches)
    train(suite)
    end_to_end(suite, setting)
    decode(suite)
    suite.save()
    print("\n" + format_rows(suite.rows), flush=True)
    print("\n" + summary(suite), flush=True)
    for error in suite.errors:
        print(f"error: {error['label']}: {error['error']}", flush=True)
    print(f"\nrows written to {suite.path}", flush=True)


if __name__ == "__main__":
    main()
