"""Weights by name (aepose.hub): a real HTTP server on 127.0.0.1 serves generated checkpoints.

Nothing here touches the internet: every test runs with AEPOSE_WEIGHTS_MIRROR pointing at
127.0.0.1 and AEPOSE_HOME in tmp_path. The released files cannot be fetched here, so the
name tests serve a generated tiny checkpoint named with its TRUE SHA-256 prefix and point
the URL table entry of a preset at it (monkeypatch.setitem on WEIGHTS_URLS): the hash
check itself is never bypassed.
"""

from __future__ import annotations

import hashlib
import io
import logging
import multiprocessing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import run_cli
from weights_server import Server, serving

from aepose import AeposeError, load_model
from aepose.apps.profile import PRESET_COSTS, model_cost
from aepose.config import PRESETS, WEIGHTS_BASE, WEIGHTS_URLS
from aepose.hub import cache_dir, expected_hash, resolve_weights
from aepose.models import build_model

PRESET = "hrnet_w32_aic_512"  # its table entry is pointed at a generated file
TINY = "hrnet_tiny_aic_128"  # the network of the generated file


@pytest.fixture(autouse=True)
def _no_internet(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Cache in tmp_path; the mirror is a closed local port unless a test serves one."""
    monkeypatch.setenv("AEPOSE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AEPOSE_WEIGHTS_MIRROR", "http://127.0.0.1:9")
    monkeypatch.delenv("AEPOSE_OFFLINE", raising=False)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Server]:
    with serving(tmp_path / "served") as httpd:
        (httpd.state.root / "bottom_up").mkdir()
        monkeypatch.setenv("AEPOSE_WEIGHTS_MIRROR", httpd.url + "/")
        yield httpd


def _checkpoint_bytes(seed: int = 0) -> bytes:
    """A tiny network's weights in mmpose's layout, as torch.save writes them."""
    torch.manual_seed(seed)
    buffer = io.BytesIO()
    torch.save({"state_dict": build_model(TINY).state_dict(), "meta": {"epoch": 1}}, buffer)
    return buffer.getvalue()


def _serve_release(server: Server, monkeypatch: pytest.MonkeyPatch, preset: str = PRESET,
                   seed: int = 0) -> tuple[str, bytes]:
    """Serve a generated file under a release-style name carrying its true hash, and point
    ``preset``'s table entry at it: (file name, content)."""
    data = _checkpoint_bytes(seed)
    stem = WEIGHTS_URLS[preset].rsplit("/", 1)[1].split("-")[0]
    name = f"{stem}-{hashlib.sha256(data).hexdigest()[:8]}_20210131.pth"
    (server.state.root / "bottom_up" / name).write_bytes(data)
    monkeypatch.setitem(WEIGHTS_URLS, preset, f"{WEIGHTS_BASE}/bottom_up/{name}")
    return name, data


def url_key(url: str) -> str:
    """The folder of a URL's own cache entry: 16 hex digits of the URL's SHA-256."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def _cache_listing() -> list[str]:
    return sorted(p.name for p in cache_dir().iterdir()) if cache_dir().is_dir() else []


def _one_line(info: pytest.ExceptionInfo[AeposeError]) -> str:
    message = str(info.value)
    assert "\n" not in message
    return message


# --- the table and the cache folder --------------------------------------------------------

def test_url_table_matches_the_presets() -> None:
    released = {name for name, cfg in PRESETS.items() if cfg.checkpoint}
    assert set(WEIGHTS_URLS) == released
    for name, url in WEIGHTS_URLS.items():
        assert url == f"{WEIGHTS_BASE}/bottom_up/{PRESETS[name].checkpoint}"
        assert expected_hash(url) is not None
    assert WEIGHTS_URLS["hrnet_w32_aic_512"] == (
        "https://download.openmmlab.com/mmpose/bottom_up/hrnet_w32_aic_512x512-77e2a98a_20210131.pth")
    assert WEIGHTS_URLS["higherhrnet_w32_crowdpose_512"] == (
        "https://download.openmmlab.com/mmpose/bottom_up/"
        "higher_hrnet32_crowdpose_512x512-1aa4a132_20201017.pth")


def test_hash_in_name_follows_mmpose_convention() -> None:
    assert expected_hash("hrnet_w32_aic_512x512-77e2a98a_20210131.pth") == "77e2a98a"
    assert expected_hash("dir/res50-0123abcd.pth") == "0123abcd"
    for name in ("last.pth", "epoch_10.pth", "x-77E2A98A.pth", "x-77e2a98.pth", "a-77e2a98a.onnx"):
        assert expected_hash(name) is None


def test_cache_folder_rule(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert cache_dir() == tmp_path / "home" / "weights"
    monkeypatch.delenv("AEPOSE_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "aepose" / "weights"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert cache_dir() == tmp_path / "user" / ".cache" / "aepose" / "weights"


# --- names and URLs ------------------------------------------------------------------------

def test_preset_name_downloads_once_verifies_and_loads(
        server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    name, data = _serve_release(server, monkeypatch)
    model = load_model(PRESET)  # the generated file holds the tiny network
    assert model.config == PRESETS[TINY].model
    assert (cache_dir() / name).read_bytes() == data
    assert _cache_listing() == [name]  # no .part or .lock left behind
    assert resolve_weights(PRESET) == cache_dir() / name
    assert server.state.requests == [(f"/bottom_up/{name}", None)]  # fetched once


def test_release_file_name_and_url(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    name, data = _serve_release(server, monkeypatch)
    assert resolve_weights(name).read_bytes() == data
    # The official URL goes to the mirror; a URL elsewhere is fetched as it is.
    assert resolve_weights(f"{WEIGHTS_BASE}/bottom_up/{name}") == cache_dir() / name
    other = _checkpoint_bytes(seed=1)
    other_name = f"mine-{hashlib.sha256(other).hexdigest()[:8]}.pth"
    (server.state.root / "elsewhere").mkdir()
    (server.state.root / "elsewhere" / other_name).write_bytes(other)
    path = resolve_weights(f"{server.url}/elsewhere/{other_name}")
    # Not a file of the table: an entry of its own, keyed by the URL (the mirror's files by
    # their official URL, so that both share it).
    official = f"{WEIGHTS_BASE}/elsewhere/{other_name}"
    assert path == cache_dir() / "urls" / url_key(official) / other_name
    assert path.read_bytes() == other
    assert len(server.state.requests) == 2


def test_names_without_released_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(AeposeError) as info:
        resolve_weights(TINY)
    assert "preset hrnet_tiny_aic_128 has no released weights" in _one_line(info)
    with pytest.raises(AeposeError) as info:
        resolve_weights("hrnet_w32_aic")
    assert "did you mean 'hrnet_w32_aic_512'" in _one_line(info)


# --- integrity -----------------------------------------------------------------------------

def test_hash_mismatch_deletes_and_says_so(server: Server) -> None:
    (server.state.root / "bottom_up" / "model-deadbeef_20200101.pth").write_bytes(b"x" * 5000)
    url = f"{server.url}/bottom_up/model-deadbeef_20200101.pth"
    with pytest.raises(AeposeError) as info:
        resolve_weights(url)
    message = _one_line(info)
    assert url in message and "deadbeef" in message and "deleted it" in message
    assert _cache_listing() == []


def test_local_file_with_wrong_hash_prefix_is_refused(tmp_path: Path) -> None:
    data = _checkpoint_bytes()
    bad = tmp_path / "model-deadbeef_20200101.pth"
    bad.write_bytes(data)
    with pytest.raises(AeposeError) as info:
        load_model(bad)
    message = _one_line(info)
    assert str(bad) in message and "SHA-256" in message and "deadbeef" in message
    good = tmp_path / f"model-{hashlib.sha256(data).hexdigest()[:8]}.pth"
    good.write_bytes(data)
    assert load_model(good).config == PRESETS[TINY].model


def test_info_reports_the_hash(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = _checkpoint_bytes()
    digest = hashlib.sha256(data).hexdigest()
    for name, line in ((f"m-{digest[:8]}.pth", f"hash:          verified (sha256 {digest[:8]}…)"),
                       ("m-deadbeef.pth", f"hash:          MISMATCH (sha256 {digest[:8]}…, the "
                                          "name says deadbeef)"),
                       ("m.pth", "hash:          not named")):
        (tmp_path / name).write_bytes(data)
        code, out, _ = run_cli(capsys, "info", str(tmp_path / name))
        # info is a diagnostic: a mismatch is reported and the rest is still shown.
        assert code == 0 and line in out and "preset:        hrnet_tiny_aic_128" in out


# --- resuming ------------------------------------------------------------------------------

def test_resume_a_partial_download(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    name, data = _serve_release(server, monkeypatch)
    cache_dir().mkdir(parents=True)
    (cache_dir() / f".{name}.part").write_bytes(data[:1000])
    assert resolve_weights(PRESET).read_bytes() == data
    assert server.state.requests == [(f"/bottom_up/{name}", "bytes=1000-")]
    assert _cache_listing() == [name]


def test_dropped_connection_then_resume(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    name, data = _serve_release(server, monkeypatch)
    server.state.cut_after = 70_000
    with pytest.raises(AeposeError) as info:
        resolve_weights(PRESET)
    message = _one_line(info)
    assert f"{server.url}/bottom_up/{name}" in message and "resume" in message
    assert (cache_dir() / f".{name}.part").stat().st_size == 70_000
    server.state.cut_after = None
    assert resolve_weights(PRESET).read_bytes() == data
    assert server.state.requests[-1] == (f"/bottom_up/{name}", "bytes=70000-")


def test_server_ignoring_range_restarts_from_zero(
        server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    name, data = _serve_release(server, monkeypatch)
    server.state.honour_range = False
    cache_dir().mkdir(parents=True)
    (cache_dir() / f".{name}.part").write_bytes(b"garbage" * 100)  # appended to, it would fail
    assert resolve_weights(PRESET).read_bytes() == data
    assert server.state.requests == [(f"/bottom_up/{name}", "bytes=700-")]


def test_whole_partial_file_gets_416_and_restarts(
        server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    name, data = _serve_release(server, monkeypatch)
    cache_dir().mkdir(parents=True)
    (cache_dir() / f".{name}.part").write_bytes(data + b"extra")
    assert resolve_weights(PRESET).read_bytes() == data
    assert [r[1] for r in server.state.requests] == [f"bytes={len(data) + 5}-", None]


# --- failures: one line naming the URL and where to put the file ---------------------------

def test_offline_names_the_file_and_the_folder(
        server: Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AEPOSE_OFFLINE", "1")
    with pytest.raises(AeposeError) as info:
        resolve_weights("hrnet_w32_aic_512")  # the real table entry
    message = _one_line(info)
    target = tmp_path / "home" / "weights" / "hrnet_w32_aic_512x512-77e2a98a_20210131.pth"
    assert "AEPOSE_OFFLINE=1" in message and f"put it at {target}" in message
    assert f"{server.url}/bottom_up/hrnet_w32_aic_512x512-77e2a98a_20210131.pth" in message
    assert server.state.requests == []
    # A file put there by hand is used offline (and verified).
    name, data = _serve_release(server, monkeypatch)
    cache_dir().mkdir(parents=True, exist_ok=True)
    (cache_dir() / name).write_bytes(data)
    assert resolve_weights(PRESET) == cache_dir() / name and server.state.requests == []


def test_404_is_one_line_naming_the_url(server: Server) -> None:
    url = f"{server.url}/bottom_up/missing-0123abcd_20200101.pth"
    with pytest.raises(AeposeError) as info:
        resolve_weights(url)
    message = _one_line(info)
    # The server answered: no "without network"; it is the mirror, so the line names it.
    name = "missing-0123abcd_20200101.pth"
    target = cache_dir() / "urls" / url_key(f"{WEIGHTS_BASE}/bottom_up/{name}") / name
    assert message == (f"cannot download {url}: the server answered HTTP 404 Not Found; "
                       f"AEPOSE_WEIGHTS_MIRROR={server.url} is in use: check that it serves "
                       f"bottom_up/{name}, or unset it to download from {WEIGHTS_BASE}; a copy "
                       f"fetched elsewhere goes at {target}")


def test_refused_and_stalled_connections(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AEPOSE_WEIGHTS_MIRROR", "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(AeposeError) as info:
        resolve_weights("hrnet_w32_aic_512")
    assert "cannot download http://127.0.0.1:9/bottom_up/hrnet_w32_aic_512x512" in _one_line(info)
    assert "refused" in str(info.value)
    monkeypatch.setenv("AEPOSE_WEIGHTS_MIRROR", server.url)
    monkeypatch.setattr("aepose.hub._TIMEOUT_S", 0.2)
    server.state.stall = 1.0
    with pytest.raises(AeposeError) as info:
        resolve_weights("hrnet_w32_aic_512")
    assert "timed out" in _one_line(info) and "put it at" in str(info.value)


# --- two processes at once -----------------------------------------------------------------

class _Collect(logging.Handler):
    """Keeps the messages logged in a child process."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _fetch_in_child(url: str, barrier: Any, results: Any) -> None:
    """Child process: start with the other child, fetch, report (path, log lines)."""
    handler = _Collect()
    logging.getLogger("aepose").addHandler(handler)
    logging.getLogger("aepose").setLevel(logging.INFO)
    barrier.wait()
    results.put((str(resolve_weights(url)), handler.messages))


def test_two_processes_fetch_one_file(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    name, data = _serve_release(server, monkeypatch)
    url = f"{server.url}/bottom_up/{name}"
    server.state.chunk_delay = 0.1  # about 1 s per download: the second must wait for the first
    context = multiprocessing.get_context("fork")  # children inherit the imports: fast start
    barrier, results = context.Barrier(2), context.Queue()
    children = [context.Process(target=_fetch_in_child, args=(url, barrier, results))
                for _ in range(2)]
    for child in children:
        child.start()
    reports = [results.get(timeout=60) for _ in children]
    for child in children:
        child.join(timeout=10)
    assert [child.exitcode for child in children] == [0, 0]
    assert [path for path, _ in reports] == [str(cache_dir() / name)] * 2
    waited = [any("waiting for another process" in m for m in log) for _, log in reports]
    assert sorted(waited) == [False, True]
    assert server.state.requests == [(f"/bottom_up/{name}", None)]
    assert _cache_listing() == [name] and (cache_dir() / name).read_bytes() == data


# --- command line --------------------------------------------------------------------------

def _models_rows(out: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split() for line in out.splitlines()[2:] if line.strip()}


def test_download_and_cached_column(capsys: pytest.CaptureFixture[str], server: Server,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = run_cli(capsys, "models")
    rows = _models_rows(out)
    assert code == 0 and rows[PRESET][6:8] == ["81.56", "no"] and rows[TINY][7] == "-"
    name, _ = _serve_release(server, monkeypatch)
    code, out, err = run_cli(capsys, "download", PRESET)
    assert code == 0 and out == f"{PRESET}: {cache_dir() / name}\n", err
    rows = _models_rows(run_cli(capsys, "models", "--no-flops")[1])
    assert rows[PRESET][6:8] == ["-", "yes"] and rows["higherhrnet_w32_crowdpose_512"][7] == "no"
    # 'all': every preset with released weights (here the table is cut to two served files).
    other, _ = _serve_release(server, monkeypatch, "higherhrnet_w32_crowdpose_512", seed=1)
    for preset in [p for p in WEIGHTS_URLS if p not in (PRESET, "higherhrnet_w32_crowdpose_512")]:
        monkeypatch.delitem(WEIGHTS_URLS, preset)
    code, out, _ = run_cli(capsys, "download", "all")
    assert code == 0 and out.splitlines() == [
        f"{PRESET}: {cache_dir() / name}",
        f"higherhrnet_w32_crowdpose_512: {cache_dir() / other}"]
    code, out, err = run_cli(capsys, "download", "runs/x.pth")
    assert code == 1 and out == "" and err.count("\n") == 1
    assert "runs/x.pth: not a preset with released weights" in err


# --- stored costs: 'aepose models' builds no network ---------------------------------------

@pytest.mark.parametrize("name", [n for n in PRESETS if PRESETS[n].data.input_size <= 128])
def test_stored_costs_of_small_presets(name: str) -> None:
    params, gflops = model_cost(PRESETS[name])
    assert (params, round(gflops * 1e9)) == PRESET_COSTS[name]


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in PRESETS if PRESETS[n].data.input_size > 128])
def test_stored_costs_of_w32_w48_presets(name: str) -> None:
    """About 2 s each on a CPU (meta device, FLOP counting only)."""
    params, gflops = model_cost(PRESETS[name])
    assert (params, round(gflops * 1e9)) == PRESET_COSTS[name]
