"""Every ```python block of README.md runs as written.

Each block runs in a fresh namespace, in a working folder holding what the blocks name:
``photo.jpg`` and ``shots/`` (generated crowd scenes) and ``data/crowdpose`` (a generated
CrowdPose-layout dataset). Weights by name come from a real HTTP server on 127.0.0.1 through
``AEPOSE_WEIGHTS_MIRROR`` into a cache under ``AEPOSE_HOME``: the released files cannot be
fetched here, so each name used is served as a generated tiny network (with trained-like maps,
so people are found) under its release name carrying the file's TRUE SHA-256 prefix, and the
URL table points at it; the hash check is never bypassed. A block talking to ``aepose serve``
at 127.0.0.1:8000 talks to one started for it (the tiny network) on a free port instead.
```bash blocks are not run.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import io
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import pytest
import torch

from aepose.apps.bench import crowd_images, mimic_trained_maps, realistic_weights
from aepose.apps.demo import DEMO_PRESET
from aepose.config import WEIGHTS_BASE, WEIGHTS_URLS, get_preset
from aepose.data.dataset import normalize_image
from aepose.models import build_model
from aepose.synth import generate_dataset

README = Path(__file__).resolve().parents[1] / "README.md"
SERVER = "127.0.0.1:8000"  # where README's clients of aepose serve connect
# Released name -> the tiny network served in its place (same head and keypoints).
SERVED = {"higherhrnet_w32_crowdpose_512": "higherhrnet_tiny_crowdpose_128",
          "hrnet_w32_aic_512": "hrnet_tiny_aic_128"}


def python_blocks() -> list[tuple[str, str]]:
    """(id, code) of each ```python block: the id names the section and the block's line."""
    text = README.read_text()
    blocks = []
    for match in re.finditer(r"^```python\n(.*?)^```", text, flags=re.S | re.M):
        line = text.count("\n", 0, match.start()) + 1
        heading = re.findall(r"^#+ (.+)$", text[: match.start()], flags=re.M)[-1]
        blocks.append((f"{heading.lower().replace(' ', '-')}-line{line}", match.group(1)))
    return blocks


BLOCKS = python_blocks()


def _checkpoint(preset: str) -> bytes:
    """mmpose-layout weights of ``preset``'s network with maps that load the decoder."""
    cfg = get_preset(preset)
    torch.manual_seed(0)
    model = realistic_weights(build_model(cfg), seed=0).eval()
    probe = torch.stack([normalize_image(crowd_images(1, (128, 128), seed=1)[0])])
    mimic_trained_maps(model, cfg, probe)
    buffer = io.BytesIO()
    torch.save({"state_dict": model.state_dict(), "meta": {}}, buffer)
    return buffer.getvalue()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A local server holding each name of SERVED under ``bottom_up/``, and the URL table
    pointing there; yields the server's URL."""
    root = tmp_path_factory.mktemp("served")
    (root / "bottom_up").mkdir()
    with pytest.MonkeyPatch.context() as patch:
        for name, tiny in SERVED.items():
            data = _checkpoint(tiny)
            stem = WEIGHTS_URLS[name].rsplit("/", 1)[1].split("-")[0]
            file = f"{stem}-{hashlib.sha256(data).hexdigest()[:8]}_20200101.pth"
            (root / "bottom_up" / file).write_bytes(data)
            patch.setitem(WEIGHTS_URLS, name, f"{WEIGHTS_BASE}/bottom_up/{file}")
        handler = functools.partial(_Quiet, directory=str(root))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{server.server_address[1]}"
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The files the blocks name: photo.jpg, shots/, data/crowdpose and the demo's
    checkpoint runs/demo/train/last.pth (its network, with trained-like maps)."""
    work = tmp_path_factory.mktemp("readme")
    scenes = crowd_images(3, (200, 150), seed=7)
    cv2.imwrite(str(work / "photo.jpg"), scenes[0][:, :, ::-1])
    (work / "shots").mkdir()
    for i, scene in enumerate(scenes[1:]):
        cv2.imwrite(str(work / "shots" / f"shot_{i}.jpg"), scene[:, :, ::-1])
    generate_dataset(work / "data" / "crowdpose", "crowdpose", train_images=2, val_images=2,
                     seed=0, size=(128, 192))
    demo = work / "runs" / "demo" / "train" / "last.pth"
    demo.parent.mkdir(parents=True)
    demo.write_bytes(_checkpoint(DEMO_PRESET))
    return work


def test_readme_has_the_documented_blocks() -> None:
    code = "\n".join(code for _, code in BLOCKS)
    for call in ("aepose.predict(", "Predictor.from_checkpoint(", "channel_order=",
                 "aepose.preprocess(", "decode_poses(", ".to_coco(", ".to_dict(", ".draw(",
                 "evaluate_keypoints(", "export_weights(", "/predict?", "/stream"):
        assert call in code, f"README's Python blocks no longer show {call}"


def _needs_export(code: str) -> bool:
    """Whether a block exports to ONNX: it needs the ``export`` extra and takes seconds."""
    return "aepose.apps.export" in code


@pytest.mark.parametrize("code", [
    pytest.param(code, id=name, marks=[pytest.mark.slow] if _needs_export(code) else [])
    for name, code in BLOCKS])
def test_readme_block_runs(code: str, mirror: str, workdir: Path,
                           monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    if _needs_export(code):
        for extra in ("onnx", "onnxscript", "onnxruntime"):
            pytest.importorskip(extra, reason="pip install 'aepose[export]'")
    monkeypatch.setenv("AEPOSE_WEIGHTS_MIRROR", mirror)
    monkeypatch.setenv("AEPOSE_HOME", str(tmp_path / "home"))  # each block downloads afresh
    monkeypatch.delenv("AEPOSE_OFFLINE", raising=False)
    monkeypatch.chdir(workdir)
    with contextlib.ExitStack() as stack:
        if SERVER in code:  # a client of aepose serve: one runs, on a free port
            pytest.importorskip("uvicorn", reason="pip install 'aepose[serve]'")
            from serve_helpers import serving, tiny_predictor

            running = stack.enter_context(serving(tiny_predictor()))
            code = code.replace(SERVER, running.url.removeprefix("http://"))
        exec(compile(code, str(README), "exec"), {"__name__": "__readme__"})
