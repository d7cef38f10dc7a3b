"""The HTTP side of ``aepose serve``: :func:`build_app` (a Starlette application).

Starlette gives the routing, multipart parsing (python-multipart), WebSockets, static files
and the lifespan; uvicorn (:mod:`aepose.apps.serve`) the server and its graceful shutdown.
Written here: the token check, the bound on requests in progress and open streams
(``max_connections``), the structured access log and the metrics of every request (one ASGI
middleware, :class:`_Guard`), reading a body within its limit, and the endpoints. Every
refusal is JSON ``{"error": "one line"}``: a 4xx status for a bad request, 503 +
``Retry-After`` when the server is full (the queue, or ``max_connections``); nothing a
client sends can make a 500.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import anyio
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from aepose.serve.batching import QueueFull
from aepose.serve.limits import PREDICT_OPTIONS, RequestError, error_record, request_options
from aepose.serve.service import Service
from aepose.serve.ws import stream_endpoint

__all__ = ["RETRY_AFTER_S", "STATIC", "build_app"]

STATIC = Path(__file__).parent / "static"
"""The page's files (index.html, app.js, style.css), served at ``/`` and ``/static/``."""
RETRY_AFTER_S = 1
"""Seconds a 503 asks the client to wait (``Retry-After``)."""
# Need no token: the health checks, and the page with its files, which hold no secret and
# which a browser opening the page cannot send a token for (the page asks for it after a 401).
_HEALTH = frozenset({"/healthz", "/readyz"})
_OPEN = _HEALTH | {"/"}
_OPEN_PREFIX = "/static/"
access_log = logging.getLogger("aepose.serve.access")


def build_app(service: Service, static: Path = STATIC) -> Starlette:
    """The application: the endpoints of ``service``, behind the token check and the
    access log. Its lifespan warms the network up (then ``/readyz`` is 200) and, at
    shutdown, lets the batcher finish what it accepted."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        warming = threading.Thread(target=service.warm_up, daemon=True, name="aepose-warm-up")
        warming.start()
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(service.batcher.stop)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def ready(request: Request) -> Response:
        if service.ready.is_set():
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "warming up"}, status_code=503,
                            headers={"Retry-After": str(RETRY_AFTER_S)})

    async def metrics(request: Request) -> Response:
        return PlainTextResponse(service.metrics.render(),
                                 media_type="text/plain; version=0.0.4")

    async def page(request: Request) -> Response:
        index = static / "index.html"
        if not index.is_file():
            return _error(404, "the page is not installed (aepose/serve/static/index.html)")
        return FileResponse(index)

    async def predict(request: Request) -> Response:
        try:
            return await _predict(service, request)
        except RequestError as error:
            service.metrics.error(f"http_{error.status}")
            return _error(error.status, str(error))
        except QueueFull as error:
            service.metrics.error("queue_full")
            return _error(503, f"{error}; retry in {RETRY_AFTER_S} s",
                          {"Retry-After": str(RETRY_AFTER_S)})

    async def http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)
        return _error(error.status_code, str(error.detail), error.headers)

    app = Starlette(routes=[
        Route("/", page, methods=["GET"]),
        Route("/healthz", health, methods=["GET"]),
        Route("/readyz", ready, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/predict", predict, methods=["POST"]),
        WebSocketRoute("/stream", lambda ws: stream_endpoint(service, ws)),
        Mount("/static", StaticFiles(directory=static, check_dir=False)),
    ], lifespan=lifespan, exception_handlers={HTTPException: http_error})
    app.add_middleware(_Guard, service=service)
    return app


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    return JSONResponse(error_record(message), status_code=status, headers=headers)


async def _predict(service: Service, request: Request) -> Response:
    options = request_options(request.query_params.multi_items(), PREDICT_OPTIONS)
    body = _Body(service)
    try:
        data = await _image_bytes(request, service.limits.max_body_bytes, body)
        prediction = await service.predict(data, options)
    finally:
        body.release()
    if options.overlay:  # drawing and JPEG encoding: off the event loop
        reply = await anyio.to_thread.run_sync(service.reply, prediction, options)
    else:
        reply = service.reply(prediction, options)
    return JSONResponse(reply)


class _Body:
    """The bytes of the request bodies being read or held, all requests together, within
    ``limits.queue_mb`` (the event loop's count: no lock): a burst of large bodies is
    refused with 503 instead of filling the memory."""

    def __init__(self, service: Service) -> None:
        self.service, self.held = service, 0

    def add(self, size: int) -> None:
        service = self.service
        if service.body_bytes + size > service.limits.queue_bytes and service.body_bytes:
            raise QueueFull("too many request bodies are being read")
        service.body_bytes += size
        self.held += size

    def release(self) -> None:
        self.service.body_bytes -= self.held
        self.held = 0


async def _image_bytes(request: Request, limit: int, held: _Body) -> bytes:
    """The image of a request: its raw body (Content-Type image/*) or the ``image`` field
    of a multipart form; 413 past ``limit`` bytes (told by Content-Length, or counted)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not (kind.startswith("image/") or kind == "multipart/form-data"):
        raise RequestError(415, f"Content-Type {kind or '(none)'}: send the image's bytes as "
                           "image/jpeg or image/png, or multipart/form-data with a field "
                           "named 'image'")
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > limit):
        raise RequestError(413 if length.isdigit() else 400,
                           f"the body is over the {limit / 1e6:g} MB limit"
                           if length.isdigit() else "malformed Content-Length")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"the body is over the {limit / 1e6:g} MB limit")
        held.add(len(chunk))
        chunks.append(chunk)
    body = b"".join(chunks)
    if kind.startswith("image/"):
        return body
    return await _form_image(request, body, limit)


async def _form_image(request: Request, body: bytes, limit: int) -> bytes:
    """The ``image`` field of a multipart body (read already, within the limit)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    form = await Request(request.scope, replay).form(max_files=1, max_fields=1,
                                                      max_part_size=limit)
    try:
        names = [name for name, _ in form.multi_items()]
        unknown = [name for name in names if name != "image"]
        if unknown:
            raise RequestError(400, f"unknown form field {unknown[0][:40]!r} (send one "
                               "field named 'image')")
        field = form.get("image")
        if field is None:
            raise RequestError(400, "the form has no field named 'image'")
        if isinstance(field, UploadFile):
            return await field.read()
        return field.encode()
    finally:
        await form.close()


class _Guard:
    """Every HTTP request and WebSocket through here: the token check (health endpoints
    exempt; ``Authorization: Bearer T`` or ``?token=T``, which browsers' WebSockets need),
    then the bound on requests in progress and open streams (``limits.max_connections``;
    counted in ``metrics.connections`` on the event loop, so no lock; the health endpoints
    are neither bound nor counted), then the endpoint;
    afterwards one JSON access log line and the request counters."""

    def __init__(self, app: ASGIApp, service: Service) -> None:
        self.app, self.service = app, service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 0

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "websocket.accept":
                status = 101
            elif message["type"] == "websocket.close" and not status:
                status = 403
            await send(message)

        path = scope["path"]
        metrics = self.service.metrics
        try:
            if not self._allowed(scope):
                metrics.error("unauthorized")
                await self._refuse(scope, sending)
            elif path in _HEALTH:  # a probe must see a busy server alive; it holds no work
                await self.app(scope, receive, sending)
            elif metrics.connections >= self.service.limits.max_connections:
                metrics.error("too_many_connections")
                await self._busy(scope, receive, sending)
            else:
                metrics.connections += 1
                try:
                    await self.app(scope, receive, sending)
                finally:
                    metrics.connections -= 1
        finally:
            seconds = time.perf_counter() - start
            endpoint = path if path in _ENDPOINTS else "other"
            if scope["type"] == "http":  # a stream's frames are counted by the stream
                self.service.metrics.request(endpoint, status, seconds)
            client = scope.get("client")
            access_log.info(json.dumps({
                "time": round(time.time(), 3), "client": client[0] if client else None,
                "method": scope.get("method", "WS"), "path": path, "status": status,
                "ms": round(seconds * 1000.0, 1)}))

    def _allowed(self, scope: Scope) -> bool:
        token = self.service.settings.token
        path = scope["path"]
        if token is None or path in _OPEN or path.startswith(_OPEN_PREFIX):
            return True
        given = ""
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                text = value.decode("latin-1")
                given = text[7:] if text[:7].lower() == "bearer " else ""
        if not given:
            given = HTTPConnection(scope).query_params.get("token", "")
        return hmac.compare_digest(given.encode(), token.encode())

    async def _refuse(self, scope: Scope, send: Send) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008,
                        "reason": "missing or wrong token"})
            return
        response = _error(401, "missing or wrong token (send Authorization: Bearer TOKEN)",
                          {"WWW-Authenticate": "Bearer"})
        await response(scope, _no_body, send)

    async def _busy(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Past ``max_connections``: 503 with ``Retry-After``, and the connection closed
        (its body unread). A WebSocket is accepted, told so and closed with code 1013 (try
        again later) and a reason: a browser sees no status or header of a refused
        handshake, but it does see the close code and reason (the page shows them)."""
        most = self.service.limits.max_connections
        message = (f"{most} requests and streams are in progress already, the most this "
                   f"server takes; retry in {RETRY_AFTER_S} s")
        if scope["type"] == "websocket":
            websocket = WebSocket(scope, receive, send)
            with contextlib.suppress(WebSocketDisconnect):  # the client left meanwhile
                await websocket.accept()
                await websocket.send_text(json.dumps(error_record(message)))
                await websocket.close(1013, f"the server is busy: retry in {RETRY_AFTER_S} s")
            return
        response = _error(503, message, {"Retry-After": str(RETRY_AFTER_S),
                                         "Connection": "close"})
        await response(scope, _no_body, send)


async def _no_body() -> Message:
    """The ``receive`` of a refusal, which reads nothing of the request."""
    return {"type": "http.disconnect"}


_ENDPOINTS = frozenset({"/", "/healthz", "/readyz", "/metrics", "/predict", "/stream"})


