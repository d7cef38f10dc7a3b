"""``aepose serve``: poses over HTTP and WebSocket (:mod:`aepose.serve.app`), batched across
requests through the one driver (:mod:`aepose.serve.batching`), within limits
(:mod:`aepose.serve.limits`), measured (:mod:`aepose.serve.metrics`). Needs the ``serve``
extra (Starlette, uvicorn); ``import aepose`` never imports this package."""
