"""An HTTP server on 127.0.0.1 for the weights tests (tests/test_hub*.py): it serves the
files of a folder with Range support, and can be told to misbehave (drop the connection,
stall, answer a path with a function of the test's own).

Imported by the tests as a plain module, like helpers.py.
"""

from __future__ import annotations

import http.server
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class ServerState:
    """What the test server does and what it saw."""

    root: Path
    honour_range: bool = True
    cut_after: int | None = None  # bytes of the body to send before dropping the connection
    chunk_delay: float = 0.0  # seconds between 64 KiB chunks (a slow server)
    stall: float = 0.0  # seconds before answering at all (a stalled server)
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    # path -> a function that answers the request itself (a misbehaving server)
    answers: dict[str, Callable[[Handler], None]] = field(default_factory=dict)


class Handler(http.server.BaseHTTPRequestHandler):
    """GET with Range support, written for these tests (HTTP/1.0: one request per connection)."""

    server: Server

    def do_GET(self) -> None:
        state = self.server.state
        state.requests.append((self.path, self.headers.get("Range")))
        time.sleep(state.stall)
        if self.path in state.answers:
            state.answers[self.path](self)
            return
        file = state.root / self.path.lstrip("/")
        if not file.is_file():
            self.send_error(404, "Not Found")
            return
        data = file.read_bytes()
        start = self._range_start(len(data))
        if start is None:
            return
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self._send(body if state.cut_after is None else body[: state.cut_after])

    def _range_start(self, size: int) -> int | None:
        """Send the status line for the request's range; None when answered already (416)."""
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if not match or not self.server.state.honour_range:
            self.send_response(200)
            return 0
        start = int(match.group(1))
        if start >= size:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.end_headers()
            return None
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        return start

    def _send(self, body: bytes) -> None:
        for i in range(0, len(body), 1 << 16):
            self.wfile.write(body[i: i + (1 << 16)])
            time.sleep(self.server.state.chunk_delay)

    def log_message(self, format: str, *args: object) -> None:
        pass


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: ServerState) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.state = state
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


# A self-signed certificate (and its key) for 127.0.0.1, valid until 2126: HTTPS tests
# trust it by pointing SSL_CERT_FILE at it.
TLS_PEM = Path(__file__).parent / "data" / "tls" / "localhost.pem"


@contextmanager
def serving(root: Path, *, tls: bool = False) -> Iterator[Server]:
    """A server of the files under ``root`` (created), running until the block ends; over
    HTTPS with :data:`TLS_PEM` when ``tls``."""
    root.mkdir(parents=True, exist_ok=True)
    httpd = Server(ServerState(root=root))
    if tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(TLS_PEM)
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
        httpd.url = httpd.url.replace("http://", "https://")
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
