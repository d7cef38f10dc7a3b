"""``aepose serve`` as a command: it starts, serves, logs each request as one JSON line, and
stops on SIGTERM after finishing; bad weights are one line and no server."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import detecting_network, run_cli
from serve_helpers import TINY, jpeg, post_image, request

from aepose.apps.bench import crowd_images

pytest.importorskip("uvicorn", reason="pip install 'aepose[serve]'")
ROOT = Path(__file__).resolve().parents[1]


def test_missing_weights_are_one_line_and_no_server(capsys: pytest.CaptureFixture[str],
                                                    tmp_path: Path) -> None:
    code, _, err = run_cli(capsys, "serve", "--weights", str(tmp_path / "none.pth"),
                           "--port", "1")
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("aepose: error: ") and "none.pth" in err


def test_bad_limits_are_refused_by_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    for option, value in (("--max-batch", "0"), ("--max-fps", "nan"), ("--port", "70000"),
                          ("--queue", "-1")):
        code, _, err = run_cli(capsys, "serve", "--weights", "x.pth", option, value)
        assert code == 2 and option in err


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_the_command_serves_logs_and_stops_on_sigterm(tmp_path: Path) -> None:
    weights = tmp_path / "tiny.pth"
    torch.save({"state_dict": detecting_network(TINY).state_dict(), "meta": {}}, weights)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "AEPOSE_SERVE_TOKEN": "tok"}
    process = subprocess.Popen(
        [sys.executable, "-m", "aepose", "serve", "--weights", str(weights), "--preset", TINY,
         "--port", str(port), "--max-batch", "4"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "not ready in time"
            try:
                if request(f"{url}/readyz", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        image = jpeg(crowd_images(1, (200, 150), seed=7)[0])
        assert post_image(url, image)[0] == 401  # the token came from the environment
        status, reply = post_image(url, image, headers={"Authorization": "Bearer tok"})
        assert status == 200 and reply["people"]
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 143  # as every command stopped by SIGTERM
    lines = err.splitlines()
    assert lines[0].startswith(f"aepose serve: {weights} on 1 device at {url}/")
    logged = [json.loads(line) for line in lines if line.startswith("{")]
    assert {(e["path"], e["status"]) for e in logged} >= {("/predict", 401),
                                                          ("/predict", 200), ("/readyz", 200)}
    assert all({"time", "client", "method", "ms"} <= set(e) for e in logged)
    assert lines[-1].startswith("aepose: terminated")
