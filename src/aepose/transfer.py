"""One file over HTTP(S) into a partial file: resumed with a Range request, cut off when it
stalls or trickles.

:func:`get` appends to ``part`` the bytes of ``url`` that it lacks (all of them when the
server ignores Range). Every failure raises :class:`DownloadError` with a few words of
reason; :mod:`aepose.hub` turns it into the one line a user reads.

Deadline: the connection, the answer's headers and then every :data:`PROGRESS_BYTES` of the
body must each arrive within ``limit`` seconds. A socket timeout alone restarts with every
byte received, so a server that sends one byte every few seconds would hold a download for
ever; a watchdog thread shuts the connection's socket down instead, which ends the blocked
read at once. Only HTTP and HTTPS are spoken (a redirect to ``ftp://`` or ``file://`` is
refused): the watchdog guards those connections.
"""

from __future__ import annotations

import contextlib
import contextvars
import http.client
import re
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from tqdm import tqdm

__all__ = ["PROGRESS_BYTES", "DownloadError", "get"]

PROGRESS_BYTES = 1 << 16  # 64 KiB per `limit` seconds: about 2 KiB/s with the 30 s default
_CHUNK = 1 << 20
# What a failed transfer raises: DNS / refused / HTTP status (URLError, HTTPError), a dropped
# connection (ConnectionError, IncompleteRead, an unfinished TLS stream), a stalled one
# (TimeoutError).
_NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, ConnectionError,
                   TimeoutError, ssl.SSLError)


class DownloadError(Exception):
    """Why a download stopped, in a few words (``reason``); ``status`` is the HTTP status the
    server answered with, or None when there was no answer to speak of (refused, reset,
    stalled, cut short)."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class _Watchdog:
    """Shuts the download's sockets down when :data:`PROGRESS_BYTES` take longer than
    ``limit`` seconds to arrive (counted from the request, so connecting and the headers
    are covered too). ``received`` is advanced by the reading thread."""

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.received = 0
        self.tripped = False
        self._sockets: list[socket.socket] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="aepose-download-watchdog",
                                        daemon=True)

    def watch(self, sock: socket.socket) -> None:
        """Guard ``sock``'s connection too (each connection of a redirect chain registers
        its own). The watchdog keeps a duplicate descriptor: it stays valid when TLS takes
        the socket over, and cannot become another file's number when the socket closes."""
        self._sockets.append(sock.dup())

    def reason(self) -> str:
        return (f"timed out: less than {PROGRESS_BYTES // 1024} KiB in {self.limit:g} s, a "
                "stalled or too slow connection (AEPOSE_DOWNLOAD_TIMEOUT sets the limit)")

    def _watch(self) -> None:
        mark_time, mark_bytes = time.monotonic(), 0
        while not self._done.wait(min(0.5, self.limit / 4)):
            now, received = time.monotonic(), self.received
            if received - mark_bytes >= PROGRESS_BYTES:
                mark_time, mark_bytes = now, received
            elif now - mark_time > self.limit:
                self.tripped = True
                for sock in list(self._sockets):
                    with contextlib.suppress(OSError):  # already closed: nothing to cut
                        # Shutting the connection down (not closing a descriptor) wakes the
                        # reader at once, also inside a TLS read or handshake.
                        sock.shutdown(socket.SHUT_RDWR)
                return

    def __enter__(self) -> _Watchdog:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._done.set()
        self._thread.join()
        for sock in self._sockets:
            sock.close()


# The watchdog of the download running in this thread, for the connections it opens.
_CURRENT: contextvars.ContextVar[_Watchdog | None] = contextvars.ContextVar(
    "aepose_download_watchdog", default=None)


class _WatchedHTTP(http.client.HTTPConnection):
    """An HTTP connection that hands its socket to the current download's watchdog."""

    def connect(self) -> None:
        super().connect()
        watchdog = _CURRENT.get()
        if watchdog is not None:
            watchdog.watch(self.sock)


class _WatchedHTTPS(http.client.HTTPSConnection, _WatchedHTTP):
    """HTTPS: ``HTTPSConnection.connect`` calls ``_WatchedHTTP.connect`` (next in the MRO)
    for the plain connection before the TLS handshake, so a stalled handshake is cut too."""



class _HTTPHandler(urllib.request.HTTPHandler):
    def do_open(self, http_class: Any, req: urllib.request.Request,
                **http_conn_args: Any) -> http.client.HTTPResponse:
        return super().do_open(_WatchedHTTP, req, **http_conn_args)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def do_open(self, http_class: Any, req: urllib.request.Request,
                **http_conn_args: Any) -> http.client.HTTPResponse:
        return super().do_open(_WatchedHTTPS, req, **http_conn_args)


def _opener() -> urllib.request.OpenerDirector:
    """urllib's usual handlers (proxies from the environment, redirects, HTTP errors as
    exceptions) but only the two watched schemes. Built per download: proxies are read from
    the environment as it is then."""
    opener = urllib.request.OpenerDirector()
    for handler in (urllib.request.ProxyHandler(), urllib.request.UnknownHandler(),
                    _HTTPHandler(), _HTTPSHandler(), urllib.request.HTTPDefaultErrorHandler(),
                    urllib.request.HTTPRedirectHandler(), urllib.request.HTTPErrorProcessor()):
        opener.add_handler(handler)
    return opener


def get(url: str, part: Path, *, limit: float, label: str) -> None:
    """Append the missing bytes of ``url`` to ``part`` (created when absent), showing a
    progress bar titled ``label``.

    ``limit``: seconds allowed for connecting, for the headers and for each
    :data:`PROGRESS_BYTES` of the body. A 416 answer to a resume (the part is whole or too
    long) starts again from zero. Raises :class:`DownloadError`; ``part`` keeps the bytes
    received, so the next call resumes. A failure to write ``part`` propagates as OSError.
    """
    watchdog = _Watchdog(limit)
    token = _CURRENT.set(watchdog)
    try:
        with watchdog:
            _get(url, part, watchdog, label)
    except Exception as error:
        if watchdog.tripped:  # whatever the cut connection raised, the cause is the stall
            raise DownloadError(watchdog.reason()) from None
        if isinstance(error, _NETWORK_ERRORS):
            status = error.code if isinstance(error, urllib.error.HTTPError) else None
            raise DownloadError(_reason(error), status) from None
        raise
    finally:
        _CURRENT.reset(token)


def _get(url: str, part: Path, watchdog: _Watchdog, label: str) -> None:
    offset = part.stat().st_size if part.is_file() else 0
    with _open(url, offset, part, watchdog.limit) as response:
        if response.status != 206:
            offset = 0  # 200: the server ignored Range and sends the whole file
        elif _range_start(response) != offset:
            raise DownloadError(f"the server sent another range than requested (bytes "
                                 f"{offset}-); delete {part} and run again")
        length = response.length  # bytes still to come (Content-Length), or None
        received = _copy(response, part, offset, length, watchdog, label)
    if watchdog.tripped:  # a cut body without a Content-Length ends like a whole one
        raise DownloadError(watchdog.reason())
    if length is not None and received < length:
        raise DownloadError(f"connection closed after {offset + received} of "
                             f"{offset + length} bytes, run again to resume")


def _open(url: str, offset: int, part: Path, timeout: float) -> http.client.HTTPResponse:
    """GET ``url`` from byte ``offset``; a 416 starts again from zero."""
    request = urllib.request.Request(url, headers={"User-Agent": "aepose"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response: http.client.HTTPResponse = _opener().open(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code != 416 or not offset:
            raise
        error.close()
        part.unlink()
        return _open(url, 0, part, timeout)
    return response


def _range_start(response: http.client.HTTPResponse) -> int:
    """First byte of a 206 answer (``Content-Range: bytes START-END/TOTAL``); -1 if absent."""
    match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else -1


def _copy(response: http.client.HTTPResponse, part: Path, offset: int, length: int | None,
          watchdog: _Watchdog, label: str) -> int:
    """Stream the body into ``part`` from ``offset`` with a progress bar; bytes received.

    ``read1`` returns what has arrived (up to 1 MiB) instead of waiting for a whole MiB, so
    the watchdog sees the progress as it comes.
    """
    total = offset + length if length is not None else None
    received = 0
    with part.open("r+b" if offset else "wb") as out, tqdm(
        total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
        desc=label, disable=None, leave=False,
    ) as bar:
        out.seek(offset)
        out.truncate()
        while chunk := response.read1(_CHUNK):
            out.write(chunk)
            received += len(chunk)
            watchdog.received = received
            bar.update(len(chunk))
    return received


def _reason(error: BaseException) -> str:
    """A network error in a few words on one line."""
    if isinstance(error, urllib.error.HTTPError):
        words = " ".join(str(error.reason).split())
        if 300 <= error.code < 400 and "loop" in words:
            # urllib's three lines: "... would lead to an infinite loop. The last 30x
            # error message was: Found"
            return (f"the server redirects in a loop (HTTP {error.code} "
                    f"{words.rsplit(': ', 1)[-1]})")
        return f"the server answered HTTP {error.code} {words}"
    if isinstance(error, urllib.error.URLError):
        return " ".join(str(error.reason).split())
    if isinstance(error, http.client.IncompleteRead):
        return "connection closed before the end of the file; run again to resume"
    return " ".join(str(error).split()) or type(error).__name__
