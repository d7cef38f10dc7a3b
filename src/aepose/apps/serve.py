"""``aepose serve``: the weights behind HTTP and WebSocket endpoints (:mod:`aepose.serve`),
run by uvicorn.

The weights are loaded (through the hub, as every command does; an ``.onnx`` file runs in
ONNX Runtime) before the port is bound, so a bad ``--weights`` is one line and no server.
Then uvicorn serves until Ctrl-C or SIGTERM, and shuts down gracefully: it stops accepting,
lets the requests it accepted finish (the batcher drains its queue), then exits.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
import uvicorn

from aepose.apps.settings import command_line_config
from aepose.device import resolve_device
from aepose.models.checkpoint import load_with_config
from aepose.pipeline.onnx_network import is_onnx_file
from aepose.pipeline.predictor import Predictor
from aepose.serve.app import STATIC, build_app
from aepose.serve.limits import ServeLimits
from aepose.serve.service import ServeSettings, Service

__all__ = ["GRACEFUL_SHUTDOWN_S", "TOKEN_VARIABLE", "ServeCommand", "serve_command",
           "uvicorn_config"]

TOKEN_VARIABLE = "AEPOSE_SERVE_TOKEN"
"""The environment variable read for the token when ``--token`` is not given."""
GRACEFUL_SHUTDOWN_S = 30
"""Seconds a shutdown waits for accepted requests before closing their connections."""
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class ServeCommand:
    """``aepose serve`` as the command line gives it: the weights (``preset``: as predict's;
    ``device`` None: every CUDA device, one batch worker each, else the CPU), the test
    settings over the weights' own (``overrides``: ``test.x=y`` items), where to listen,
    the limits and the settings fixed at start (a token None: ``AEPOSE_SERVE_TOKEN``'s)."""

    weights: str
    preset: str | None = None
    device: str | None = None
    overrides: tuple[str, ...] = ()
    host: str = "127.0.0.1"
    port: int = 8000
    limits: ServeLimits = field(default_factory=ServeLimits)
    settings: ServeSettings = field(default_factory=ServeSettings)


def serve_command(command: ServeCommand) -> None:
    """Load the weights, then serve until stopped (see the module docstring)."""
    settings = command.settings
    if settings.token is None and os.environ.get(TOKEN_VARIABLE):
        settings = replace(settings, token=os.environ[TOKEN_VARIABLE])
    predictors = [_predictor(command, device) for device in _devices(command.device)]
    service = Service(predictors, command.limits, settings)
    config = uvicorn_config(service, command.host, command.port)
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
    where = f"http://{command.host}:{command.port}/"
    guarded = "token required" if settings.token else "no token"
    print(f"aepose serve: {command.weights} on {len(predictors)} "
          f"{'device' if len(predictors) == 1 else 'devices'} at {where} ({guarded}; "
          "Ctrl-C stops)", file=sys.stderr)
    if settings.token is None and command.host not in _LOOPBACK:
        print(f"aepose serve: warning: {command.host} is reachable from other machines and "
              f"no token is set (--token or {TOKEN_VARIABLE})", file=sys.stderr)
    uvicorn.Server(config).run()


def uvicorn_config(service: Service, host: str = "127.0.0.1", port: int = 8000,
                   static: Path = STATIC) -> uvicorn.Config:
    """How uvicorn runs ``service``'s application: aepose's own access log (uvicorn's is
    off), WebSocket messages up to the body limit (and the frame's timestamp), a graceful
    shutdown of :data:`GRACEFUL_SHUTDOWN_S` at most.

    ``max_connections`` is the application's to enforce (:mod:`aepose.serve.app`), not
    uvicorn's ``limit_concurrency``: uvicorn's refusal is a plain-text 503 with no
    ``Retry-After`` that skips the application (no metrics, no log), it lets WebSocket
    handshakes through uncounted, and it counts idle keep-alive connections, so a client
    holding idle sockets open would lock every other client out while holding no work.
    As a backstop above the application's bound it would bound nothing more: it never
    refuses or closes an idle connection, it only answers requests."""
    return uvicorn.Config(
        build_app(service, static), host=host, port=port, log_config=None, access_log=False,
        ws_max_size=service.limits.max_body_bytes + 8,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S, lifespan="on")


def _devices(name: str | None) -> list[torch.device]:
    """One batch worker's device each: the one asked for (checked), else every CUDA
    device, else the CPU."""
    if name:
        return [resolve_device(name)]
    if torch.cuda.is_available():
        return [torch.device("cuda", i) for i in range(torch.cuda.device_count())]
    return [torch.device("cpu")]


def _predictor(command: ServeCommand, device: torch.device) -> Predictor:
    """The network of the weights on ``device`` with the command's test settings; the
    server's pose NMS and thresholds are applied per request."""
    if is_onnx_file(command.weights):
        stored = Predictor.from_checkpoint(command.weights, command.preset, device)
        network, cfg = stored.model, stored.config
    else:
        network, cfg = load_with_config(command.weights, preset=command.preset, device=device)
    return Predictor(network, command_line_config(cfg, command.overrides), channel_order="rgb")
