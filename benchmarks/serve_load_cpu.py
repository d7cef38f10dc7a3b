"""``serve_load.py --parts cpu``: where a request's CPU time goes in ``aepose serve``.

For each preset, a server with batching (``--max-batch 8``) and one without
(``--max-batch 1``), one at a time, under the largest ``--clients`` for ``--seconds``: the
CPU seconds (user + system, from ``/proc/PID/task/*/stat``) that each part of the server
spent, divided by the requests answered. Parts: the server's main thread (uvicorn's event
loop: HTTP, the reply's JSON), its other threads (the batch threads: network, and decoding
when one image runs alone; the JPEG decoding threads) and its child processes (the decode
pool: a batch's images). Their sum against the two cores' seconds says how close the
server is to what the machine can answer, with or without batching.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from serve_load_server import checkpoint, jpegs, serving

_TICKS = os.sysconf("SC_CLK_TCK")


def _thread_seconds(pid: int) -> dict[int, float]:
    """CPU seconds of each thread of process ``pid`` (those that ended are not counted)."""
    seconds = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:  # the thread ended meanwhile
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        seconds[int(tid)] = (int(fields[11]) + int(fields[12])) / _TICKS
    return seconds


def _children(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
                kids.append(int(entry))
    return kids


def _parts(pid: int) -> dict[str, float]:
    """CPU seconds so far: main thread, other threads, child processes."""
    threads = _thread_seconds(pid)
    children = sum(sum(_thread_seconds(child).values()) for child in _children(pid))
    return {"event_loop": threads.get(pid, 0.0),
            "other_threads": sum(s for tid, s in threads.items() if tid != pid),
            "decode_processes": children}


def run_cpu(args: argparse.Namespace, folder: Path) -> list[dict[str, Any]]:
    from serve_load import load  # the load part's clients (serve_load imports this module)

    images = jpegs(8, (320, 240))
    clients = max(args.clients)
    rows = []
    for preset in args.presets:
        weights = checkpoint(preset, folder)
        for batch in (8, 1):
            with serving(weights, "--preset", preset, "--max-batch", str(batch)) as server:
                load(server.url, images, 1, 2.0)  # warm up
                before = _parts(server.process.pid)
                result = load(server.url, images, clients, args.seconds)
                after = _parts(server.process.pid)
            spent = {part: after[part] - before[part] for part in after}
            requests = max(1, result["requests"])
            row = {"preset": preset, "max_batch": batch, **result,
                   **{f"{part}_ms_per_request": round(1000 * s / requests, 1)
                      for part, s in spent.items()},
                   "cores_busy": round(sum(spent.values()) / args.seconds, 2),
                   "load_average": os.getloadavg()[0]}
            print(row, flush=True)
            rows.append(row)
    return rows
