"""The batcher's three paths in-process, the same images through each: ``batch_inline`` (one
``run()`` over the list, decoded in the calling thread: ``aepose serve`` before the decode
pool), ``batch_pool`` (the same, decoded in a 2-process pool: a batch now), ``single`` (one
``run()`` per image: ``--max-batch 1``). For each: wall and CPU seconds (best of
``--repeats``, CPU of this process only: the pool's processes are not in it), system
seconds, minor page faults, the forward passes' input shapes and the stage seconds.

By default in a thread (as the batch workers run) after ``keep_freed_memory`` (as the
command calls it); ``--main-thread`` and ``--glibc-defaults`` show what each changes.

    .venv/bin/python benchmarks/serve_load_profile.py --preset higherhrnet_small_crowdpose_128
    .venv/bin/python benchmarks/serve_load_profile.py --preset higherhrnet_w32_crowdpose_512 \\
        --images 4 --repeats 2
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="higherhrnet_small_crowdpose_128")
    parser.add_argument("--images", type=int, default=8, help="320x240 crowd images")
    parser.add_argument("--threads", type=int, help="torch threads (default torch's)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--main-thread", action="store_true")
    parser.add_argument("--glibc-defaults", action="store_true",
                        help="do not call keep_freed_memory")
    args = parser.parse_args()
    from aepose.pipeline.workers import decode_pool, keep_freed_memory

    if not args.glibc_defaults:
        keep_freed_memory()  # before any thread, as the command does
    import torch

    from aepose.apps.bench import crowd_images, mimic_trained_maps, realistic_weights
    from aepose.config import get_preset
    from aepose.data.dataset import normalize_image
    from aepose.models import build_model
    from aepose.pipeline.inputs import Input, Inputs
    from aepose.pipeline.predictor import Predictor
    from aepose.pipeline.run import RunOptions, run
    from aepose.pipeline.timer import StageTimer

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = get_preset(args.preset)
    torch.manual_seed(0)
    model = realistic_weights(build_model(cfg), seed=0).eval()
    probe = torch.stack([normalize_image(crowd_images(1, (128, 128), seed=1)[0])])
    mimic_trained_maps(model, cfg, probe)
    shapes: list[tuple[int, ...]] = []
    model.register_forward_pre_hook(lambda _, given: shapes.append(tuple(given[0].shape)))
    predictor = Predictor(model, cfg, channel_order="rgb")
    images = crowd_images(args.images, (320, 240), seed=11)
    batch = RunOptions(batch_size=8, decode_workers=0, min_score=0.0, pose_nms=0.9,
                       keypoint_threshold=0.0, tracker=None)  # the batcher's
    single = RunOptions(**{**batch.__dict__, "batch_size": 1, "read_workers": 0})
    pool = decode_pool(predictor.device, None)

    def go(items: list[Any], options: RunOptions, timer: StageTimer,
           decoders: Executor | None = None) -> None:
        inputs = Inputs(tuple(Input(f"request {i}", i, image=image, order="rgb")
                              for i, image in enumerate(items)))
        with contextlib.closing(run(inputs, predictor, options, timer=timer,
                                    decoders=decoders)) as results:
            for _ in results:
                pass

    def singles(timer: StageTimer) -> None:
        for image in images:
            go([image], single, timer)

    paths: dict[str, Callable[[StageTimer], None]] = {
        "batch_inline": lambda t: go(images, batch, t),
        "batch_pool": lambda t: go(images, batch, t, pool),
        "single": singles,
    }
    rows: dict[str, dict[str, Any]] = {}

    def measure() -> None:
        for path in paths.values():  # warm
            path(StageTimer())
        for _ in range(args.repeats):
            for name, path in paths.items():
                shapes.clear()
                timer = StageTimer()
                before = resource.getrusage(resource.RUSAGE_THREAD)
                start, cpu = time.perf_counter(), time.process_time()
                path(timer)
                wall, cpu = time.perf_counter() - start, time.process_time() - cpu
                after = resource.getrusage(resource.RUSAGE_THREAD)
                row = {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
                       "thread_sys_s": round(after.ru_stime - before.ru_stime, 2),
                       "thread_minor_faults": after.ru_minflt - before.ru_minflt,
                       "forwards": sorted(set(shapes)), "passes": len(shapes),
                       "stage_s": {k: round(v, 3) for k, v in timer.seconds.items()}}
                if name not in rows or wall < rows[name]["wall_s"]:
                    rows[name] = row

    if args.main_thread:
        measure()
    else:
        worker = threading.Thread(target=measure)
        worker.start()
        worker.join()
    pool.shutdown()
    print(json.dumps({"preset": args.preset, "images": args.images,
                      "torch_threads": torch.get_num_threads(),
                      "thread": not args.main_thread, "keep": not args.glibc_defaults,
                      "load_average": os.getloadavg()[0], **rows}, indent=1))


if __name__ == "__main__":
    main()
