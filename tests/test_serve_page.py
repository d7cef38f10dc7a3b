"""The page of ``aepose serve`` in a real browser (issue 25): headless Chromium, driven by
Selenium, loads the page from a running server with a tiny network that finds people.

1. A generated crowd photo goes in through the page's file input: the people count shown is
   the one the server's JSON gives for that photo, each found person is listed, and the
   canvas holds the photo with the skeletons drawn over it (the topmost person's keypoint
   dots have its listed colour, where its JSON keypoints are).
2. Chromium's fake webcam plays a clip made from ``aepose synth --video`` frames; the page
   streams it over the WebSocket. The test reads the WebSocket traffic from Chromium's own
   log: every message sent is a timestamp and a JPEG, never two frames in flight, and the
   track IDs the page lists are the ones the server's replies carry, kept over the frames.
3. With ``--token``, the page asks for the token after the 401 and sends it (Bearer header,
   ``?token=`` on the WebSocket); the page and its files themselves need no token.

Everything the page loads comes from the server itself (checked in Chromium's log).

Chromium and chromedriver are Debian's ``chromium`` and ``chromium-driver`` packages
(``make test`` installs them where it can, see README); without them these tests are skipped.
"""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import cv2
import numpy as np
import pytest
import torch
from helpers import detecting_network

from aepose.apps.bench import crowd_images
from aepose.apps.cli import main

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                       reason="the browser tests need Chromium and chromedriver (Debian: "
                              "apt-get install chromium chromium-driver; see README)"),
    pytest.mark.slow,  # a server and a browser start: about 10 s together
]
webdriver = pytest.importorskip("selenium.webdriver",
                                reason="the browser tests need selenium (the dev extra)")

TINY = "higherhrnet_tiny_crowdpose_128"
TOKEN = "page-test-token"
UNTRACKED = (153, 153, 153)  # the page's grey for people too weak to start a track
T = TypeVar("T")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _until(what: str, check: Callable[[], T | None], seconds: float = 60.0) -> T:
    """``check()``'s first truthy value, polled; fails naming ``what`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {seconds:.0f} s")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "tiny.pth"
    torch.save({"state_dict": detecting_network(TINY).state_dict(), "meta": {}}, path)
    return path


@contextmanager
def _serving(weights: Path, folder: Path, *options: str) -> Iterator[str]:
    """The URL of an ``aepose serve`` on 127.0.0.1, ready (weights loaded, warmed up)."""
    port = _free_port()
    log = folder / "serve.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "aepose", "serve", "--weights", str(weights),
             "--preset", TINY, "--host", "127.0.0.1", "--port", str(port), *options],
            stdout=sink, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"

    def ready() -> bool:
        if process.poll() is not None:
            pytest.fail(f"aepose serve exited ({process.returncode}): {log.read_text()}")
        try:
            with urllib.request.urlopen(url + "readyz", timeout=2) as reply:
                return bool(reply.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    try:
        _until("ready server", ready, 120)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def server(weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with _serving(weights, tmp_path_factory.mktemp("serve")) as url:
        yield url


@pytest.fixture
def token_server(weights: Path, tmp_path: Path) -> Iterator[str]:
    with _serving(weights, tmp_path, "--token", TOKEN) as url:
        yield url


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Y4M clip for Chromium's fake webcam: one frame of an ``aepose synth --video`` clip,
    held still. Every frame then brings the same people, so every track must keep its ID
    (what the tracker does with moving people is tested with the tracker)."""
    folder = tmp_path_factory.mktemp("clip")
    assert main(["synth", str(folder), "--video", "--images", "1", "--frames", "2",
                 "--people", "2", "--frame-size", "192x144", "--seed", "3"]) == 0
    capture = cv2.VideoCapture(str(folder / "clip_0000.mp4"))
    ok, frame = capture.read()
    capture.release()
    assert ok
    height, width = frame.shape[:2]
    planes = cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes()
    path = folder / "still.y4m"
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F10:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(10):
            out.write(b"FRAME\n" + planes)
    return path


@pytest.fixture(scope="module")
def browser(clip: Path) -> Iterator[Any]:
    """Headless Chromium with a fake webcam playing ``clip`` and WebSocket frames logged."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1200,900", "--use-fake-ui-for-media-stream",
                 "--use-fake-device-for-media-stream",
                 f"--use-file-for-fake-video-capture={clip}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER)
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _open(browser: Any, url: str) -> None:
    """Loads the page afresh, without a token from an earlier test."""
    browser.get(url)
    browser.execute_script("sessionStorage.clear()")
    _until("ready status on the page", lambda: browser.execute_script(
        "return document.getElementById('server-status').dataset.ready === 'true'"), 30)


def _enter_token(browser: Any) -> None:
    """Waits for the page to ask for the token (it got a 401), then gives it."""
    _until("token form", lambda: browser.find_element("id", "token-form").is_displayed(), 30)
    browser.find_element("id", "token-input").send_keys(TOKEN)
    browser.find_element("id", "token-save").click()


def _text(browser: Any, element_id: str) -> str:
    return str(browser.execute_script(
        f"return document.getElementById('{element_id}').textContent")).strip()


def _rgb(css: str) -> tuple[int, ...]:
    """(r, g, b) of a computed CSS colour ``rgb(r, g, b)``."""
    return tuple(int(v) for v in css[css.index("(") + 1:css.index(")")].split(",")[:3])


def _post(url: str, path: Path, token: str | None = None) -> dict[str, Any]:
    headers = {"Content-Type": "image/png"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url + "predict?overlay=false", data=path.read_bytes(),
                                     headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=60) as reply:
        result: dict[str, Any] = json.loads(reply.read())
    return result


def _canvas(browser: Any, element_id: str) -> np.ndarray:
    """The pixels of a canvas on the page, RGB [H, W, 3]."""
    png = browser.execute_script(
        f"return document.getElementById('{element_id}').toDataURL('image/png')")
    assert png.startswith("data:image/png;base64,"), f"nothing drawn on #{element_id}"
    data = np.frombuffer(base64.b64decode(png.split(",", 1)[1]), np.uint8)
    return np.ascontiguousarray(cv2.imdecode(data, cv2.IMREAD_COLOR)[:, :, ::-1])


def _assert_dots(drawn: np.ndarray, keypoints: list[list[float]],
                 colour: tuple[int, ...]) -> None:
    """The person drawn last has its keypoint dots (3+ px in radius) on top of everything:
    the pixel of each detected keypoint inside the image is that person's colour."""
    height, width = drawn.shape[:2]
    dots = [(int(np.floor(x + 0.5)), int(np.floor(y + 0.5))) for x, y, score in keypoints
            if score > 0]
    dots = [(x, y) for x, y in dots if 0 <= x < width and 0 <= y < height]  # keypoints may
    assert dots  # lie outside the image, where nothing is drawn
    for x, y in dots:
        pixel = drawn[y, x].astype(int)
        assert np.abs(pixel - np.array(colour)).max() <= 2, (x, y, pixel, colour)


def _console_errors(browser: Any) -> list[str]:
    """Chromium's console errors but the one expected: the 401 before the token is given."""
    return [entry["message"] for entry in browser.get_log("browser")
            if entry["level"] == "SEVERE" and "status of 401" not in entry["message"]]


def _crowd(folder: Path) -> tuple[Path, np.ndarray]:
    """A generated crowd photo, as a PNG file (the canvas can be compared with it pixel for
    pixel) and its RGB pixels."""
    photo = folder / "crowd.png"
    rgb = crowd_images(1, (200, 150), seed=7)[0]
    assert cv2.imwrite(str(photo), rgb[:, :, ::-1])
    return photo, rgb


def test_a_photo_shows_the_people_the_server_found(
        server: str, browser: Any, tmp_path: Path) -> None:
    photo, rgb = _crowd(tmp_path)
    want = _post(server, photo)["people"]
    assert len(want) > 0

    browser.get_log("performance")  # forget what earlier pages did
    _open(browser, server)
    browser.find_element("id", "photo-input").send_keys(str(photo))
    shown = _until("people count", lambda: _text(browser, "people-count").isdigit() and
                   _text(browser, "people-count"))
    assert int(shown) == len(want)
    swatches = browser.execute_script(
        "return [...document.querySelectorAll('#people-list .swatch')]"
        ".map((s) => getComputedStyle(s).backgroundColor)")
    assert len(swatches) == len(want)

    drawn = _canvas(browser, "photo-canvas")
    assert drawn.shape == rgb.shape
    changed = np.abs(drawn.astype(int) - rgb.astype(int)).max(axis=2) > 40
    assert 0 < changed.mean() < 0.5  # the photo, with skeletons drawn over part of it
    _assert_dots(drawn, want[-1]["keypoints"], _rgb(swatches[-1]))
    loaded = [json.loads(entry["message"])["message"]["params"]["request"]["url"]
              for entry in browser.get_log("performance")
              if '"Network.requestWillBeSent"' in entry["message"]]
    assert {server + "static/app.js", server + "static/style.css"} <= set(loaded)
    assert all(url.startswith((server, "data:")) for url in loaded), loaded  # no CDN
    assert _console_errors(browser) == []


def _socket_frames(browser: Any) -> list[tuple[str, str]]:
    """("sent" or "received", payload) of every WebSocket frame in Chromium's log since the
    last call, in order; binary payloads are base64."""
    frames = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        kind = {"Network.webSocketFrameSent": "sent",
                "Network.webSocketFrameReceived": "received"}.get(message["method"])
        if kind is not None:
            frames.append((kind, message["params"]["response"]["payloadData"]))
    return frames


def test_the_webcam_streams_and_track_ids_stay(server: str, browser: Any) -> None:
    _open(browser, server)
    _socket_frames(browser)  # forget what earlier pages did
    browser.find_element("id", "webcam-start").click()
    traffic: list[tuple[str, str]] = []

    def replies() -> list[dict[str, Any]]:
        traffic.extend(_socket_frames(browser))
        return [json.loads(data) for kind, data in traffic if kind == "received"]

    _until("eight stream replies", lambda: len(replies()) >= 8, 60)
    shown = [int(v) for v in browser.execute_script(
        "return [...document.querySelectorAll('#tracks [data-track-id]')]"
        ".map((s) => s.dataset.trackId)")]
    swatches = browser.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('#tracks [data-track-id]')]"
        ".map((s) => [s.dataset.trackId, getComputedStyle(s).backgroundColor]))")
    drawn = _canvas(browser, "webcam-canvas")
    fps, latency = _text(browser, "fps"), _text(browser, "latency")
    browser.find_element("id", "webcam-stop").click()
    answers = replies()

    assert all("error" not in answer for answer in answers), answers
    tracked = [sorted(p["track_id"] for p in answer["people"] if p["track_id"] >= 0)
               for answer in answers]
    assert tracked[0], "the first frame started no track"
    assert all(ids == tracked[0] for ids in tracked), tracked  # a still scene: same IDs
    assert shown == tracked[0]
    assert float(fps) > 0 and float(latency) > 0
    # Skeletons coloured by track: the last person drawn has its track's listed colour.
    last = answers[-1]["people"][-1]
    colour = _rgb(swatches[str(last["track_id"])]) if last["track_id"] >= 0 else UNTRACKED
    _assert_dots(drawn, last["keypoints"], colour)
    # One frame in flight: sends and replies alternate, each send a timestamp and a JPEG.
    order = [kind for kind, _ in traffic]
    assert order[0] == "sent"
    assert all(a != b for a, b in itertools.pairwise(order)), order
    sent = [base64.b64decode(data) for kind, data in traffic if kind == "sent"]
    stamps = [struct.unpack("<d", message[:8])[0] for message in sent]
    assert all(message[8:11] == b"\xff\xd8\xff" for message in sent)  # JPEG's first bytes
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    assert [answer["timestamp_ms"] for answer in answers] == stamps[:len(answers)]
    assert _console_errors(browser) == []


def test_the_page_asks_for_the_token_and_uses_it(
        token_server: str, browser: Any, tmp_path: Path) -> None:
    photo, _ = _crowd(tmp_path)
    want = _post(token_server, photo, TOKEN)["people"]
    _open(browser, token_server)
    browser.find_element("id", "photo-input").send_keys(str(photo))
    _enter_token(browser)  # after the 401, the page sends the photo again with it
    _until("people count", lambda: _text(browser, "people-count").isdigit())
    assert int(_text(browser, "people-count")) == len(want)
    # The stream gets the token the page keeps, as ?token= (no header on a WebSocket).
    _socket_frames(browser)
    browser.find_element("id", "webcam-start").click()
    _until("a stream reply", lambda: any(
        kind == "received" and "timestamp_ms" in json.loads(data)
        for kind, data in _socket_frames(browser)), 60)
    browser.find_element("id", "webcam-stop").click()
    assert browser.find_element("id", "token-form").is_displayed() is False
