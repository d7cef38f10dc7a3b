"""Weights downloads that go wrong (aepose.hub, aepose.transfer): servers on 127.0.0.1 that
trickle, loop or send error pages, two URLs ending in one file name, a process stuck with
the download lock, environment variables and URLs that make no sense, and `download all`
with a file missing from the mirror. Each ends in one line (or works), within seconds.

Nothing here touches the internet: AEPOSE_HOME is in tmp_path and the mirror is a closed
local port unless a test serves one. Time limits are cut to a second or less through
AEPOSE_DOWNLOAD_TIMEOUT, so that the tests stay fast.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import pwd
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import run_cli
from weights_server import TLS_PEM, Handler, Server, serving

from aepose import AeposeError
from aepose.config import PRESETS, WEIGHTS_BASE, WEIGHTS_URLS
from aepose.hub import cache_dir, resolve_weights

SRC = Path(__file__).resolve().parents[1] / "src"
PRESET = "hrnet_w32_aic_512"
RELEASE = "hrnet_w32_aic_512x512-77e2a98a_20210131.pth"  # PRESET's real file name


@pytest.fixture(autouse=True)
def _no_internet(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AEPOSE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AEPOSE_WEIGHTS_MIRROR", "http://127.0.0.1:9")
    for name in ("AEPOSE_OFFLINE", "AEPOSE_DOWNLOAD_TIMEOUT", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)


def _checkpoint(seed: int = 0, *, legacy: bool = False) -> bytes:
    """A small file as torch.save writes it (zip archive, or the pre-1.6 pickle format)."""
    buffer = io.BytesIO()
    torch.save({"state_dict": {"w": torch.full((64,), float(seed))}}, buffer,
               _use_new_zipfile_serialization=not legacy)
    return buffer.getvalue()


def _serve(host: Server, path: str, data: bytes) -> str:
    """Put ``data`` at ``path`` of ``host``; its URL."""
    file = host.state.root / path
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_bytes(data)
    return f"{host.url}/{path}"


def _serve_as_release(host: Server, monkeypatch: pytest.MonkeyPatch, preset: str,
                      seed: int) -> str:
    """A generated file named as ``preset``'s release with its true hash, served under
    bottom_up/ and put in the URL table in place of the real one; its name."""
    data = _checkpoint(seed)
    stem = WEIGHTS_URLS[preset].rsplit("/", 1)[1].split("-")[0]
    name = f"{stem}-{hashlib.sha256(data).hexdigest()[:8]}_20210131.pth"
    _serve(host, f"bottom_up/{name}", data)
    monkeypatch.setitem(WEIGHTS_URLS, preset, f"{WEIGHTS_BASE}/bottom_up/{name}")
    return name


def _files_in_cache() -> list[str]:
    """Every file and folder under the cache folder, as paths relative to it."""
    root = cache_dir()
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.is_dir() else []


def _one_line(info: pytest.ExceptionInfo[AeposeError]) -> str:
    message = str(info.value)
    assert "\n" not in message
    return message


# --- 1. cache keys: different sources never share an entry ----------------------------------

def test_two_hosts_with_one_file_name_get_two_entries(tmp_path: Path) -> None:
    with serving(tmp_path / "a") as host_a, serving(tmp_path / "b") as host_b:
        url_a = _serve(host_a, "good/model.pth", _checkpoint(1))
        url_b = _serve(host_b, "good/model.pth", _checkpoint(2))
        path_a, path_b = resolve_weights(url_a), resolve_weights(url_b)
        assert path_a != path_b and path_a.name == path_b.name == "model.pth"
        assert path_a.read_bytes() == _checkpoint(1) and path_b.read_bytes() == _checkpoint(2)
        # Each is cached: asked again, neither host is asked again.
        assert (resolve_weights(url_a), resolve_weights(url_b)) == (path_a, path_b)
        assert len(host_a.state.requests) == len(host_b.state.requests) == 1


def test_a_release_file_is_one_entry_by_name_official_url_or_mirror_url(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with serving(tmp_path / "mirror") as mirror:
        monkeypatch.setenv("AEPOSE_WEIGHTS_MIRROR", mirror.url)
        name = _serve_as_release(mirror, monkeypatch, PRESET, seed=3)
        for spec in (PRESET, f"{WEIGHTS_BASE}/bottom_up/{name}", f"{mirror.url}/bottom_up/{name}",
                     name):
            assert resolve_weights(spec) == cache_dir() / name
        assert len(mirror.state.requests) == 1
    assert _files_in_cache() == [name]


# --- 2. time limits, the lock wait, and only checkpoints kept -------------------------------

def _trickle(handler: Handler, data: bytes) -> None:
    """Send ``data`` one byte every 0.1 s (6 s for 60 bytes), until the client goes away."""
    with contextlib.suppress(OSError):
        for byte in data:
            handler.wfile.write(bytes([byte]))
            time.sleep(0.1)


def _trickled_body(handler: Handler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Length", "100000")
    handler.end_headers()
    _trickle(handler, b"x" * 60)


def _trickled_headers(handler: Handler) -> None:
    handler.wfile.write(b"HTTP/1.0 200 OK\r\n")
    _trickle(handler, b"X-Slow: " + b"a" * 52)


@pytest.mark.parametrize(("answer", "tls"), [(_trickled_body, False), (_trickled_headers, False),
                                             (_trickled_body, True)])
def test_a_trickling_server_is_cut_off(answer: object, tls: bool, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A byte every 0.1 s never trips a socket time-out; under 64 KiB in 1 s fails, also
    inside a TLS stream."""
    monkeypatch.setenv("AEPOSE_DOWNLOAD_TIMEOUT", "1")
    monkeypatch.setenv("SSL_CERT_FILE", str(TLS_PEM))
    with serving(tmp_path / "served", tls=tls) as host:
        host.state.answers["/slow/model.pth"] = answer  # type: ignore[assignment]
        url = f"{host.url}/slow/model.pth"
        start = time.monotonic()
        with pytest.raises(AeposeError) as info:
            resolve_weights(url)
        elapsed = time.monotonic() - start
    message = _one_line(info)
    assert message.startswith(f"cannot download {url} (timed out: less than 64 KiB in 1 s")
    assert "AEPOSE_DOWNLOAD_TIMEOUT" in message
    assert 1 <= elapsed < 4


def test_an_error_page_is_never_kept(tmp_path: Path) -> None:
    """A 200 answer holding an HTML page, for a name without a hash: refused and deleted,
    so the next run asks again instead of failing on the cached page for ever."""
    page = b"<!DOCTYPE html>\n<html><body>Please sign in to download</body></html>\n"
    with serving(tmp_path / "served") as host:
        url = _serve(host, "page/model.pth", page)
        for _ in range(2):
            with pytest.raises(AeposeError) as info:
                resolve_weights(url)
            message = _one_line(info)
            assert message.startswith(f"{url}: downloaded file is not a PyTorch checkpoint but "
                                      f"an HTML page (an error page?): {len(page)} bytes")
            assert message.endswith("; deleted it")
            assert _files_in_cache() == []
        assert len(host.state.requests) == 2


def test_a_body_cut_short_without_a_length_is_never_kept(tmp_path: Path) -> None:
    data = _checkpoint()

    def half(handler: Handler) -> None:  # no Content-Length: the end is the connection's end
        handler.send_response(200)
        handler.end_headers()
        handler.wfile.write(data[: len(data) // 2])

    with serving(tmp_path / "served") as host:
        host.state.answers["/cut/model.pth"] = half
        url = f"{host.url}/cut/model.pth"
        with pytest.raises(AeposeError) as info:
            resolve_weights(url)
    assert _one_line(info) == (f"{url}: downloaded file is a zip archive cut short (the "
                               "directory at its end is missing); deleted it")
    assert _files_in_cache() == []


@pytest.mark.parametrize("legacy", [False, True])
def test_whole_checkpoints_of_both_formats_are_kept(legacy: bool, tmp_path: Path) -> None:
    data = _checkpoint(legacy=legacy)
    with serving(tmp_path / "served") as host:
        path = resolve_weights(_serve(host, "mine/model.pth", data))
    assert path.read_bytes() == data
    assert torch.load(path, weights_only=True)["state_dict"]["w"].shape == (64,)


_HOLD = """
import os, sys, time
from aepose.io import FileLock
lock, part, target, whole = sys.argv[1:5]
held = FileLock(lock)
held.acquire(lambda fd: None)
print("locked", flush=True)
if whole == "-":  # a stopped or hung holder
    time.sleep(60)
for _ in range(8):  # a slow download: the part grows every 0.3 s, for 2.4 s
    with open(part, "ab") as out:
        out.write(b"x" * 1000)
    time.sleep(0.3)
os.replace(whole, target)
held.release()
"""


def _holder(cache: Path, whole: str, env: dict[str, str]) -> subprocess.Popen[str]:
    """Another process holding the download lock of ``cache/RELEASE``-style entries."""
    cache.mkdir(parents=True, exist_ok=True)
    name = Path(whole).name if whole != "-" else RELEASE
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(cache / f"{name}.lock"), str(cache / f".{name}.part"),
         str(cache / name), whole], env=env, stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    return holder


def test_a_waiting_process_gives_up_on_a_holder_that_makes_no_progress(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(SRC), "AEPOSE_DOWNLOAD_TIMEOUT": "0.5"}
    holder = _holder(cache_dir(), "-", env)
    try:
        start = time.monotonic()
        run = subprocess.run([sys.executable, "-m", "aepose", "download", PRESET], env=env,
                             capture_output=True, text=True, timeout=30)
        elapsed = time.monotonic() - start
    finally:
        holder.kill()
        holder.wait()
    assert run.returncode == 1 and run.stdout == "" and "Traceback" not in run.stderr
    assert run.stderr.splitlines()[-1] == (
        f"aepose: error: {RELEASE}: another process (pid {holder.pid}) is downloading it but "
        "has made no progress in 1 s; if it is stopped or hung, end it and run again "
        "(AEPOSE_DOWNLOAD_TIMEOUT sets the limit)")
    assert elapsed < 10


def test_a_waiting_process_waits_while_the_holder_makes_progress(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The holder's download takes 2.4 s, longer than the 1 s without progress that makes
    a waiter give up; it grows all the while, so the waiter waits and then uses its file
    (the mirror is a closed port: the waiter could not have fetched it itself)."""
    data = _checkpoint(4)
    name = f"hrnet_w32_aic_512x512-{hashlib.sha256(data).hexdigest()[:8]}_20210131.pth"
    monkeypatch.setitem(WEIGHTS_URLS, PRESET, f"{WEIGHTS_BASE}/bottom_up/{name}")
    monkeypatch.setenv("AEPOSE_DOWNLOAD_TIMEOUT", "0.5")
    whole = tmp_path / name
    whole.write_bytes(data)
    holder = _holder(cache_dir(), str(whole), {**os.environ, "PYTHONPATH": str(SRC)})
    try:
        start = time.monotonic()
        path = resolve_weights(PRESET)
        elapsed = time.monotonic() - start
    finally:
        holder.kill()
        holder.wait()
    assert path == cache_dir() / name and path.read_bytes() == data
    assert elapsed > 1.5


@pytest.mark.parametrize("value", ["soon", "0", "-1", "nan", "inf", "1e300"])
def test_a_meaningless_download_timeout_is_one_line(
        value: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("AEPOSE_DOWNLOAD_TIMEOUT", value)
    code, out, err = run_cli(capsys, "download", PRESET)
    assert (code, out) == (1, "")
    assert err == (f"aepose: error: AEPOSE_DOWNLOAD_TIMEOUT={value!r}: expected a number of "
                   "seconds in (0, 86400] (default 30)\n")


# --- 3. environment and URL mistakes: one line, exit 1 ------------------------------------

@pytest.mark.parametrize(("variable", "value", "problem"), [
    ("AEPOSE_WEIGHTS_MIRROR", "file://{tmp}/mirror", "not an http(s):// URL"),
    ("AEPOSE_WEIGHTS_MIRROR", "not a url",
     "a URL cannot hold spaces or control characters (percent-encode them: %20 for a space)"),
    ("AEPOSE_WEIGHTS_MIRROR", "http://[::1", "not a valid URL (Invalid IPv6 URL)"),
    ("AEPOSE_HOME", "~aepose-no-such-user/x",
     "cannot expand ~aepose-no-such-user (no such user, or no home folder); give the folder "
     "without ~"),
])
def test_environment_mistakes_are_one_line(
        variable: str, value: str, problem: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    value = value.format(tmp=tmp_path)
    # A file the file:// mirror does hold (urllib would open it and fail on its answer).
    (tmp_path / "mirror" / "bottom_up").mkdir(parents=True)
    (tmp_path / "mirror" / "bottom_up" / RELEASE).write_bytes(_checkpoint())
    monkeypatch.setenv(variable, value)
    code, out, err = run_cli(capsys, "download", PRESET)
    assert (code, out) == (1, "")
    assert err.startswith(f"aepose: error: {variable}={value!r}: {problem}")
    assert err.count("\n") == 1 and err.endswith("\n")
    assert not (tmp_path / "home").exists()


@pytest.mark.parametrize(("url", "problem"), [
    ("http://127.0.0.1:9/a\x00b.pth", "a URL cannot hold spaces or control characters"),
    ("http://127.0.0.1:9/a b.pth", "a URL cannot hold spaces or control characters"),
    ("http://[::1/model.pth", "not a valid URL (Invalid IPv6 URL)"),
    ("http://127.0.0.1:port/model.pth", "not a valid URL (Port could not be cast"),
])
def test_url_mistakes_are_one_line(url: str, problem: str,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "download", url)
    assert (code, out) == (1, "")
    assert err.startswith(f"aepose: error: {url!r}: {problem}") and err.count("\n") == 1


def test_a_url_naming_no_usable_file_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    for url in ("http://127.0.0.1:9/a%00b.pth", "http://127.0.0.1:9/x/..", "http://127.0.0.1:9/"):
        code, out, err = run_cli(capsys, "download", url)
        assert (code, out, err) == (1, "", f"aepose: error: {url}: names no file (the URL must "
                                           "end with the file's name)\n")


def test_no_home_folder(monkeypatch: pytest.MonkeyPatch,
                        capsys: pytest.CaptureFixture[str]) -> None:
    """`docker run --user 12345`: no HOME, and no password entry to find a home folder in.
    `aepose models` still works; what needs the cache says so in one line."""
    monkeypatch.delenv("AEPOSE_HOME")
    monkeypatch.delenv("HOME", raising=False)

    def no_entry(uid: int) -> pwd.struct_passwd:
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    problem = (f"no folder for the weights cache: HOME is not set and user {os.getuid()} has "
               "no home folder in the password database; set AEPOSE_HOME to a writable folder")
    code, out, err = run_cli(capsys, "models", "--no-flops")
    assert (code, err) == (0, "")
    rows = {line.split()[0]: line.split() for line in out.splitlines()[2:-2] if line.strip()}
    assert rows[PRESET][7] == "?" and rows["hrnet_tiny_aic_128"][7] == "-"
    assert out.splitlines()[-1] == f"cached ?: {problem}"
    code, out, err = run_cli(capsys, "download", PRESET)
    assert (code, out, err) == (1, "", f"aepose: error: {problem}\n")


def test_a_redirect_loop_is_one_line(tmp_path: Path) -> None:
    def loop(handler: Handler) -> None:
        handler.send_response(302)
        handler.send_header("Location", handler.path)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    with serving(tmp_path / "served") as host:
        host.state.answers["/loop/model.pth"] = loop
        url = f"{host.url}/loop/model.pth"
        with pytest.raises(AeposeError) as info:
            resolve_weights(url)
    assert _one_line(info).startswith(f"cannot download {url}: the server redirects in a loop "
                                      "(HTTP 302 Found); a copy fetched elsewhere goes at ")


# --- 4. download all: every file tried, each failure named --------------------------------

def test_download_all_tries_every_file_and_names_each_failure(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The table cut to three presets; the mirror lacks the second one's file (404)."""
    first, missing, third = [p for p in PRESETS if p in WEIGHTS_URLS][:3]
    for preset in [p for p in WEIGHTS_URLS if p not in (first, missing, third)]:
        monkeypatch.delitem(WEIGHTS_URLS, preset)
    with serving(tmp_path / "mirror") as mirror:
        monkeypatch.setenv("AEPOSE_WEIGHTS_MIRROR", mirror.url)
        names = [_serve_as_release(mirror, monkeypatch, p, seed) for p, seed in
                 ((first, 5), (third, 6))]
        code, out, err = run_cli(capsys, "download", "all")
    assert code == 1
    assert out.splitlines() == [f"{first}: {cache_dir() / names[0]}",
                                f"{third}: {cache_dir() / names[1]}"]
    path = WEIGHTS_URLS[missing][len(WEIGHTS_BASE) + 1:]
    assert err.splitlines() == [
        f"downloaded {mirror.url}/bottom_up/{names[0]} to {cache_dir() / names[0]}",
        f"{missing}: not downloaded: cannot download {mirror.url}/{path}: the server answered "
        f"HTTP 404 Not Found; AEPOSE_WEIGHTS_MIRROR={mirror.url} is in use: check that it "
        f"serves {path}, or unset it to download from {WEIGHTS_BASE}; a copy fetched "
        f"elsewhere goes at {cache_dir() / Path(path).name}",
        f"downloaded {mirror.url}/bottom_up/{names[1]} to {cache_dir() / names[1]}",
        f"aepose: error: 1 of 3 downloads failed ({missing}); the lines above say why"]


def test_a_404_from_another_server_names_no_mirror(tmp_path: Path) -> None:
    with serving(tmp_path / "served") as host:
        url = f"{host.url}/nothing/model.pth"
        with pytest.raises(AeposeError) as info:
            resolve_weights(url)
    message = _one_line(info)
    assert message.startswith(f"cannot download {url}: the server answered HTTP 404 Not Found; "
                              "a copy fetched elsewhere goes at ")
    assert "AEPOSE_WEIGHTS_MIRROR" not in message and "without network" not in message
